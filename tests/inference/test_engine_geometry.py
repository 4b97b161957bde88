"""The engine with hand-made networks of known behaviour: geometry, axis order, modes, chunking."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from tests.inference.conftest import Bundle, CoordNet, IdentityNet, smooth_volume
from tumsyn_bids.errors import DataError, UsageError
from tumsyn_bids.inference.engine import synthesize
from tumsyn_bids.inference.normalize import normalize_intensity

KW = dict(device="cpu", progress=False)


@pytest.mark.parametrize("mode", ["faithful", "fast"])
def test_identity_network_reproduces_input_at_scale_one(mode):
    vol = smooth_volume((37, 29, 23))
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    res = synthesize(vol, aff, "p", Bundle(IdentityNet(padding="zeros"), window=16), mode=mode, **KW)
    assert res.data.dtype == np.float32 and res.data.shape == vol.shape
    assert np.array_equal(res.affine, aff)
    np.testing.assert_allclose(res.data, normalize_intensity(vol), atol=1e-5)
    # faithful: stride 8 -> 4 x 3 x 2 windows; fast: stride <= 12, evenly spread -> 3 x 3 x 2
    assert res.windows == (24 if mode == "faithful" else 18)


@pytest.mark.parametrize("mode", ["faithful", "fast"])
def test_super_resolution_samples_the_right_places(mode):
    """2x and 1x1x3 -> 1 mm with an interpolating network: compare with scipy at the output centres.

    With a smooth input, the only deviation from exact trilinear interpolation is where a window
    decodes a voxel within half an input voxel of its own edge (the sampler clamps there). A
    half-voxel error in the output geometry would make errors several times larger, see below.
    """
    vol = smooth_volume((30, 26, 12), seed=3)
    aff = np.diag([1.0, 1.0, 3.0, 1.0])
    res = synthesize(vol, aff, "p", Bundle(IdentityNet(), window=16), voxel_size=(0.5, 0.5, 1.0), mode=mode, **KW)
    assert res.data.shape == (60, 52, 36)
    norm = normalize_intensity(vol).astype(np.float64)
    idx = np.meshgrid(*((np.arange(m) + 0.5) * n / m - 0.5 for n, m in zip(vol.shape, res.data.shape, strict=False)),
                      indexing="ij")
    truth = map_coordinates(norm, idx, order=1, mode="nearest")
    err = np.abs(res.data - truth)
    # the same comparison for output grids shifted by half an input voxel along each axis
    shifts = []
    for axis in range(3):
        moved = [g + (0.5 if a == axis else 0.0) for a, g in enumerate(idx)]
        shifts.append(np.abs(map_coordinates(norm, moved, order=1, mode="nearest") - truth))
    wrong_max = min(s.max() for s in shifts)
    wrong_mean = min(s.mean() for s in shifts)
    # uniform averaging keeps half of a window-edge clamp error; the fast partition almost none
    assert err.max() < {"faithful": 0.3, "fast": 0.05}[mode] * wrong_max
    assert err.mean() < 0.1 * wrong_mean
    assert not np.isnan(res.data).any()


def test_faithful_and_fast_agree_on_smooth_input():
    """Same interpolating network, different tiling, blending and precision.

    Tolerance: mean absolute difference under 0.1% of the [0, 1] range, and no voxel further
    apart than half the largest step between neighbouring output voxels (the residue is the
    faithful mode's uniform averaging of window-edge samples).
    """
    vol = smooth_volume((40, 34, 28), seed=5)
    bundle = Bundle(IdentityNet(), window=16)
    a = synthesize(vol, np.eye(4), "p", bundle, voxel_size=0.5, mode="faithful", **KW)
    b = synthesize(vol, np.eye(4), "p", bundle, voxel_size=0.5, mode="fast", **KW)
    assert a.data.shape == b.data.shape and np.array_equal(a.affine, b.affine)
    diff = np.abs(a.data - b.data)
    step = max(np.abs(np.diff(a.data, axis=k)).max() for k in range(3))
    assert diff.mean() < 1e-3 and diff.max() < 0.5 * step
    assert b.windows < a.windows


def test_axis_order_zyx_transposes_for_the_network():
    """A network that outputs its first coordinate channel: the axis it varies along shows the order."""
    vol = smooth_volume((10, 12, 14))
    aff = np.diag([1.0, 2.0, 3.0, 1.0])
    for order, varying in (("xyz", 0), ("zyx", 2)):
        net = CoordNet(k=0)
        res = synthesize(vol, aff, "p", Bundle(net, axis_order=order, window=48), voxel_size=1.0, mode="faithful", **KW)
        assert res.data.shape == (10, 24, 42)
        seen = net.seen[0][2:]
        assert seen == ((48, 48, 48))  # one padded window
        profile = np.moveaxis(res.data, varying, 0).reshape(res.data.shape[varying], -1)
        assert np.all(profile.std(axis=1) < 1e-6)  # constant across the other axes
        assert np.all(np.diff(profile[:, 0]) > 0)  # increasing along the varying axis
        # the network decoded the output grid in its own order: 42 distinct values along axis 0 for zyx
        q = net.queries[0][0].numpy()
        assert len(np.unique(q[:, 0].round(6))) == res.data.shape[varying]


def test_chunked_decoding_equals_one_shot():
    vol = smooth_volume((20, 18, 16))
    bundle = Bundle(IdentityNet(padding="zeros"), window=16)
    one = synthesize(vol, np.eye(4), "p", bundle, voxel_size=0.7, query_chunk=1 << 22, **KW)
    chunked = synthesize(vol, np.eye(4), "p", bundle, voxel_size=0.7, query_chunk=1000, **KW)
    assert one.query_chunk == 1 << 22 and chunked.query_chunk == 1000
    np.testing.assert_array_equal(one.data, chunked.data)


def test_small_volume_is_padded_and_cropped_back():
    vol = smooth_volume((5, 9, 3))
    net = IdentityNet(padding="zeros")
    res = synthesize(vol, np.eye(4), "p", Bundle(net, window=16), mode="faithful", **KW)
    assert net.seen == [(1, 1, 16, 16, 16)] and res.windows == 1
    np.testing.assert_allclose(res.data, normalize_intensity(vol), atol=1e-6)


def test_flip_average_runs_both_passes_and_keeps_orientation():
    vol = smooth_volume((20, 18, 16))
    aff = np.diag([-1.0, 1.0, 1.0, 1.0])
    res = synthesize(vol, aff, "p", Bundle(IdentityNet(padding="zeros"), window=16), flip_average=True,
                     mode="faithful", **KW)
    plain = synthesize(vol, aff, "p", Bundle(IdentityNet(padding="zeros"), window=16), mode="faithful", **KW)
    assert res.windows == 2 * plain.windows
    np.testing.assert_allclose(res.data, normalize_intensity(vol), atol=1e-5)


def test_bad_input_is_refused_with_one_line_messages():
    bundle = Bundle(IdentityNet(), window=16)
    vol = smooth_volume((12, 12, 12))
    with pytest.raises(DataError, match="3D image, got 4D"):
        synthesize(vol[..., None], np.eye(4), "p", bundle, **KW)
    with pytest.raises(DataError, match="3D image, got 2D"):
        synthesize(vol[..., 0], np.eye(4), "p", bundle, **KW)
    bad = vol.copy()
    bad[3, 4, 5] = np.nan
    with pytest.raises(DataError, match="1 NaN or infinite"):
        synthesize(bad, np.eye(4), "p", bundle, **KW)
    with pytest.raises(UsageError, match="voxel size must be positive"):
        synthesize(vol, np.eye(4), "p", bundle, voxel_size=(1.0, -1.0, 1.0), **KW)
    with pytest.raises(UsageError, match="inference mode"):
        synthesize(vol, np.eye(4), "p", bundle, mode="quick", **KW)
    with pytest.raises(DataError, match="no usable intensity range"):
        synthesize(np.zeros((12, 12, 12)), np.eye(4), "p", bundle, **KW)
    with pytest.raises(DataError) as info:
        synthesize(vol[..., None], np.eye(4), "p", bundle, **KW)
    assert "\n" not in str(info.value)


def test_progress_bar_and_log_lines(caplog):
    vol = smooth_volume((20, 18, 16))
    bundle = Bundle(IdentityNet(padding="zeros"), window=16)
    with caplog.at_level("INFO", logger="tumsyn_bids.inference.engine"):
        shown = synthesize(vol, np.eye(4), "p", bundle, device="cpu", progress=True)
    quiet = synthesize(vol, np.eye(4), "p", bundle, device="cpu", progress=False)
    np.testing.assert_array_equal(shown.data, quiet.data)
    text = caplog.text
    assert "device=cpu mode=fast" in text and f"windows={shown.windows}" in text and " s (encode " in text
