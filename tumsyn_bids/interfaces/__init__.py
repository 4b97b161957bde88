"""Thin nipype interfaces over the plain functions in :mod:`tumsyn_bids.anat`."""
