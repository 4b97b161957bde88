"""Conform + brain mask of one source image."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from tumsyn_bids.interfaces.anat import BrainMask, Conform


def init_anat_wf(*, source_file: str | Path, suffix: str, skull_strip: str = "auto",
                 t1w_file: str | Path | None = None, omp_nthreads: int = 1,
                 name: str = "anat_wf") -> pe.Workflow:
    """Conform ``source_file`` and compute its brain mask.

    When the source is not T1w-like and ``t1w_file`` (a T1w of the same session) is given, the
    T1w is conformed and masked too, and its mask is carried rigidly onto the source.

    Outputs: ``conformed`` (RAS+ float32), ``mask`` (uint8), ``mask_info`` (method, detail, volume).
    """
    workflow = pe.Workflow(name=name)
    outputnode = pe.Node(niu.IdentityInterface(fields=["conformed", "mask", "mask_info", "report"]),
                         name="outputnode")
    conform = pe.Node(Conform(in_file=str(source_file)), name="conform")
    brain_mask = pe.Node(BrainMask(mode=skull_strip, suffix=suffix, num_threads=omp_nthreads),
                         name="brain_mask", n_procs=omp_nthreads, mem_gb=1.5)
    workflow.connect([
        (conform, brain_mask, [("out_file", "in_file")]),
        (conform, outputnode, [("out_file", "conformed"), ("report", "report")]),
        (brain_mask, outputnode, [("out_file", "mask"), ("info", "mask_info")]),
    ])  # fmt:skip
    if t1w_file is not None:
        conform_t1w = pe.Node(Conform(in_file=str(t1w_file)), name="conform_t1w")
        mask_t1w = pe.Node(BrainMask(mode=skull_strip, suffix="T1w", num_threads=omp_nthreads),
                           name="mask_t1w", n_procs=omp_nthreads, mem_gb=1.5)
        workflow.connect([
            (conform_t1w, mask_t1w, [("out_file", "in_file")]),
            (conform_t1w, brain_mask, [("out_file", "t1w_file")]),
            (mask_t1w, brain_mask, [("out_file", "t1w_mask")]),
        ])  # fmt:skip
    return workflow
