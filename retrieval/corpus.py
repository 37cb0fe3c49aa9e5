"""Corpus readers: CSV, TSV, JSONL, Parquet and plain text, streamed record by record.

``read_records`` yields each record as a dict of column values with its line; ``read_corpus``
turns records into ``Row(id, text, payload, line)``. Every problem is an ``InputError`` naming the
file, the line and, where it applies, the column. Columns other than the id and text columns are
kept as the payload. Ids default to the ``id`` column when there is one, else to the line number
(the row number for Parquet). Ids, texts and payloads must meet ``validate``'s rules; Parquet
values that JSON lacks become JSON (timestamps and dates ISO 8601 text, decimals text, NaN null).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import glob
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .validate import id_problem, payload_problem, text_problem

FORMATS = ("csv", "tsv", "jsonl", "parquet", "text")
_SUFFIXES = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
}
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class Row:
    """One item of a corpus: its id, its text, the other columns, and where it was read."""

    id: str
    text: str
    payload: dict = field(default_factory=dict)
    line: int = 0
    numbered: bool = False  #: the id is the line number (the file has no id column)


@dataclass
class Record:
    """One record of a file: its values by column name, its line, and the line naming the columns
    (the header of a CSV/TSV file; the record itself for JSONL)."""

    values: dict
    line: int
    names: list[str]
    names_line: int


@dataclass(frozen=True)
class Columns:
    """Which columns hold the text and the id (None: ``text`` / ``id`` if present), whether a
    CSV/TSV file has a header row (without one, columns are named 1, 2, 3, ...), and a prefix for
    every id."""

    text: str | None = None
    id: str | None = None
    header: bool = True
    id_prefix: str = ""


def detect_format(path: Path) -> str:
    """The format of ``path`` from its suffix; anything unknown is plain text."""
    return _SUFFIXES.get(path.suffix.lower(), "text")


def read_records(path: str | Path, header: bool = True, fmt: str | None = None) -> Iterator[Record]:
    """Stream the records of a CSV, TSV, JSONL, Parquet or plain-text file (a text line is a
    record with one column, ``text``; blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "no such file" if not path.exists() else "not a file")
    fmt = fmt or detect_format(path)
    if fmt in ("csv", "tsv"):
        return _delimited(path, header, "\t" if fmt == "tsv" else ",")
    readers = {"jsonl": _jsonl, "parquet": _parquet, "text": _text}
    if fmt not in readers:
        raise InputError(path, None, f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return readers[fmt](path)


def read_corpus(path: str | Path, columns: Columns = Columns(), fmt: str | None = None,
                label: str = "") -> Iterator[Row]:
    """Stream the rows of a corpus file (``label``: put before a line-number id, after the prefix)."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt == "jsonl":  # objects may differ in keys: the text key is never guessed from a lone key
        columns = Columns(text=columns.text or "text", id=columns.id, header=columns.header,
                          id_prefix=columns.id_prefix)
    chosen: dict[tuple, tuple[str, str | None]] = {}
    for record in read_records(path, columns.header, fmt):
        key = tuple(record.names)
        if key not in chosen:
            chosen[key] = (pick_column(path, record.names_line, columns.text, "text", record.names, True),
                           pick_column(path, record.names_line, columns.id, "id", record.names, False))
        yield _row(path, record, *chosen[key], columns.id_prefix, label)


def corpus_paths(patterns: Sequence[str | Path]) -> list[Path]:
    """The files that ``patterns`` name, in order, each once: a pattern with ``*``, ``?`` or
    ``[`` is a glob (its matches sorted; matching nothing is an error), anything else a path."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        text = str(pattern)
        if glob.has_magic(text) and not Path(text).exists():
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                raise InputError(text, None, "no file matches this pattern")
            found.update(dict.fromkeys(matches))
        else:
            found[Path(text)] = None
    return list(found)


def file_labels(paths: Sequence[Path]) -> list[str]:
    """What goes before the line-number ids of each file: nothing for one file; for several,
    the file's path relative to their common folder and a colon (``2024/a.csv:7``), so that
    line 7 of two files are two items."""
    if len(paths) < 2:
        return [""] * len(paths)
    resolved = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([p.parent for p in resolved]))
    return [f"{p.relative_to(common).as_posix()}:" for p in resolved]


def read_corpora(paths: Sequence[Path], columns: Columns = Columns(), fmt: str | None = None) -> Iterator[Row]:
    """The rows of several corpus files, one after the other (ids: see ``file_labels``)."""
    for path, label in zip(paths, file_labels(paths)):
        yield from read_corpus(path, columns, fmt, label)


def pick_column(
    path: Path, line: int, chosen: str | None, default: str, names: list[str], required: bool
) -> str | None:
    """The column to use: the one chosen, else ``default`` if present, else (when required) the
    only column; an InputError when there is none."""
    if chosen is not None:
        if chosen not in names:
            raise InputError(path, line, f"no column {chosen!r}; columns are: {', '.join(names)}")
        return chosen
    if default in names:
        return default
    if required and len(names) == 1:
        return names[0]
    if required:
        raise InputError(path, line, f"no column {default!r}; columns are: {', '.join(names)} "
                                     f"(name the text column with --text-column)")
    return None


def text_value(path: Path, record: Record, column: str) -> str:
    """The non-empty string in ``column`` of ``record``, or an InputError at its line and column."""
    value = record.values.get(column)
    where = record.names.index(column) + 1 if column in record.names else None
    if not isinstance(value, str):
        kind = "missing" if value is None else type(value).__name__
        raise InputError(path, record.line, f"column {column!r} is {kind}, not text", where)
    problem = text_problem(value)
    if problem == "is empty":
        raise InputError(path, record.line, f"empty text in column {column!r}", where)
    if problem:
        raise InputError(path, record.line, f"text in column {column!r} {problem}", where)
    return value


def _row(path: Path, record: Record, text_col: str, id_col: str | None, id_prefix: str = "", label: str = "") -> Row:
    text = text_value(path, record, text_col)
    if id_col is None:
        item_id = f"{id_prefix}{label}{record.line}"
    else:
        value = record.values[id_col]
        item_id = "" if value is None or not str(value).strip() else f"{id_prefix}{value}"
        if not item_id:
            raise InputError(path, record.line, f"empty id in column {id_col!r}", record.names.index(id_col) + 1)
    problem = id_problem(item_id)
    if problem:
        column = record.names.index(id_col) + 1 if id_col in record.names else None
        raise InputError(path, record.line, f"id {item_id[:60]!r} {problem}", column)
    payload = {}
    for name, value in record.values.items():
        if name not in (text_col, id_col):
            try:
                payload[name] = _jsonable(value)
            except TypeError as exc:
                column = record.names.index(name) + 1 if name in record.names else None
                raise InputError(path, record.line, f"column {name!r} {exc}", column) from None
    problem = payload_problem(payload)
    if problem:
        raise InputError(path, record.line, f"the other columns (the payload) {problem}")
    return Row(item_id, text, payload, record.line, numbered=id_col is None)


def _jsonable(value: object) -> object:
    """A Parquet (or JSON) value as JSON: timestamps, dates and times as ISO 8601 text, durations
    in seconds, decimals as text (exact), NaN as null; lists and maps inside converted alike."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bytes | bytearray):
        raise TypeError("holds binary data, which a JSON payload cannot hold")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if value and all(isinstance(p, tuple) and len(p) == 2 for p in value):  # a Parquet map
            return {str(k): _jsonable(v) for k, v in value}
        return [_jsonable(v) for v in value]
    return value


def _decoded_lines(path: Path) -> Iterator[str]:
    """The file's lines as text; a byte that is not UTF-8 is an error at its line and column."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
                raise InputError(path, number, f"not UTF-8 (byte 0x{raw[exc.start]:02x})", column) from None


def _text(path: Path) -> Iterator[Record]:
    for number, line in enumerate(_decoded_lines(path), 1):
        if line.strip():
            yield Record({"text": line.strip()}, number, ["text"], number)


def _delimited(path: Path, header: bool, delimiter: str) -> Iterator[Record]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(_decoded_lines(path), delimiter=delimiter, quoting=quoting, strict=True)
    names: list[str] | None = None
    names_line = start = 1
    try:
        for fields in reader:
            line, start = start, reader.line_num + 1
            if names is None:
                names, names_line = _header(path, fields, header), line
                if header:
                    continue
            if not fields or fields == [""]:
                continue  # blank line
            if len(fields) != len(names):
                raise InputError(path, line, f"{len(fields)} fields, expected {len(names)}")
            yield Record(dict(zip(names, fields)), line, names, names_line)
    except csv.Error as exc:
        raise InputError(path, reader.line_num, f"malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {exc}") from None


def _header(path: Path, fields: list[str], header: bool) -> list[str]:
    if not header:
        return [str(i) for i in range(1, len(fields) + 1)]
    names = [n.strip() for n in fields]
    if len(set(names)) != len(names):
        raise InputError(path, 1, f"repeated column names in the header: {', '.join(names)}")
    return names


def _jsonl(path: Path) -> Iterator[Record]:
    for number, line in enumerate(_decoded_lines(path), 1):
        if not line.strip():
            continue
        try:
            values = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(path, number, f"malformed JSON: {exc.msg}", exc.colno) from None
        if not isinstance(values, dict):
            raise InputError(path, number, f"expected a JSON object, got {type(values).__name__}", 1)
        yield Record(values, number, list(values), number)


def _parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(path, None, f"not a readable Parquet file ({exc})") from None
    names = table.schema_arrow.names
    number = 0
    for batch in table.iter_batches(batch_size=10_000):
        for values in batch.to_pylist():
            number += 1
            yield Record(values, number, names, 1)
