"""Thin nipype interfaces over the plain functions in :mod:`tumsyn_bids.anat`."""

from tumsyn_bids.logs import route_from_environment

# A MultiProc worker imports this package when it unpickles a node: send its nipype/tumsyn
# logging to the run's log file (tumsyn_bids.logs), not to the terminal.
route_from_environment()
