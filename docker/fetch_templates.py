"""Bake the TemplateFlow files tumsyn-bids uses into the image (run at ``docker build`` time only).

``--enabled 1`` downloads :data:`TEMPLATES` into ``--home`` (needs network at build time).
``--enabled 0`` (offline builds, CI) only unpacks the TemplateFlow skeleton that ships inside the
``templateflow`` wheel, so the home is non-empty and the client never tries to update it; a
template the workflow asks for is then missing and the app must fall back (or be given one with
``-B host_tf:/opt/templateflow:ro``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# (template, query) pairs: exactly what the workflow may request (tumsyn_bids.anat.template and
# .brainmask look for MNI152NLin2009cAsym res-01/res-02 T1w + brain mask), nothing more.
TEMPLATES: tuple[tuple[str, dict[str, object]], ...] = tuple(
    ("MNI152NLin2009cAsym", {"resolution": res, "suffix": suffix, "desc": desc})
    for res in (1, 2)
    for suffix, desc in (("T1w", None), ("mask", "brain"))
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="TEMPLATEFLOW_HOME to populate")
    parser.add_argument("--enabled", choices=("0", "1"), default="1", help="1: download the templates")
    return parser.parse_args(argv)


def fetch(home: Path, enabled: bool) -> list[Path]:
    """Populate ``home`` and return the files fetched (empty when ``enabled`` is false)."""
    home.mkdir(parents=True, exist_ok=True)
    # The client reads its home from the environment when first imported.
    os.environ["TEMPLATEFLOW_HOME"] = str(home)
    os.environ.setdefault("TEMPLATEFLOW_AUTOUPDATE", "0")
    import templateflow.conf  # noqa: PLC0415 (must follow the environment set-up)

    # Unpack the skeleton bundled in the wheel (local=True: no network), keeping existing files.
    templateflow.conf.update(local=True, overwrite=False, silent=True)
    if not enabled:
        return []
    from templateflow import api  # noqa: PLC0415

    fetched: list[Path] = []
    for template, query in TEMPLATES:
        result = api.get(template, raise_empty=True, **query)
        paths = result if isinstance(result, list) else [result]
        fetched.extend(Path(p) for p in paths)
    missing = [p for p in fetched if not p.is_file() or p.stat().st_size == 0]
    if missing:
        raise SystemExit(f"fetch_templates: empty or missing after download: {missing[0]}")
    return fetched


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    files = fetch(args.home, args.enabled == "1")
    for path in files:
        print(f"fetch_templates: {path}")
    print(f"fetch_templates: {len(files)} file(s) in {args.home}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
