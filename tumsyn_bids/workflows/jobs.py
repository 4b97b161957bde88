"""What the workflow builders take: planned jobs and run-wide options (no nipype import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from tumsyn_bids.planning import PlannedOutput


@dataclass(frozen=True)
class Job:
    """One planned output with what the workflow needs beyond the plan."""

    output: "PlannedOutput"
    real_file: Path | None = None  # acquired image of the target contrast (QC)
    t1w_file: Path | None = None  # session T1w for mask transfer (non-T1w sources)


@dataclass(frozen=True)
class RunOptions:
    """Run-wide settings the workflow needs."""

    bids_dir: Path
    out_dir: Path
    model: str
    weights: str | None
    device: str
    use_gpu: bool
    mode: str = "fast"
    skull_strip: str = "auto"
    mask_output: bool = False
    save_maps: bool = False  # also write the predicted tissue maps (bids.derivatives.TISSUE_MAPS)
    refine: bool = True  # physics-consistency refinement (inference.refine)
    omp_nthreads: int = 1
    synth_mem_gb: float = 3.0
    template_spaces: tuple[str, ...] = ()  # e.g. ("MNI152NLin2009cAsym:res-2",)
    extra: dict[str, Any] = field(default_factory=dict)
