"""Age and sex from ``participants.tsv`` / ``sessions.tsv`` (and ``participants.json`` Levels).

Real datasets spell these files in many ways (see tests/bids/test_participants.py), so reading is
forgiving: UTF-8 with or without BOM, CRLF line ends, ``n/a`` or empty cells, capitalised or
synonym columns (``Age``, ``age_at_first_scan_years``, ``gender``), sex coded M/F/m/f/male/female
or through the JSON sidecar's ``Levels``, fractional ages, a missing file or a missing row.
A value that cannot be understood becomes ``None``; it never stops the run.
Ages from ``sub-X/sub-X_sessions.tsv`` take precedence over ``participants.tsv``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from tumsyn_bids.errors import DataError

_MISSING = {"", "n/a", "na", "nan", "none", "null", "unknown", "-"}
_ID_COLUMNS = ("participant_id", "participant", "subject_id", "subject", "sub")
_SESSION_COLUMNS = ("session_id", "session", "ses")
_SEX_COLUMNS = ("sex", "gender", "biological_sex", "sex_at_birth")
_MALE = {"m", "male", "man", "boy", "masculine"}
_FEMALE = {"f", "female", "woman", "girl", "feminine", "w"}
# Age unit words (participants.json "Units") -> factor to years.
_AGE_UNITS = {"y": 1.0, "year": 1.0, "years": 1.0, "yr": 1.0, "month": 1 / 12, "months": 1 / 12,
              "week": 7 / 365.25, "weeks": 7 / 365.25, "day": 1 / 365.25, "days": 1 / 365.25}


@dataclass(frozen=True)
class Demographics:
    """Age in years (may be fractional) and sex ``"M"``/``"F"``; where each came from."""

    age: float | None = None
    sex: str | None = None
    age_source: str | None = None
    sex_source: str | None = None

    def as_dict(self) -> dict:
        return {"age": self.age, "sex": self.sex, "age_source": self.age_source, "sex_source": self.sex_source}


def read_table(path: Path) -> list[dict[str, str]]:
    """Rows of a BIDS TSV as dicts with stripped keys/values (BOM and CRLF tolerated)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise DataError(f"cannot read table: {exc.strerror or exc}", path=path) from exc
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    rows = [row for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [h.strip().lstrip("\ufeff") for h in rows[0]]
    return [{key: (row[i].strip() if i < len(row) else "") for i, key in enumerate(header)} for row in rows[1:]]


def _column(header: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {h.lower(): h for h in header}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def _age_column(header: list[str]) -> str | None:
    exact = _column(header, ("age", "age_years", "age_at_scan", "age (years)"))
    if exact is not None:
        return exact
    for h in header:  # e.g. age_at_first_scan_years
        if re.match(r"^age([_\s(]|$)", h.lower()):
            return h
    return None


def _sidecar(path: Path) -> dict:
    """The JSON data dictionary next to a TSV, or {} when missing or unreadable."""
    side = path.with_suffix(".json")
    try:
        data = json.loads(side.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def parse_age(value: str | None, units: str | None = None) -> float | None:
    """``"21.5086"`` -> 21.5086, ``"89+"`` -> 89.0, ``"n/a"`` -> None; converts months/days to years."""
    if value is None or value.strip().lower() in _MISSING:
        return None
    match = re.match(r"^\s*([0-9]+(?:[.,][0-9]+)?)", value)
    if match is None:
        return None
    age = float(match.group(1).replace(",", "."))
    factor = _AGE_UNITS.get((units or "years").strip().lower().rstrip("."), 1.0)
    age *= factor
    return age if 0 <= age < 150 else None


def parse_sex(value: str | None, levels: dict | None = None) -> str | None:
    """Map a sex/gender cell to ``"M"``/``"F"`` (via the sidecar's Levels when it codes them)."""
    if value is None or value.strip().lower() in _MISSING:
        return None
    text = value.strip()
    if levels:
        for code, meaning in levels.items():
            if str(code).strip().lower() == text.lower():
                desc = meaning.get("Description", meaning.get("LongName", "")) if isinstance(meaning, dict) else meaning
                decoded = _sex_word(str(desc))
                if decoded is not None:
                    return decoded
    return _sex_word(text)


def _sex_word(text: str) -> str | None:
    low = text.strip().lower()
    if low in _MALE:
        return "M"
    if low in _FEMALE:
        return "F"
    first = re.split(r"[\s,;(]", low, maxsplit=1)[0]
    if first in _MALE:
        return "M"
    if first in _FEMALE:
        return "F"
    return None


def _strip(label: str, prefix: str) -> str:
    label = label.strip()
    return label[len(prefix):] if label.startswith(prefix) else label


def _units(sidecar: dict, column: str | None) -> str | None:
    entry = sidecar.get(column) if column else None
    return entry.get("Units") if isinstance(entry, dict) else None


def _levels(sidecar: dict, column: str | None) -> dict | None:
    entry = sidecar.get(column) if column else None
    levels = entry.get("Levels") if isinstance(entry, dict) else None
    return levels if isinstance(levels, dict) else None


def read_participants(bids_dir: Path) -> dict[str, Demographics]:
    """Demographics per participant label (no ``sub-``) from ``participants.tsv``; {} when absent."""
    return _read_demographics(Path(bids_dir) / "participants.tsv", _ID_COLUMNS, "sub-")


def read_sessions(bids_dir: Path, subject: str) -> dict[str, Demographics]:
    """Per-session demographics from ``sub-X/sub-X_sessions.tsv``; {} when absent."""
    path = Path(bids_dir) / f"sub-{subject}" / f"sub-{subject}_sessions.tsv"
    return _read_demographics(path, _SESSION_COLUMNS, "ses-")


def _read_demographics(path: Path, key_columns, prefix: str) -> dict[str, Demographics]:
    """Age and sex per row label (``prefix`` stripped) of a participants/sessions table."""
    if not path.is_file():
        return {}
    rows = read_table(path)
    if not rows:
        return {}
    header = list(rows[0])
    key_col = _column(header, key_columns) or header[0]
    age_col, sex_col = _age_column(header), _column(header, _SEX_COLUMNS)
    sidecar = _sidecar(path)
    units, levels = _units(sidecar, age_col), _levels(sidecar, sex_col)
    out: dict[str, Demographics] = {}
    for row in rows:
        label = _strip(row.get(key_col, ""), prefix)
        if not label:
            continue
        age = parse_age(row.get(age_col), units) if age_col else None
        sex = parse_sex(row.get(sex_col), levels) if sex_col else None
        out[label] = Demographics(
            age=age,
            sex=sex,
            age_source=path.name if age is not None else None,
            sex_source=path.name if sex is not None else None,
        )
    return out


def demographics_for(
    participants: dict[str, Demographics], sessions: dict[str, Demographics], subject: str, session: str | None
) -> Demographics:
    """Merge: a session's own age (and sex) override the participant's row."""
    base = participants.get(subject, Demographics())
    ses = sessions.get(session) if session is not None else None
    if ses is None:
        return base
    return Demographics(
        age=ses.age if ses.age is not None else base.age,
        sex=ses.sex if ses.sex is not None else base.sex,
        age_source=ses.age_source if ses.age is not None else base.age_source,
        sex_source=ses.sex_source if ses.sex is not None else base.sex_source,
    )
