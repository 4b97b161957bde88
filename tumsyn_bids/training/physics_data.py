"""Training batches for the physics-structured model, simulated per patch in torch.

One sample: a label-map patch (random rotation, scaling, flips), tissue parameters per class drawn
around the population means with realistic spread (:func:`~tumsyn_bids.physics.tissues.draw_population_properties`),
optional simulated pathology (tumour with necrotic core, enhancing rim and oedema; white-matter
hyperintensities) carrying its own relaxation values, then a SOURCE image of a random sequence
(MPRAGE, FLASH, 2D SE T1/T2/PD, FLAIR, SPACE, T2*-GRE, or random per-label intensities) degraded
as clinical inputs are: partial-volume blur, thick slices (2-7 mm) along a random axis linearly
interpolated back to 1 mm, bias field, Rician noise, gamma, an imperfect skull-strip (or none), and
the engine's percentile normalisation with a random scale. The TARGET is the patch's tissue maps
(PD, T1, T2, T2*, gadolinium T1 shortening, susceptibility), from which any contrast is rendered.
Everything after the per-class table is torch on whatever device the trainer uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tumsyn_bids.physics.signals import PhysicsParameterError, validate_protocol
from tumsyn_bids.physics.tissues import KINDS, draw_population_properties, nominal_tissue_properties
from tumsyn_bids.protocols import Protocol, all_protocols

N_MAPS = 6  # PD, T1, T2, T2*, GdR1 (1/s), susceptibility
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclass
class LabelVolume:
    """A phantom's class-index volume (cropped to the head) and its classes."""

    name: str
    labels: torch.Tensor  # (X, Y, Z) int64 class index
    classes: tuple
    brain_classes: torch.Tensor  # (K,) bool: class inside the intracranial mask
    centres: torch.Tensor  # (N, 3) candidate patch centres (brain voxels, subsampled)
    background: int  # class index of air


