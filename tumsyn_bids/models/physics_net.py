"""Physics-structured synthesis network (registry ``physics-unet``) and its prompt conditioner.

The network does not paint intensities. A small 3D U-Net encodes the (normalised, skull-stripped)
source window into a feature map; an implicit decoder samples it at any query coordinate
(trilinear, as the LIIF-style ``lccd`` decoder) and a point-wise MLP turns the samples into tissue
parameters: proton density, T1, T2, T2*, the T1 shortening by gadolinium and a venous/iron
susceptibility weight. The target image is rendered from these maps with the signal equations of
:mod:`tumsyn_bids.physics.torch_signals` at the TR/TE/TI/flip angle the prompt asks for, so the
prompt's timing changes contrast exactly as the physics says.

The conditioner (registry ``prompt-physics``, no trainable weights) turns the target prompt and the
source image's own prompt into a fixed-layout vector: the resolved target protocol
(:mod:`tumsyn_bids.physics.prompt_protocol`), field strength, age and sex, and the source acquisition
(sequence family and timing, or "unknown"). Field strength, age, sex and the source acquisition
modulate every U-Net block (FiLM): relaxation times depend on the first three, and knowing how the
source was acquired tells the network how to read its intensities (without it, it must guess the
contrast from the image, which it is also trained to do).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tumsyn_bids.models.decoder import sample_features
from tumsyn_bids.models.registry import register
from tumsyn_bids.protocols import SEQUENCES, Protocol

log = logging.getLogger(__name__)

MAP_NAMES = ("PD", "T1", "T2", "T2star", "GdR1", "Susceptibility")  # output channel order
MAP_UNITS = {"PD": "arbitrary (CSF = 1)", "T1": "ms", "T2": "ms", "T2star": "ms",
             "GdR1": "1/s (T1 shortening by gadolinium)", "Susceptibility": "0-1 (SWI weight)"}
# Conditioning vector: sequence one-hot, TR, TE, TI (0 = none), flip angle (0 = T2var),
# field strength, age (-1 = unknown), sex (+1 F, -1 M, 0 unknown), T1CE flag, SWI flag, and a
# map request (0 = render the target image; k + 1 = return tissue map MAP_NAMES[k] instead).
TARGET_DIM = len(SEQUENCES) + 10
_TR, _TE, _TI, _FA, _B0, _AGE, _SEX, _T1CE, _SWI, _MAP = range(len(SEQUENCES), TARGET_DIM)
# Then the SOURCE acquisition (how to read the input): sequence one-hot, TR, TE, TI, flip angle as
# above, a "known" flag (0 = the source's acquisition is unknown: the network must guess from the
# image) and a gadolinium flag (contrast-enhanced source).
_SRC_SEQ = TARGET_DIM
_S_TR, _S_TE, _S_TI, _S_FA, _S_KNOWN, _S_GD = range(TARGET_DIM + len(SEQUENCES), TARGET_DIM + len(SEQUENCES) + 6)
COND_DIM = _S_GD + 1
SOURCE_FEATURES = len(SEQUENCES) + 6


def condition_vector(protocol: Protocol, contrast: str, age: float | None, sex: str | None) -> torch.Tensor:
    """(1, COND_DIM) float32 vector describing the target acquisition and the subject."""
    v = torch.zeros(1, COND_DIM)
    v[0, SEQUENCES.index(protocol.sequence)] = 1.0
    v[0, _TR], v[0, _TE] = float(protocol.tr_ms), float(protocol.te_ms)
    v[0, _TI] = float(protocol.ti_ms or 0.0)
    v[0, _FA] = 0.0 if isinstance(protocol.flip_angle, str) else float(protocol.flip_angle)
    v[0, _B0] = float(protocol.field_strength)
    v[0, _AGE] = -1.0 if age is None else float(age)
    v[0, _SEX] = {"F": 1.0, "M": -1.0}.get(str(sex), 0.0)
    v[0, _T1CE] = float(contrast == "T1CE")
    v[0, _SWI] = float(contrast == "SWI")
    return v


def with_source(cond: torch.Tensor, protocol: Protocol | None, contrast: str = "") -> torch.Tensor:
    """``cond`` with the source acquisition filled in (None: unknown source)."""
    out = cond.clone()
    out[..., _SRC_SEQ:] = 0.0
    if protocol is not None:
        out[..., _SRC_SEQ + SEQUENCES.index(protocol.sequence)] = 1.0
        out[..., _S_TR], out[..., _S_TE] = float(protocol.tr_ms), float(protocol.te_ms)
        out[..., _S_TI] = float(protocol.ti_ms or 0.0)
        out[..., _S_FA] = 0.0 if isinstance(protocol.flip_angle, str) else float(protocol.flip_angle)
        out[..., _S_KNOWN] = 1.0
        out[..., _S_GD] = float(contrast == "T1CE")
    return out


def source_features(cond: torch.Tensor) -> torch.Tensor:
    """(B, SOURCE_FEATURES) scaled source description for FiLM (zeros when unknown)."""
    cond = cond.reshape(-1, COND_DIM)
    known = cond[:, _S_KNOWN:_S_KNOWN + 1]
    seq = cond[:, _SRC_SEQ:_SRC_SEQ + len(SEQUENCES)]
    tr = torch.log(cond[:, _S_TR].clamp_min(1.0) / 1000.0)
    te = torch.log(cond[:, _S_TE].clamp_min(1.0) / 30.0)
    ti = cond[:, _S_TI] / 1000.0
    fa = cond[:, _S_FA] / 90.0
    timing = torch.stack([tr, te, ti, fa], dim=1) * known
    return torch.cat([seq, timing, known, cond[:, _S_GD:_S_GD + 1]], dim=1)


def protocol_of(cond: torch.Tensor) -> tuple[Protocol, str]:
    """Inverse of :func:`condition_vector` for one row: (protocol, contrast)."""
    row = [float(x) for x in cond.reshape(-1, COND_DIM)[0].tolist()]
    sequence = SEQUENCES[max(range(len(SEQUENCES)), key=lambda i: row[i])]
    contrast = "T1CE" if row[_T1CE] > 0.5 else "SWI" if row[_SWI] > 0.5 else ""
    flip: float | str = row[_FA] if row[_FA] > 0 else "T2var"
    protocol = Protocol(contrast or "render", sequence, row[_B0], row[_TR], row[_TE],
                        row[_TI] if row[_TI] > 0 else None, flip)
    return protocol, contrast


def subject_condition(field: torch.Tensor, age: torch.Tensor, sex: torch.Tensor) -> torch.Tensor:
    """(B, COND_DIM) vectors carrying field strength, age and sex (source unknown)."""
    cond = torch.zeros(field.shape[0], COND_DIM, device=field.device)
    cond[:, _B0], cond[:, _AGE], cond[:, _SEX] = field, age, sex
    return cond


ALL_MAPS = "all"  # map request for every map at once: the decoder returns (..., len(MAP_NAMES))


def map_condition(cond: torch.Tensor, name: str) -> torch.Tensor:
    """A copy of ``cond`` asking the decoder for tissue map ``name`` (one of MAP_NAMES, or ALL_MAPS
    for all of them in MAP_NAMES order) instead of the image."""
    if name != ALL_MAPS and name not in MAP_NAMES:
        raise ValueError(f"unknown tissue map {name!r}; known: {', '.join(MAP_NAMES)} or {ALL_MAPS}")
    out = cond.clone()
    out[..., _MAP] = float(len(MAP_NAMES) + 1 if name == ALL_MAPS else MAP_NAMES.index(name) + 1)
    return out


def requested_channels(cond: torch.Tensor | None) -> int:
    """Output channels of the decoder for ``cond``: len(MAP_NAMES) for an ALL_MAPS request, else 1."""
    if cond is None:
        return 1
    return len(MAP_NAMES) if int(round(float(cond.reshape(-1, COND_DIM)[0, _MAP]))) == len(MAP_NAMES) + 1 else 1


def subject_features(cond: torch.Tensor) -> torch.Tensor:
    """(B, 3) FiLM input: field strength, age and sex, roughly centred and scaled."""
    cond = cond.reshape(-1, COND_DIM)
    b0 = (cond[:, _B0] - 2.25) / 0.75
    age = torch.where(cond[:, _AGE] < 0, torch.zeros_like(cond[:, _AGE]), (cond[:, _AGE] - 50.0) / 20.0)
    return torch.stack([b0, age, cond[:, _SEX]], dim=1)


@register("prompt-physics")
class PromptConditioner(nn.Module):
    """Prompt text -> condition vector (no weights; the ``text_encoder`` of a physics bundle)."""

    def __init__(self, cond_dim: int = COND_DIM):
        super().__init__()
        if cond_dim != COND_DIM:
            raise ValueError(f"prompt-physics condition size is {COND_DIM}, not {cond_dim}")
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)  # carries the device

    def encode_text(self, text: str, source: str | None = None) -> torch.Tensor:
        """Condition vector of a target prompt and (optionally) the source image's own prompt."""
        from tumsyn_bids.physics.prompt_protocol import source_acquisition, target_acquisition
        from tumsyn_bids.prompts import parse_prompt

        prompt = parse_prompt(text)
        target = target_acquisition(prompt)
        log.info("target acquisition: %s %s TR %.1f TE %.1f TI %s FA %s at %.1f T%s", target.contrast,
                 target.protocol.sequence, target.protocol.tr_ms, target.protocol.te_ms, target.protocol.ti_ms,
                 target.protocol.flip_angle, target.protocol.field_strength,
                 f" ({target.note})" if target.note else "")
        vec = condition_vector(target.protocol, target.contrast, prompt.age, prompt.sex)
        src = source_acquisition(parse_prompt(source)) if source else None
        if src is not None:
            log.info("source acquisition: %s %s TR %.1f TE %.1f TI %s FA %s", src.contrast, src.protocol.sequence,
                     src.protocol.tr_ms, src.protocol.te_ms, src.protocol.ti_ms, src.protocol.flip_angle)
        else:
            log.info("source acquisition: unknown (the network reads the contrast from the image)")
        vec = with_source(vec, src.protocol if src else None, src.contrast if src else "")
        return vec.to(self._anchor.device)


