"""Command-line front ends. Importing this package must not import torch, ants or nipype."""
