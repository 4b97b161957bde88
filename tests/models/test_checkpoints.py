"""Checkpoints: native round trip, published layout (strict), search order, bad files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from tumsyn_bids.errors import DataError
from tumsyn_bids.models import loading
from tumsyn_bids.models.checkpoint import safe_load, save_native, save_official_layout, sha256_file
from tumsyn_bids.models.configs import TextConfig
from tumsyn_bids.models.loading import ENV_WEIGHTS, load_model, make_random_bundle
from tumsyn_bids.models.registry import make, registered
from tumsyn_bids.models.synthesis import SynthesisNet
from tumsyn_bids.models.text_encoder import TextEncoder

PROMPT = "Age: 40; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (1.0, 1.0, 1.0)"


def _run(bundle, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, 8, 8, 8, generator=g)
    coords = torch.rand(1, 20, 3, generator=g) * 2 - 1
    with torch.no_grad():
        return bundle.net(x, bundle.encode_prompt(PROMPT), coords)


def test_native_round_trip_and_prompt_cache(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(ENV_WEIGHTS, raising=False)
    src = make_random_bundle("lccd-small", seed=3)
    again = make_random_bundle("lccd-small", seed=3)
    assert all(torch.equal(a, b)
               for a, b in zip(src.net.state_dict().values(), again.net.state_dict().values(), strict=False))
    path = tmp_path / "small.pt"
    digest = save_native(path, src.spec, src.text_encoder, src.net)
    assert digest == sha256_file(path) and not list(tmp_path.glob(".*tmp"))  # atomic write left nothing
    with caplog.at_level("INFO", logger="tumsyn_bids.models.loading"):
        loaded = load_model("lccd-small", weights=path)
    assert f"model lccd-small: weights {path}" in caplog.text and digest in caplog.text
    assert loaded.sha256 == digest and loaded.path == str(path) and loaded.axis_order == "xyz"
    assert loaded.spec["synthesis"]["name"] == "lccd" and not loaded.net.training
    torch.testing.assert_close(_run(loaded), _run(src))
    feat = loaded.encode_prompt(PROMPT)
    assert loaded.encode_prompt(PROMPT) is feat  # cached
    assert not torch.equal(loaded.encode_prompt(PROMPT.replace("T2w", "FLAIR")), feat)
    assert not torch.equal(make_random_bundle("lccd-small", seed=4).encode_prompt(PROMPT), src.encode_prompt(PROMPT))


def test_search_order_weights_env_bundled(tmp_path, monkeypatch):
    a, b = make_random_bundle("lccd-small", seed=1), make_random_bundle("lccd-small", seed=2)
    pa, pb = tmp_path / "a.pt", tmp_path / "b.pt"
    save_native(pa, a.spec, a.text_encoder, a.net)
    save_native(pb, b.spec, b.text_encoder, b.net)
    monkeypatch.setenv(ENV_WEIGHTS, str(pb))
    assert load_model(weights=pa).path == str(pa)  # --weights wins over the environment
    assert load_model().path == str(pb)
    monkeypatch.delenv(ENV_WEIGHTS)
    missing = tmp_path / "data" / "models" / "tumsyn-small.pt"
    monkeypatch.setattr(loading, "bundled_weights_path", lambda model: missing)
    with pytest.raises(DataError, match="no bundled weights for 'tumsyn-small'") as info:
        load_model()
    assert str(missing) in str(info.value)
    with pytest.raises(Exception, match="unknown model"):
        load_model("no-such-model")


def _tiny_official(tmp_path: Path) -> tuple[SynthesisNet, TextEncoder, Path, Path]:
    torch.manual_seed(0)
    # 96-wide heads as published (one head here), tiny widths elsewhere
    net = SynthesisNet(enc_width=8, n_resblocks=2, feat_dim=96, text_dim=16, heads=1, decoder_hidden=[16, 8]).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics must survive the round trip
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    text = TextEncoder.from_config(TextConfig(width=64, layers=1, heads=1, embed_dim=16)).eval()
    synth_path = tmp_path / "official" / "tumsyn_synthesis.pth"
    stage1_path = tmp_path / "official" / "bmlip_stage1.pth"
    save_official_layout(synth_path, net, args={"encoder_spec": {"name": "edsr"}})
    stage1 = {"visual.conv1.weight": torch.randn(4, 1, 3, 3, 3), "visual.attnpool.c_proj.bias": torch.randn(4)}
    stage1.update(text.state_dict())
    torch.save({"model_state_dict": stage1, "epoch": 7}, stage1_path)
    return net, text, synth_path, stage1_path


def test_published_layout_loads_strictly_as_official(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_WEIGHTS, raising=False)
    net, text, synth_path, stage1_path = _tiny_official(tmp_path)
    raw = safe_load(synth_path)
    assert set(raw["model_G"]) == {"name", "args", "sd_G"} and raw["model_G"]["name"] == "lccd"
    rebuilt = make({"name": "lccd", "args": loading.infer_synthesis_args(raw["model_G"]["sd_G"]),
                    "sd_G": raw["model_G"]["sd_G"]}, load_sd=True)
    assert rebuilt.state_dict().keys() == net.state_dict().keys()
    for weights in (synth_path.parent, f"{stage1_path}{os.pathsep}{synth_path}"):
        bundle = load_model("tumsyn-official", weights=weights)
        assert bundle.axis_order == "zyx" and bundle.name == "tumsyn-official"
        assert bundle.sha256 == f"{sha256_file(synth_path)}+{sha256_file(stage1_path)}"
        x = torch.rand(1, 1, 6, 7, 5)
        coords = torch.rand(1, 9, 3) * 2 - 1
        tokens_feat = bundle.encode_prompt(PROMPT)
        with torch.no_grad():
            from tumsyn_bids.models.tokenizer import tokenize

            torch.testing.assert_close(tokens_feat, text(tokenize(PROMPT)))
            torch.testing.assert_close(bundle.net(x, tokens_feat, coords), net(x, tokens_feat, coords))
    with pytest.raises(DataError, match="give its stage-1 file too"):
        load_model("tumsyn-official", weights=synth_path)
    # one native file converted from the pair behaves the same and keeps the zyx convention
    native = tmp_path / "official-native.pt"
    digest = loading.convert_official(synth_path.parent, native)
    converted = load_model("tumsyn-official", weights=native)
    assert converted.sha256 == digest and converted.axis_order == "zyx" and converted.spec["inference"]["window"] == 60
    assert converted.spec["training"]["converted_from_sha256"] == bundle.sha256
    with torch.no_grad():
        torch.testing.assert_close(converted.net(x, tokens_feat, coords), net(x, tokens_feat, coords))
        torch.testing.assert_close(converted.encode_prompt(PROMPT), tokens_feat)


def test_wrong_architecture_lists_keys(tmp_path):
    net, _, synth_path, stage1_path = _tiny_official(tmp_path)
    sd = net.state_dict()
    sd.pop("imnet.layers.0.bias")
    sd["fusion.block.0.norm1.body.weight"] = torch.ones(96)
    sd["encoder.tail.0.bias"] = torch.zeros(5)
    torch.save({"model_G": {"name": "lccd", "args": {}, "sd_G": sd}}, synth_path)
    with pytest.raises(DataError) as info:
        load_model("tumsyn-official", weights=f"{synth_path}{os.pathsep}{stage1_path}")
    msg = str(info.value)
    assert "\n" not in msg and str(synth_path) in msg
    assert "missing keys [1]: imnet.layers.0.bias" in msg
    assert "unexpected keys [1]: fusion.block.0.norm1.body.weight" in msg
    assert "shape mismatch [1]: encoder.tail.0.bias (5,)!=(96,)" in msg
    # a native checkpoint whose spec does not match its weights
    small, other = make_random_bundle("lccd-small"), SynthesisNet(enc_width=4, n_resblocks=1, feat_dim=8, text_dim=32,
                                                                  heads=2)
    bad = tmp_path / "bad.pt"
    save_native(bad, small.spec, small.text_encoder, other)
    with pytest.raises(DataError, match="wrong architecture for synthesis network 'lccd': missing keys"):
        load_model(weights=bad)
    with pytest.raises(DataError, match="unknown architecture 'nope'"):
        make({"name": "nope"})
    assert {"lccd", "clip-text"} <= set(registered())


def test_truncated_and_foreign_files(tmp_path):
    src = make_random_bundle("lccd-small")
    good = tmp_path / "good.pt"
    save_native(good, src.spec, src.text_encoder, src.net)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        load_model(weights=cut)
    assert str(cut) in str(info.value)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_model(weights=text)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(DataError, match="not a tumsyn checkpoint"):
        load_model(weights=plain)


class _Exploit:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_needing_code_execution_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "tumsyn-native", "payload": _Exploit(str(marker))}, evil)
    with open(tmp_path / "legacy.pkl", "wb") as fh:
        pickle.dump(_Exploit(str(marker)), fh)
    for path in (evil, tmp_path / "legacy.pkl"):
        with pytest.raises(DataError, match="refused to load|truncated or corrupt") as info:
            load_model(weights=path)
        assert str(path) in str(info.value)
    assert not marker.exists()
    with pytest.raises(DataError, match="refused to load"):
        safe_load(evil)
