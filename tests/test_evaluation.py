"""Fidelity metrics and ``tumsyn evaluate`` on real NIfTI files written here."""

from __future__ import annotations

import json
import math
import os

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from tumsyn_bids.evaluation import compare, mae, percentile_normalize, psnr, ssim


def _phantom(shape=(24, 24, 24), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    vol = np.where(r < 0.8, 0.6, 0.0) + np.where(r < 0.4, 0.3, 0.0) + 0.05 * rng.random(shape)
    return vol.astype(np.float32)


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    a = _phantom()
    assert psnr(a, a) == math.inf
    assert ssim(a, a) == pytest.approx(1.0)
    assert mae(a, a) == 0.0
    result = compare(a * 7.0, a * 7.0, mask=a > 0.3)
    assert result["whole"]["psnr"] == math.inf and result["masked"]["ssim"] == pytest.approx(1.0)


def test_known_noise_level_gives_expected_psnr():
    rng = np.random.default_rng(1)
    a = rng.random((32, 32, 32))
    sigma = 0.05
    b = a + rng.normal(0.0, sigma, a.shape)
    expected = 10 * math.log10(1.0 / sigma**2)  # ~26.02 dB
    assert psnr(a, b) == pytest.approx(expected, abs=0.1)
    assert mae(a, b) == pytest.approx(sigma * math.sqrt(2 / math.pi), rel=0.02)


def test_masked_metrics_only_see_the_mask():
    a = _phantom()
    b = a.copy()
    mask = np.zeros(a.shape, bool)
    mask[4:20, 4:20, 4:20] = True
    b[~mask] += 0.5  # damage outside the mask only
    assert psnr(a, b, mask) == math.inf
    assert psnr(a, b) < 20
    assert ssim(a, b, mask) > ssim(a, b)


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    a = _phantom(seed=2)
    b = np.clip(a + np.random.default_rng(3).normal(0, 0.1, a.shape), 0, None).astype(np.float32)
    assert ssim(a, b) == pytest.approx(structural_similarity(a, b, data_range=1.0), abs=1e-4)


def test_percentile_normalisation_maps_to_unit_range():
    a = _phantom() * 1000.0 + 5.0
    n = percentile_normalize(a)
    assert n.min() == pytest.approx(0.0, abs=1e-6) and n.max() == pytest.approx(1.0)
    assert np.percentile(n, 99.95) == pytest.approx(1.0)


def _save(path, data, zooms=(1.0, 1.0, 1.0)):
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([*zooms, 1.0])), str(path))
    return path


def test_evaluate_cli_json(tmp_path):
    import typer

    from tumsyn_bids.cli.evaluate_cmd import evaluate

    app = typer.Typer()
    app.command()(evaluate)
    a = _phantom()
    noisy = a + np.random.default_rng(4).normal(0, 0.02, a.shape).astype(np.float32)
    synth, real = _save(tmp_path / "synth.nii.gz", noisy), _save(tmp_path / "real.nii.gz", a)
    mask = _save(tmp_path / "mask.nii.gz", (a > 0.3).astype(np.float32))
    res = CliRunner().invoke(app, [str(synth), str(real), "--mask", str(mask), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert 20 < out["whole"]["psnr"] < 60 and 0 < out["masked"]["ssim"] < 1
    same = CliRunner().invoke(app, [str(real), str(real), "--json"])
    assert json.loads(same.output)["whole"]["psnr"] == "inf"


def test_evaluate_cli_grid_mismatch_is_one_line_error(tmp_path):
    import typer

    from tumsyn_bids.cli.evaluate_cmd import evaluate

    app = typer.Typer()
    app.command()(evaluate)
    synth = _save(tmp_path / "synth.nii.gz", _phantom())
    real = _save(tmp_path / "real.nii.gz", _phantom((20, 24, 24)))
    res = CliRunner().invoke(app, [str(synth), str(real)])
    assert res.exit_code == 65
    assert "real.nii.gz" in res.output and "--register" in res.output
    missing = CliRunner().invoke(app, [str(synth), str(tmp_path / "nope.nii.gz")])
    assert missing.exit_code == 65 and "not found" in missing.output


def test_register_recovers_a_shifted_image(tmp_path):
    """REAL shifted by 2 voxels: without registration it scores badly, with antspyx rigid it improves."""
    from scipy.ndimage import gaussian_filter

    from tumsyn_bids.evaluation import evaluate_files

    a = np.zeros((40, 40, 40), np.float32)
    a[10:30, 12:28, 11:29] = 1.0
    a[14:20, 15:21, 14:22] = 2.0
    a[22:26, 20:25, 18:24] = 3.0
    a = gaussian_filter(a, 1.5).astype(np.float32)
    shifted = np.roll(a, 2, axis=0)
    synth = _save(tmp_path / "synth.nii.gz", a)
    real = _save(tmp_path / "real.nii.gz", shifted)
    plain = evaluate_files(synth, real)
    registered = evaluate_files(synth, real, register=True)
    assert registered["whole"]["psnr"] > plain["whole"]["psnr"] + 5


def test_rigid_registration_is_reproducible(tmp_path):
    """ANTs samples its metric at random points: the seed (ANTS_RANDOM_SEED) makes a rerun identical."""
    from scipy.ndimage import gaussian_filter

    from tumsyn_bids.anat.registration import rigid_resample

    a = np.zeros((32, 32, 32), np.float32)
    a[8:24, 10:22, 9:23] = 1.0
    a[12:16, 13:19, 12:18] = 2.0
    a = gaussian_filter(a, 1.5).astype(np.float32)
    fixed = _save(tmp_path / "fixed.nii.gz", a)
    moving = _save(tmp_path / "moving.nii.gz", np.roll(a, 2, axis=1))
    first, second = rigid_resample(fixed, moving)[0], rigid_resample(fixed, moving)[0]
    np.testing.assert_array_equal(first, second)
    assert os.environ["ANTS_RANDOM_SEED"]
