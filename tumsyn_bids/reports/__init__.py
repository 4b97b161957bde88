"""Per-participant HTML reports with PNG figures, and the group-level summary."""
