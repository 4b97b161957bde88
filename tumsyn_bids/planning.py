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

Multi-source synthesis: with ``--sources auto`` (the default, no ``--source``) the chosen image is the
*reference* (it defines the output grid and the brain mask) and the best image (steps 4-5) of every other
contrast of the session except the target's is a further source, registered rigidly to the reference by
the workflow. A session with only one usable contrast besides the target is planned exactly as with one
source. ``--sources single`` or one ``--source`` keeps one source. A repeated ``--source`` picks one image
per option (steps 3-5 within its matches); the reference among them is the first by steps 3-4.

One planned output per session and target. With ``--skip-existing`` a target the session already
has as a raw image is skipped. Prompts come from :mod:`tumsyn_bids.prompts` (``target_prompt``,
``source_prompt``): CLI overrides > default target protocol (at the source's field strength) > the
source's sidecar (field strength, vendor) > sessions.tsv/participants.tsv (age, sex). Whether a
candidate is a complete NIfTI is :func:`tumsyn_bids.bids.validation.check_nifti`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tumsyn_bids.bids.validation import check_nifti
from tumsyn_bids.contrasts import SUFFIX_TO_CONTRAST
from tumsyn_bids.contrasts import contrast_of as _contrast_of_suffix
from tumsyn_bids.errors import DataError
from tumsyn_bids.prompts import (
    PROMPT_SIDECAR_FIELDS,
    Prompt,
    PromptOverrides,
    check_sidecar,
    parse_prompt,
    source_prompt,
    target_prompt,
)

if TYPE_CHECKING:  # pragma: no cover
    from tumsyn_bids.bids.layout import ImageRecord, SessionRecord
    from tumsyn_bids.config import Settings

# Position of each contrast on a T1-to-T2* weighting axis (used for "nearest contrast").
WEIGHTING_AXIS: dict[str, float] = {
    "T1w": 0.0, "T1CE": 0.5, "FLAIR": 1.0, "PDw": 2.0, "T2w": 3.0, "T2starw": 4.0, "SWI": 5.0,
}


@dataclass(frozen=True)
class ExtraSource:
    """A further source of a multi-source output: registered rigidly to the reference by the workflow."""

    path: Path
    contrast: str
    entities: dict
    metadata: dict  # merged sidecar, implausible prompt fields removed
    prompt: Prompt | None  # the image described in the source-prompt template
    voxel_size: tuple[float, float, float] | None = None

    def to_dict(self) -> dict:
        return {"path": str(self.path), "contrast": self.contrast, "entities": dict(self.entities),
                "metadata": dict(self.metadata), "prompt": self.prompt.text() if self.prompt else None,
                "prompt_fields": asdict(self.prompt) if self.prompt else None,
                "voxel_size": list(self.voxel_size) if self.voxel_size else None}

    @classmethod
    def from_dict(cls, data: dict) -> "ExtraSource":
        return cls(path=Path(data["path"]), contrast=data["contrast"], entities=dict(data.get("entities", {})),
                   metadata=dict(data.get("metadata", {})),
                   prompt=_prompt_from(data.get("prompt_fields"), data.get("prompt")),
                   voxel_size=tuple(data["voxel_size"]) if data.get("voxel_size") else None)


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
    extra_sources: tuple[ExtraSource, ...] = ()  # multi-source synthesis: further sources, best first

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
        out["extra_sources"] = [extra.to_dict() for extra in self.extra_sources]
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
        data["extra_sources"] = tuple(ExtraSource.from_dict(e) for e in data.get("extra_sources", ()))
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


# --- source selection ---------------------------------------------------------------------------


def contrast_of(image: "ImageRecord") -> str | None:
    """The contrast an image shows: suffix, with a ``ce-`` T1w counting as T1CE."""
    return _contrast_of_suffix(image.suffix, image.entities)


def _matches(image: "ImageRecord", filters: dict) -> bool:
    for key, wanted in filters.items():
        have = image.suffix if key == "suffix" else image.entities.get(key)
        if key == "suffix" and isinstance(wanted, str):
            if wanted.lower() != image.suffix.lower() and SUFFIX_TO_CONTRAST.get(wanted) != contrast_of(image):
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


def rank_candidates(images: list["ImageRecord"], target: str,
                    source_filters: dict | None = None) -> list["ImageRecord"]:
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


# --- prompts ------------------------------------------------------------------------------------


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



def prompt_overrides(settings: "Settings") -> PromptOverrides:
    """The target prompt fields the command line fixed."""
    return PromptOverrides(field_strength=settings.field_strength, vendor=settings.vendor,
                           tr=settings.tr, te=settings.te, ti=settings.ti, fa=settings.fa)


# --- the plan -----------------------------------------------------------------------------------


def plan_sessions(settings: "Settings", sessions: list["SessionRecord"]) -> Plan:
    """Apply the selection rule to discovered sessions (no pybids needed: testable on records)."""
    from tumsyn_bids.anat.conform import geometry_warnings

    selectors = settings.source.each() if settings.source is not None else ()
    source_filters = selectors[0].filters if len(selectors) == 1 else None
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
            multi_reasons: list[str] = []
            if len(selectors) > 1:  # a repeated --source: one image per option, ranked among themselves
                ranked = _pick_per_selector(record.images, target, selectors, usable, multi_reasons)
            else:
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
                    f"no image matches --source {settings.source}" if selectors and not ranked
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
            if selectors:
                reasons.append("source chosen by --source (" + "; ".join(s.describe() for s in selectors) + ")")
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
            prompt, prompt_reasons, notes = target_prompt(target, chosen.metadata, voxel, demo,
                                                          prompt_overrides(settings))
            if len(selectors) > 1:
                extra_images = [img for img in ranked if img.path != chosen.path]
            elif not selectors and settings.sources == "auto":
                extra_images = _auto_extras(record.images, target, chosen, usable)
            else:
                extra_images = []
            extras = []
            for img in extra_images:
                extra_clean, extra_problems = metadata_problems(img)
                for line in extra_problems:
                    if line not in plan.warnings:
                        plan.warnings.append(line)
                extra_contrast = contrast_of(img) or "T1w"
                extra_voxel = checked[img.path][1]  # type: ignore[index]
                extras.append(ExtraSource(path=img.path, contrast=extra_contrast, entities=dict(img.entities),
                                          metadata=extra_clean,
                                          prompt=source_prompt(extra_contrast, extra_clean, extra_voxel, demo),
                                          voxel_size=tuple(float(v) for v in extra_voxel)))  # type: ignore[arg-type]
            if extras:
                how = "--source repeated" if selectors else "--sources auto"
                multi_reasons.append(
                    f"{len(extras) + 1} sources ({how}): {', '.join(e.path.name for e in extras)} also inform the "
                    f"synthesis, registered rigidly to {chosen.path.name} (which defines the output grid and the "
                    "brain mask); a source whose registration fails its check is dropped at run time")
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
                    reasons=tuple(reasons + multi_reasons + prompt_reasons),
                    notes=tuple(notes) + tuple(problems),
                    source_contrast=contrast,
                    source_prompt=source_prompt(contrast, chosen.metadata, source_voxel, demo),
                    source_voxel_size=source_voxel,
                    extra_sources=tuple(extras),
                )
            )
        if no_source and record.key not in plan.sessions_without_source:
            plan.sessions_without_source.append(record.key)
    return plan