def load_label_volume(path: str | Path) -> LabelVolume:
    """Read a label map as a :class:`LabelVolume` (1 mm maps expected)."""
    from tumsyn_bids.physics.phantoms import load_labelmap_phantom

    ph = load_labelmap_phantom(path)
    head = ph.head_mask()
    idx = np.argwhere(head)
    lo, hi = np.maximum(idx.min(0) - 2, 0), np.minimum(idx.max(0) + 3, head.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=False))
    labels = torch.from_numpy(ph.labels[sl].astype(np.int64))
    brain = np.argwhere(ph.brain_mask[sl])
    centres = torch.from_numpy(brain[:: max(1, len(brain) // 20000)].astype(np.int64))
    kinds = [c.kind for c in ph.classes]
    background = kinds.index("air") if "air" in kinds else 0
    return LabelVolume(Path(path).name, labels, tuple(ph.classes),
                       torch.tensor([KINDS[k].brain for k in kinds]), centres, background)


# ----------------------------------------------------------------------------- tissue tables


def class_table(classes, field: float, rng: np.random.Generator, spread: float = 1.0) -> np.ndarray:
    """(K, 6) per-class PD, T1, T2, T2*, GdR1 (1/s), susceptibility for one simulated subject."""
    p = draw_population_properties(classes, field, rng, spread)
    gd = p.gd_relaxivity * p.gd_mm
    return np.stack([p.pd, p.t1, p.t2, p.t2s, gd, p.susceptibility], axis=1).astype(np.float32)


def _row_of_kind(classes, table: np.ndarray, kind: str, field: float) -> np.ndarray:
    for i, c in enumerate(classes):
        if c.kind == kind:
            return table[i]
    from tumsyn_bids.physics.tissues import TissueClass

    p = nominal_tissue_properties([TissueClass(kind, kind)], field)
    return np.array([p.pd[0], p.t1[0], p.t2[0], p.t2s[0], 0.0, 0.0], np.float32)


def lesion_rows(classes, table: np.ndarray, field: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Relaxation of simulated pathology relative to this subject's WM and CSF.

    Oedema and white-matter hyperintensities: longer T1 and T2 and more water than WM (vasogenic
    oedema T2 roughly 1.5-3x WM; e.g. Bottomley et al. 1987, Just & Thelen 1988); necrosis/cyst:
    close to CSF but with protein (shorter T1/T2); enhancing rim: viable tumour with gadolinium
    uptake (T1 shortening 1-4 /s, r1 ~4 /s/mM x 0.3-1 mM).
    """
    wm = _row_of_kind(classes, table, "wm", field)
    csf = _row_of_kind(classes, table, "csf", field)
    u = rng.uniform

    def row(pd, t1, t2, gd=0.0, sus=0.0):
        return np.array([min(pd, 1.0), t1, t2, t2 * u(0.5, 0.75), gd, sus], np.float32)

    return {
        "oedema": row(wm[0] * u(1.1, 1.3), wm[1] * u(1.3, 1.8), wm[2] * u(1.6, 2.8)),
        "rim": row(wm[0] * u(1.05, 1.25), wm[1] * u(1.2, 1.6), wm[2] * u(1.3, 2.0), gd=u(1.0, 4.0), sus=u(0.0, 0.2)),
        "necrosis": row(u(0.85, 1.0), csf[1] * u(0.5, 0.9), csf[2] * u(0.3, 0.8)),
        "wmh": row(wm[0] * u(1.05, 1.2), wm[1] * u(1.15, 1.5), wm[2] * u(1.4, 2.4)),
    }


# ----------------------------------------------------------------------------- protocols


def random_source_protocol(field: float, rng: np.random.Generator, csf_t1: float) -> tuple[Protocol, str]:
    """A random clinical acquisition (sequence family and timing) and its contrast name."""
    u = rng.uniform
    families = ["mprage", "flash", "se_t1", "se_t2", "se_pd", "flair", "space", "gre_t2s"]
    weights = [0.2, 0.08, 0.17, 0.15, 0.1, 0.15, 0.08, 0.07]
    fam = families[int(rng.choice(len(families), p=weights))]
    for _ in range(20):
        if fam == "mprage":
            tr = u(1800, 2700)
            p = Protocol("T1w", "mprage", field, tr, u(2.0, 4.5), u(650, min(1200, tr - 900)), u(6, 12))
        elif fam == "flash":
            p = Protocol("T1w", "gre", field, u(8, 30), u(2, 6), None, u(10, 35))
        elif fam == "se_t1":
            p = Protocol("T1w", "se", field, u(350, 800), u(8, 20), None, 90.0)
        elif fam == "se_t2":
            p = Protocol("T2w", "se", field, u(2500, 7000), u(70, 130), None, 90.0)
        elif fam == "se_pd":
            p = Protocol("PDw", "se", field, u(1800, 6000), u(8, 30), None, 90.0)
        elif fam == "flair":
            tr = u(6000, 11000)
            ti = csf_t1 * (math.log(2.0) - math.log1p(math.exp(-tr / csf_t1))) * u(0.85, 1.1)
            p = Protocol("FLAIR", "ir", field, tr, u(80, 140), ti, 150.0)
        elif fam == "space":
            p = Protocol("T2w", "space", field, u(2500, 3500), u(300, 600), None, "T2var")
        else:
            p = Protocol("T2starw", "gre", field, u(400, 900), u(15, 35), None, u(15, 30))
        try:
            validate_protocol(p)
        except PhysicsParameterError:
            continue
        contrast = "T1CE" if p.contrast == "T1w" and rng.random() < 0.25 else p.contrast
        return p, contrast
    raise RuntimeError(f"could not draw a valid {fam} protocol")


def random_target_protocol(field: float, rng: np.random.Generator) -> tuple[Protocol, str]:
    """A target for the rendering loss: a default protocol of the table (this field) with jittered
    timing, or a 2D spin-echo T2w of random TE (the prompts users write)."""
    table = [p for p in all_protocols() if p.field_strength == field] or list(all_protocols())
    if rng.random() < 0.3:
        p = Protocol("T2w", "se", field, float(rng.uniform(2500, 7000)), float(rng.uniform(60, 140)), None, 90.0)
        return p, "T2w"
    p = table[int(rng.integers(len(table)))]
    jit = {"tr_ms": p.tr_ms * rng.uniform(0.85, 1.15), "te_ms": p.te_ms * rng.uniform(0.8, 1.2)}
    if p.ti_ms is not None:
        jit["ti_ms"] = p.ti_ms * rng.uniform(0.92, 1.08)
    from dataclasses import replace

    q = replace(p, **jit)
    try:
        validate_protocol(q)
    except PhysicsParameterError:
        q = p
    return q, p.contrast


# ----------------------------------------------------------------------------- degradations


def gaussian_blur(x: torch.Tensor, sigmas: tuple[float, float, float]) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, X, Y, Z) with per-axis sigma (voxels), replicate edges."""
    for axis, s in enumerate(sigmas):
        if s < 0.2:
            continue
        r = max(1, int(math.ceil(3 * s)))
        t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-0.5 * (t / s) ** 2)
        k = k / k.sum()
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = len(k)
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        c = x.shape[1]
        x = F.conv3d(F.pad(x, pad, mode="replicate"), k.view(shape).expand(c, 1, *shape[2:]).contiguous(), groups=c)
    return x


def thick_slice_matrix(n: int, thickness: float, phase: float, device) -> torch.Tensor:
    """(n, n) operator: sample every ``thickness`` voxels (from ``phase``), then linear back to 1 voxel."""
    pos = torch.arange(phase, n - 1e-6, thickness, dtype=torch.float32)
    if len(pos) < 2:
        pos = torch.tensor([0.0, float(n - 1)])
    i = torch.arange(n, dtype=torch.float32)
    down = torch.clamp(1 - (pos[:, None] - i[None, :]).abs(), min=0)  # linear pick of slice centres
    down = down / down.sum(1, keepdim=True)
    # linear interpolation from the slice centres back to every voxel (constant beyond the ends)
    q = i.clamp(float(pos[0]), float(pos[-1]))
    k = torch.searchsorted(pos, q, right=True).clamp(1, len(pos) - 1)
    w = (q - pos[k - 1]) / (pos[k] - pos[k - 1])
    up = torch.zeros(n, len(pos))
    up[torch.arange(n), k - 1] = 1 - w
    up[torch.arange(n), k] += w
    return (up @ down).to(device)


def apply_along(x: torch.Tensor, mat: torch.Tensor, axis: int) -> torch.Tensor:
    """Apply an (n, n) matrix along spatial ``axis`` (0-2) of (B, C, X, Y, Z)."""
    x = x.movedim(2 + axis, -1)
    return (x @ mat.T).movedim(-1, 2 + axis)


def smooth_field(shape, rng: np.random.Generator, device, control: int = 3) -> torch.Tensor:
    coarse = torch.from_numpy(rng.standard_normal((1, 1, control, control, control)).astype(np.float32)).to(device)
    return F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)[0, 0]


def rician(x: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    n1 = torch.randn(x.shape, generator=gen, device=x.device) * sigma
    n2 = torch.randn(x.shape, generator=gen, device=x.device) * sigma
    return torch.sqrt((x + n1) ** 2 + n2**2)


def morph(mask: torch.Tensor, k: int) -> torch.Tensor:
    """Dilate (k > 0) or erode (k < 0) a (X, Y, Z) bool mask by |k| voxels (cube element)."""
    if k == 0:
        return mask
    m = mask[None, None].float()
    r = abs(k)
    if k > 0:
        m = F.max_pool3d(m, 2 * r + 1, stride=1, padding=r)
    else:
        m = -F.max_pool3d(-m, 2 * r + 1, stride=1, padding=r)
    return m[0, 0] > 0.5


# ----------------------------------------------------------------------------- sampling


@dataclass
class SimConfig:
    size: int = 48
    field_probs: tuple[float, float] = (0.3, 0.7)  # 1.5 T, 3 T
    spread: float = 1.0
    lesion_prob: float = 0.4
    random_intensity_prob: float = 0.15
    thick_prob: float = 0.4
    skull_strip_prob: float = 0.85
    max_rotation_deg: float = 15.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    snr_range: tuple[float, float] = (6.0, 80.0)
    bias_max: float = 0.35
    permute_prob: float = 0.2
    unknown_source_prob: float = 0.3  # share of samples whose source acquisition is withheld


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    a, b, c = np.radians(rng.uniform(-max_deg, max_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def sample_label_patch(vol: LabelVolume, cfg: SimConfig, rng: np.random.Generator) -> torch.Tensor:
    """(S, S, S) class indices: rotated/scaled nearest-neighbour crop around a brain voxel."""
    s = cfg.size
    centre = vol.centres[int(rng.integers(len(vol.centres)))].numpy().astype(np.float64)
    centre += rng.uniform(-8, 8, 3)
    m = _rotation(rng, cfg.max_rotation_deg) * rng.uniform(*cfg.scale_range)
    g = np.arange(s) - (s - 1) / 2.0
    grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    pos = np.rint(grid @ m.T + centre).astype(np.int64)
    shape = np.array(vol.labels.shape)
    inside = np.all((pos >= 0) & (pos < shape), axis=1)
    pos = np.clip(pos, 0, shape - 1)
    flat = torch.from_numpy(np.ravel_multi_index(pos.T, shape))
    lab = vol.labels.reshape(-1)[flat]
    lab[~torch.from_numpy(inside)] = vol.background
    lab = lab.reshape(s, s, s)
    for axis in range(3):
        if rng.random() < 0.5:
            lab = lab.flip(axis)
    if rng.random() < cfg.permute_prob:
        lab = lab.permute(*[int(i) for i in rng.permutation(3)])
    return lab.contiguous()


def insert_lesions(lab: torch.Tensor, brain_classes: torch.Tensor, wm_classes: torch.Tensor, first_new: int,
                   rng: np.random.Generator) -> tuple[torch.Tensor, list[str]]:
    """Paint a tumour (oedema > rim > necrosis, nested, irregular) or a few WMH blobs into the patch.
    New class indices start at ``first_new``; returns the patch and the names of the new classes."""
    s = lab.shape[0]
    brain = brain_classes[lab]
    cand = torch.nonzero(brain)
    if len(cand) < 50:
        return lab, []
    g = torch.arange(s, dtype=torch.float32)
    xx, yy, zz = torch.meshgrid(g, g, g, indexing="ij")
    noise = smooth_field((s, s, s), rng, "cpu", control=5)
    names: list[str] = []
    if rng.random() < 0.6:  # tumour
        c = cand[int(rng.integers(len(cand)))].float()
        r = torch.from_numpy(rng.uniform(4, 14, 3).astype(np.float32))
        d = torch.sqrt(((xx - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((zz - c[2]) / r[2]) ** 2)
        d = d + 0.2 * noise
        layers = [("oedema", rng.uniform(1.3, 2.0)), ("rim", 1.0)]
        if rng.random() < 0.7:
            layers.append(("necrosis", rng.uniform(0.5, 0.8)))
        for name, radius in layers:
            sel = (d < radius) & brain
            lab = torch.where(sel, torch.tensor(first_new + len(names)), lab)
            names.append(name)
    else:  # white-matter hyperintensities
        wm = wm_classes[lab]
        cw = torch.nonzero(wm)
        if len(cw) < 20:
            return lab, []
        sel = torch.zeros_like(wm)
        for _ in range(int(rng.integers(1, 5))):
            c = cw[int(rng.integers(len(cw)))].float()
            r = float(rng.uniform(1.5, 5))
            d = torch.sqrt((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2) / r + 0.25 * noise
            sel |= (d < 1) & wm
        lab = torch.where(sel, torch.tensor(first_new), lab)
        names.append("wmh")
    return lab, names


def simulate_sample(vol: LabelVolume, cfg: SimConfig, rng: np.random.Generator, gen: torch.Generator) -> dict:
    """One training sample: ``x`` (1, S, S, S) normalised source, ``maps`` (6, S, S, S) targets,
    ``weight`` (S, S, S) where the target is defined, ``field``, ``age``, ``sex``, ``source``."""
    from tumsyn_bids.physics.torch_signals import render_maps

    field = 1.5 if rng.random() < cfg.field_probs[0] else 3.0
    table = class_table(vol.classes, field, rng, cfg.spread)
    lab = sample_label_patch(vol, cfg, rng)
    brain_classes = vol.brain_classes.clone()
    if rng.random() < cfg.lesion_prob:
        wm_classes = torch.tensor([c.kind == "wm" for c in vol.classes])
        lab, names = insert_lesions(lab, brain_classes, wm_classes, len(table), rng)
        if names:
            rows = lesion_rows(vol.classes, table, field, rng)
            table = np.concatenate([table, np.stack([rows[n] for n in names])])
            brain_classes = torch.cat([brain_classes, torch.ones(len(names), dtype=torch.bool)])
    tab = torch.from_numpy(table)
    maps = tab[lab].movedim(-1, 0)  # (6, S, S, S)
    mask = brain_classes[lab]

    csf_t1 = float(_row_of_kind(vol.classes, table, "csf", field)[1])
    src_protocol, src_contrast = None, ""
    if rng.random() < cfg.random_intensity_prob:
        signal = torch.from_numpy(rng.uniform(0, 1, len(table)).astype(np.float32))
        signal[torch.from_numpy(table[:, 0] <= 0)] = 0.0
        source = "random-intensities"
    else:
        protocol, contrast = random_source_protocol(field, rng, csf_t1)
        signal = render_maps(protocol, tab[:, 0], tab[:, 1], tab[:, 2], tab[:, 3], gd_r1=tab[:, 4] / 1000.0,
                             susceptibility=tab[:, 5], contrast=contrast).float()
        signal = torch.where(tab[:, 0] > 0, signal, torch.zeros_like(signal))
        source = f"{contrast}:{protocol.sequence}"
        if rng.random() >= cfg.unknown_source_prob:  # the app passes the source's own prompt when it has one
            src_protocol, src_contrast = protocol, contrast
    img = signal[lab][None, None]
    img = gaussian_blur(img, tuple(rng.uniform(0.3, 0.9, 3)))
    if rng.random() < cfg.thick_prob:
        axis = int(rng.integers(3))
        thick = float(rng.uniform(2.0, 7.0))
        sig = [0.0, 0.0, 0.0]
        sig[axis] = thick * FWHM_TO_SIGMA
        img = gaussian_blur(img, tuple(sig))
        img = apply_along(img, thick_slice_matrix(cfg.size, thick, float(rng.uniform(0, thick)), img.device), axis)
    img = img[0, 0]
    if cfg.bias_max > 0:
        img = img * torch.exp(float(rng.uniform(0, cfg.bias_max)) * smooth_field(img.shape, rng, img.device))
    brain_signal = img[mask].mean() if mask.any() else img.mean()
    snr = math.exp(rng.uniform(math.log(cfg.snr_range[0]), math.log(cfg.snr_range[1])))
    img = rician(img, float(brain_signal) / snr, gen)
    weight = torch.ones_like(img)
    if rng.random() < cfg.skull_strip_prob:
        strip = morph(mask, int(rng.integers(-2, 3)))
        img = img * strip
        maps = maps * strip
        weight = strip.float()
    nz = img[img > 0]
    if nz.numel() > 10:
        ref = torch.quantile(nz[torch.randint(0, nz.numel(), (min(nz.numel(), 50000),), generator=gen)], 0.999)
    else:
        ref = torch.tensor(1.0)
    img = (img / (ref * float(rng.uniform(0.75, 1.3)))).clamp(0, 1)
    img = img ** float(math.exp(rng.normal(0, 0.2)))
    age = float(rng.integers(20, 81))
    sex = 1.0 if rng.random() < 0.5 else -1.0
    return {"x": img[None].float(), "maps": maps.float(), "weight": weight, "field": field, "age": age, "sex": sex,
            "source": source, "src_protocol": src_protocol, "src_contrast": src_contrast}


def make_batch(volumes: list[LabelVolume], cfg: SimConfig, batch: int, rng: np.random.Generator,
               gen: torch.Generator) -> dict:
    samples = [simulate_sample(volumes[int(rng.integers(len(volumes)))], cfg, rng, gen) for _ in range(batch)]
    out = {k: torch.stack([s[k] for s in samples]) for k in ("x", "maps", "weight")}
    out.update({k: torch.tensor([s[k] for s in samples], dtype=torch.float32) for k in ("field", "age", "sex")})
    for key in ("source", "src_protocol", "src_contrast"):
        out[key] = [s[key] for s in samples]
    return out
