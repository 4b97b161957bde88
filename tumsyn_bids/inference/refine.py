"""Physics-consistency refinement: read the source image against the tissue relation it must obey.

The physics-structured network predicts PD, T1, T2 and T2* at every voxel, from which any contrast is
rendered. Its maps are smooth guesses; the source image is measured evidence. This module re-reads
every brain voxel of the source as a partial-volume mixture along the brain's own tissue relation:
the path white matter (t = 0) -> grey matter (t = 1) -> CSF (t = 2), with mid-range relaxation values
at the field strength (:mod:`tumsyn_bids.physics.tissues`). Between anchors a voxel holds two tissues
in proportion (the signals mix, as partial volume does); below WM (t < 0) the parameters extrapolate
(denser myelin, fat-like short T1). Every state ``t_j`` has a source signal ``s_j`` (rendered under
the source's acquisition) and a target signal ``r_j`` (under the prompt's).

Per voxel, with the network's own position ``t0`` (nearest path point of its maps) as prior:

    E_j = sum over sources ((S - a * s_j) / (kappa * median S))^2 + ((t_j - t0) / tau)^2
    w = softmax(-E / 2)

``a`` is a smooth scale field per source (the source over the network's rendering of it, both
Gaussian-smoothed inside the mask: scanner gain, normalisation, bias). The target is
``sum_j w_j r_j``: what the sources say the voxel holds, rendered under the target protocol, with the
network deciding where the sources are ambiguous (a FLAIR's dark CSF and dark WM; a T1w's grey
matter and oedema). Several co-registered sources add their data terms, so two contrasts pin a voxel
down where one leaves it ambiguous. The maps returned are the network's, moved along the path to the
posterior-mean position (``--save-maps``). Voxels outside the mask keep the network's rendering.
Pure torch, on whatever device the maps are.

Measured (held-out simulated subjects and the real dev scans, ``benchmarks/quality.py --refine`` and
``benchmarks/real_quality.py``): large gains where the network's grey/white contrast is flat (T1w ->
FLAIR/PDw, FLAIR -> T1w, T1c -> T2w); it loses where the target's look depends on tissue off the
path that the source does not show (a lesion bright on FLAIR but grey on T1w).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from tumsyn_bids.protocols import Protocol

log = logging.getLogger(__name__)

# Typical clinical 2D spin-echo TRs by weighting (T1w 400-700 ms, PDw 2000-4000 ms with short TE,
# T2w 3000-6000 ms; e.g. Bitar et al., RadioGraphics 2006; McRobbie et al., MRI from Picture to
# Proton, 3rd ed., ch. 7), for a source whose sidecar gives the echo time only.
SE_TR_BY_CONTRAST = {"T1w": 550.0, "T1CE": 550.0, "PDw": 3000.0, "T2w": 5000.0}
ANCHOR_KINDS = ("wm", "gm", "csf")  # the path's anchors, at t = 0, 1, 2
LOG_KEYS = ("PD", "T1", "T2", "T2star")


@dataclass(frozen=True)
class RefineSettings:
    kappa: float = 0.08  # accepted relative mismatch between a source and a state's signal
    tau: float = 1.0  # prior width around the network's path position (WM -> GM = 1)
    t_min: float = -0.5
    steps: int = 41  # states on [t_min, 2] (posterior means are smooth: 41 and 81 states differ by 0.2 %)
    sigma_mm: float = 12.0  # smoothing of the scale field
    chunk: int = 131072  # voxels per chunk


@dataclass(frozen=True)
class SourceEvidence:
    """One source image on the maps' grid (normalised) and how it was acquired."""

    image: torch.Tensor
    protocol: Protocol
    contrast: str


def tissue_path(field_strength: float) -> torch.Tensor:
    """(3, 4) anchors WM, GM, CSF in log PD, log T1 (ms), log T2 (ms), log T2* (ms)."""
    from tumsyn_bids.physics.tissues import TissueClass, nominal_tissue_properties

    p = nominal_tissue_properties([TissueClass(k, k) for k in ANCHOR_KINDS], field_strength)
    rows = [[math.log(p.pd[i]), math.log(p.t1[i]), math.log(p.t2[i]), math.log(min(p.t2s[i], p.t2[i]))]
            for i in range(len(ANCHOR_KINDS))]
    return torch.tensor(rows, dtype=torch.float32)


