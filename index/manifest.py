"""manifest.json: what an index folder holds and how it was made, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import IndexFolderError
from .tuning import DEFAULT_TARGET_RECALL, check_target

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class Manifest:
    """The facts about one index folder.

    ``encoder`` is opaque to the store (name, dimension, fingerprint of whatever made the vectors);
    ``tau`` is the duplicate threshold that travels with the index. ``snapshot`` names the FAISS
    file and the highest sequence number it contains (``seq``).
    """

    dimension: int
    kind: str  #: the kind asked for (may be "auto")
    built_kind: str = ""  #: the kind the FAISS snapshot actually is
    encoder: dict = field(default_factory=dict)
    tau: float | None = None
    count: int = 0
    params: dict = field(default_factory=dict)
    snapshot: dict = field(default_factory=dict)
    metric: str = "inner_product"
    format_version: int = FORMAT_VERSION
    meta_file: str = "meta.sqlite"  #: the SQLite file of this index (a rebuilt index gets a new one)
    target_recall: float = DEFAULT_TARGET_RECALL  #: the recall@10 a build tunes the search knob for (tuning.py)
    shards: list = field(default_factory=list)  #: a sharded index: its shard folders, in order (``sharded.py``)

    def save(self, folder: Path) -> None:
        """Write the manifest atomically (temporary file, fsync, rename, fsync of the folder)."""
        write_atomic(Path(folder) / MANIFEST, json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        """Read and check the manifest of ``folder``."""
        path = Path(folder) / MANIFEST
        if not Path(folder).is_dir():
            raise IndexFolderError(f"{folder}: no index folder here (build one with `twin build`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise IndexFolderError(f"{path}: missing; {folder} is not a twin index") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexFolderError(f"{path}: damaged manifest ({exc})") from None
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            raise IndexFolderError(
                f"{path}: unsupported format version {data.get('format_version') if isinstance(data, dict) else None!r}"
                f" (this twin reads {FORMAT_VERSION})"
            )
        known = set(cls.__dataclass_fields__)
        try:
            manifest = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise IndexFolderError(f"{path}: damaged manifest ({exc})") from None
        problem = manifest.problem()
        if problem:
            raise IndexFolderError(f"{path}: damaged manifest ({problem}); rebuild the index with "
                                   "`twin build --force` from its corpus")
        return manifest

    def problem(self) -> str | None:
        """What is wrong with the manifest's fields, or None. File names must be plain names of
        the kinds an index holds: a manifest never makes the store open a file elsewhere."""
        from .folder import META_NAME, SHARD_NAME, SNAPSHOT_NAME
        from .rerank import RERANK_NAME

        types = {"dimension": int, "kind": str, "built_kind": str, "encoder": dict, "count": int,
                 "params": dict, "snapshot": dict, "metric": str, "meta_file": str, "shards": list}
        for name, kind in types.items():
            value = getattr(self, name)
            if not isinstance(value, kind) or isinstance(value, bool):
                return f"{name!r} is {type(value).__name__}, expected {kind.__name__}"
        if self.tau is not None and (not isinstance(self.tau, int | float) or isinstance(self.tau, bool)):
            return f"'tau' is {type(self.tau).__name__}, expected a number"
        try:
            check_target(self.target_recall)
        except ValueError:
            return f"'target_recall' {self.target_recall!r} is not in (0, 1]"
        if self.dimension < 1:
            return f"'dimension' is {self.dimension}"
        if not META_NAME.fullmatch(self.meta_file):
            return f"'meta_file' {self.meta_file!r} is not an index file name"
        for name in self.shards:
            if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
                return f"shard {name!r} is not a shard folder name (shard-<token>-<n>)"
        snap = self.snapshot
        if snap:
            if not isinstance(snap.get("file"), str) or not SNAPSHOT_NAME.fullmatch(snap["file"]):
                return f"snapshot file {snap.get('file')!r} is not a snapshot name (index-<seq>.faiss)"
            for key in ("seq", "trained_on", "ntotal"):
                if key in snap and (not isinstance(snap[key], int) or isinstance(snap[key], bool) or snap[key] < 0):
                    return f"snapshot {key} {snap[key]!r} is not a count"
            if "sha256" in snap and not (isinstance(snap["sha256"], str) and len(snap["sha256"]) == 64):
                return f"snapshot sha256 {snap['sha256']!r} is not a SHA-256 digest"
            copy = snap.get("rerank")
            if copy is not None and not (isinstance(copy, str) and RERANK_NAME.fullmatch(copy)):
                return f"snapshot rerank {copy!r} is not a re-rank copy name (rerank-<token>.bin)"
        return None


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600: readers running as other users must read it
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """fsync a file (its contents) or a folder (a rename inside it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
