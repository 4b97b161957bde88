"""Device resolution, precision choice and intensity normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tumsyn_bids.errors import DataError, DeviceError, UsageError
from tumsyn_bids.inference.device import autocast_dtype, cpu_supports_bf16, resolve_device
from tumsyn_bids.inference.normalize import intensity_window, normalize_intensity


def test_resolve_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_requested_but_absent_is_a_clear_device_error(name):
    with pytest.raises(DeviceError, match="CUDA is not available") as info:
        resolve_device(name)
    assert "\n" not in str(info.value) and info.value.exit_code == 70


def test_autocast_dtype_on_cpu():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, amp=False) is None
    assert autocast_dtype(cpu, amp=True) == (torch.bfloat16 if cpu_supports_bf16() else None)


def test_normalisation_clips_percentiles_and_floors_at_zero():
    rng = np.random.default_rng(0)
    img = rng.normal(100.0, 20.0, (30, 30, 30)).astype(np.float32)
    img[0, 0, :5] = 1e6  # a few hot voxels beyond p99.9
    lo, hi = intensity_window(img)
    assert lo == pytest.approx(np.percentile(img, 0.01)) and hi == pytest.approx(np.percentile(img, 99.9))
    out = normalize_intensity(img)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == pytest.approx(1.0)
    inside = (img > lo) & (img < hi)
    np.testing.assert_allclose(out[inside], (img[inside] - lo) / (hi - lo), rtol=1e-5)
    signed = img - 150.0  # negative values: the lower bound is floored at 0
    assert intensity_window(signed)[0] == 0.0
    assert normalize_intensity(signed)[signed <= 0].max() == 0.0


def test_normalisation_refuses_unusable_images():
    with pytest.raises(DataError, match="no usable intensity range"):
        normalize_intensity(np.full((8, 8, 8), 3.0))
    bad = np.ones((8, 8, 8))
    bad[1, 2, 3] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        normalize_intensity(bad)
