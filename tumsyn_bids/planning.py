"""Which image feeds which synthesized contrast, with which prompt: the run's plan.

Source-selection rule (deterministic; the chosen file and the reasons are recorded in the plan):

1. Candidates are the session's raw ``anat`` NIfTIs that pass ``--bids-filter-file``. A ``T1w``
   with a ``ce-`` entity counts as the contrast ``T1CE``; ``PD`` as ``PDw``, ``T2star`` as ``T2starw``.
2. ``--source`` (a suffix such as ``T2w``, an entity string such as ``acq-mprage_T1w``, or a JSON
   object of pybids entity filters) keeps only the matching candidates.
3. Contrast preference: ``T1w`` first; otherwise the contrast nearest to the target on the
   weighting axis ``T1w - T1CE - FLAIR - PDw - T2w - T2starw - SWI`` (ties: the earlier one on
   that axis).
4. Among images of the chosen contrast: the lowest ``run`` (no run counts as 0), then the
   lexicographically first file name.
5. A candidate that is not a readable, complete NIfTI is passed over (the reason is recorded) and
   the next one in this order is used.

One planned output per session and target. With ``--skip-existing`` a target the session already
has as a raw image is skipped. Target prompts follow DESIGN.md section 4: CLI overrides > default
target protocol (at the source's field strength) > the source's sidecar (field strength, vendor) >
sessions.tsv/participants.tsv (age, sex).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tumsyn_bids.contrasts import CONTRASTS
from tumsyn_bids.errors import DataError
from tumsyn_bids.prompts import (
    PROMPT_SIDECAR_FIELDS,
    Prompt,
    acquisition_from_sidecar,
    check_sidecar,
    normalise_vendor,
    parse_prompt,
)
from tumsyn_bids.protocols import default_protocol, nearest_field_strength

if TYPE_CHECKING:  # pragma: no cover
    from tumsyn_bids.bids.layout import ImageRecord, SessionRecord
    from tumsyn_bids.config import Settings

# Position of each contrast on a T1-to-T2* weighting axis (used for "nearest contrast").
WEIGHTING_AXIS: dict[str, float] = {
    "T1w": 0.0, "T1CE": 0.5, "FLAIR": 1.0, "PDw": 2.0, "T2w": 3.0, "T2starw": 4.0, "SWI": 5.0,
}
_SUFFIX_TO_CONTRAST = {"T1w": "T1w", "T2w": "T2w", "FLAIR": "FLAIR", "PDw": "PDw", "PD": "PDw",
                       "T2starw": "T2starw", "T2star": "T2starw", "swi": "SWI", "SWI": "SWI"}


@dataclass(frozen=True)
class PlannedOutput:
    """One image to synthesize."""

    subject: str
    session: str | None
    target: str  # a key of CONTRASTS
    source_path: Path
    source_entities: dict
    source_metadata: dict  # merged sidecar (inheritance principle)
    prompt: Prompt  # describes the image to generate
    voxel_size: tuple[float, float, float]
    demographics: dict
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # metadata normalisation (vendor TR quirks, flip angle...)
    source_contrast: str = "T1w"
    source_prompt: Prompt | None = None  # the source image described in the same template
    source_voxel_size: tuple[float, float, float] | None = None

    @property
    def key(self) -> str:
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "") + f"_{self.target}"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["source_path"] = str(self.source_path)
        out["prompt"] = self.prompt.text()
        out["source_prompt"] = self.source_prompt.text() if self.source_prompt else None
        out["prompt_fields"] = asdict(self.prompt)  # lossless (the text rounds to one decimal)
        out["source_prompt_fields"] = asdict(self.source_prompt) if self.source_prompt else None
        out["reasons"], out["notes"] = list(self.reasons), list(self.notes)
        out["voxel_size"] = list(self.voxel_size)
        out["source_voxel_size"] = list(self.source_voxel_size) if self.source_voxel_size else None
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "PlannedOutput":
        data = dict(data)
        data["source_path"] = Path(data["source_path"])
        data["prompt"] = _prompt_from(data.pop("prompt_fields", None), data["prompt"])
        data["source_prompt"] = _prompt_from(data.pop("source_prompt_fields", None), data.get("source_prompt"))
        data["voxel_size"] = tuple(data["voxel_size"])
        if data.get("source_voxel_size"):
            data["source_voxel_size"] = tuple(data["source_voxel_size"])
        data["reasons"], data["notes"] = tuple(data.get("reasons", ())), tuple(data.get("notes", ()))
        return cls(**data)


def _prompt_from(fields: dict | None, text: str | None) -> Prompt | None:
    if fields:
        fields = dict(fields, voxel_size=tuple(fields["voxel_size"]))
        return Prompt(**fields)
    return parse_prompt(text) if text else None


@dataclass
class Plan:
    """Planned outputs, why sessions/targets were skipped, and sessions with no usable source."""

    outputs: list[PlannedOutput] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # "sub-01_ses-1" -> reasons
    sessions_without_source: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "path: problem" for images passed over
    # sessions whose every candidate source is unusable: "sub-01_ses-1" -> "path: problem" (a failure)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # "path: problem" about metadata used by prompts

    def __len__(self) -> int:
        return len(self.outputs)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(
            {
                "outputs": [o.to_dict() for o in self.outputs],
                "skipped": self.skipped,
                "sessions_without_source": self.sessions_without_source,
                "unreadable": self.unreadable,
                "failed": self.failed,
                "warnings": self.warnings,
            },
            indent=indent,
            default=str,
        )

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        data = json.loads(text)
        return cls(
            outputs=[PlannedOutput.from_dict(o) for o in data["outputs"]],
            skipped={k: list(v) for k, v in data.get("skipped", {}).items()},
            sessions_without_source=list(data.get("sessions_without_source", [])),
            unreadable=list(data.get("unreadable", [])),
            failed=dict(data.get("failed", {})),
            warnings=list(data.get("warnings", [])),
        )

    @property
    def failed_subjects(self) -> dict[str, str]:
        """Participant label -> the first failure message of its sessions."""
        out: dict[str, str] = {}
        for key, message in self.failed.items():
            out.setdefault(key.split("_")[0][len("sub-"):], message)
        return out


# --- image checks -------------------------------------------------------------------------------


# NIfTI datatype codes that are not one grey value per voxel.
_COLOUR_DATATYPES = {128: "RGB24", 2304: "RGBA32"}


def check_nifti(path: Path) -> tuple[tuple[int, ...], tuple[float, float, float]]:
    """Shape and voxel size of a NIfTI that can be synthesized from; DataError (one line) otherwise.

    Checks the header, the data type (grey values: no RGB, no complex), that every byte of the
    image data is present (counted exactly, also for a truncated .nii.gz), and that the image has
    signal (not all NaN, not constant). A dangling symlink (a git-annex/datalad file whose content
    was not fetched) is named as such.
    """
    import nibabel as nb
    import numpy as np

    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise DataError("dangling symlink: the file content is not present (a datalad/git-annex dataset? "
                        f"run `datalad get {path.name}` in its folder)", path=path)
    from tumsyn_bids.anat.conform import check_header_geometry, inspect_geometry

    check_header_geometry(path)  # an impossible qform without a sform: nibabel cannot place the voxels
    raw_zooms = _raw_voxel_sizes(path)
    if raw_zooms is not None and any(not (abs(z) > 0) for z in raw_zooms):  # nibabel would silently use 1 mm
        raise DataError(f"voxel sizes {raw_zooms} in the header are not positive", path=path)
    try:
        img = nb.load(str(path))
        header = img.header
        shape = tuple(int(n) for n in img.shape)
        zooms = tuple(float(z) for z in header.get_zooms()[:3])
        offset = int(getattr(img.dataobj, "offset", header.get_data_offset()))
        dtype = np.dtype(header.get_data_dtype())
        code = int(header["datatype"]) if "datatype" in header else 0
    except Exception as exc:  # nibabel raises many types for a bad header
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if str(path) in detail or str(path.name) in detail or not detail:
            detail = "header cannot be read: truncated or not a NIfTI file"
        raise DataError(f"not a readable NIfTI image ({detail})", path=path) from exc
    if code in _COLOUR_DATATYPES or dtype.fields is not None:
        kind = _COLOUR_DATATYPES.get(code, f"structured {dtype}")
        raise DataError(f"colour image (NIfTI datatype {kind}); tumsyn needs one grey value per voxel "
                        "(an MR magnitude image)", path=path)
    if dtype.kind == "c":
        raise DataError(f"complex-valued image ({dtype.name}); tumsyn needs a magnitude image "
                        "(save abs() of the data, or the scanner's magnitude series)", path=path)
    if dtype.kind not in "biuf":
        raise DataError(f"unsupported image data type {dtype}", path=path)
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise DataError(f"expected a 3D image, got shape {shape}", path=path)
    if len(shape) == 4 and shape[3] != 1:
        raise DataError(f"4D image with {shape[3]} volumes; anat sources must be 3D", path=path)
    if min(shape[:3]) < 2:
        raise DataError(f"image is too small to synthesize from (shape {shape})", path=path)
    if any(not (z > 0) for z in zooms):
        raise DataError(f"voxel sizes {zooms} in the header are not positive", path=path)
    zooms = inspect_geometry(header, path, shape).voxel_sizes  # those of the affine used (README "Geometry")
    n_data = int(np.prod(shape)) * dtype.itemsize
    scan = scan_payload(path, offset, n_data, dtype)
    if scan.available < offset + n_data:
        what = "corrupt compressed data" if scan.corrupt else "truncated"
        raise DataError(f"{what}: {scan.available} of {offset + n_data} bytes of header and image data", path=path)
    if scan.n_finite == 0:
        raise DataError("image has no finite values (every voxel is NaN or infinite)", path=path)
    if scan.minimum == scan.maximum:
        what = "all zeros" if scan.minimum == 0 else f"constant (every finite voxel is {scan.minimum:g})"
        raise DataError(f"image is {what}: no signal to synthesize from", path=path)
    return shape, (round(zooms[0], 4), round(zooms[1], 4), round(zooms[2], 4))


def _raw_voxel_sizes(path: Path) -> tuple[float, float, float] | None:
    """pixdim[1:4] of a NIfTI-1 header as stored (nibabel's loader replaces zeros by 1 with a bare
    console message); None when the header cannot be read this way (nibabel then reports it)."""
    import nibabel as nb

    try:
        with nb.openers.ImageOpener(str(path)) as fh:
            header = nb.Nifti1Header.from_fileobj(fh, check=False)
        if int(header["sizeof_hdr"]) != 348:
            return None
        return tuple(float(z) for z in header["pixdim"][1:4])  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - any failure: leave the diagnosis to nib.load
        return None


@dataclass
class PayloadScan:
    """What :func:`scan_payload` found: bytes present (decompressed) and the finite value range."""

    available: int = 0
    corrupt: bool = False
    n_finite: int = 0
    minimum: float = float("inf")
    maximum: float = float("-inf")


def _decompressed_chunks(path: Path, chunk: int = 1 << 20):
    """The file's bytes (decompressed for .gz, multi-member aware); stops quietly at corruption.

    Yields ``bytes``; a final ``None`` means the compressed stream was corrupt (not just short).
    """
    with open(path, "rb") as fh:
        if not str(path).endswith(".gz"):
            while block := fh.read(chunk):
                yield block
            return
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        while raw := fh.read(chunk):
            while raw:
                try:
                    out = inflater.decompress(raw)
                except zlib.error:
                    yield None
                    return
                if out:
                    yield out
                if inflater.eof:  # another gzip member may follow
                    raw = inflater.unused_data
                    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
                else:
                    raw = b""


def scan_payload(path: Path, offset: int, n_data: int, dtype) -> PayloadScan:
    """Count the bytes of header + data that are present and the range of the finite data values."""
    import numpy as np

    scan = PayloadScan()
    itemsize = dtype.itemsize
    position = 0  # bytes seen so far (header included)
    carry = b""
    end = offset + n_data
    try:
        for block in _decompressed_chunks(path):
            if block is None:
                scan.corrupt = True
                break
            start = position
            position += len(block)
            if position <= offset:
                continue
            block = block[max(0, offset - start): max(0, end - start)]
            data = carry + block
            usable = len(data) - len(data) % itemsize
            carry = data[usable:]
            if usable:
                values = np.frombuffer(data[:usable], dtype=dtype)
                if values.dtype.kind == "f":
                    values = values[np.isfinite(values)]
                if values.size:
                    scan.n_finite += int(values.size)
                    scan.minimum = min(scan.minimum, float(values.min()))
                    scan.maximum = max(scan.maximum, float(values.max()))
            if position >= end:
                break
    except OSError:
        scan.corrupt = True
    scan.available = min(position, end)
    return scan


# --- source selection ---------------------------------------------------------------------------


def contrast_of(image: "ImageRecord") -> str | None:
    """The contrast an image shows: suffix, with a ``ce-`` T1w counting as T1CE."""
    contrast = _SUFFIX_TO_CONTRAST.get(image.suffix)
    if contrast == "T1w" and image.entities.get("ceagent"):
        return "T1CE"
    return contrast


def _matches(image: "ImageRecord", filters: dict) -> bool:
    for key, wanted in filters.items():
        have = image.suffix if key == "suffix" else image.entities.get(key)
        if key == "suffix" and isinstance(wanted, str):
            if wanted.lower() != image.suffix.lower() and _SUFFIX_TO_CONTRAST.get(wanted) != contrast_of(image):
                return False
            continue
        if wanted is None:
            if have is not None:
                return False
        elif wanted == "*":
            if have is None:
                return False
        elif isinstance(wanted, list):
            if str(have) not in {str(w) for w in wanted}:
                return False
        elif str(have) != str(wanted) and not _same_number(have, wanted):
            return False
    return True


def _same_number(a: object, b: object) -> bool:
    try:
        return int(str(a)) == int(str(b))
    except ValueError:
        return False


def rank_candidates(images: list["ImageRecord"], target: str, source_filters: dict | None = None) -> list["ImageRecord"]:
    """Candidates in the order of the selection rule (module docstring)."""
    pool = [img for img in images if contrast_of(img) in WEIGHTING_AXIS]
    if source_filters:
        pool = [img for img in pool if _matches(img, source_filters)]
    goal = WEIGHTING_AXIS[target]

    def key(img: "ImageRecord") -> tuple:
        contrast = contrast_of(img)
        assert contrast is not None
        preferred = 0 if contrast == "T1w" else 1
        distance = abs(WEIGHTING_AXIS[contrast] - goal)
        run = img.entities.get("run")
        try:
            run_number = int(run) if run is not None else 0
        except (TypeError, ValueError):
            run_number = 0
        return (preferred, distance, WEIGHTING_AXIS[contrast], run_number, img.path.name)

    return sorted(pool, key=key)


def _describe_filters(filters: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in filters.items())


# --- prompts ------------------------------------------------------------------------------------


def completed_years(age: float) -> int:
    """Age in completed years, as the README promises (45.5 -> 45, never rounded up)."""
    import math

    return int(math.floor(float(age)))


def sidecar_of(image: Path) -> Path | None:
    """The image's own JSON sidecar, when it has one (metadata may also be inherited)."""
    name = image.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            candidate = image.with_name(name[: -len(ext)] + ".json")
            return candidate if candidate.is_file() else None
    return None