def _pick_per_selector(images, target: str, selectors, usable, reasons: list[str]) -> list["ImageRecord"]:
    """One usable image per ``--source`` option (the best of its matches not picked yet), ranked."""
    picks: list = []
    for selector in selectors:
        for img in rank_candidates(list(images), target, selector.filters):
            if img not in picks and not isinstance(usable(img), str):
                picks.append(img)
                break
        else:
            reasons.append(f"--source {selector.spec}: no usable image matches (not used)")
    return rank_candidates(picks, target)


def _auto_extras(images, target: str, chosen: "ImageRecord", usable) -> list["ImageRecord"]:
    """``--sources auto``: the best usable image of each contrast other than the target's and the reference's."""
    taken = {target, contrast_of(chosen)}
    extras = []
    for img in rank_candidates(list(images), target):
        contrast = contrast_of(img)
        if contrast in taken or isinstance(usable(img), str):
            continue
        taken.add(contrast)
        extras.append(img)
    return extras


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


def format_plan(plan, root: Path | None = None) -> str:
    """Human-readable plan: one block per planned output, then skipped targets."""
    lines: list[str] = []
    for out in plan.outputs:
        where = f"sub-{out.subject}" + (f" ses-{out.session}" if out.session else "")
        path = out.source_path
        if root is not None:
            try:
                path = out.source_path.relative_to(root)
            except ValueError:
                pass
        voxel = "x".join(f"{v:g}" for v in out.voxel_size)
        lines.append(f"{where}  {out.target} <- {path}  voxel {voxel} mm")
        lines.append(f"  prompt:  {out.prompt.text()}")
        if out.extra_sources:
            lines.append(f"  sources: {len(out.extra_sources) + 1} "
                         "(the first defines the output grid and the brain mask)")
            rows = [(out.source_path, out.source_contrast, out.source_prompt, "reference, output grid")]
            rows += [(e.path, e.contrast, e.prompt, "registered rigidly to the reference") for e in out.extra_sources]
            for number, (src, contrast, src_prompt, role) in enumerate(rows, 1):
                lines.append(f"    {number}. {src.name} ({contrast}; {role}): "
                             f"{src_prompt.text() if src_prompt else 'prompt unknown'}")
        lines.append(f"  reasons: {'; '.join(out.reasons)}")
        if out.notes:
            lines.append(f"  notes:   {'; '.join(out.notes)}")
    for key, reasons in plan.skipped.items():
        for reason in reasons:
            lines.append(f"{key}  skipped {reason}")
    for problem in plan.unreadable:
        lines.append(f"unreadable: {problem}")
    if not lines:
        lines.append("nothing planned: no participant/session with anat images matches the selection")
    return "\n".join(lines)
