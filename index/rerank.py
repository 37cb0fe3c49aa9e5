"""Float16 copies of the vectors a build put in FAISS, memory-mapped for the exact re-rank.

The approximate kinds fetch ``k * rerank`` candidates and re-rank them exactly. Without this
copy, each query read those candidates' vectors from SQLite. With it, their order comes from
float16 vectors in memory-mapped pages. Only the shortlist is then read from SQLite (id, text,
payload and its exact vector), and its scores stay exact.

File ``rerank-<token>.bin``: ``rows x dim`` float16 vectors, then the ``rows`` seqs (int64,
ascending), then ``rows`` again (int64). A build writes it aside, fsyncs it and renames it; the
file never changes after that. Rows written after the build are not in it: their candidates are
re-ranked from SQLite, as every candidate was before. A rebuild writes a new copy. A copy that is
missing or has the wrong size is skipped, with a warning.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path

import numpy as np

RERANK_NAME = re.compile(r"rerank-[0-9a-f]{16}\.bin")


class RerankWriter:
    """Streams a build's rows (ascending seqs) into a new copy file."""

    def __init__(self, folder: Path, dim: int) -> None:
        self.folder, self.dim = Path(folder), dim
        self.name = f"rerank-{secrets.token_hex(8)}.bin"
        self.tmp = self.folder / f".{self.name}.tmp"
        self._file = open(self.tmp, "wb")  # noqa: SIM115 - closed by finish or abandon
        self._seqs: list[np.ndarray] = []
        self.failed: OSError | None = None  # a write the disk refused: the build goes on without a copy

    def add(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        """Append rows; their seqs must be above every seq added before."""
        if self.failed is not None:
            return
        try:
            self._file.write(np.ascontiguousarray(vectors, dtype=np.float16).tobytes())
        except OSError as exc:
            self.failed = exc
            self.abandon()
            return
        self._seqs.append(np.asarray(seqs, dtype=np.int64))

    def finish(self) -> RerankCopy:
        """Write the seqs and the row count, make the file durable under its name, and open it
        (OSError: the disk refused it; nothing is left behind once ``abandon`` ran)."""
        if self.failed is not None:
            raise self.failed
        seqs = np.concatenate(self._seqs) if self._seqs else np.empty(0, np.int64)
        self._file.write(seqs.tobytes())
        self._file.write(np.int64(len(seqs)).tobytes())
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.folder / self.name)
        return RerankCopy(self.folder / self.name, self.dim)

    def abandon(self) -> None:
        """Drop the unfinished file (a failed build)."""
        self._file.close()
        self.tmp.unlink(missing_ok=True)


class RerankCopy:
    """A finished copy, memory-mapped: seqs in RAM (8 bytes a row), vectors paged in on demand."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.name = Path(path), Path(path).name
        size = self.path.stat().st_size
        rows = (size - 8) // (2 * dim + 8)
        if size < 8 or size != rows * (2 * dim + 8) + 8:
            raise ValueError(f"{size} bytes is no whole number of {dim}-d rows")
        trailer = np.fromfile(self.path, np.int64, count=1, offset=size - 8)
        if int(trailer[0]) != rows:
            raise ValueError(f"says {int(trailer[0])} rows, holds {rows}")
        self.seqs = np.fromfile(self.path, np.int64, count=rows, offset=rows * dim * 2)
        self.vectors = np.memmap(self.path, np.float16, "r", 0, (rows, dim)) if rows else np.empty((0, dim), np.float16)

    def __len__(self) -> int:
        return len(self.seqs)

    def shortlist(self, queries: np.ndarray, found: np.ndarray, size: int) -> list[np.ndarray]:
        """For each query, its candidates (``found``, -1 for none) worth an exact score: the
        ``size`` best by float16 cosine, and every candidate the copy lacks (written since)."""
        flat = found.ravel()
        pos = np.minimum(np.searchsorted(self.seqs, flat), max(len(self.seqs) - 1, 0))
        known = (flat >= 0) & (self.seqs[pos] == flat) if len(self.seqs) else np.zeros(len(flat), bool)
        scores = np.full(len(flat), -np.inf, dtype=np.float32)
        rows = np.repeat(np.arange(len(queries)), found.shape[1])[known]
        scores[known] = np.einsum("ij,ij->i", self.vectors[pos[known]].astype(np.float32), queries[rows])
        scores = scores.reshape(found.shape)
        lacking = ((flat >= 0) & ~known).reshape(found.shape)
        out = []
        for row, score, lack in zip(found, scores, lacking):
            best = row[np.argsort(-score, kind="stable")[:size]]
            out.append(np.concatenate([row[lack], best[best >= 0]]))
        return out


def write_copy(folder: Path, dim: int) -> RerankWriter | None:
    """A writer for a new copy in ``folder``, or None (with a warning) when it cannot be made."""
    try:
        return RerankWriter(folder, dim)
    except OSError as exc:
        print(f"warning: {folder}: cannot write a re-rank copy ({exc}); re-ranking from SQLite", file=sys.stderr)
        return None


def open_copy(folder: Path, name: str | None, dim: int) -> RerankCopy | None:
    """The copy ``name`` of ``folder``, or None (with a warning when it is named but unusable)."""
    if not name:
        return None
    try:
        return RerankCopy(Path(folder) / name, dim)
    except (OSError, ValueError) as exc:
        print(f"warning: {Path(folder) / name}: unusable re-rank copy ({exc}); re-ranking from SQLite "
              "until the next rebuild", file=sys.stderr)
        return None