def metadata_problems(image: "ImageRecord") -> tuple[dict, list[str]]:
    """The image's metadata with implausible prompt fields removed, and warnings naming the file.

    A missing sidecar (no prompt field at all) is a warning too: the prompt fields are unknown.
    """
    clean, problems = check_sidecar(dict(image.metadata))
    own = sidecar_of(Path(image.path))
    where = str(own) if own else f"{image.path} (inherited sidecar)"
    lines = [f"{where}: {problem}" for problem in problems]
    if not any(key in image.metadata for key in PROMPT_SIDECAR_FIELDS):
        lines.append(f"{image.path}: no sidecar with acquisition metadata (MagneticFieldStrength, Manufacturer, "
                     "RepetitionTime, EchoTime, ...): those prompt fields are unknown (None in the prompt)")
    return clean, lines



def target_prompt(
    settings: "Settings",
    target: str,
    source: "ImageRecord",
    voxel_size: tuple[float, float, float],
    demographics: dict,
) -> tuple[Prompt, list[str], list[str]]:
    """The prompt describing the image to generate, with the reasons for each field and notes."""
    reasons: list[str] = []
    acquisition = acquisition_from_sidecar(source.metadata)
    field_strength = settings.field_strength if settings.field_strength is not None else acquisition.field_strength
    reasons.append(
        "field strength from --field-strength" if settings.field_strength is not None
        else "field strength from the source sidecar" if field_strength is not None
        else "field strength unknown (no MagneticFieldStrength)"
    )
    vendor = normalise_vendor(settings.vendor) if settings.vendor else acquisition.vendor
    reasons.append(
        "vendor from --vendor" if settings.vendor else "vendor from the source sidecar" if vendor
        else "vendor unknown (no Manufacturer)"
    )
    protocol = default_protocol(target, field_strength)
    overrides = {"tr": settings.tr, "te": settings.te, "ti": settings.ti, "fa": settings.fa}
    used = [name for name, value in overrides.items() if value is not None]
    tr = settings.tr if settings.tr is not None else protocol.tr_ms
    te = settings.te if settings.te is not None else protocol.te_ms
    ti = settings.ti if settings.ti is not None else protocol.ti_ms
    fa = settings.fa if settings.fa is not None else protocol.flip_angle
    bucket = nearest_field_strength(field_strength)
    reasons.append(
        f"TR/TE/TI/FA from the default {bucket:.1f} T {target} protocol"
        + (f" except --{'/--'.join(used)}" if used else "")
    )
    age, sex = demographics.get("age"), demographics.get("sex")
    if age is not None:
        reasons.append(f"age from {demographics.get('age_source')}")
    if sex is not None:
        reasons.append(f"sex from {demographics.get('sex_source')}")
    prompt = Prompt(
        modality=CONTRASTS[target].prompt_modality,
        voxel_size=voxel_size,
        age=None if age is None else completed_years(age),
        sex=sex,
        field_strength=field_strength,
        vendor=vendor,
        tr_ms=tr,
        te_ms=te,
        ti_ms=ti,
        flip_angle=fa,
    )
    return prompt, reasons, list(acquisition.notes)


