"""benchmarks/real_quality.py without the app: discovery, mask rule, z-score shift, baselines, BIDS input."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "real_quality.py"
SHAPE = (24, 22, 20)
AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def rq():
    spec = importlib.util.spec_from_file_location("real_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_quality"] = module  # its dataclasses look their module up while being defined
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("real_quality", None)


def _phantom():
    """A small ellipsoid brain with WM, a GM shell, a CSF ventricle and a lesion blob."""
    idx = np.indices(SHAPE).transpose(1, 2, 3, 0).astype(float)
    c = (np.array(SHAPE) - 1) / 2
    r = np.sqrt((((idx - c) / (np.array(SHAPE) * 0.42)) ** 2).sum(-1))
    brain = r < 1.0
    labels = np.where(brain, 1, 0)  # 1 = WM
    labels[(r > 0.75) & brain] = 2  # GM shell
    labels[np.sqrt(((idx - c) ** 2).sum(-1)) < 2.5] = 3  # CSF
    labels[np.sqrt(((idx - c - [4, 3, 2]) ** 2).sum(-1)) < 2] = 4  # lesion
    return labels, brain


# tissue intensities (background, WM, GM, CSF, lesion)
VALUES = {"T1w": [0, 0.8, 0.55, 0.15, 0.4], "T2w": [0, 0.3, 0.45, 1.0, 0.8], "FLAIR": [0, 0.35, 0.5, 0.1, 0.95]}


def _save(path: Path, data, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(path))


@pytest.fixture()
def real_dir(tmp_path):
    """caseA/pre (T1w, T2w, FLAIR_norm with background everywhere, on one grid) + caseA/raw (T1w only
    on that grid, T2w elsewhere), caseB (z-scored FLAIR and T1c with a brainmask), junk files."""
    labels, brain = _phantom()
    rng = np.random.default_rng(0)
    root = tmp_path / "real"
    imgs = {k: np.take(v, labels) + rng.normal(0, 0.01, SHAPE) * brain for k, v in VALUES.items()}
    _save(root / "caseA" / "pre" / "T1w.nii.gz", imgs["T1w"])
    _save(root / "caseA" / "pre" / "T2w.nii.gz", imgs["T2w"])
    _save(root / "caseA" / "pre" / "FLAIR_norm.nii.gz", imgs["FLAIR"] + 0.05)  # nonzero background
    _save(root / "caseA" / "pre" / "seg.nii.gz", labels)
    (root / "caseA" / "pre" / "notes.txt").write_text("not an image")
    _save(root / "caseA" / "raw" / "T1w.nii.gz", imgs["T1w"])
    _save(root / "caseA" / "raw" / "T2w.nii.gz", imgs["T2w"], np.diag([2.0, 2.0, 2.0, 1.0]))
    for name, k in (("FLAIR_zscore", "FLAIR"), ("T1c_zscore", "T1w")):
        v = imgs[k]
        z = np.where(brain, (v - v[brain].mean()) / v[brain].std(), -3.0)
        _save(root / "caseB" / f"{name}.nii.gz", z)
    _save(root / "caseB" / "brainmask.nii.gz", brain.astype(np.float32))
    (root / "empty").mkdir()
    return root, labels, brain


def test_contrast_of_strips_suffixes(rq):
    assert rq.contrast_of("FLAIR_zscore.nii.gz") == "FLAIR"
    assert rq.contrast_of("t1c.nii") == "T1c"
    assert rq.contrast_of("T1w.nii.gz") == "T1w"
    assert rq.contrast_of("PDw_x.nii.gz") == "PDw"
    assert rq.contrast_of("brainmask.nii.gz") is None
    assert rq.contrast_of("T1w.json") is None


def test_discovery_picks_the_largest_co_registered_folder(rq, real_dir):
    root, _, _ = real_dir
    cases = {c.name: c for c in rq.discover(root)}
    assert set(cases) == {"caseA", "caseB"}
    a, b = cases["caseA"], cases["caseB"]
    assert a.folder == root / "caseA" / "pre"
    assert list(a.images) == ["T1w", "T2w", "FLAIR"]  # seg.nii.gz and notes.txt ignored
    assert a.mask_file is None
    assert any("raw" in note for note in a.passed_over)
    assert list(b.images) == ["T1c", "FLAIR"] and b.mask_file.name == "brainmask.nii.gz"
    assert rq.tasks_of(a) == [("T1w", "T2w"), ("T1w", "FLAIR"), ("T2w", "T1w"), ("T2w", "FLAIR"),
                              ("FLAIR", "T1w"), ("FLAIR", "T2w")]
    assert rq.tasks_of(b) == [("T1c", "FLAIR")]  # T1c is never a target


def test_mask_rule_majority_ignores_a_nonzero_background(rq, real_dir):
    root, _, brain = real_dir
    case = {c.name: c for c in rq.discover(root)}["caseA"]
    cd = rq.load_case(case)
    assert "majority" in cd.mask_rule
    assert np.array_equal(cd.mask, brain)  # FLAIR's background is nonzero, 2 of 3 images are not
    assert cd.zscored == []
    assert all(np.all(d[~cd.mask] == 0) for d in cd.data.values())
    # the majority is strict: with 2 images a voxel must be nonzero in both; holes are filled
    one = brain.astype(np.float32)
    holed = one.copy()
    holed[12, 11, 10] = 0
    assert np.array_equal(rq.majority_mask([holed, holed, np.ones(SHAPE)]), brain)
    assert not rq.majority_mask([one, np.zeros(SHAPE)]).any()


def test_zscored_images_are_shifted_positive_inside_the_brainmask(rq, real_dir):
    root, labels, brain = real_dir
    case = {c.name: c for c in rq.discover(root)}["caseB"]
    cd = rq.load_case(case)
    assert cd.mask_rule.startswith("brainmask.nii.gz")
    assert sorted(cd.zscored) == ["FLAIR", "T1c"]
    for c, d in cd.data.items():
        assert d.min() >= 0 and np.all(d[~brain] == 0)
        raw = rq.load(case.images[c])[0]
        lo = np.percentile(raw[brain], rq.ZSCORE_SHIFT_PERCENTILE)
        np.testing.assert_allclose(d[brain], np.clip(raw[brain] - lo, 0, None), atol=1e-5)
    assert not rq.is_zscored(np.abs(rq.load(case.images["FLAIR"])[0]), brain)


def test_baselines_and_scores(rq, real_dir):
    root, labels, brain = real_dir
    cd = rq.load_case({c.name: c for c in rq.discover(root)}["caseA"])
    t1, t2, mask = cd.data["T1w"], cd.data["T2w"], cd.mask
    base = rq.baselines(t1, t2, mask)
    assert set(base) == {"hist", "hist-inv"} and all(np.all(b[~mask] == 0) for b in base.values())
    scores = {k: rq.masked_scores(v, t2, mask) for k, v in base.items()}
    # T1w -> T2w reverses the contrast: the inverted baseline must win clearly
    assert scores["hist-inv"]["psnr"] > scores["hist"]["psnr"] + 3
    perfect = rq.masked_scores(t2, t2, mask)
    assert perfect["psnr"] == float("inf") and perfect["ssim"] == pytest.approx(1.0)
    # a monotone rescaling of the target itself is matched almost exactly by 'hist'
    near = rq.masked_scores(rq.hist_match(t2 * 3 + 1, t2, mask), t2, mask)
    assert near["psnr"] > 40


def test_to_grid_resamples_in_world_coordinates(rq):
    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    assert rq.to_grid(data, AFFINE, SHAPE, AFFINE) is not data
    np.testing.assert_array_equal(rq.to_grid(data, AFFINE, SHAPE, AFFINE), data)
    # the same image stored flipped along x: resampling undoes the flip
    flipped_affine = AFFINE.copy()
    flipped_affine[0] = [1.0, 0, 0, -(SHAPE[0] - 1)]
    back = rq.to_grid(data[::-1], flipped_affine, SHAPE, AFFINE)
    np.testing.assert_allclose(back, data, atol=1e-3)


def test_task_filters(rq):
    f = rq.parse_filters(["caseA:T1w->T2w,T2w->FLAIR", "caseB"])
    assert rq.selected("caseA", "T1w", "T2w", f)
    assert not rq.selected("caseA", "T1w", "FLAIR", f)
    assert rq.selected("caseX", "T2w", "FLAIR", f)
    assert rq.selected("caseB", "T1c", "FLAIR", f)
    assert rq.selected("any", "T1w", "T2w", [])


def test_bids_input_and_app_command(rq, real_dir, tmp_path):
    root, _, _ = real_dir
    case = {c.name: c for c in rq.discover(root)}["caseB"]
    cd = rq.load_case(case)
    cd.case.name = "tcga_fg_6692"  # borrow the known sidecar/protocol of the real case
    path = rq.write_bids(tmp_path / "bids", cd, "T1c")
    assert path.name == "sub-tcgafg6692_ce-gadolinium_T1w.nii.gz"
    assert json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text()) == {
        "EchoTime": 0.017, "Manufacturer": "Siemens"}
    assert (tmp_path / "bids" / "participants.tsv").read_text().split() == ["participant_id", "sub-tcgafg6692"]
    assert json.loads((tmp_path / "bids" / "dataset_description.json").read_text())["BIDSVersion"]
    np.testing.assert_allclose(nib.load(str(path)).get_fdata(), cd.data["T1c"], atol=1e-6)
    cmd, used = rq.app_command(Path("b"), Path("o"), Path("w"), "tcga_fg_6692", "FLAIR", "known", "w.pt", None, None)
    assert used == "known"
    assert cmd[cmd.index("--ti") + 1] == "2500" and cmd[cmd.index("--weights") + 1] == "w.pt"
    assert cmd[cmd.index("--voxel"):cmd.index("--voxel") + 4] == ["--voxel", "1", "1", "1"]
    cmd, used = rq.app_command(Path("b"), Path("o"), Path("w"), "tcga_fg_6692", "T2w", "default", None, "m", None)
    assert used == "default" and "--tr" not in cmd and cmd[-2:] == ["--model", "m"]
    cmd, used = rq.app_command(Path("b"), Path("o"), Path("w"), "other", "T2w", "known", None, None, None)
    assert used == "default" and "--te" not in cmd


def test_find_output_and_figure(rq, real_dir, tmp_path):
    out = tmp_path / "out" / "sub-x" / "anat"
    _save(out / "sub-x_ce-gadolinium_desc-tumsyn_T1w.nii.gz", np.zeros(SHAPE))
    _save(out / "sub-x_desc-tumsyn_T1w.nii.gz", np.zeros(SHAPE))
    assert rq.find_output(tmp_path / "out", "T1w").name == "sub-x_desc-tumsyn_T1w.nii.gz"
    with pytest.raises(FileNotFoundError):
        rq.find_output(tmp_path / "out", "T2w")
    root, labels, brain = real_dir
    cd = rq.load_case({c.name: c for c in rq.discover(root)}["caseA"])
    centre, how = rq.lesion_centre(cd)
    assert "FLAIR" in how and labels[tuple(centre)] == 4  # the brightest FLAIR blob is the lesion
    png = tmp_path / "fig.png"
    rq.save_figure(png, [("source", cd.data["T1w"]), ("synthetic", cd.data["T2w"]), ("acquired", cd.data["T2w"])],
                   cd.mask, cd.affine, centre, "test")
    assert png.stat().st_size > 1000


def test_tissue_labels_follow_the_t1w_order_and_gm_wm_contrast_is_signed(rq, real_dir):
    root, labels, brain = real_dir
    cd = rq.load_case(rq.discover(root)[0])
    seg, ref = rq.tissue_labels(cd)
    assert ref == "T1w"
    # Atropos on the T1w finds the phantom's CSF (darkest), GM and WM (brightest)
    for true, want in ((3, 1), (2, 2), (1, 3)):
        assert np.mean(seg[labels == true] == want) > 0.9
    t2 = cd.data["T2w"]
    assert rq.gm_wm_contrast(t2, seg) > 0.1  # T2w: GM brighter than WM
    assert rq.gm_wm_contrast(cd.data["T1w"], seg) < -0.1  # T1w: WM brighter
    flat = np.where(cd.mask, 1.0, 0.0)
    assert abs(rq.gm_wm_contrast(flat, seg)) < 1e-9


def test_hot_spots_count_voxels_beyond_the_reference_range(rq, real_dir):
    root, labels, brain = real_dir
    cd = rq.load_case(rq.discover(root)[0])
    ref = cd.data["T2w"]
    assert rq.hot_spot_share(ref, ref, cd.mask) <= 0.002
    hot = ref.copy()
    idx = np.argwhere(cd.mask)[::10]
    hot[tuple(idx.T)] *= 5.0
    share = rq.hot_spot_share(hot, ref, cd.mask)
    assert 0.05 < share < 0.15


def test_summary_line_counts_wins_against_the_best_baseline(rq):
    def row(model, cal, hist, inv):
        best = "hist" if hist >= inv else "hist-inv"
        return {"model": {"psnr": model}, "calibrated": {"psnr": cal}, "hist": {"psnr": hist},
                "hist-inv": {"psnr": inv}, "best_baseline": best, "model_minus_best_db": model - max(hist, inv)}

    rows = [row(16.0, 17.0, 15.0, 14.0), row(10.0, 15.5, 12.0, 15.0), row(9.0, 9.5, 11.0, 10.0),
            {"hist": {"psnr": 1.0}, "hist-inv": {"psnr": 2.0}, "best_baseline": "hist-inv", "error": "x"}]
    line = rq.summary_line(rows)
    assert line.startswith("zero-shot wins 1/3, calibrated wins 2/3, mean gap -2.00 dB")


def test_multi_tasks_are_leave_one_out_sets_and_pairs(rq, real_dir):
    root, labels, brain = real_dir
    case = rq.discover(root)[0]  # T1w, T2w, FLAIR
    tasks = rq.tasks_of(case, multi=True)
    assert ("T2w+FLAIR", "T1w") in tasks and ("T1w+FLAIR", "T2w") in tasks and ("T1w+T2w", "FLAIR") in tasks
    assert all("+" in s and t not in s.split("+") for s, t in tasks)
    assert len(tasks) == 3  # two others per target: the set is the pair
    assert all("+" not in s for s, _ in rq.tasks_of(case))


def test_multi_rows_compare_with_the_best_single_source_run(rq):
    single = [{"task": "c:T1w->T2w", "model": {"psnr": 14.0}, "calibrated": {"psnr": 15.0}, "source": "T1w"},
              {"task": "c:FLAIR->T2w", "model": {"psnr": 15.5}, "calibrated": {"psnr": 15.2}, "source": "FLAIR"}]
    rows = [{"case": "c", "source": "T1w+FLAIR", "target": "T2w", "model": {"psnr": 16.0},
             "calibrated": {"psnr": 16.5}, "hist": {"psnr": 12.0}, "hist-inv": {"psnr": 15.0},
             "best_baseline": "hist-inv", "model_minus_best_db": 1.0}]
    rq.add_single_source(rows, single)
    assert rows[0]["single"] == {"psnr": 15.5, "calibrated": 15.2, "source": "FLAIR"}
    assert rq.summary_line(rows).endswith("ahead of the best single-source model 1/1, mean +0.50 dB")


def test_multi_source_bids_input_holds_every_source_with_its_sidecar(rq, real_dir, tmp_path):
    root, labels, brain = real_dir
    cd = rq.load_case(rq.discover(root)[0])
    first = rq.write_bids(tmp_path / "bids", cd, "T1w+FLAIR")
    anat = first.parent
    assert first.name.endswith("_T1w.nii.gz")
    assert sorted(p.name.split("_", 1)[1] for p in anat.glob("*.nii.gz")) == ["FLAIR.nii.gz", "T1w.nii.gz"]
    assert len(list(anat.glob("*.json"))) == 2
