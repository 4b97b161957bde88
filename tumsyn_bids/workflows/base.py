"""The top-level workflow: one sub-workflow per participant, one branch per planned output."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from tumsyn_bids import __version__
from tumsyn_bids.bids.derivatives import TISSUE_MAPS
from tumsyn_bids.interfaces.anat import Conform, CoregisterSource
from tumsyn_bids.workflows.anatomical import init_anat_wf
from tumsyn_bids.workflows.jobs import Job, RunOptions
from tumsyn_bids.workflows.synthesis import init_outputs_wf, init_synthesis_wf

if TYPE_CHECKING:  # pragma: no cover
    from tumsyn_bids.planning import PlannedOutput

T1W_LIKE = {"T1w", "T1CE"}


def workflow_name() -> str:
    """Version-namespaced top workflow name, so different versions never share a cache."""
    return "tumsyn_" + re.sub(r"[^0-9a-zA-Z]+", "_", __version__) + "_wf"


def safe(text: str) -> str:
    """A node-name-safe version of ``text``."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_")


def _stem(path: Path) -> str:
    return path.name.split(".")[0]


def conditioning(output: "PlannedOutput") -> dict[str, Any]:
    """The prompt's fields, for the sidecar's SynthesisConditioning."""
    p = output.prompt
    return {
        "Modality": p.modality, "VoxelSize": list(p.voxel_size), "Age": p.age, "Sex": p.sex,
        "MagneticFieldStrength": p.field_strength, "Manufacturer": p.vendor,
        "RepetitionTimeMs": p.tr_ms, "EchoTimeMs": p.te_ms, "InversionTimeMs": p.ti_ms,
        "FlipAngle": p.flip_angle,
    }


def init_participant_wf(subject: str, jobs: list[Job], opts: RunOptions) -> pe.Workflow:
    """All planned outputs of one participant: one anat branch per source, one synthesis per output."""
    workflow = pe.Workflow(name=f"sub_{safe(subject)}_wf")
    anat_wfs: dict[Path, pe.Workflow] = {}
    conformed: dict[Path, pe.Node] = {}  # further sources, conformed once each
    registered: dict[tuple[Path, Path], pe.Node] = {}  # (reference, further source) -> registration node
    for job in jobs:
        out = job.output
        source = Path(out.source_path)
        if source not in anat_wfs:
            t1w = job.t1w_file if out.source_contrast not in T1W_LIKE else None
            anat_wfs[source] = init_anat_wf(
                source_file=source, suffix=out.source_contrast, skull_strip=opts.skull_strip,
                t1w_file=t1w, omp_nthreads=opts.omp_nthreads, name=f"anat_{safe(_stem(source))}_wf",
            )
        anat_wf = anat_wfs[source]
        key = safe(f"{_stem(source)}_{out.target}")
        synth_wf = init_synthesis_wf(
            prompt=out.prompt.text(), voxel_size=out.voxel_size, model=opts.model, weights=opts.weights,
            device=opts.device, mode=opts.mode, use_gpu=opts.use_gpu, omp_nthreads=opts.omp_nthreads,
            mem_gb=opts.synth_mem_gb, tissue_maps=tuple(TISSUE_MAPS) if opts.save_maps else (),
            source_prompt=out.source_prompt.text() if out.source_prompt else "", refine=opts.refine,
            extra_sources=tuple(e.prompt.text() if e.prompt else "" for e in out.extra_sources),
            name=f"synth_{key}_wf",
        )
        outputs_wf = init_outputs_wf(
            out_dir=opts.out_dir, bids_dir=opts.bids_dir, source_file=source, target=out.target,
            prompt=out.prompt.text(), source_metadata=dict(out.source_metadata),
            conditioning=conditioning(out), mask_output=opts.mask_output, real_file=job.real_file,
            omp_nthreads=opts.omp_nthreads, template_spaces=opts.template_spaces,
            extra_sources=tuple({"path": str(e.path), "contrast": e.contrast,
                                 "prompt": e.prompt.text() if e.prompt else None} for e in out.extra_sources),
            name=f"ds_{key}_wf",
        )
        workflow.connect([
            (anat_wf, synth_wf, [("outputnode.conformed", "inputnode.conformed"),
                                 ("outputnode.mask", "inputnode.mask")]),
            (synth_wf, outputs_wf, [("outputnode.synth_file", "inputnode.synth_file"),
                                    ("outputnode.info", "inputnode.info")]),
            (anat_wf, outputs_wf, [("outputnode.mask", "inputnode.mask"),
                                   ("outputnode.mask_info", "inputnode.mask_info"),
                                   ("outputnode.conformed", "inputnode.conformed")]),
        ])  # fmt:skip
        if out.extra_sources:  # multi-source: conform + register each further source to this reference
            n_extra = len(out.extra_sources)
            files = pe.Node(niu.Merge(n_extra), name=f"extra_files_{key}")
            qcs = pe.Node(niu.Merge(n_extra), name=f"extra_qc_{key}")
            for index, extra in enumerate(out.extra_sources, 1):
                path = Path(extra.path)
                if path not in conformed:
                    conformed[path] = pe.Node(Conform(in_file=str(path)), name=f"conform_{safe(_stem(path))}")
                if (source, path) not in registered:
                    reg = pe.Node(CoregisterSource(num_threads=opts.omp_nthreads),
                                  name=f"coreg_{safe(_stem(path))}_to_{safe(_stem(source))}",
                                  n_procs=opts.omp_nthreads, mem_gb=1.0)
                    workflow.connect([
                        (conformed[path], reg, [("out_file", "in_file")]),
                        (anat_wf, reg, [("outputnode.conformed", "reference"), ("outputnode.mask", "mask_file")]),
                    ])  # fmt:skip
                    registered[(source, path)] = reg
                reg = registered[(source, path)]
                workflow.connect([(reg, files, [("out_file", f"in{index}")]), (reg, qcs, [("qc", f"in{index}")])])
            workflow.connect([
                (files, synth_wf, [("out", "inputnode.extra_files")]),
                (qcs, synth_wf, [("out", "inputnode.extra_qc")]),
                (qcs, outputs_wf, [("out", "inputnode.extra_qc")]),
                (files, outputs_wf, [("out", "inputnode.extra_files")]),
            ])  # fmt:skip
    return workflow


def init_tumsyn_wf(jobs_by_subject: dict[str, list[Job]], opts: RunOptions, base_dir: Path,
                   crash_dirs: dict[str, Path] | None = None) -> pe.Workflow:
    """The whole run: participants side by side, each with its own crash-file folder."""
    workflow = pe.Workflow(name=workflow_name(), base_dir=str(base_dir))
    workflow.config["execution"].update({
        "crashfile_format": "txt",
        "remove_unnecessary_outputs": "false",
        "poll_sleep_duration": 0.5,
    })
    for subject, jobs in sorted(jobs_by_subject.items()):
        participant_wf = init_participant_wf(subject, jobs, opts)
        if crash_dirs and subject in crash_dirs:
            for node_name in participant_wf.list_node_names():
                node = participant_wf.get_node(node_name)
                node.config = {"execution": {"crashdump_dir": str(crash_dirs[subject])}}
        workflow.add_nodes([participant_wf])
    return workflow
