"""An index folder: which files are its own, the lock that lets one writer process at a time in,
and installing a freshly built index in place of the old one.

The writer lock is an OS lock (``flock``) on ``writer.lock`` inside the folder, held from open to
close by the one process that may write (build, add, delete, serve). The kernel drops it when
that process dies, even by SIGKILL, so a lock is never stale. The file also says who holds it
(pid, command, and for a server its URL), so a second writer can be told whom it waits for.

An index is replaced in place, never by renaming its folder (which would replace a symlinked
folder by a plain one and take along whatever else the folder holds): the new index is built in
a staging folder inside it, its files are moved in beside the old ones under new names, and the
manifest, rewritten atomically, is the single point where the new index becomes the current one.
Files that no manifest names (a build killed before that point) are removed by the next writer.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from .errors import IndexBusyError, IndexFolderError
from .manifest import MANIFEST, Manifest, fsync_path
from .rerank import RERANK_NAME

LOCK_FILE = "writer.lock"
DEFAULT_META = "meta.sqlite"
SNAPSHOT_NAME = re.compile(r"index-\d+(-[0-9a-f]{8,32})?\.faiss")
META_NAME = re.compile(r"meta(-[0-9a-f]{8,32})?\.sqlite")
_SQLITE_SIDES = ("", "-wal", "-shm", "-journal")
STAGING_PREFIX = ".building-"
SHARD_NAME = re.compile(r"shard-[0-9a-f]{8,32}-\d{4,}")


def holder_info(**extra: object) -> dict:
    """Who this process is, for the lock file: pid, command line, start time, and ``extra``."""
    command = " ".join(["twin" if n == 0 and a.endswith("twin") else a for n, a in enumerate(sys.argv)])
    return {"pid": os.getpid(), "command": command or sys.executable,
            "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), **extra}


class WriterLock:
    """The one-writer-process lock of an index folder (see the module docstring)."""

    def __init__(self, folder: Path, holder: dict | None = None, wait_s: float = 0.0) -> None:
        self.folder, self.holder, self.wait_s = Path(folder), holder or holder_info(), wait_s
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        """Take the lock, waiting up to ``wait_s`` seconds; IndexBusyError names the holder."""
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise IndexBusyError(self.folder, holder) from None
                time.sleep(0.05)
        with contextlib.suppress(OSError):  # who holds it is a courtesy: a full disk must not stop the writer
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(self.holder).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the next writer in."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}


def own_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that belong to the index (its manifest, SQLite files, snapshots,
    temporary files, lock and staging folders); anything else is the user's and is left alone."""
    found = []
    for path in folder.iterdir() if folder.is_dir() else []:
        name = path.name
        base = re.sub(r"-(wal|shm|journal)$", "", name)
        if (name in (MANIFEST, LOCK_FILE) or META_NAME.fullmatch(base) or SNAPSHOT_NAME.fullmatch(name)
                or RERANK_NAME.fullmatch(name) or SHARD_NAME.fullmatch(name)
                or (name.startswith(".") and name.endswith(".tmp")) or name.startswith(STAGING_PREFIX)):
            found.append(path)
    return found


def remove_index(folder: Path) -> None:
    """Remove the index's own files from ``folder`` (the manifest first: a crash midway leaves a
    folder that is plainly no index, never a half one). The lock file stays: it is held."""
    (folder / MANIFEST).unlink(missing_ok=True)
    for path in own_files(folder):
        if path.name != LOCK_FILE:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    fsync_path(folder)


def remove_strays(folder: Path, manifest: Manifest) -> None:
    """Remove index files that the manifest does not name: snapshots and SQLite files of a build
    or save killed before its manifest was written, and staging folders (writer lock held)."""
    keep = {MANIFEST, LOCK_FILE, manifest.snapshot.get("file") or "", manifest.snapshot.get("rerank") or "",
            *(manifest.meta_file + s for s in _SQLITE_SIDES), *manifest.shards}
    for path in own_files(folder):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def install(staging: Path, folder: Path) -> None:
    """Make the complete, closed index in ``staging`` (a folder inside ``folder``) the index of
    ``folder``; then remove the old index's files and the staging folder."""
    new = Manifest.load(staging)
    token = secrets.token_hex(8)
    old = Manifest.load(folder) if (folder / MANIFEST).is_file() else None
    if new.shards:
        _install_shards(staging, folder, new, token)
    else:
        meta_name = f"meta-{token}.sqlite"
        os.replace(staging / new.meta_file, folder / meta_name)
        new.meta_file = meta_name
    if new.snapshot.get("file"):
        snap_name = new.snapshot["file"]
        if (folder / snap_name).exists():
            snap_name = snap_name.replace(".faiss", f"-{token}.faiss")
        os.replace(staging / new.snapshot["file"], folder / snap_name)
        new.snapshot["file"] = snap_name
    if new.snapshot.get("rerank"):  # its name is random: no clash with the old index's
        os.replace(staging / new.snapshot["rerank"], folder / new.snapshot["rerank"])
    fsync_path(folder)
    new.save(folder)  # the commit point
    shutil.rmtree(staging, ignore_errors=True)
    if old is not None:
        if old.meta_file != new.meta_file or new.shards:
            for side in _SQLITE_SIDES:
                (folder / (old.meta_file + side)).unlink(missing_ok=True)
        for key in ("file", "rerank"):
            if old.snapshot.get(key) and old.snapshot[key] != new.snapshot.get(key):
                (folder / old.snapshot[key]).unlink(missing_ok=True)
        for name in set(old.shards) - set(new.shards):
            shutil.rmtree(folder / name, ignore_errors=True)


def _install_shards(staging: Path, folder: Path, new: Manifest, token: str) -> None:
    """Move a sharded index's shard folders in under new names (the manifest not yet written)."""
    names = []
    for n, name in enumerate(new.shards):
        installed = f"shard-{token}-{n:04d}"
        os.replace(staging / name, folder / installed)
        names.append(installed)
    new.shards = names


@contextlib.contextmanager
def staged_build(folder: str | Path, force: bool = False, holder: dict | None = None,
                 wait_s: float = 0.0) -> Iterator[Path]:
    """Lock ``folder`` (made if missing; a symlink is followed), yield an empty staging folder
    inside it to build a new index in, and install that index when the block ends without error.

    An existing index is replaced only with ``force``; a folder holding other things that is not
    an index is refused. On error the staging folder is removed and the old index is untouched."""
    folder = Path(folder).resolve()
    if folder.exists() and not folder.is_dir():
        raise IndexFolderError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and not (folder / MANIFEST).exists() and set(folder.iterdir()) - set(own_files(folder)):
        raise IndexFolderError(f"{folder}: holds other files and is not an index; choose another folder")
    try:
        folder.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    staging = folder / f"{STAGING_PREFIX}{secrets.token_hex(4)}"
    with WriterLock(folder, holder, wait_s):
        try:
            if (folder / MANIFEST).exists() and not force:
                raise IndexFolderError(f"{folder}: an index already exists (use --force to replace it)")
            staging.mkdir()
            yield staging
            install(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if created and not (folder / MANIFEST).exists():
                remove_index(folder)
                (folder / LOCK_FILE).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if nothing else came into it
            raise
