"""Other images of a source's session, found next to it on disk (same sub/ses anat folder)."""

from __future__ import annotations

from pathlib import Path

from tumsyn_bids.bids.derivatives import parse_entities
from tumsyn_bids.contrasts import get_contrast


def session_images(source: str | Path, contrast: str) -> list[Path]:
    """Raw images of ``contrast`` in the source's anat folder (same sub/ses), best first.

    Order: same ``run`` as the source first, then by run number and name. Contrast-enhanced
    T1w images (``ce-``) count only for T1CE and never for T1w.
    """
    source = Path(source)
    src_entities, _, _ = parse_entities(source)
    wanted = get_contrast(contrast)
    suffixes = set(wanted.source_suffixes) or ({"T1w"} if contrast == "T1CE" else set())
    found = []
    for path in source.parent.iterdir():
        if not (path.name.endswith(".nii.gz") or path.name.endswith(".nii")) or path == source:
            continue
        try:
            entities, suffix, _ = parse_entities(path)
        except ValueError:
            continue
        if suffix not in suffixes or entities.get("sub") != src_entities.get("sub"):
            continue
        if entities.get("ses") != src_entities.get("ses"):
            continue
        if ("ce" in entities) != (contrast == "T1CE"):
            continue
        found.append((entities.get("run") != src_entities.get("run"), _run(entities), path.name, path))
    return [item[-1] for item in sorted(found)]


def _run(entities: dict[str, str]) -> int:
    try:
        return int(entities.get("run", 0))
    except ValueError:
        return 0
