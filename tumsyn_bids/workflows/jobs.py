"""What the workflow builders take: the jobs still to do (the no-op check) and run-wide options (no nipype import)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from tumsyn_bids.bids.derivatives import OutputPaths
    from tumsyn_bids.config import Settings
    from tumsyn_bids.planning import Plan, PlannedOutput


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


def paths_of(settings: "Settings", output: "PlannedOutput") -> "OutputPaths":
    """Every file ``output`` writes, relative to out_dir (the writers use the same function)."""
    from tumsyn_bids.bids.derivatives import dataset_relpath, output_paths, template_spaces

    return output_paths(dataset_relpath(output.source_path, settings.bids_dir), output.target,
                        template_spaces=template_spaces(settings.output_spaces))


def planned_sources(settings: "Settings", output: "PlannedOutput") -> list[str]:
    """BIDS URIs of every source of ``output``, the reference first (several: multi-source synthesis)."""
    from tumsyn_bids.bids.derivatives import dataset_relpath, raw_uri

    return [raw_uri(dataset_relpath(path, settings.bids_dir))
            for path in [output.source_path, *(e.path for e in output.extra_sources)]]


def is_done(settings: "Settings", paths: "OutputPaths", prompt: str, model_name: str | None, sha256: str,
            sources: list[str] | None = None) -> bool:
    """Whether a rerun would write the same files: all present, same prompt, model, weights and sources."""
    from tumsyn_bids.bids.derivatives import is_up_to_date

    out_dir = Path(settings.output_dir)
    present = [paths.mask, *paths.templates.values()]
    return all((out_dir / p).is_file() for p in present) and all(
        is_up_to_date(out_dir / p, prompt=prompt, model_name=model_name, weights_sha256=sha256,
                      masked_output=settings.mask_output, sources=sources if p == paths.image else None)
        for p in paths.recorded(settings.save_maps))


def make_jobs(settings: "Settings", plan: "Plan", model_name: str | None, sha256: str
              ) -> tuple[dict[str, list["Job"]], list[str]]:
    """Planned outputs still to do, per participant, and the relative paths already up to date."""
    from tumsyn_bids.anat.session import session_images

    jobs: dict[str, list[Job]] = defaultdict(list)
    done: list[str] = []
    for output in plan.outputs:
        paths = paths_of(settings, output)
        if is_done(settings, paths, output.prompt.text(), model_name, sha256, planned_sources(settings, output)):
            done.append(paths.image.as_posix())
            continue
        reals = session_images(output.source_path, output.target)
        t1ws = session_images(output.source_path, "T1w") if output.source_contrast not in {"T1w", "T1CE"} else []
        jobs[output.subject].append(Job(output=output, real_file=reals[0] if reals else None,
                                        t1w_file=t1ws[0] if t1ws else None))
    return dict(jobs), done