def source_prompt(source: "ImageRecord", contrast: str, voxel_size: tuple[float, float, float], demographics: dict) -> Prompt:
    """The source image described in the TUMSyn template (all acquisition fields from its sidecar)."""
    acq = acquisition_from_sidecar(source.metadata)
    age = demographics.get("age")
    return Prompt(
        modality=CONTRASTS[contrast].prompt_modality,
        voxel_size=voxel_size,
        age=None if age is None else completed_years(age),
        sex=demographics.get("sex"),
        field_strength=acq.field_strength,
        vendor=acq.vendor,
        tr_ms=acq.tr_ms,
        te_ms=acq.te_ms,
        ti_ms=acq.ti_ms,
        flip_angle=acq.flip_angle,
    )


# --- the plan -----------------------------------------------------------------------------------


def plan_sessions(settings: "Settings", sessions: list["SessionRecord"]) -> Plan:
    """Apply the selection rule to discovered sessions (no pybids needed: testable on records)."""
    from tumsyn_bids.anat.conform import geometry_warnings
    from tumsyn_bids.cli.options import parse_source

    source_filters = parse_source(settings.source)
    plan = Plan()
    checked: dict[Path, tuple[tuple[int, ...], tuple[float, float, float]] | str] = {}

    def usable(img: "ImageRecord"):
        if img.path not in checked:
            try:
                checked[img.path] = check_nifti(img.path)
            except DataError as exc:
                checked[img.path] = str(exc)
                plan.unreadable.append(str(exc))
        return checked[img.path]

    for record in sessions:
        demo = record.demographics.as_dict()
        present = {contrast_of(img) for img in record.images}
        no_source = False
        for target in settings.targets:
            if settings.skip_existing and target in present:
                plan.skipped.setdefault(record.key, []).append(f"{target}: already present (--skip-existing)")
                continue
            ranked = rank_candidates(list(record.images), target, source_filters)
            chosen, info, passed_over, first_problem = None, None, [], None
            for img in ranked:
                result = usable(img)
                if isinstance(result, str):
                    passed_over.append(f"passed over unreadable {img.path.name}")
                    first_problem = first_problem or result
                    continue
                chosen, info = img, result
                break
            if chosen is None or info is None:
                why = (
                    f"no image matches --source {settings.source}" if source_filters and not ranked
                    else "no usable source image" + (" (all candidates unreadable)" if ranked else "")
                )
                plan.skipped.setdefault(record.key, []).append(f"{target}: {why}")
                if first_problem is not None:
                    plan.failed.setdefault(record.key, first_problem)
                no_source = True
                continue
            clean_metadata, problems = metadata_problems(chosen)
            problems = problems + geometry_warnings(chosen.path)  # repaired sform/qform: warned, noted
            for line in problems:
                if line not in plan.warnings:
                    plan.warnings.append(line)
            chosen = replace(chosen, metadata=clean_metadata)
            contrast = contrast_of(chosen) or "T1w"
            reasons = list(passed_over)
            if source_filters:
                reasons.append(f"source chosen by --source ({_describe_filters(source_filters)})")
            elif contrast == "T1w":
                reasons.append("source is T1w (preferred)")
            else:
                reasons.append(f"no T1w; {contrast} is the contrast nearest to {target}")
            same = [img for img in ranked if contrast_of(img) == contrast and img.path != chosen.path]
            if same:
                others = ", ".join(img.path.name for img in same)
                reasons.append(f"{len(same) + 1} {contrast} candidates: lowest run, then first name "
                               f"(not chosen: {others})")
            source_voxel = info[1]
            voxel = settings.voxel_size or source_voxel
            reasons.append("voxel size from --voxel" if settings.voxel_size else "voxel size of the source")
            prompt, prompt_reasons, notes = target_prompt(settings, target, chosen, voxel, demo)
            plan.outputs.append(
                PlannedOutput(
                    subject=record.subject,
                    session=record.session,
                    target=target,
                    source_path=chosen.path,
                    source_entities=dict(chosen.entities),
                    source_metadata=dict(chosen.metadata),
                    prompt=prompt,
                    voxel_size=tuple(float(v) for v in voxel),  # type: ignore[arg-type]
                    demographics=demo,
                    reasons=tuple(reasons + prompt_reasons),
                    notes=tuple(notes) + tuple(problems),
                    source_contrast=contrast,
                    source_prompt=source_prompt(chosen, contrast, source_voxel, demo),
                    source_voxel_size=source_voxel,
                )
            )
        if no_source and record.key not in plan.sessions_without_source:
            plan.sessions_without_source.append(record.key)
    return plan


def build_plan(settings: "Settings", layout=None, *, use_database: bool = True) -> Plan:
    """Discover the selected sessions with pybids and plan every requested target.

    The pybids index is stored at ``settings.database_path`` unless ``use_database`` is False.
    """
    from tumsyn_bids.bids.layout import build_layout, check_participants, discover

    subjects = check_participants(settings.bids_dir, settings.participant_labels)
    if layout is None:
        layout = build_layout(
            settings.bids_dir,
            subjects=settings.participant_labels,
            sessions=settings.session_labels,
            database_path=settings.database_path if use_database else None,
        )
    records = discover(
        settings.bids_dir, layout, subjects=subjects, sessions=settings.session_labels,
        bids_filters=settings.bids_filters,
    )
    return plan_sessions(settings, records)
