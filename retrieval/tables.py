"""Tables written by the commands: CSV, TSV, JSONL or Parquet by the file's suffix.

A file is written beside its destination and renamed over it when complete, so a failure or a
kill leaves either the old file or the whole new one, never half of one; what a killed writer
left beside it is removed by the next write of that file. Without a path, CSV
goes to stdout. Booleans are ``true``/``false`` in CSV and TSV, as in JSON; nested values are
JSON text there; a missing value is an empty cell (null in JSONL and Parquet).
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from .errors import TwinError

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def table_format(path: Path | None, allowed: Iterable[str] = ("csv", "tsv", "jsonl", "parquet")) -> str:
    """The format a path's suffix names (stdout: CSV); an unknown suffix is an error."""
    if path is None:
        return "csv"
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt not in allowed:
        names = ", ".join(s for s, f in SUFFIXES.items() if f in allowed)
        raise TwinError(f"{path}: unknown output suffix {path.suffix or '(none)'!r}; use one of {names}")
    return fmt


class TableWriter:
    """Writes rows (dicts over ``columns``) to ``path`` in the format of its suffix.

    ``types`` (Parquet only) maps a column to ``str``, ``int``, ``float`` or ``bool``; other
    columns are text, and a value that is not of its column's type is written as JSON text.
    Use as a context manager: the file appears at ``path`` only when the block ends cleanly.
    """

    def __init__(self, path: Path | None, columns: list[str], types: dict[str, type] | None = None,
                 batch: int = 65_536) -> None:
        self.path, self.columns, self.types, self.batch = path, columns, types or {}, batch
        self.format = table_format(path)
        self._rows: list[dict] = []

    def __enter__(self) -> TableWriter:
        self._tmp = None
        if self.path is None:
            self._file = sys.stdout
        else:
            _remove_leftovers(self.path)
            self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            self._file = None if self.format == "parquet" else open(self._tmp, "w", newline="", encoding="utf-8")
        if self.format in ("csv", "tsv"):
            self._csv = csv.writer(self._file, delimiter="\t" if self.format == "tsv" else ",")
            self._csv.writerow(self.columns)
        self._parquet = None
        return self

    def write(self, row: dict) -> None:
        """One row; missing columns are empty."""
        if self.format == "jsonl":
            self._file.write(json.dumps({c: row.get(c) for c in self.columns}, ensure_ascii=False) + "\n")
        elif self.format == "parquet":
            self._rows.append(row)
            if len(self._rows) >= self.batch:
                self._flush_parquet()
        else:
            self._csv.writerow([_cell(row.get(c)) for c in self.columns])

    def __exit__(self, kind: type | None, *_: object) -> None:
        try:
            if kind is None and self.format == "parquet":
                self._flush_parquet(last=True)
            if self._parquet is not None:
                self._parquet.close()
            if self._tmp is not None and self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
            if self._tmp is not None and kind is None:
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp is not None and self._tmp.exists():
                self._tmp.unlink()

    def _flush_parquet(self, last: bool = False) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows and not (last and self._parquet is None):
            return
        schema = pa.schema([(c, _arrow_type(self.types.get(c, str))) for c in self.columns])
        data = {c: [_typed(r.get(c), self.types.get(c, str)) for r in self._rows] for c in self.columns}
        table = pa.Table.from_pydict(data, schema=schema)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._tmp, schema)
        self._parquet.write_table(table)
        self._rows = []


def _remove_leftovers(path: Path) -> None:
    """Delete what a killed writer of ``path`` left beside it (a temporary file whose process is gone)."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = leftover.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def column_type(seen: set[type]) -> type:
    """The Parquet type for a column whose values had these Python types (None ignored)."""
    seen = seen - {type(None)}
    if seen in ({bool}, {int}, {str}, {float}):
        return next(iter(seen))
    if seen == {int, float}:
        return float
    return str


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool | dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def _typed(value: object, kind: type) -> object:
    if value is None:
        return None
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is not str and type(value) is kind:
        return value
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _arrow_type(kind: type):  # noqa: ANN202 - pyarrow DataType
    import pyarrow as pa

    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64()}.get(kind, pa.string())