def point_head(in_dim: int, out_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    """Per-point MLP with leaky ReLUs (plain ReLUs died early in training: the head went constant)."""
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=False):
        layers += [nn.Linear(a, b), nn.LeakyReLU(0.1)]
    layers.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
                         nn.Conv3d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


class UNet3D(nn.Module):
    """Plain 3D U-Net without normalisation layers (window statistics would make tiles disagree);
    every block's output is modulated by FiLM from the condition features (scale and shift per channel)."""

    def __init__(self, in_channels: int, widths: Sequence[int], out_channels: int, film_dim: int = 3,
                 upsample: str = "transpose"):
        super().__init__()
        if upsample not in ("transpose", "trilinear"):
            raise ValueError(f"upsample must be 'transpose' or 'trilinear', not {upsample!r}")
        widths = list(widths)
        self.down = nn.ModuleList([_block(in_channels, widths[0])])
        self.pool = nn.ModuleList()
        for a, b in zip(widths[:-1], widths[1:], strict=False):
            self.pool.append(nn.Conv3d(a, a, 2, stride=2))
            self.down.append(_block(a, b))
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for a, b in zip(widths[::-1][:-1], widths[::-1][1:], strict=False):
            if upsample == "transpose":  # what the shipped weights use; prone to checkerboard patterns
                self.up.append(nn.ConvTranspose3d(a, b, 2, stride=2))
            else:  # resize-convolution (Odena et al. 2016): no checkerboard by construction
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
                                             nn.Conv3d(a, b, 3, padding=1)))
            self.merge.append(_block(2 * b, b))
        block_widths = widths + widths[::-1][1:]
        self.film_sizes = [2 * w for w in block_widths]
        self.film = nn.Sequential(nn.Linear(film_dim, 64), nn.LeakyReLU(0.1), nn.Linear(64, sum(self.film_sizes)))
        nn.init.zeros_(self.film[2].weight)
        nn.init.zeros_(self.film[2].bias)
        self.out = nn.Conv3d(widths[0], out_channels, 1)
        self.levels = len(widths)

    @staticmethod
    def _modulate(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        gamma, beta = params.to(x.dtype).chunk(2, dim=1)
        return x * (1 + gamma[:, :, None, None, None]) + beta[:, :, None, None, None]

    def forward(self, x: torch.Tensor, film_in: torch.Tensor) -> torch.Tensor:
        films = list(self.film(film_in.float()).split(self.film_sizes, dim=1))
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = self.pool[i - 1](x)
            x = self._modulate(block(x), films.pop(0))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1], strict=False):
            x = self._modulate(merge(torch.cat([up(x), skip], dim=1)), films.pop(0))
        return self.out(x)


