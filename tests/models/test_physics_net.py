"""The physics-structured network: prompt conditioning, rendering by the signal equations,
any output grid, native checkpoints that load with weights_only=True."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tumsyn_bids.models.loading import load_model, make_random_bundle
from tumsyn_bids.models.physics_net import (
    COND_DIM,
    MAP_NAMES,
    PhysicsSynthNet,
    condition_vector,
    protocol_of,
)
from tumsyn_bids.physics import signals
from tumsyn_bids.prompts import Prompt
from tumsyn_bids.protocols import Protocol, default_protocol

torch.set_num_threads(1)


def _prompt(**fields) -> Prompt:
    base = dict(modality="T2w", voxel_size=(1.0, 1.0, 1.0), age=40, sex="F", field_strength=3.0, vendor="Siemens")
    return Prompt(**{**base, **fields})


@pytest.mark.parametrize("protocol,contrast", [
    (default_protocol("T1w", 3.0), "T1w"),
    (default_protocol("T2w", 3.0), "T2w"),
    (default_protocol("FLAIR", 1.5), "FLAIR"),
    (default_protocol("T1CE", 3.0), "T1CE"),
    (default_protocol("SWI", 1.5), "SWI"),
])
def test_condition_vector_round_trip(protocol, contrast):
    vec = condition_vector(protocol, contrast, 33, "M")
    assert vec.shape == (1, COND_DIM)
    back, back_contrast = protocol_of(vec)
    assert back.sequence == protocol.sequence and back.field_strength == protocol.field_strength
    assert back.tr_ms == pytest.approx(protocol.tr_ms) and back.te_ms == pytest.approx(protocol.te_ms)
    assert back.ti_ms == (None if protocol.ti_ms is None else pytest.approx(protocol.ti_ms))
    assert back.flip_angle == protocol.flip_angle or back.flip_angle == pytest.approx(protocol.flip_angle)
    assert back_contrast == (contrast if contrast in ("T1CE", "SWI") else "")


def test_prompt_encoder_reads_the_prompt_timing():
    bundle = make_random_bundle("tumsyn-small", seed=0)
    te80 = bundle.encode_prompt(_prompt(tr_ms=5000.0, te_ms=80.0, flip_angle=90.0).text())
    te120 = bundle.encode_prompt(_prompt(tr_ms=5000.0, te_ms=120.0, flip_angle=90.0).text())
    assert protocol_of(te80)[0].te_ms == 80.0 and protocol_of(te120)[0].te_ms == 120.0
    assert protocol_of(te80)[0].sequence == "se"


def test_decode_renders_the_predicted_maps_with_the_signal_equation():
    """Whatever the weights, the output at a query is the numpy signal equation of the maps there."""
    torch.manual_seed(0)
    net = PhysicsSynthNet(widths=(4, 8), feat_dim=8, head_hidden=(8,)).eval()
    x = torch.rand(1, 1, 8, 8, 8)
    protocol = Protocol("FLAIR", "ir", 3.0, 9000.0, 90.0, 2500.0, 150.0)
    cond = condition_vector(protocol, "FLAIR", 40, "F")
    coords = torch.rand(1, 50, 3) * 2 - 1
    with torch.no_grad():
        feat = net.encode(x, cond)
        maps = net.query_maps(feat, coords)
        out = net.decode(feat, coords, cond)[0, :, 0].numpy()
    ref = signals.sequence_signal(protocol, *(maps[k][0].double().numpy() for k in ("PD", "T1", "T2", "T2star")))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6)
    assert set(maps) == set(MAP_NAMES) and bool((maps["T2star"] <= maps["T2"] + 1e-4).all())


def test_window_must_fit_the_unet():
    net = PhysicsSynthNet(widths=(4, 8, 16), feat_dim=8, head_hidden=(8,))
    with pytest.raises(ValueError, match="divisible by 4"):
        net.encode(torch.rand(1, 1, 10, 8, 8), torch.zeros(1, COND_DIM))


def test_engine_runs_any_output_grid_and_te_changes_contrast_by_physics(caplog):
    from tumsyn_bids.inference.engine import synthesize

    bundle = make_random_bundle("tumsyn-small", seed=2)
    image = np.random.default_rng(0).random((20, 24, 18)).astype(np.float32)
    with caplog.at_level("DEBUG", logger="tumsyn_bids.inference.engine"):
        short = synthesize(image, np.eye(4), _prompt(tr_ms=5000.0, te_ms=20.0, flip_angle=90.0), bundle,
                           device="cpu", progress=False)
    assert "separable sampling enabled" in caplog.text  # checked equal to net.decode on the first window
    long = synthesize(image, np.eye(4), _prompt(tr_ms=5000.0, te_ms=120.0, flip_angle=90.0), bundle,
                      device="cpu", progress=False)
    assert short.data.shape == image.shape and short.window == 64
    assert float(long.data.mean()) < float(short.data.mean())  # T2 decay: every voxel loses signal
    fine = synthesize(image, np.eye(4), _prompt(), bundle, voxel_size=0.5, device="cpu", progress=False)
    assert fine.data.shape == (40, 48, 36) and np.isfinite(fine.data).all()


def test_native_checkpoint_round_trip_with_weights_only(tmp_path):
    from tumsyn_bids.models.checkpoint import save_native

    src = make_random_bundle("tumsyn-small", seed=5)
    path = tmp_path / "physics.pt"
    digest = save_native(path, src.spec, src.text_encoder, src.net)
    obj = torch.load(path, weights_only=True)  # no pickled code in the file
    assert obj["spec"]["synthesis"]["name"] == "physics-unet"
    loaded = load_model("tumsyn-small", weights=path)
    assert loaded.sha256 == digest and loaded.spec["inference"]["window"] == 64
    for a, b in zip(src.net.state_dict().values(), loaded.net.state_dict().values(), strict=False):
        assert torch.equal(a, b)


def test_engine_returns_tissue_maps_on_request():
    from tumsyn_bids.errors import UsageError
    from tumsyn_bids.inference.engine import synthesize

    bundle = make_random_bundle("tumsyn-small", seed=2)
    image = np.random.default_rng(1).random((16, 16, 16)).astype(np.float32)
    prompt = _prompt(tr_ms=5000.0, te_ms=100.0, flip_angle=90.0)
    t1 = synthesize(image, np.eye(4), prompt, bundle, device="cpu", progress=False, tissue_map="T1").data
    t2 = synthesize(image, np.eye(4), prompt, bundle, device="cpu", progress=False, tissue_map="T2").data
    img = synthesize(image, np.eye(4), prompt, bundle, device="cpu", progress=False).data
    assert t1.min() > 40 and t2.min() > 4  # physical units (ms), not image intensities
    assert not np.allclose(t1, img)
    with pytest.raises(ValueError, match="unknown tissue map"):
        synthesize(image, np.eye(4), prompt, bundle, device="cpu", progress=False, tissue_map="T3")
    lccd = make_random_bundle("lccd-small", seed=0)
    with pytest.raises(UsageError, match="does not predict tissue maps"):
        synthesize(image, np.eye(4), prompt, lccd, device="cpu", progress=False, tissue_map="T1")


def test_source_prompt_reaches_the_condition_and_unknown_is_zero():
    from tumsyn_bids.models.physics_net import source_features

    bundle = make_random_bundle("tumsyn-small", seed=0)
    target = _prompt(tr_ms=5000.0, te_ms=100.0, flip_angle=90.0).text()
    known = bundle.encode_prompt(target, source=_prompt(modality="T1w", tr_ms=2300.0, te_ms=2.3, ti_ms=900.0,
                                                         flip_angle=9.0).text())
    unknown = bundle.encode_prompt(target)
    assert float(source_features(unknown).abs().sum()) == 0.0
    feats = source_features(known)[0]
    assert feats[0] == 1.0 and feats[-2] == 1.0  # MPRAGE one-hot, "known" flag
    assert protocol_of(known)[0] == protocol_of(unknown)[0]  # the target is unchanged
    image = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    from tumsyn_bids.inference.engine import synthesize

    torch.nn.init.normal_(bundle.net.encoder.film[2].weight, std=0.5)  # make FiLM matter
    a = synthesize(image, np.eye(4), target, bundle, device="cpu", progress=False).data
    b = synthesize(image, np.eye(4), target, bundle, device="cpu", progress=False,
                   source_prompt=_prompt(modality="T1w", tr_ms=2300.0, te_ms=2.3, ti_ms=900.0, flip_angle=9.0)).data
    assert not np.allclose(a, b)


def test_resize_convolution_upsampling_has_no_checkerboard():
    """On a constant input, transposed-convolution upsampling leaves a 2-voxel pattern in the features
    (each output parity has its own kernel); resize-convolution (what new runs train) does not."""
    from tumsyn_bids.models.physics_net import PhysicsSynthNet, subject_condition

    x = torch.full((1, 1, 32, 32, 32), 0.5)
    cond = subject_condition(torch.tensor([3.0]), torch.tensor([40.0]), torch.tensor([1.0]))
    roughness = {}
    for upsample in ("transpose", "trilinear"):
        torch.manual_seed(0)
        net = PhysicsSynthNet(widths=(8, 16, 32), upsample=upsample).eval()
        with torch.no_grad():
            feat = net.encode(x, cond)[0, :, 8:24, 8:24, 8:24]
        second_diff = feat[:, 2:] - 2 * feat[:, 1:-1] + feat[:, :-2]
        roughness[upsample] = float(second_diff.abs().mean() / feat.abs().mean())
    assert roughness["trilinear"] < 0.1 * roughness["transpose"], roughness
    with pytest.raises(ValueError, match="upsample"):
        PhysicsSynthNet(upsample="nearest")
