"""Synthesis of one planned output, optional QC against an acquired image, and its derivatives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from tumsyn_bids.interfaces.outputs import CompareReal, ToTemplate, WriteDerivatives, WriteTemplate
from tumsyn_bids.interfaces.reports import Reportlets
from tumsyn_bids.interfaces.synthesis import Synthesize


def init_synthesis_wf(*, prompt: str, voxel_size: tuple[float, float, float], model: str,
                      weights: str | None, device: str, mode: str, use_gpu: bool, omp_nthreads: int,
                      mem_gb: float = 3.0, tissue_maps: tuple[str, ...] = (), source_prompt: str = "",
                      refine: bool = True, extra_sources: tuple[str, ...] = (),
                      name: str = "synthesis_wf") -> pe.Workflow:
    """Masked source -> synthetic image (and, with ``tissue_maps``, those predicted maps: ``info["maps"]``).

    ``extra_sources``: the source prompts ('' = unknown) of further sources (multi-source synthesis);
    their registered images and registration QC come in as the lists ``extra_files`` and ``extra_qc``.
    Inputs: ``conformed``, ``mask`` (+ ``extra_files``, ``extra_qc``). Outputs: ``synth_file``, ``info``.
    """
    workflow = pe.Workflow(name=name)
    fields = ["conformed", "mask"] + (["extra_files", "extra_qc"] if extra_sources else [])
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["synth_file", "info"]), name="outputnode")
    synthesize = pe.Node(
        Synthesize(prompt=prompt, voxel_size=[float(v) for v in voxel_size], model=model,
                   weights=weights or "", device=device, mode=mode, num_threads=omp_nthreads,
                   use_gpu=use_gpu, tissue_maps=list(tissue_maps), source_prompt=source_prompt,
                   refine=refine, **({"extra_prompts": list(extra_sources)} if extra_sources else {})),
        name="synthesize", n_procs=1 if use_gpu else omp_nthreads, mem_gb=mem_gb,
    )
    workflow.connect([
        (inputnode, synthesize, [("conformed", "in_file"), ("mask", "mask_file")]),
        (synthesize, outputnode, [("out_file", "synth_file"), ("info", "info")]),
    ])  # fmt:skip
    if extra_sources:
        workflow.connect([
            (inputnode, synthesize, [("extra_files", "extra_sources"), ("extra_qc", "extra_qc")]),
        ])  # fmt:skip
    return workflow


def init_outputs_wf(*, out_dir: str | Path, bids_dir: str | Path, source_file: str | Path, target: str,
                    prompt: str, source_metadata: dict[str, Any], conditioning: dict[str, Any],
                    mask_output: bool, real_file: str | Path | None = None, omp_nthreads: int = 1,
                    template_spaces: tuple[str, ...] = (), extra_sources: tuple[dict[str, Any], ...] = (),
                    name: str = "outputs_wf") -> pe.Workflow:
    """Write the derivatives of one output; with ``real_file``, register it and add QC numbers.

    ``template_spaces`` (e.g. ``MNI152NLin2009cAsym:res-2``) add a template-space copy each.
    ``extra_sources`` (multi-source): ``{"path", "contrast", "prompt"}`` of each further raw source; their
    registration QC records and registered images come in as the lists ``extra_qc`` and ``extra_files``.
    Inputs: ``synth_file``, ``info`` (synthesis), ``mask``, ``mask_info``, ``conformed`` (source)
    (+ ``extra_qc``, ``extra_files``).
    """
    workflow = pe.Workflow(name=name)
    fields = ["synth_file", "info", "mask", "mask_info", "conformed"]
    fields += ["extra_qc", "extra_files"] if extra_sources else []
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    write = pe.Node(
        WriteDerivatives(out_dir=str(out_dir), bids_dir=str(bids_dir), source_file=str(source_file),
                         target=target, prompt=prompt, source_metadata=source_metadata,
                         conditioning=conditioning, mask_output=mask_output,
                         **({"extra_sources": [dict(e) for e in extra_sources]} if extra_sources else {})),
        name="write_derivatives", mem_gb=0.5,
    )
    if extra_sources:
        workflow.connect([(inputnode, write, [("extra_qc", "extra_qc")])])
    reportlets = pe.Node(Reportlets(out_dir=str(out_dir), source_file=str(source_file), target=target),
                         name="reportlets", mem_gb=0.5)
    if extra_sources:
        reportlets.inputs.extra_names = [Path(e["path"]).name for e in extra_sources]
        workflow.connect([(inputnode, reportlets, [("extra_files", "extra_registered")])])
    workflow.connect([
        (inputnode, write, [("synth_file", "synth_file"), ("info", "synthesis"),
                            ("mask", "mask_file"), ("mask_info", "mask_info")]),
        (inputnode, reportlets, [("synth_file", "synth_file")]),
        (write, reportlets, [("written", "written")]),
    ])  # fmt:skip
    if real_file is not None:
        compare = pe.Node(CompareReal(real_file=str(real_file), num_threads=omp_nthreads),
                          name="compare_real", n_procs=omp_nthreads, mem_gb=1.0)
        workflow.connect([
            (inputnode, compare, [("synth_file", "synth_file"), ("mask", "mask_file"),
                                  ("conformed", "source_file")]),
            (compare, write, [("qc", "qc"), ("real_registered", "real_registered")]),
            (compare, reportlets, [("real_registered", "real_registered")]),
        ])  # fmt:skip
    for space in template_spaces:
        _, _, spec = space.partition(":")
        res = int(spec[len("res-"):]) if spec.startswith("res-") else 0
        key = "".join(ch for ch in space if ch.isalnum())
        to_template = pe.Node(ToTemplate(res=res, num_threads=omp_nthreads), name=f"to_{key}",
                              n_procs=omp_nthreads, mem_gb=1.5)
        write_template = pe.Node(WriteTemplate(out_dir=str(out_dir), bids_dir=str(bids_dir), target=target,
                                               source_file=str(source_file), space=space),
                                 name=f"ds_{key}", mem_gb=0.5)
        workflow.connect([
            (inputnode, to_template, [("conformed", "source_file"), ("mask", "mask_file"),
                                      ("synth_file", "synth_file")]),
            (to_template, write_template, [("out_file", "in_file"), ("xfm", "xfm"), ("info", "info")]),
            (write, write_template, [("written", "written")]),
        ])  # fmt:skip
    return workflow