def path_points(anchors: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Parameters (log) of the piecewise-linear path at positions ``t`` (extrapolated beyond the ends)."""
    seg = t.clamp(0.0, 1.999).floor().long().clamp(0, anchors.shape[0] - 2)
    frac = (t - seg.float())[:, None]
    return anchors[seg] * (1 - frac) + anchors[seg + 1] * frac


def path_position(u: list[torch.Tensor], anchors: torch.Tensor, unit: torch.Tensor, t_min: float) -> torch.Tensor:
    """Nearest path position of points given as one (N,) vector per log parameter (``LOG_KEYS``),
    distances measured in ``unit`` per parameter: the closed-form projection onto each segment
    (the first extended down to ``t_min``)."""
    best_d = best_t = None
    a, unit_l = anchors.tolist(), unit.tolist()
    for k in range(len(a) - 1):
        d = [(a[k + 1][p] - a[k][p]) / unit_l[p] for p in range(len(u))]
        v = [(u[p] - a[k][p]) / unit_l[p] for p in range(len(u))]
        lam = (sum(v[p] * d[p] for p in range(len(u))) / sum(x * x for x in d)).clamp_(t_min if k == 0 else 0.0, 1.0)
        dist = sum((v[p] - lam * d[p]).square_() for p in range(len(u)))
        if best_d is None:
            best_d, best_t = dist, lam
        else:
            closer = dist < best_d
            best_d, best_t = torch.where(closer, dist, best_d), torch.where(closer, lam + k, best_t)
    return best_t


def state_signals(anchors: torch.Tensor, t: torch.Tensor, protocol: Protocol, contrast: str) -> torch.Tensor:
    """Signal of each state ``t`` under ``protocol``: a partial-volume mix of the two neighbouring
    anchors for t >= 0, the extrapolated parameters' own signal for t < 0."""
    from tumsyn_bids.physics.torch_signals import render_maps

    def render(logp: torch.Tensor) -> torch.Tensor:
        p = torch.exp(logp)
        return render_maps(protocol, p[:, 0], p[:, 1], p[:, 2], torch.minimum(p[:, 3], p[:, 2]),
                           contrast=contrast).float()

    anchor_signal = render(anchors)
    seg = t.clamp(0.0, 1.999).floor().long()
    frac = t - seg.float()
    mixed = anchor_signal[seg] * (1 - frac) + anchor_signal[seg + 1] * frac
    return torch.where(t < 0, render(path_points(anchors, t)), mixed)


def _smooth(x: torch.Tensor, sigma_vox: tuple[float, float, float], factor: int = 4) -> torch.Tensor:
    """Gaussian smoothing with a wide kernel, done on a ``factor``-times coarser grid (block means,
    then trilinear back): the scale field varies over centimetres, and full-resolution kernels of
    70+ taps per axis would cost more than the rest of the refinement."""
    import torch.nn.functional as F

    from tumsyn_bids.training.physics_data import gaussian_blur

    coarse = F.avg_pool3d(x[None, None], factor, ceil_mode=True)
    coarse = gaussian_blur(coarse, tuple(s / factor for s in sigma_vox))
    return F.interpolate(coarse, size=x.shape, mode="trilinear", align_corners=False)[0, 0]


def scale_field(source: torch.Tensor, rendered: torch.Tensor, mask: torch.Tensor,
                sigma_vox: tuple[float, float, float]) -> torch.Tensor:
    """Smooth ``a`` with source ~ a * rendered inside the mask (normalised convolution)."""
    m = mask.float()
    num = _smooth(source * m, sigma_vox)
    den = _smooth(rendered * m, sigma_vox)
    global_a = (source[mask].sum() / rendered[mask].sum().clamp_min(1e-12)).clamp_min(1e-12)
    a = torch.where(den > 1e-6 * den.max(), num / den.clamp_min(1e-12), global_a)
    return torch.where(mask, a, global_a)


def refine(maps: dict[str, torch.Tensor], source: torch.Tensor | list[SourceEvidence], mask: torch.Tensor,
           source_protocol: Protocol | None, source_contrast: str, target_protocol: Protocol, target_contrast: str,
           voxel_mm: tuple[float, float, float] = (1.0, 1.0, 1.0), settings: RefineSettings = RefineSettings(),
           ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
    """(target image, refined maps, summary numbers) from the network's ``maps`` (each (X, Y, Z),
    physical units) and the normalised ``source`` on the same grid; ``mask`` (bool) limits the refinement.
    ``source`` may also be a list of :class:`SourceEvidence` (several co-registered sources, each with
    its own acquisition; ``source_protocol``/``source_contrast`` are then ignored): their data terms add
    up, so two contrasts pin down a voxel's position where one leaves it ambiguous."""
    from tumsyn_bids.physics.torch_signals import render_maps

    s = settings
    sources = (source if isinstance(source, list)
               else [SourceEvidence(source, source_protocol, source_contrast)])  # type: ignore[arg-type]
    dev = sources[0].image.device

    def render(m: dict[str, torch.Tensor], protocol: Protocol, contrast: str) -> torch.Tensor:
        gd = m.get("GdR1")
        return render_maps(protocol, m["PD"], m["T1"], m["T2"], m["T2star"],
                           gd_r1=None if gd is None else gd / 1000.0, susceptibility=m.get("Susceptibility"),
                           contrast=contrast).float()

    target = render(maps, target_protocol, target_contrast)
    out_maps = {k: v.clone() for k, v in maps.items()}
    mask = mask.bool() & (maps["PD"] > 1e-3)
    for ev in sources:
        mask &= torch.isfinite(ev.image)
    n = int(mask.sum())
    if n < 100:
        return target, out_maps, {"voxels": float(n), "sources": float(len(sources)), "mean_shift": 0.0,
                                  "mismatch_before": float("nan"), "mismatch_after": float("nan")}
    anchors = tissue_path(target_protocol.field_strength).to(dev)
    unit = (anchors[-1] - anchors[0]).abs().clamp_min(0.05)  # per-parameter scale of the projection
    grid = torch.linspace(s.t_min, 2.0, s.steps, device=dev)
    r_j = state_signals(anchors, grid, target_protocol, target_contrast)
    sigma = tuple(s.sigma_mm / max(float(v), 1e-3) for v in voxel_mm)
    terms = []  # per source: (state signals, values, scale, noise, the network's rendering at the voxels)
    for ev in sources:
        rendered = render(maps, ev.protocol, ev.contrast)
        a = scale_field(ev.image, rendered, mask, sigma)
        src = ev.image[mask]
        terms.append((state_signals(anchors, grid, ev.protocol, ev.contrast), src, a[mask],
                      s.kappa * float(src.median().clamp_min(1e-6)), rendered[mask]))
    u = [torch.log(maps[k][mask].clamp_min(1e-6)) for k in LOG_KEYS]
    new_target = torch.empty(n, device=dev)
    fitted = torch.empty(len(terms), n, device=dev)
    t_net = torch.empty(n, device=dev)
    t_new = torch.empty(n, device=dev)
    for c0 in range(0, n, s.chunk):
        c = slice(c0, min(c0 + s.chunk, n))
        t0 = path_position([x[c] for x in u], anchors, unit, s.t_min)
        energy = ((grid[None] - t0[:, None]) / s.tau).square_()
        for s_j, src, amp, noise, _ in terms:
            energy += torch.addcmul(src[c, None] / noise, amp[c, None] / noise, s_j[None], value=-1.0).square_()
        w = torch.softmax(energy.mul_(-0.5), dim=1)
        new_target[c] = w @ r_j
        for k, (s_j, _, amp, _, _) in enumerate(terms):
            fitted[k, c] = amp[c] * (w @ s_j)
        t_net[c], t_new[c] = t0, w @ grid
    target[mask] = new_target
    delta = path_points(anchors, t_new) - path_points(anchors, t_net)
    for j, k in enumerate(LOG_KEYS):
        out_maps[k][mask] = torch.exp(u[j] + delta[:, j])
    out_maps["T2star"] = torch.minimum(out_maps["T2star"], out_maps["T2"])
    before = after = 0.0
    for k, (_, src, amp, _, rendered_idx) in enumerate(terms):
        ref = float(src.abs().mean().clamp_min(1e-9))
        before += float((src - amp * rendered_idx).abs().mean()) / ref / len(terms)
        after += float((src - fitted[k]).abs().mean()) / ref / len(terms)
    summary = {"voxels": float(n), "sources": float(len(terms)), "mean_shift": float((t_new - t_net).abs().mean()),
               "mismatch_before": before, "mismatch_after": after}
    return target, out_maps, summary


def source_protocol_for_refinement(source_prompt: str | None) -> tuple[Protocol, str, str] | None:
    """(protocol, contrast, note) of the source acquisition the refinement renders, or None when the
    source's contrast is unknown. Timing the sidecar does not give is filled from the protocol table
    for that contrast (the note says which), as a target's would be, and a spin echo without TR gets
    the TR of its weighting (``SE_TR_BY_CONTRAST``): the refinement needs a rendering, while the
    network itself still sees only what the sidecar said."""
    if not source_prompt:
        return None
    from tumsyn_bids.physics.prompt_protocol import target_acquisition
    from tumsyn_bids.prompts import parse_prompt

    try:
        prompt = parse_prompt(source_prompt)
        acq = target_acquisition(prompt)
    except (KeyError, ValueError):
        return None
    protocol, note = acq.protocol, acq.note
    if protocol.sequence == "se" and prompt.tr_ms is None and acq.contrast in SE_TR_BY_CONTRAST:
        from dataclasses import replace

        protocol = replace(protocol, tr_ms=SE_TR_BY_CONTRAST[acq.contrast])
        note = f"TR {protocol.tr_ms:g} ms assumed for a {acq.contrast} spin echo"
    return protocol, acq.contrast, note


def resample_to_grid(data, affine, shape, grid_affine, order: int = 1):
    """``data`` (x, y, z) resampled in world coordinates onto a grid (scipy, linear by default)."""
    import numpy as np
    from scipy.ndimage import affine_transform

    if tuple(data.shape) == tuple(shape) and np.allclose(affine, grid_affine, atol=1e-5):
        return np.asarray(data, dtype=np.float32)
    m = np.linalg.inv(affine) @ grid_affine
    return affine_transform(np.asarray(data, dtype=np.float32), m[:3, :3], m[:3, 3], output_shape=tuple(shape),
                            order=order, mode="constant", cval=0.0).astype(np.float32)


def _text(prompt) -> str | None:
    if prompt is None:
        return None
    return prompt.text() if callable(getattr(prompt, "text", None)) else str(prompt)


def synthesize_refined(image, affine, mask, prompt, bundle, *, source_prompt=None,
                       extra_sources=(), settings: RefineSettings = RefineSettings(), **engine_kwargs):
    """Synthesize ``prompt`` from ``image`` with the physics-consistency refinement.

    One engine pass predicts every tissue map on the output grid; the maps are refined against the
    (normalised) source resampled onto that grid, and the target is rendered from them.
    ``extra_sources``: more sources registered to ``image``, as ``(data, affine, source prompt)`` on
    any grid (each is masked with ``mask`` carried to its grid, normalised there and resampled once onto
    the output grid); each with a known contrast adds its data term. Returns ``(result, maps, info)``: a
    :class:`~tumsyn_bids.inference.engine.SynthesisResult` whose data is the rendered target, the
    refined maps (numpy, MAP_NAMES keys) and what was done. Without any usable source contrast the
    refinement is skipped (``info["refined"]`` False) and the target is rendered from the network's maps.
    """
    import dataclasses
    import time

    import numpy as np

    from tumsyn_bids.inference.engine import synthesize
    from tumsyn_bids.inference.normalize import normalize_intensity
    from tumsyn_bids.models.physics_net import ALL_MAPS, MAP_NAMES, protocol_of

    t0 = time.perf_counter()
    prompt, source_prompt = _text(prompt), _text(source_prompt)
    result = synthesize(image, affine, prompt, bundle, tissue_map=ALL_MAPS, source_prompt=source_prompt,
                        **engine_kwargs)
    dev = next(bundle.net.parameters()).device
    maps = {k: torch.from_numpy(np.ascontiguousarray(result.data[..., i])).to(dev) for i, k in enumerate(MAP_NAMES)}
    with torch.inference_mode():
        cond = (bundle.encode_prompt(prompt, source=source_prompt) if source_prompt is not None
                else bundle.encode_prompt(prompt))
    target_protocol, target_contrast = protocol_of(cond)
    shape = result.data.shape[:3]
    mask = np.asarray(mask, dtype=np.float32)
    evidence, described = [], []
    for data, data_affine, text in [(image, affine, source_prompt),
                                    *[(d, a, _text(p)) for d, a, p in extra_sources]]:
        acquisition = source_protocol_for_refinement(text)
        if acquisition is None:
            continue
        protocol, contrast, note = acquisition
        inside_here = resample_to_grid(mask, affine, np.shape(data), data_affine, order=0) > 0.5
        src = resample_to_grid(normalize_intensity(np.where(inside_here, np.nan_to_num(data), 0.0)), data_affine,
                               shape, result.affine)
        evidence.append(SourceEvidence(torch.from_numpy(src).to(dev), protocol, contrast))
        described.append(f"{contrast} {protocol.sequence} TR {protocol.tr_ms:g} TE {protocol.te_ms:g} "
                         f"TI {protocol.ti_ms} FA {protocol.flip_angle} at {protocol.field_strength:g} T"
                         + (f" ({note})" if note else ""))
    info: dict = {"refined": False}
    if evidence:
        inside = resample_to_grid(mask, affine, shape, result.affine) > 0.5
        t1 = time.perf_counter()
        rendered, maps, summary = refine(maps, evidence, torch.from_numpy(inside).to(dev), None, "",
                                         target_protocol, target_contrast, tuple(result.voxel_size), settings)
        info = {"refined": True, "source_protocol": "; ".join(described), "assumed": "",
                "seconds": round(time.perf_counter() - t1, 2), **summary}
        log.info("refinement against %d source(s) (%s): mean shift %.3f, mismatch %.3f -> %.3f in %.1f s",
                 len(evidence), info["source_protocol"], summary["mean_shift"], summary["mismatch_before"],
                 summary["mismatch_after"], info["seconds"])
    else:
        log.info("refinement skipped: the source's contrast is unknown")
        rendered = bundle.net.render(maps, target_protocol, target_contrast)
    data = rendered.float().cpu().numpy().astype(np.float32)
    maps_np = {k: v.float().cpu().numpy() for k, v in maps.items()}
    return dataclasses.replace(result, data=data, seconds=time.perf_counter() - t0), maps_np, info
