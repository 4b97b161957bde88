"""BIDS input side: validation, participants/sessions tables, pybids discovery.

Modules: :mod:`.validation` (dataset checks, exit code 16), :mod:`.participants` (age/sex),
:mod:`.layout` (pybids index and per-session image records). Nothing here imports torch, and
pybids is only imported when a layout is built.
"""
