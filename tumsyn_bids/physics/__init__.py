"""MR physics simulator: phantoms -> tissue draws -> signal equations -> realistic images.

Public API (numpy/scipy only; no torch)::

    from tumsyn_bids.physics import mni_phantom, simulate_image, simulate_subject
    rng = np.random.default_rng(0)
    ph = mni_phantom(voxel_size=2.0)
    img = simulate_image(ph, "T1w", rng, voxel_size=2.0, field_strength=3.0)
    img.data, img.affine, img.prompt.text(), img.mask, img.ground_truth
    pair = simulate_subject(ph, ["T1w", "T2w"], rng)   # same deformed subject

Lower-level pieces: :mod:`.signals` (equations), :mod:`.tissues` (tables, draws),
:mod:`.phantoms`, :mod:`.render`, :mod:`.realism`; :mod:`.bids_writer` writes BIDS datasets.
"""

from tumsyn_bids.physics.phantoms import Phantom, labelmap_phantom, load_labelmap_phantom, mni_phantom, pad_phantom
from tumsyn_bids.physics.realism import (
    SpatialTransform,
    add_rician_noise,
    bias_field,
    deform_phantom,
    random_transform,
    resample_to_voxel_size,
    thick_slice,
)
from tumsyn_bids.physics.render import render, tissue_signals
from tumsyn_bids.physics.signals import PhysicsParameterError, validate_protocol
from tumsyn_bids.physics.simulate import (
    SimulatedImage,
    SubjectDraw,
    draw_subject,
    resolve_protocol,
    simulate_image,
    simulate_subject,
)
from tumsyn_bids.physics.tissues import TissueClass, TissueProperties, draw_tissue_properties

__all__ = [
    "Phantom", "labelmap_phantom", "load_labelmap_phantom", "mni_phantom", "pad_phantom",
    "SpatialTransform", "add_rician_noise", "bias_field", "deform_phantom", "random_transform",
    "resample_to_voxel_size", "thick_slice", "render", "tissue_signals", "PhysicsParameterError",
    "validate_protocol", "SimulatedImage", "SubjectDraw", "draw_subject", "resolve_protocol",
    "simulate_image", "simulate_subject", "TissueClass", "TissueProperties", "draw_tissue_properties",
]
