"""Duplicate groups to look at on the review page: read from a ``twin groups`` output file, or
computed from the index's own items.

A groups file has one row per item (id, group, representative, score, keep, ...); only rows in a
group are kept here. The members' texts and payloads are read from the index when a page of
groups is shown, so a member the index lacks is shown as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..corpus import Record, Row, read_records
from ..errors import InputError, TwinError


@dataclass(frozen=True)
class Member:
    """One item of a group and its cosine to the group's representative."""

    id: str
    score: float
    keep: bool


@dataclass
class Group:
    """A group of near-duplicates: its number, its representative's id, its members (the
    representative first)."""

    number: int
    representative: str
    members: list[Member]


class GroupBook:
    """The groups the page shows, in the order of their numbers, and where they came from."""

    def __init__(self, groups: list[Group], source: str) -> None:
        self.groups, self.source = groups, source

    def __len__(self) -> int:
        return len(self.groups)

    @classmethod
    def read(cls, path: str | Path) -> GroupBook:
        """The groups of a ``twin groups`` output file (CSV, TSV, JSONL or Parquet); InputError
        naming the line of a row that is not one of its rows."""
        path = Path(path)
        found: dict[int, list[tuple[str, str, float, bool]]] = {}
        for record in read_records(path):
            missing = [c for c in ("id", "group", "representative", "score", "keep") if c not in record.names]
            if missing:
                raise InputError(path, record.names_line, f"no column {missing[0]!r}: not a `twin groups` output "
                                 f"file (columns are: {', '.join(record.names)})")
            row = _group_row(path, record)
            if row is not None:
                found.setdefault(row[0], []).append(row[1:])
        return cls([_group(number, rows) for number, rows in sorted(found.items())], f"read from {path.name}")

    @classmethod
    def of_grouping(cls, grouping, source: str) -> GroupBook:  # noqa: ANN001 - groups.Grouping
        """The groups of a ``Grouper`` result."""
        ids = grouping.units.ids
        found: dict[int, list[tuple[str, str, float, bool]]] = {}
        for n, number in enumerate(grouping.group.tolist()):
            if number > 0:
                found.setdefault(number, []).append((ids[n], ids[grouping.representative[n]],
                                                     round(float(grouping.score[n]), 6), bool(grouping.keep[n])))
        return cls([_group(number, rows) for number, rows in sorted(found.items())], source)


def _group(number: int, rows: list[tuple[str, str, float, bool]]) -> Group:
    representative = rows[0][1]
    members = sorted((Member(i, s, k) for i, _, s, k in rows), key=lambda m: (m.id != representative, -m.score))
    return Group(number, representative, members)


def _group_row(path: Path, record: Record) -> tuple[int, str, str, float, bool] | None:
    """(group, id, representative, score, keep) of a row in a group; None for a row in none."""
    values = record.values
    group = _cell(values.get("group"))
    if group == "":
        return None
    try:
        number, score = int(float(group)), float(_cell(values.get("score")))
    except ValueError:
        raise InputError(path, record.line, f"group {group!r} or score {values.get('score')!r} is not a "
                         "number") from None
    item_id, representative = _cell(values.get("id")), _cell(values.get("representative"))
    if not item_id or not representative:
        raise InputError(path, record.line, "a row in a group without its id or representative")
    return number, item_id, representative, score, _cell(values.get("keep")).lower() in ("true", "1")


def _cell(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, bool) else str(value)


def index_rows(store) -> list[Row]:  # noqa: ANN001 - VectorStore | ShardedStore
    """The index's items as corpus rows, in the order written (what ``GroupBook`` computes groups of)."""
    rows = [Row(r.id, r.text or r.id, r.payload) for r in store.scan()]
    if not rows:
        raise TwinError("the index is empty: there are no groups to compute")
    return rows
