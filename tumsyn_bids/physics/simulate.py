"""One-call simulation: phantom + contrast(s) -> realistic images with their exact prompts.

Pipeline per call (all contrasts of one call share the subject, pose and grid: paired data):
draw the subject (age, sex, tissue properties, random affine + elastic deformation), render each
contrast noise-free on the phantom grid, blur to the acquisition's point spread (partial volume,
thick slices), sample the output grid through the deformation (one linear interpolation), then
multiply by a smooth bias field, add Rician noise, and optionally skull-strip.
``ground_truth`` is the same image before bias and noise (and masked when skull-stripped).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from tumsyn_bids.contrasts import get_contrast
from tumsyn_bids.physics.realism import (
    SpatialTransform,
    add_rician_noise,
    bias_field,
    output_grid,
    psf_blur,
    random_transform,
    sampling_coordinates,
    warp,
)
from tumsyn_bids.physics.render import render
from tumsyn_bids.physics.signals import validate_protocol
from tumsyn_bids.physics.tissues import TissueProperties, draw_tissue_properties
from tumsyn_bids.prompts import Prompt
from tumsyn_bids.protocols import Protocol, default_protocol


@dataclass(frozen=True, eq=False)
class SimulatedImage:
    """One simulated acquisition. ``data``/``ground_truth`` float32, ``mask`` bool, same grid."""

    data: np.ndarray
    affine: np.ndarray
    prompt: Prompt
    mask: np.ndarray
    ground_truth: np.ndarray
    contrast: str
    protocol: Protocol
    snr: float | None
    slice_thickness: float | None = None

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return self.prompt.voxel_size


@dataclass(frozen=True, eq=False)
class SubjectDraw:
    """The random draws that make one simulated subject (shared by all its contrasts)."""

    age: int
    sex: str
    properties: TissueProperties
    transform: SpatialTransform | None


def resolve_protocol(contrast_or_protocol: str | Protocol, field_strength: float | None = 3.0,
                     vendor: str | None = None, **overrides) -> Protocol:
    """A validated :class:`Protocol`: the default for a contrast name at ``field_strength``,
    or the given protocol; ``overrides`` (tr_ms, te_ms, ti_ms, flip_angle, sequence) replace fields."""
    if isinstance(contrast_or_protocol, Protocol):
        protocol = contrast_or_protocol
    else:
        name = get_contrast(contrast_or_protocol).name
        protocol = replace(default_protocol(name, field_strength), field_strength=float(field_strength or 3.0))
    if vendor is not None:
        protocol = replace(protocol, vendor=vendor)
    if overrides:
        protocol = replace(protocol, **overrides)
    validate_protocol(protocol)
    return protocol


def draw_subject(phantom, field_strength: float, rng: np.random.Generator, *, deform: bool = True,
                 age: int | None = None, sex: str | None = None, **deformation) -> SubjectDraw:
    """Draw age (20-80), sex, tissue properties and (if ``deform``) a random affine + elastic map.
    ``deformation`` goes to :func:`~tumsyn_bids.physics.realism.random_transform`."""
    drawn_age = int(rng.integers(20, 81))
    drawn_sex = "F" if rng.random() < 0.5 else "M"
    props = draw_tissue_properties(phantom, field_strength, rng)
    transform = random_transform(rng, phantom.shape, phantom.affine, **deformation) if deform else None
    return SubjectDraw(age if age is not None else drawn_age, sex or drawn_sex, props, transform)


def _voxel_triplet(voxel_size) -> np.ndarray:
    vox = np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,)).copy()
    if (vox <= 0).any() or not np.isfinite(vox).all():
        raise ValueError(f"voxel size must be positive, got {voxel_size}")
    return vox


def simulate_subject(
    phantom,
    contrasts: Sequence[str | Protocol],
    rng: np.random.Generator,
    *,
    voxel_size: float | Sequence[float] = 1.0,
    field_strength: float | None = None,
    vendor: str | None = None,
    noise: bool = True,
    snr: float | tuple[float, float] = 30.0,
    bias: bool = True,
    bias_strength: float = 0.2,
    skull_strip: bool = False,
    deform: bool = True,
    thick_slice: tuple[int, float] | None = None,
    crop: bool = True,
    subject: SubjectDraw | None = None,
    pose: np.ndarray | None = None,
) -> dict[str, SimulatedImage]:
    """Several contrasts of the SAME simulated subject on one grid (paired data).

    ``contrasts``: contrast names (default protocol at ``field_strength``) or Protocols (any
    TR/TE/TI/FA); ``field_strength`` (tesla) defaults to the first Protocol's, else 3 T, and sets
    the tissue draw. ``voxel_size``: mm, scalar or per axis. ``thick_slice=(axis, thickness_mm)``
    makes that array axis a stack of thick slices. ``snr``: mean brain signal / noise sigma, or a
    (low, high) range drawn per image. ``subject``: reuse a :class:`SubjectDraw` (e.g. another
    session); ``pose``: an extra world->world matrix (head repositioning). ``crop`` limits the
    grid to the head's bounding box. Keys are contrast names ("T2w", "T2w_2", ... on repeats).
    """
    if not contrasts:
        raise ValueError("no contrast to simulate")
    if field_strength is None:
        given = [c.field_strength for c in contrasts if isinstance(c, Protocol)]
        field_strength = float(given[0]) if given else 3.0
    protocols = [resolve_protocol(c, field_strength, vendor) for c in contrasts]
    for p in protocols:
        if not np.isclose(p.field_strength, field_strength):
            raise ValueError(f"protocol for {p.contrast} is at {p.field_strength} T but the subject is "
                             f"simulated at {field_strength} T")
    if subject is None:
        subject = draw_subject(phantom, field_strength, rng, deform=deform)
    transform = subject.transform
    if pose is not None:
        transform = (transform or SpatialTransform(np.eye(4))).then(pose)
    vox = _voxel_triplet(voxel_size)
    fwhm = vox.copy()
    thickness = None
    if thick_slice is not None:
        axis, thickness = int(thick_slice[0]), float(thick_slice[1])
        if axis not in (0, 1, 2) or thickness <= 0:
            raise ValueError(f"thick_slice must be (axis 0-2, thickness > 0), got {thick_slice}")
        vox[axis] = fwhm[axis] = thickness
    shape, affine = output_grid(phantom.shape, phantom.affine, vox, phantom.head_mask() if crop else None)
    coords = sampling_coordinates(shape, affine, phantom.affine, transform)
    mask = warp(phantom.brain_mask.astype(np.float32), coords) > 0.5
    src_vox = phantom.voxel_size
    results: dict[str, SimulatedImage] = {}
    for protocol in protocols:
        image = psf_blur(render(phantom, subject.properties, protocol), src_vox, fwhm)
        truth = warp(image, coords)
        data = truth * bias_field(shape, rng, bias_strength) if bias else truth.copy()
        image_snr = None
        if noise:
            image_snr = float(rng.uniform(*snr)) if isinstance(snr, tuple) else float(snr)
            data = add_rician_noise(data, image_snr, rng, mask=mask)
        if skull_strip:
            data = data * mask
            truth = truth * mask
        prompt = Prompt(
            modality=get_contrast(protocol.contrast).prompt_modality,
            voxel_size=tuple(round(float(v), 3) for v in vox),  # type: ignore[arg-type]
            age=subject.age,
            sex=subject.sex,
            field_strength=float(field_strength),
            vendor=protocol.vendor,
            tr_ms=protocol.tr_ms,
            te_ms=protocol.te_ms,
            ti_ms=protocol.ti_ms,
            flip_angle=protocol.flip_angle,
        )
        key, n = protocol.contrast, 2
        while key in results:
            key, n = f"{protocol.contrast}_{n}", n + 1
        results[key] = SimulatedImage(data.astype(np.float32, copy=False), affine, prompt, mask,
                                      truth.astype(np.float32, copy=False), protocol.contrast, protocol,
                                      image_snr, thickness)
    return results


def simulate_image(phantom, contrast: str | Protocol, rng: np.random.Generator, **kwargs) -> SimulatedImage:
    """One contrast of one simulated subject; keyword arguments as :func:`simulate_subject`."""
    return next(iter(simulate_subject(phantom, [contrast], rng, **kwargs).values()))
