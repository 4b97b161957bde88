"""Workflow wiring: node layout, resources declared to nipype, per-participant crash files."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.planning import PlannedOutput
from tumsyn_bids.prompts import Prompt
from tumsyn_bids.workflows.base import init_tumsyn_wf, workflow_name
from tumsyn_bids.workflows.jobs import Job, RunOptions


def _output(src: Path, subject: str, target: str = "T2w", contrast: str = "T1w") -> PlannedOutput:
    return PlannedOutput(subject=subject, session=None, target=target, source_path=src, source_entities={},
                         source_metadata={}, prompt=Prompt(modality=target, voxel_size=(2.0, 2.0, 2.0)),
                         voxel_size=(2.0, 2.0, 2.0), demographics={}, source_contrast=contrast,
                         source_prompt=Prompt(modality=contrast, voxel_size=(2.0, 2.0, 2.0), tr_ms=2300.0))


def _opts(tmp_path: Path, use_gpu: bool = False) -> RunOptions:
    return RunOptions(bids_dir=tmp_path / "bids", out_dir=tmp_path / "out", model="tumsyn-small", weights=None,
                      device="cuda" if use_gpu else "cpu", use_gpu=use_gpu, omp_nthreads=2)


def test_graph_layout_and_declared_resources(tmp_path):
    src1 = tmp_path / "bids/sub-01/anat/sub-01_T1w.nii.gz"
    src2 = tmp_path / "bids/sub-02/anat/sub-02_FLAIR.nii.gz"
    t1w2 = tmp_path / "bids/sub-02/anat/sub-02_T1w.nii.gz"
    for path in (src1, src2, t1w2):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")  # the interfaces check that inputs exist
    jobs = {
        "01": [Job(_output(src1, "01")), Job(_output(src1, "01", "FLAIR"), real_file=src2)],
        "02": [Job(_output(src2, "02", "T2w", "FLAIR"), t1w_file=t1w2)],
    }
    wf = init_tumsyn_wf(jobs, _opts(tmp_path, use_gpu=True), base_dir=tmp_path / "work",
                        crash_dirs={"01": tmp_path / "c1", "02": tmp_path / "c2"})
    assert wf.name == workflow_name() and wf.name.startswith("tumsyn_")
    names = set(wf.list_node_names())
    assert "sub_01_wf.anat_sub_01_T1w_wf.conform" in names
    assert {n for n in names if n.endswith("synthesize")} == {
        "sub_01_wf.synth_sub_01_T1w_T2w_wf.synthesize", "sub_01_wf.synth_sub_01_T1w_FLAIR_wf.synthesize",
        "sub_02_wf.synth_sub_02_FLAIR_T2w_wf.synthesize"}
    assert sum(n.endswith(".conform") for n in names) == 2  # one conform per source, shared by targets
    assert "sub_01_wf.ds_sub_01_T1w_FLAIR_wf.compare_real" in names  # acquired FLAIR -> QC
    assert "sub_01_wf.ds_sub_01_T1w_T2w_wf.compare_real" not in names
    assert "sub_02_wf.anat_sub_02_FLAIR_wf.mask_t1w" in names  # FLAIR source: T1w mask transfer
    synth = wf.get_node("sub_01_wf.synth_sub_01_T1w_T2w_wf.synthesize")
    assert synth.inputs.use_gpu is True and synth.n_procs == 1 and synth.mem_gb == 3.0
    assert "Modality: T1w" in synth.inputs.source_prompt and "2300.0" in synth.inputs.source_prompt
    mask = wf.get_node("sub_01_wf.anat_sub_01_T1w_wf.brain_mask")
    assert mask.n_procs == 2 and mask.inputs.num_threads == 2
    assert mask.config["execution"]["crashdump_dir"] == str(tmp_path / "c1")
    assert wf.get_node("sub_02_wf.anat_sub_02_FLAIR_wf.conform").config["execution"]["crashdump_dir"] == \
        str(tmp_path / "c2")


def test_a_crash_lands_in_the_participants_log_and_spares_the_other(tmp_path):
    bids = tmp_path / "bids"
    good = bids / "sub-01/anat/sub-01_T1w.nii.gz"
    bad = bids / "sub-02/anat/sub-02_T1w.nii.gz"
    for path in (good, bad):
        path.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((6, 6, 6)).astype(np.float32), np.eye(4)), str(good))
    nib.save(nib.Nifti1Image(np.full((6, 6, 6), np.nan, np.float32), np.eye(4)), str(bad))
    jobs = {"01": [Job(_output(good, "01"))], "02": [Job(_output(bad, "02"))]}
    crash = {"01": tmp_path / "out/sub-01/log/run", "02": tmp_path / "out/sub-02/log/run"}
    wf = init_tumsyn_wf(jobs, _opts(tmp_path), base_dir=tmp_path / "work", crash_dirs=crash)
    for subject in ("01", "02"):  # keep only the conform nodes: enough to test crash routing
        sub_wf = wf.get_node(f"sub_{subject}_wf")
        children = {name.split(".")[0] for name in sub_wf.list_node_names()}
        sub_wf.remove_nodes([sub_wf.get_node(c) for c in children if not c.startswith("anat_")])
        anat_wf = sub_wf.get_node(f"anat_sub_{subject}_T1w_wf")
        anat_wf.remove_nodes([anat_wf.get_node(n) for n in anat_wf.list_node_names() if n != "conform"])
    with pytest.raises(RuntimeError):
        wf.run(plugin="Linear")
    assert not crash["01"].exists() or not list(crash["01"].glob("crash-*"))
    files = list(crash["02"].glob("crash-*.txt"))
    assert len(files) == 1 and "no finite values" in files[0].read_text()
    done = list((tmp_path / "work").glob(f"{wf.name}/sub_01_wf/*/conform/conformed.nii.gz"))
    assert len(done) == 1


def test_template_space_branch_is_wired_only_when_asked(tmp_path):
    from dataclasses import replace

    src = tmp_path / "bids/sub-01/anat/sub-01_T1w.nii.gz"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"")
    jobs = {"01": [Job(_output(src, "01"))]}
    plain = init_tumsyn_wf(jobs, _opts(tmp_path), base_dir=tmp_path / "w1")
    assert not [n for n in plain.list_node_names() if ".to_" in n]
    opts = replace(_opts(tmp_path), template_spaces=("MNI152NLin2009cAsym:res-2",))
    wf = init_tumsyn_wf(jobs, opts, base_dir=tmp_path / "w2")
    node = wf.get_node("sub_01_wf.ds_sub_01_T1w_T2w_wf.to_MNI152NLin2009cAsymres2")
    assert node.inputs.res == 2
    writer = wf.get_node("sub_01_wf.ds_sub_01_T1w_T2w_wf.ds_MNI152NLin2009cAsymres2")
    assert writer.inputs.space == "MNI152NLin2009cAsym:res-2"


def test_gpu_use_is_decided_without_touching_cuda():
    import shutil
    import sys

    from tumsyn_bids.inference.device import wants_gpu

    assert wants_gpu("cpu") is False and wants_gpu("cuda:1") is True
    assert wants_gpu("auto") is (shutil.which("nvidia-smi") is not None and wants_gpu("auto"))
    assert "torch.cuda" not in sys.modules or not __import__("torch").cuda.is_initialized()


def test_multi_source_graph_registers_each_further_source_once(tmp_path):
    from dataclasses import replace

    from tumsyn_bids.planning import ExtraSource

    anat = tmp_path / "bids/sub-01/anat"
    anat.mkdir(parents=True)
    files = {c: anat / f"sub-01_{c}.nii.gz" for c in ("T1w", "FLAIR", "PDw")}
    for path in files.values():
        path.write_bytes(b"")
    extras = tuple(ExtraSource(path=files[c], contrast=c, entities={}, metadata={},
                               prompt=Prompt(modality=c, voxel_size=(2.0, 2.0, 2.0), tr_ms=tr))
                   for c, tr in (("FLAIR", 9000.0), ("PDw", 3000.0)))
    jobs = {"01": [Job(replace(_output(files["T1w"], "01", target), extra_sources=extras))
                   for target in ("T2w", "T2starw")]}
    wf = init_tumsyn_wf(jobs, _opts(tmp_path), base_dir=tmp_path / "work")
    names = set(wf.list_node_names())
    # each further source conformed once and registered once to the reference, shared by both targets
    assert {n for n in names if ".coreg_" in n} == {"sub_01_wf.coreg_sub_01_FLAIR_to_sub_01_T1w",
                                                   "sub_01_wf.coreg_sub_01_PDw_to_sub_01_T1w"}
    assert {n for n in names if n.startswith("sub_01_wf.conform_")} == {"sub_01_wf.conform_sub_01_FLAIR",
                                                                        "sub_01_wf.conform_sub_01_PDw"}
    synth = wf.get_node("sub_01_wf.synth_sub_01_T1w_T2w_wf.synthesize")
    assert synth.inputs.extra_prompts == [e.prompt.text() for e in extras]
    import networkx as nx

    graph = wf._create_flat_graph()
    by_name = {n.fullname.split(".", 1)[1]: n for n in graph.nodes()}

    def feeds(a: str, b: str) -> bool:
        return nx.has_path(graph, by_name[a], by_name[b])

    assert feeds("sub_01_wf.anat_sub_01_T1w_wf.brain_mask", "sub_01_wf.coreg_sub_01_FLAIR_to_sub_01_T1w")
    assert feeds("sub_01_wf.conform_sub_01_PDw", "sub_01_wf.coreg_sub_01_PDw_to_sub_01_T1w")
    assert feeds("sub_01_wf.coreg_sub_01_PDw_to_sub_01_T1w", "sub_01_wf.synth_sub_01_T1w_T2starw_wf.synthesize")
    assert feeds("sub_01_wf.coreg_sub_01_FLAIR_to_sub_01_T1w", "sub_01_wf.ds_sub_01_T1w_T2w_wf.write_derivatives")
    assert not feeds("sub_01_wf.coreg_sub_01_FLAIR_to_sub_01_T1w", "sub_01_wf.anat_sub_01_T1w_wf.brain_mask")
    assert feeds("sub_01_wf.coreg_sub_01_PDw_to_sub_01_T1w", "sub_01_wf.ds_sub_01_T1w_T2w_wf.reportlets")
    reportlets = wf.get_node("sub_01_wf.ds_sub_01_T1w_T2w_wf.reportlets")
    assert reportlets.inputs.extra_names == ["sub-01_FLAIR.nii.gz", "sub-01_PDw.nii.gz"]
    write = wf.get_node("sub_01_wf.ds_sub_01_T1w_T2w_wf.write_derivatives")
    assert [e["contrast"] for e in write.inputs.extra_sources] == ["FLAIR", "PDw"]
    # a single-source output has none of it
    single = init_tumsyn_wf({"01": [Job(_output(files["T1w"], "01"))]}, _opts(tmp_path), base_dir=tmp_path / "w2")
    assert not any(".coreg_" in n or "extra_" in n for n in single.list_node_names())
