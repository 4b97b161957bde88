"""Training of the text encoder (stage 1, contrastive) and the synthesis network (stage 2).

Modules: ``config`` (settings from YAML/TOML), ``sampling`` (HR cubes, LR inputs, queries),
``pool`` (in-memory subjects), ``data_sim`` (simulated subjects), ``data_bids`` (real pairs from a
BIDS dataset), ``loop`` (seeding, checkpoints, loss log, progress), ``stage1``, ``stage2``, ``run``.
Importing this package imports nothing heavy.
"""
