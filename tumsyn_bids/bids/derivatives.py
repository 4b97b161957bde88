"""BIDS-Derivatives naming, sidecars, dataset_description.json, .bidsignore and atomic writes.

Pure file handling: no torch, no nipype. :func:`output_paths` is the one place that lists every
file of a planned output. Names follow the BIDS-Derivatives conventions: the output keeps the
source's ``sub``/``ses``/``run`` entities, drops entities that describe the source acquisition
(``acq``, ``ce``, ``rec``, ``echo``, ...), adds the target contrast's own entities and ``desc-``
label, and takes the target's suffix. Every file is written
to a temporary name in its destination directory and moved into place with :func:`os.replace`,
so a killed run never leaves a half-written file and concurrent writers never interleave.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tumsyn_bids import __version__
from tumsyn_bids.atomic import atomic_write, atomic_write_text
from tumsyn_bids.contrasts import get_contrast

LOGGER = logging.getLogger("tumsyn.derivatives")

PIPELINE_NAME = "tumsyn"
BIDS_VERSION = "1.10.0"
CODE_URL = "https://github.com/tumsyn/tumsyn-bids"

# BIDS entity order (bids-specification schema, objects/entities order), as far as anat needs it.
ENTITY_ORDER: tuple[str, ...] = (
    "sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc", "stain", "rec",
    "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space", "split",
    "recording", "chunk", "seg", "res", "den", "label", "from", "to", "mode", "desc",
)
# Entities of the source that survive into a synthetic image's name.
KEPT_ENTITIES: frozenset[str] = frozenset({"sub", "ses", "run"})

# No trailing "/": the validator needs that.
BIDSIGNORE_LINES: tuple[str, ...] = ("*.html", "logs", "sub-*/log", "sub-*/figures", "group_*")

_ENTITY_RE = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9]+)$")


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
def parse_entities(filename: str | Path) -> tuple[dict[str, str], str, str]:
    """Split a BIDS file name into ``(entities, suffix, extension)``."""
    name = Path(filename).name
    stem, dot, ext = name.partition(".")
    parts = stem.split("_")
    if len(parts) < 2:
        raise ValueError(f"not a BIDS file name: {name}")
    entities: dict[str, str] = {}
    for part in parts[:-1]:
        match = _ENTITY_RE.match(part)
        if match is None:
            raise ValueError(f"not a BIDS file name: {name} (bad entity {part!r})")
        entities[match[1]] = match[2]
    if "sub" not in entities:
        raise ValueError(f"not a BIDS file name: {name} (no sub- entity)")
    return entities, parts[-1], (dot + ext if dot else "")


def build_name(entities: Mapping[str, str], suffix: str, extension: str) -> str:
    """Join entities (in BIDS order) with the suffix and extension."""
    order = {key: i for i, key in enumerate(ENTITY_ORDER)}
    keys = sorted(entities, key=lambda k: (order.get(k, len(order)), k))
    parts = [f"{k}-{entities[k]}" for k in keys if entities[k] not in (None, "")]
    return "_".join([*parts, suffix]) + extension


def anat_dir(entities: Mapping[str, str]) -> Path:
    """``sub-X[/ses-Y]/anat`` for the given entities."""
    path = Path(f"sub-{entities['sub']}")
    if entities.get("ses"):
        path /= f"ses-{entities['ses']}"
    return path / "anat"


def _base_entities(source: str | Path) -> dict[str, str]:
    entities, _, _ = parse_entities(source)
    return {k: v for k, v in entities.items() if k in KEPT_ENTITIES}


def dataset_relpath(path: str | Path, root: str | Path) -> str:
    """``path`` relative to the dataset ``root``, taken from the path in the dataset, not a link's target.

    In a datalad/git-annex dataset every image is a symlink into ``.git/annex/objects/``; names,
    entities and ``Sources`` must come from the link itself. Symlinks are resolved only when the
    path does not lie under ``root`` as written (e.g. ``root`` reached through a symlinked folder).
    """
    absolute, base = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        pass
    try:  # root (or a folder above the file) given through a symlink: resolve the folders only
        return (Path(os.path.realpath(absolute.parent)) / absolute.name).relative_to(
            Path(os.path.realpath(base))).as_posix()
    except ValueError:
        return absolute.name


def synthetic_relpath(source: str | Path, target: str, *, space: str | None = None,
                      res: str | None = None, ext: str = ".nii.gz") -> Path:
    """Relative path of the synthetic ``target`` image derived from the raw ``source`` file."""
    contrast = get_contrast(target)
    entities = _base_entities(source)
    entities.update(contrast.entities)
    if space:
        entities["space"] = space
    if res:
        entities["res"] = res
    entities["desc"] = contrast.desc
    return anat_dir(entities) / build_name(entities, contrast.bids_suffix, ext)


# Tissue-parameter maps (``--save-maps``): engine map name -> (BIDS quantitative-map suffix, Units).
# The engine's GdR1 (T1 shortening by gadolinium) and Susceptibility (an SWI weight, not chi in
# ppm) have no BIDS suffix that means what they are: they are not written.
TISSUE_MAPS: dict[str, tuple[str, str]] = {
    "T1": ("T1map", "ms"),
    "T2": ("T2map", "ms"),
    "T2star": ("T2starmap", "ms"),
    "PD": ("PDmap", "arbitrary (CSF = 1)"),
}
MAP_SUFFIXES: frozenset[str] = frozenset(suffix for suffix, _ in TISSUE_MAPS.values())


def map_desc(target: str) -> str:
    """``desc`` label of the tissue maps predicted with ``target``: ``tumsyn<Target>`` (e.g. ``tumsynT2w``).

    Always carries the target, so that the outputs of several targets of one session never share a
    name and a name never depends on which other targets a run asked for.
    """
    return "tumsyn" + re.sub(r"[^a-zA-Z0-9]", "", get_contrast(target).name)


def map_relpath(source: str | Path, target: str, tissue_map: str, ext: str = ".nii.gz") -> Path:
    """Relative path of tissue map ``tissue_map`` (a key of TISSUE_MAPS) predicted for ``target`` from ``source``.

    Same entities as the synthetic image, ``desc-tumsyn<Target>`` and the BIDS map suffix, e.g.
    ``sub-01/anat/sub-01_desc-tumsynT2w_T1map.nii.gz``.
    """
    if tissue_map not in TISSUE_MAPS:
        raise ValueError(f"no BIDS name for tissue map {tissue_map!r}; written: {', '.join(TISSUE_MAPS)}")
    entities = _base_entities(source)
    entities.update(get_contrast(target).entities)
    entities["desc"] = map_desc(target)
    return anat_dir(entities) / build_name(entities, TISSUE_MAPS[tissue_map][0], ext)


def mask_desc(source: str | Path) -> str:
    """``desc`` label of the brain mask of ``source``: ``brain`` for a T1w, ``brain<Suffix>`` else.

    The suffix keeps masks of two different source contrasts of one session apart.
    """
    _, suffix, _ = parse_entities(source)
    return "brain" if suffix == "T1w" else f"brain{re.sub(r'[^a-zA-Z0-9]', '', suffix)}"


def mask_relpath(source: str | Path, ext: str = ".nii.gz") -> Path:
    """Relative path of the brain mask computed on ``source`` (in the source's grid)."""
    entities = _base_entities(source)
    entities["desc"] = mask_desc(source)
    return anat_dir(entities) / build_name(entities, "mask", ext)


def xfm_relpath(source: str | Path, template: str, ext: str = ".h5") -> Path:
    """Relative path of the source-to-template transform (sMRIPrep convention)."""
    _, suffix, _ = parse_entities(source)
    entities = _base_entities(source)
    entities.update({"from": suffix, "to": template, "mode": "image"})
    return anat_dir(entities) / build_name(entities, "xfm", ext)


def sidecar_path(image: str | Path) -> Path:
    """The JSON sidecar next to a NIfTI file."""
    image = Path(image)
    name = image.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return image.with_name(name[: -len(ext)] + ".json")
    return image.with_suffix(".json")


def figure_relpath(source: str | Path, target: str, kind: str) -> Path:
    """Relative path of a report figure: ``sub-X/figures/<name>_<kind>.png``."""
    synth = synthetic_relpath(source, target)
    stem = synth.name.split(".")[0]
    return Path(synth.parts[0]) / "figures" / f"{stem}_{kind}.png"


def reportlet_relpath(image_relpath: str | Path, kind: str) -> Path:
    """``sub-X/figures/<image stem>_<kind>.svg`` (``mask``: ``<mask stem>.svg``, shared per source)."""
    image_relpath = Path(image_relpath)
    stem = image_relpath.name.split(".")[0]
    name = f"{stem}.svg" if kind == "mask" else f"{stem}_{kind}.svg"
    return Path(image_relpath.parts[0]) / "figures" / name


def template_spaces(output_spaces: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """The requested standard spaces of ``--output-spaces`` (``T1w`` = native, always written)."""
    return tuple(s for s in (output_spaces or ()) if not s.startswith("T1w"))


def split_space(space: str) -> tuple[str, str | None]:
    """``MNI152NLin2009cAsym:res-2`` -> ``("MNI152NLin2009cAsym", "2")``; no modifier -> ``(name, None)``."""
    name, _, spec = space.partition(":")
    return name, (spec[len("res-"):] if spec.startswith("res-") else None)


@dataclass(frozen=True)
class OutputPaths:
    """Every file one planned output writes, relative to out_dir (from :func:`output_paths`).

    The runner's no-op check, the writers (``anat/outputs.py``) and the reports all read their
    paths from here, so a rerun finds exactly what the last run wrote.
    """

    image: Path  # the synthetic image (its sidecar: sidecar_path(image))
    mask: Path  # the brain mask of the source (shared by the source's targets)
    maps: dict[str, Path]  # TISSUE_MAPS name -> map image (written with --save-maps)
    templates: dict[str, Path]  # --output-spaces entry (e.g. "MNI152NLin2009cAsym:res-2") -> image copy
    xfms: dict[str, Path]  # --output-spaces entry -> source-to-template transform
    figures: dict[str, Path]  # PNG figures: "synth", "qc" (with an acquired target)
    reportlets: dict[str, Path]  # SVG reportlets: "mask", "source", "acquired", "maps"

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.image)

    @property
    def mask_sidecar(self) -> Path:
        return sidecar_path(self.mask)

    def recorded(self, save_maps: bool) -> list[Path]:
        """Images whose sidecar records prompt, model and weights (the no-op check compares them)."""
        return [self.image, *(self.maps.values() if save_maps else ())]


def output_paths(source: str | Path, target: str, *, template_spaces: tuple[str, ...] | list[str] = ()) -> OutputPaths:
    """The relative paths of every file written for ``target`` synthesized from the raw ``source``.

    ``source`` is the source image's path relative to the BIDS root; ``template_spaces`` the
    requested standard spaces (see :func:`template_spaces`).
    """
    image = synthetic_relpath(source, target)
    mask = mask_relpath(source)
    templates: dict[str, Path] = {}
    xfms: dict[str, Path] = {}
    for space in template_spaces:
        name, res = split_space(space)
        templates[space] = synthetic_relpath(source, target, space=name, res=res)
        xfms[space] = xfm_relpath(source, name)
    return OutputPaths(
        image=image,
        mask=mask,
        maps={name: map_relpath(source, target, name) for name in TISSUE_MAPS},
        templates=templates,
        xfms=xfms,
        figures={kind: figure_relpath(source, target, kind) for kind in ("synth", "qc")},
        reportlets={"mask": reportlet_relpath(mask, "mask"),
                    **{kind: reportlet_relpath(image, kind) for kind in ("source", "acquired", "maps")}},
    )


# A shared top-level file (dataset_description.json, .bidsignore) is written in milliseconds: a
# temporary of one older than this is a leftover, not another run's write in progress.
STALE_SHARED_TEMPORARY_S = 600.0


def remove_stale_temporaries(out_dir: Path, subjects, *, now: float | None = None) -> list[Path]:
    """Delete temporary files that a killed run left (atomic-write leftovers).

    Under ``sub-X/`` and ``.sub-X.html.*`` for this run's participants (no other run writes them),
    and other ``.*.tmp*`` files at the top of out_dir once older than
    :data:`STALE_SHARED_TEMPORARY_S` (a concurrent run may be writing a fresh one).
    """
    out_dir = Path(out_dir)
    subjects = list(subjects)
    now = time.time() if now is None else now
    removed = []
    for subject in subjects:
        for path in (out_dir / f"sub-{subject}").rglob(".*.tmp*"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    own = tuple(f".sub-{subject}.html." for subject in subjects)
    for path in out_dir.glob(".*.tmp*"):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            old = now - path.stat().st_mtime > STALE_SHARED_TEMPORARY_S
        except OSError:
            continue
        if path.name.startswith(own) or old:
            path.unlink(missing_ok=True)
            removed.append(path)
    for path in removed:
        LOGGER.warning("removed a partial file left by an interrupted run: %s", path)
    return removed


def raw_uri(relpath: str | Path) -> str:
    """BIDS URI of a file of the raw dataset (needs ``DatasetLinks.raw``)."""
    return f"bids:raw:{Path(relpath).as_posix()}"


def local_uri(relpath: str | Path) -> str:
    """BIDS URI of a file of this derivative dataset."""
    return f"bids::{Path(relpath).as_posix()}"


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


def atomic_write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_save_nifti(img: Any, path: str | Path) -> Path:
    """Save a nibabel image atomically."""
    return atomic_write(path, lambda tmp: img.to_filename(str(tmp)))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: str | Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or ``None`` when missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------------------------
# Sidecars
# --------------------------------------------------------------------------------------------
SOURCE_ACQUISITION_KEYS: tuple[str, ...] = (
    "RepetitionTime", "RepetitionTimeExcitation", "EchoTime", "InversionTime", "FlipAngle",
    "MagneticFieldStrength", "Manufacturer", "ManufacturersModelName", "PulseSequenceType",
    "ScanningSequence", "SequenceVariant", "MRAcquisitionType", "SeriesDescription",
)


def source_acquisition(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The source's acquisition parameters, to be nested (never top level) in the sidecar."""
    metadata = metadata or {}
    return {key: metadata[key] for key in SOURCE_ACQUISITION_KEYS if metadata.get(key) is not None}


def synthetic_sidecar(
    *,
    target: str,
    source_relpath: str | Path,
    source_suffix: str,
    mask_relpath: str | Path | None,
    prompt: str,
    conditioning: Mapping[str, Any],
    model_name: str,
    weights_sha256: str,
    device: str,
    voxel_size: tuple[float, float, float] | list[float],
    skull_strip_method: str,
    masked_output: bool,
    source_metadata: Mapping[str, Any] | None = None,
    seconds: float | None = None,
    qc: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    further_contrasts: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """The JSON sidecar of a synthetic image (what it is, its sources, prompt, model, device).

    ``further_contrasts``: contrasts of the further sources that informed it (multi-source synthesis).
    """
    contrast = get_contrast(target)
    sources = [raw_uri(source_relpath)]
    if mask_relpath is not None:
        sources.append(local_uri(mask_relpath))
    sidecar: dict[str, Any] = {
        "SkullStripped": True,
        "Description": (
            f"Synthetic {contrast.prompt_modality} image generated by tumsyn {__version__} from the "
            f"skull-stripped {source_suffix} image"
            + (f", with the {', '.join(further_contrasts)} image{'s' if len(further_contrasts) > 1 else ''} of the "
               "session registered to it as further evidence" if further_contrasts else "")
            + "; not acquired."
        ),
        "Sources": sources,
        "TargetContrast": contrast.name,
        "Prompt": prompt,
        "ModelName": model_name,
        "ModelWeightsSHA256": weights_sha256,
        "SoftwareVersion": __version__,
        "Device": device,
        "VoxelSize": [round(float(v), 4) for v in voxel_size],  # effective (the engine keeps the FOV)
        "SkullStripMethod": skull_strip_method,
        "MaskedOutput": bool(masked_output),
        "SourceAcquisition": source_acquisition(source_metadata),
        "SynthesisConditioning": dict(conditioning),
    }
    if seconds is not None:
        sidecar["SynthesisSeconds"] = round(float(seconds), 2)
    if qc:
        sidecar["QC"] = dict(qc)
    if extra:
        sidecar.update(extra)
    return sidecar


def map_sidecar(
    *,
    tissue_map: str,
    target: str,
    source_relpath: str | Path,
    source_suffix: str,
    mask_relpath: str | Path | None,
    prompt: str,
    model_name: str,
    weights_sha256: str,
    device: str,
    voxel_size: tuple[float, float, float] | list[float],
    masked_output: bool,
) -> dict[str, Any]:
    """The JSON sidecar of a predicted tissue map: a model estimate, labelled as such."""
    units = TISSUE_MAPS[tissue_map][1]
    sources = [raw_uri(source_relpath)]
    if mask_relpath is not None:
        sources.append(local_uri(mask_relpath))
    return {
        "Units": units,
        "Description": (
            f"{tissue_map} map predicted by the {model_name} model (tumsyn {__version__}) from the skull-stripped "
            f"{source_suffix} image while synthesizing {get_contrast(target).name}: a model estimate, not a "
            f"measurement (no quantitative acquisition was fitted)."
        ),
        "ModelEstimate": True,
        "EstimationAlgorithm": f"tumsyn physics-structured network {model_name} (predicted tissue parameters)",
        "Sources": sources,
        "TissueMap": tissue_map,
        "TargetContrast": get_contrast(target).name,
        "Prompt": prompt,
        "ModelName": model_name,
        "ModelWeightsSHA256": weights_sha256,
        "SoftwareVersion": __version__,
        "Device": device,
        "VoxelSize": [round(float(v), 4) for v in voxel_size],
        "SkullStripped": True,
        "MaskedOutput": bool(masked_output),
    }


def mask_sidecar(*, source_relpath: str | Path, method: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON sidecar of a brain mask."""
    sidecar: dict[str, Any] = {
        "Type": "Brain",
        "Description": (f"Brain mask of {Path(source_relpath).name} ({method}); "
                        "used to skull-strip the synthesis input."),
        "Sources": [raw_uri(source_relpath)],
        "SkullStripMethod": method,
        "SoftwareVersion": __version__,
    }
    if extra:
        sidecar.update(extra)
    return sidecar


def is_up_to_date(image: str | Path, *, prompt: str, model_name: str | None, weights_sha256: str,
                  masked_output: bool | None = None, sources: list[str] | None = None) -> bool:
    """True when ``image`` and its sidecar exist and record the same prompt, model and weights.

    ``model_name`` None compares the weights digest only (it identifies the model too). ``sources``
    (BIDS URIs of every planned source, reference first) must equal the sidecar's ``SynthesisSources``
    when it has several; one source matches a sidecar without that entry.
    """
    image = Path(image)
    sidecar = read_json(sidecar_path(image))
    if not image.is_file() or sidecar is None:
        return False
    same = (
        sidecar.get("Prompt") == prompt
        and (model_name is None or sidecar.get("ModelName") == model_name)
        and sidecar.get("ModelWeightsSHA256") == weights_sha256
    )
    if masked_output is not None:
        same = same and sidecar.get("MaskedOutput") == bool(masked_output)
    if sources is not None:
        recorded = [entry.get("Source") for entry in sidecar.get("SynthesisSources") or []]
        same = same and (recorded == list(sources) if len(sources) > 1 else len(recorded) <= 1)
    return bool(same)


# --------------------------------------------------------------------------------------------
# Dataset-level files
# --------------------------------------------------------------------------------------------
def container_info(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """``GeneratedBy[0].Container`` from the environment (Docker tag or Apptainer image)."""
    env = os.environ if environ is None else environ
    sif = env.get("APPTAINER_CONTAINER") or env.get("SINGULARITY_CONTAINER")
    if sif:
        return {"Type": "apptainer", "URI": sif}
    tag = env.get("TUMSYN_CONTAINER_TAG")
    if tag:
        return {"Type": "docker", "Tag": tag}
    if environ is None and Path("/.singularity.d").is_dir():
        return {"Type": "apptainer"}
    return None


def dataset_description(bids_dir: str | Path, raw_description: Mapping[str, Any] | None = None,
                        environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The derivative dataset_description.json content."""
    raw_description = raw_description or {}
    generated_by: dict[str, Any] = {
        "Name": PIPELINE_NAME,
        "Version": __version__,
        "CodeURL": CODE_URL,
        "Description": "Text-guided synthesis of missing MRI contrasts (TUMSyn method).",
    }
    container = container_info(environ)
    if container:
        generated_by["Container"] = container
    desc: dict[str, Any] = {
        "Name": f"tumsyn: synthetic contrasts for {raw_description.get('Name', 'a BIDS dataset')}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "DatasetLinks": {"raw": Path(bids_dir).resolve().as_uri()},
        "HowToAcknowledge": (
            "Cite the TUMSyn paper (Text-guided universal MR image synthesis) and tumsyn-bids; "
            "synthetic images are not acquired data."
        ),
    }
    source: dict[str, Any] = {"URL": Path(bids_dir).resolve().as_uri()}
    doi = raw_description.get("DatasetDOI")
    if doi:
        source["DOI"] = doi
    desc["SourceDatasets"] = [source]
    if raw_description.get("License"):
        desc["License"] = raw_description["License"]
    return desc


def previous_version(out_dir: str | Path) -> str | None:
    """The tumsyn version that wrote ``out_dir`` before, when it differs from this one."""
    existing = read_json(Path(out_dir) / "dataset_description.json")
    if not existing:
        return None
    for entry in existing.get("GeneratedBy") or []:
        if isinstance(entry, dict) and entry.get("Name") == PIPELINE_NAME:
            version = str(entry.get("Version"))
            return None if version == __version__ else version
    return None


def write_dataset_files(out_dir: str | Path, bids_dir: str | Path) -> Path:
    """Write dataset_description.json and .bidsignore atomically; warn on a version change.

    Safe to call from several participant processes at once: each writes a complete file to a
    temporary name and renames it, so readers only ever see one whole version.
    """
    out_dir = Path(out_dir)
    old = previous_version(out_dir)
    if old is not None:
        LOGGER.warning("%s was written by tumsyn %s; this is %s: do not mix versions in one dataset",
                       out_dir, old, __version__)
    raw = read_json(Path(bids_dir) / "dataset_description.json")
    description = json.dumps(dataset_description(bids_dir, raw), indent=2, sort_keys=False, default=_json_default)
    path = _write_if_changed(out_dir / "dataset_description.json", description + "\n")
    _write_if_changed(out_dir / ".bidsignore", "\n".join(BIDSIGNORE_LINES) + "\n")
    return path


def _write_if_changed(path: Path, text: str) -> Path:
    """Atomic write, skipped when the file already holds ``text`` (a rerun leaves mtimes alone)."""
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    return atomic_write_text(path, text)
