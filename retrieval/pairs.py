"""Labelled pairs and triplets for training, calibration and evaluation.

Accepted files (CSV, TSV or JSONL, through ``corpus.read_records``):
- pairs with the Kaggle QQP column names ``question1, question2, is_duplicate`` (other names by
  ``PairColumns``);
- the headerless BiMPM layout ``label <TAB> question1 <TAB> question2 <TAB> id``, recognised by
  itself in a TSV whose first line is not a header;
- triplets ``anchor, positive, negative``.
A pair file may also hold a teacher's P(duplicate) of each pair in a ``teacher_p`` column (the
silver pairs ``twin train --teacher cross-encoder`` writes): it is read into ``Pair.score``.
Labels must be 0 or 1; texts must not be empty. Errors name the file, line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import Record, detect_format, read_records, text_value
from .errors import InputError
from .text import normalize

TRIPLET_COLUMNS = ("anchor", "positive", "negative")
BIMPM = ("label", "question1", "question2", "id")


@dataclass(frozen=True)
class PairColumns:
    """Column names of the two texts and the label."""

    first: str = "question1"
    second: str = "question2"
    label: str = "is_duplicate"
    header: bool = True
    score: str = "teacher_p"  #: where present, a teacher's P(duplicate) of the pair (``Pair.score``)


@dataclass
class Pair:
    """Two texts and whether they are duplicates (1) or not (0)."""

    a: str
    b: str
    label: int
    line: int = 0
    score: float | None = None  #: a teacher's P(duplicate), where a teacher labelled the pair


@dataclass
class Labelled:
    """What a labelled file holds: pairs, or triplets (anchor, positive, negative)."""

    path: Path
    pairs: list[Pair] = field(default_factory=list)
    triplets: list[tuple[str, str, str]] = field(default_factory=list)

    def texts(self) -> set[str]:
        """Every text in the file."""
        out = {t for p in self.pairs for t in (p.a, p.b)}
        return out | {t for trip in self.triplets for t in trip}


def read_labelled(path: str | Path, columns: PairColumns = PairColumns(), fmt: str | None = None) -> Labelled:
    """Read a pair or triplet file completely, checking every row."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt == "text":  # a pair file is never one text a line: read .txt (e.g. MRPC's) as TSV
        fmt = "tsv"
    header = columns.header and not (fmt == "tsv" and _looks_bimpm(path))
    out = Labelled(path)
    layout: tuple[str, ...] | None = None
    for record in read_records(path, header, fmt):
        if layout is None:
            layout = _layout(path, record, columns, header)
        if layout == TRIPLET_COLUMNS:
            out.triplets.append(tuple(text_value(path, record, c) for c in layout))
        else:
            first, second, label = layout
            out.pairs.append(Pair(text_value(path, record, first), text_value(path, record, second),
                                  _label(path, record, label), record.line, _score(path, record, columns.score)))
    if not out.pairs and not out.triplets:
        raise InputError(path, None, "no pairs in the file")
    return out


def _looks_bimpm(path: Path) -> bool:
    """True when the first line of a TSV reads like ``0|1 <TAB> text <TAB> text <TAB> id``."""
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8-sig", "replace").rstrip("\r\n").split("\t")
    return len(first) == 4 and first[0] in ("0", "1")


def _layout(path: Path, record: Record, columns: PairColumns, header: bool) -> tuple[str, ...]:
    names = record.names
    if not header and not columns.header:
        return (columns.first, columns.second, columns.label)
    if not header:  # the BiMPM layout, recognised from the first line
        return ("2", "3", "1")
    if all(c in names for c in TRIPLET_COLUMNS):
        return TRIPLET_COLUMNS
    wanted = (columns.first, columns.second, columns.label)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise InputError(path, record.names_line, f"no column {missing[0]!r}; columns are: {', '.join(names)} "
                         f"(pairs need {', '.join(wanted)}; triplets need {', '.join(TRIPLET_COLUMNS)})")
    return wanted


def _label(path: Path, record: Record, column: str) -> int:
    value = record.values.get(column)
    text = str(value).strip() if value is not None else ""
    if text not in ("0", "1", "0.0", "1.0", "True", "False", "true", "false"):
        where = record.names.index(column) + 1 if column in record.names else None
        raise InputError(path, record.line, f"label {value!r} in column {column!r} is not 0 or 1", where)
    return int(text in ("1", "1.0", "True", "true"))


def _score(path: Path, record: Record, column: str) -> float | None:
    """The teacher's P(duplicate) in ``column``, where the file has that column and the row a value
    (a missing value is an empty cell, or null in JSONL); else None."""
    value = record.values.get(column)
    if column not in record.names or value is None or str(value).strip() == "":
        return None
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        score = -1.0
    if not 0.0 <= score <= 1.0:
        raise InputError(path, record.line, f"teacher score {value!r} in column {column!r} is not a "
                                            f"probability in [0, 1]", record.names.index(column) + 1)
    return score


_ALNUM = re.compile(r"[^0-9a-z]+")


def leakage_key(text: str) -> str:
    """The form two questions must share to count as the same question across files: normalised,
    case-folded, alphanumerics only."""
    return _ALNUM.sub("", normalize(text).casefold())


def drop_leaks(train: list[Pair], held_out: set[str]) -> tuple[list[Pair], int]:
    """Training pairs that share no question with ``held_out`` texts, and how many were dropped."""
    keys = {leakage_key(t) for t in held_out}
    kept = [p for p in train if leakage_key(p.a) not in keys and leakage_key(p.b) not in keys]
    return kept, len(train) - len(kept)
