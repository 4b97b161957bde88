"""Real-vs-synthetic QC: register the session's acquired target image to the synthetic one, score it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np


def compare_real(synth_file: str | Path, real_file: str | Path, mask_file: str | Path,
                 source_file: str | Path, out_real: str | Path) -> dict[str, Any]:
    """Register ``real_file`` rigidly to the source, score it on the synthetic grid inside the mask.

    The acquired image is registered to the (conformed) SOURCE image, which holds real anatomy
    whatever the network produced, and resampled onto the synthetic grid (source and synthetic
    share world space). ``mask_file`` is on the source grid. The registered real image is
    written to ``out_real`` for the QC figure.
    """
    from tumsyn_bids.anat.registration import array_to_nifti, resample_to, rigid_resample
    from tumsyn_bids.evaluation import PERCENTILES, compare

    (moved,) = rigid_resample(source_file, real_file, reference=synth_file)
    mask = resample_to(synth_file, mask_file, interpolator="nearestNeighbor") > 0.5
    synth = np.asarray(nib.load(str(synth_file)).dataobj, dtype=np.float32)
    moved = np.where(mask, moved, 0.0).astype(np.float32)
    nib.save(array_to_nifti(moved, synth_file), str(out_real))
    scores = compare(np.where(mask, synth, 0.0), moved, mask)
    return {
        "RealImage": str(real_file),
        "Registration": "rigid (antspyx, mutual information) to the source, resampled onto the synthetic grid",
        "Normalisation": f"percentiles {PERCENTILES[0]}/{PERCENTILES[1]} to [0,1]",
        **{region: {k: (None if not np.isfinite(v) else round(float(v), 4)) for k, v in vals.items()}
           for region, vals in scores.items()},
    }
