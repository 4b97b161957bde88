"""Inference: output geometry, window tiling, normalisation, devices and the patch engine.

Import the submodules directly (``tumsyn_bids.inference.engine``); this package file imports
nothing heavy so that the CLI stays fast.
"""