@register("physics-unet")
class PhysicsSynthNet(nn.Module):
    """U-Net encoder + implicit tissue-parameter decoder + signal-equation renderer."""

    conditions_decoder = True  # the engine passes the condition vector to decode()

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64, 96), feat_dim: int = 32,
                 head_hidden: Sequence[int] = (64, 64), cond_dim: int = COND_DIM, upsample: str = "transpose"):
        super().__init__()
        if cond_dim != COND_DIM:
            raise ValueError(f"physics-unet condition size is {COND_DIM}, not {cond_dim}")
        self.config = {"in_channels": in_channels, "widths": list(widths), "feat_dim": feat_dim,
                       "head_hidden": list(head_hidden), "cond_dim": cond_dim, "upsample": upsample}
        self.min_window = 2 ** (len(widths) - 1)
        self.encoder = UNet3D(in_channels, widths, feat_dim, film_dim=3 + SOURCE_FEATURES, upsample=upsample)
        self.head = point_head(feat_dim, len(MAP_NAMES), head_hidden)
        self._init_weights()

    def _init_weights(self) -> None:
        """He initialisation for the leaky-ReLU layers: without normalisation layers PyTorch's default
        init shrinks activations level by level and the net learns an almost constant map."""
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, nn.Linear)) and m is not self.encoder.film[2]:
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)

    def encode(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) normalised windows (edges divisible by 2^(levels-1)) -> features."""
        if any(s % self.min_window for s in x.shape[2:]):
            raise ValueError(f"window {tuple(x.shape[2:])} must be divisible by {self.min_window}")
        cond = cond.to(x.device).reshape(-1, COND_DIM)
        film = torch.cat([subject_features(cond), source_features(cond)], dim=1).expand(x.shape[0], -1)
        return self.encoder(x, film)

    @staticmethod
    def maps_from_raw(raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tissue maps from the head's raw outputs (channel last), in float32 physical units."""
        raw = raw.float()
        pd = F.softplus(raw[..., 0])
        t1 = 1000.0 * torch.exp(raw[..., 1].clamp(-3.0, 2.5))
        t2 = 100.0 * torch.exp(raw[..., 2].clamp(-3.0, 3.5))
        t2s = t2 * torch.sigmoid(raw[..., 3] + 1.0)
        gd = F.softplus(raw[..., 4] - 4.0)  # 1/s
        sus = torch.sigmoid(raw[..., 5] - 4.0)
        return {"PD": pd, "T1": t1, "T2": t2, "T2star": t2s, "GdR1": gd, "Susceptibility": sus}

    def dense_maps(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Maps at every feature voxel (training; queries at voxel centres): each (B, D, H, W)."""
        return self.maps_from_raw(self.head(feat.movedim(1, -1)))

    def query_maps(self, feat: torch.Tensor, coords: torch.Tensor) -> dict[str, torch.Tensor]:
        """Maps at query coordinates (B, Q, 3) in [-1, 1] (array order): each (B, Q)."""
        return self.maps_from_raw(self.head(sample_features(feat, coords)))

    @staticmethod
    def render(maps: dict[str, torch.Tensor], protocol: Protocol, contrast: str = "") -> torch.Tensor:
        """Image of the maps under ``protocol`` in float32 (autocast off: exp/division need it)."""
        from tumsyn_bids.physics.torch_signals import render_maps

        device_type = maps["PD"].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return render_maps(protocol, maps["PD"], maps["T1"], maps["T2"], maps["T2star"],
                               gd_r1=maps["GdR1"] / 1000.0, susceptibility=maps["Susceptibility"],
                               contrast=contrast or protocol.contrast)

    def decode_sampled(self, samples: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Rendered target from features already sampled at the queries (..., C) -> (..., 1).
        The engine samples a window's separable query grid itself (three small matrix products)."""
        maps = self.maps_from_raw(self.head(samples))
        if cond is None:
            return maps["PD"][..., None]
        request = int(round(float(cond.reshape(-1, COND_DIM)[0, _MAP])))
        if request == len(MAP_NAMES) + 1:
            return torch.stack([maps[k] for k in MAP_NAMES], dim=-1)
        if request > 0:
            return maps[MAP_NAMES[request - 1]][..., None]
        protocol, contrast = protocol_of(cond)
        return self.render(maps, protocol, contrast)[..., None]

    def decode(self, feat: torch.Tensor, coords: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Rendered target at the queries: (B, Q, 1). ``cond`` None returns the PD map."""
        return self.decode_sampled(sample_features(feat, coords), cond)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x, cond), coords, cond)
