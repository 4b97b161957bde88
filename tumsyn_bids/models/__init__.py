"""TUMSyn networks: CLIP tokenizer and text tower, synthesis network (``lccd``), registry, checkpoints.

Import the submodules directly (``tumsyn_bids.models.loading.load_model`` etc.); this package
imports nothing at start-up so that the CLI stays light.
"""
