"""Corpus readers: CSV, TSV, JSONL, Parquet and plain text, streamed row by row.

Every reader yields ``Row(id, text, payload, line)``; every problem is an ``InputError`` naming the
file, the line and, where it applies, the column. Columns other than the id and text columns are
kept as the payload. Ids default to the ``id`` column when there is one, else to the line number
(the row number for Parquet).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

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


@dataclass(frozen=True)
class Columns:
    """Which columns hold the text and the id (None: ``text`` / ``id`` if present), and whether
    a CSV/TSV file has a header row (without one, columns are named 1, 2, 3, ...)."""

    text: str | None = None
    id: str | None = None
    header: bool = True


def detect_format(path: Path) -> str:
    """The format of ``path`` from its suffix; anything unknown is plain text."""
    return _SUFFIXES.get(path.suffix.lower(), "text")


def read_corpus(path: str | Path, columns: Columns = Columns(), fmt: str | None = None) -> Iterator[Row]:
    """Stream the rows of a corpus file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "no such file" if not path.exists() else "not a file")
    fmt = fmt or detect_format(path)
    readers = {"csv": _read_delimited, "tsv": _read_delimited, "jsonl": _read_jsonl,
               "parquet": _read_parquet, "text": _read_text}
    if fmt not in readers:
        raise InputError(path, None, f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, columns, "\t" if fmt == "tsv" else ",")
    return readers[fmt](path, columns)


def _decoded_lines(path: Path) -> Iterator[str]:
    """The file's lines as text; a byte that is not UTF-8 is an error at its line and column."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
                raise InputError(path, number, f"not UTF-8 (byte 0x{raw[exc.start]:02x})", column) from None


def _read_text(path: Path, columns: Columns) -> Iterator[Row]:
    for number, line in enumerate(_decoded_lines(path), 1):
        text = line.strip()
        if text:  # blank lines are skipped; ids stay line numbers
            yield Row(str(number), text, {}, number)


def _read_delimited(path: Path, columns: Columns, delimiter: str) -> Iterator[Row]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(_decoded_lines(path), delimiter=delimiter, quoting=quoting, strict=True)
    names: list[str] | None = None
    start = 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if names is None:
                names = _header(path, record, columns)
                chosen = _resolve(path, line, columns, names)
                if columns.header:
                    continue
            if not record or record == [""]:
                continue  # blank line
            if len(record) != len(names):
                raise InputError(path, line, f"{len(record)} fields, expected {len(names)}")
            yield _row(path, line, dict(zip(names, record)), chosen, names)
    except csv.Error as exc:
        raise InputError(path, reader.line_num, f"malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {exc}") from None


def _header(path: Path, record: list[str], columns: Columns) -> list[str]:
    names = [n.strip() for n in record] if columns.header else [str(i) for i in range(1, len(record) + 1)]
    if columns.header and len(set(names)) != len(names):
        raise InputError(path, 1, f"repeated column names in the header: {', '.join(names)}")
    return names


def _resolve(path: Path, line: int, columns: Columns, names: list[str]) -> tuple[str, str | None]:
    """The (text, id) column names to use for records with these column ``names``."""
    return (_pick(path, line, columns.text, "text", names, required=True),
            _pick(path, line, columns.id, "id", names, required=False))


def _row(path: Path, line: int, values: dict, chosen: tuple[str, str | None], names: list[str]) -> Row:
    """A Row from one record's values, checking the text and id columns."""
    text_col, id_col = chosen
    text = values[text_col]
    if not isinstance(text, str):
        raise InputError(path, line, f"column {text_col!r} is {type(text).__name__}, not text",
                         _column_number(names, text_col))
    if not text.strip():
        raise InputError(path, line, f"empty text in column {text_col!r}", _column_number(names, text_col))
    item_id = str(values[id_col]) if id_col else str(line)
    if id_col and (values[id_col] is None or not item_id.strip()):
        raise InputError(path, line, f"empty id in column {id_col!r}", _column_number(names, id_col))
    payload = {k: v for k, v in values.items() if k not in (text_col, id_col)}
    return Row(item_id, text, payload, line)


def _pick(
    path: Path, line: int, chosen: str | None, default: str, names: list[str], required: bool
) -> str | None:
    """The column to use: the one chosen, else ``default`` if present, else the only column."""
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


def _column_number(names: list[str], name: str) -> int:
    return names.index(name) + 1


def _read_jsonl(path: Path, columns: Columns) -> Iterator[Row]:
    # Objects may differ in keys, so the text key is never guessed from a lone key.
    columns = Columns(text=columns.text or "text", id=columns.id, header=columns.header)
    for number, line in enumerate(_decoded_lines(path), 1):
        if not line.strip():
            continue
        try:
            values = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(path, number, f"malformed JSON: {exc.msg}", exc.colno) from None
        if not isinstance(values, dict):
            raise InputError(path, number, f"expected a JSON object, got {type(values).__name__}", 1)
        names = list(values)
        yield _row(path, number, values, _resolve(path, number, columns, names), names)


def _read_parquet(path: Path, columns: Columns) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(path, None, f"not a readable Parquet file ({exc})") from None
    names = table.schema_arrow.names
    chosen = _resolve(path, 1, columns, names)
    number = 0
    for batch in table.iter_batches(batch_size=10_000):
        for values in batch.to_pylist():
            number += 1
            yield _row(path, number, values, chosen, names)
