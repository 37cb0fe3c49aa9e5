"""``twin build --ray``: read, check and encode a corpus on a Ray cluster; write the same index
folder as a local build, or a sharded index when the corpus is larger than one shard.

The stages (Ray Data, streaming, order kept):

1. **check**: Ray tasks run twin's own corpus readers, one task a file; a bad row fails the job
   in seconds with its ``file:line:column``, before anything is written, as a local build does.
   The rows are counted. They run while the encoder actors start (load the model).
2. **encode**: the files are read again and fed to a pool of encoder actors (``encode.py``).
3. **write**: up to ``shard_items`` items, the driver streams the vectors, in corpus order, into
   one index (SQLite rows, FAISS snapshot, manifest), exactly as ``Retriever.add`` stores them:
   the same ids, texts, payloads and vectors as a local build. Above it, rows are grouped by the
   shard their id hashes to (``index.sharded.shard_of``) and each shard is built by its own Ray
   task, in parallel: a normal index folder whose FAISS index is trained and tuned on its own
   vectors. The top manifest names the shards.

Everything is built in the staging folder of ``index.folder.staged_build`` and installed only
when complete: a failed job (a bad row, a lost cluster, a worker that died more often than Ray
retries it) leaves the previous index as it was. The index folder must be on storage every node
of the cluster can write (a shared file system), as the corpus must be readable from every node.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.folder import holder_info, staged_build
from index.manifest import Manifest
from index.sharded import shard_of
from index.store import VectorStore
from index.tuning import DEFAULT_TARGET_RECALL

from ..corpus import Columns, file_labels, read_corpus
from ..encoders import load_encoder
from ..progress import Clock, Progress
from ..text import normalize
from ..util import chunked
from .cluster import RETRIES, Cluster, one_line_errors
from .encode import BLOCK_ROWS, encode_dataset

#: Items per shard above which ``--ray`` writes a sharded index (and the size of each shard).
#: 5 million keeps a shard's hnsw-sq8 index near 2.7 GB of RAM and its SQLite file near 10 GB,
#: and its build and tuning within an hour on one node (``docs/scale.md``).
SHARD_ITEMS = 5_000_000
#: Staged shard folders are named ``shard-<this>-<n>`` until installed under a fresh token.
STAGED_TOKEN = "00000000"


@dataclass(frozen=True)
class BuildJob:
    """What to build: the corpus files, how to read them, the model, and the index to make."""

    paths: list[Path]
    columns: Columns
    fmt: str | None
    model: str | None
    backend: str | None
    batch_size: int = 64
    kind: str = "auto"
    target_recall: float = DEFAULT_TARGET_RECALL
    shard_items: int = SHARD_ITEMS


@dataclass
class Built:
    """What a distributed build made: items, kind, rows read, shards (0: one plain index), tau."""

    items: int
    kind: str
    rows: int
    shards: int
    tau: float
    seconds: dict  #: wall time of each stage: check, encode (with the rows written), index, install


def build_on_ray(job: BuildJob, index_dir: Path, cluster: Cluster, force: bool = False, wait_s: float = 0.0,
                 progress: bool = True) -> Built:
    """Run ``job`` on ``cluster`` into ``index_dir`` (see the module docstring)."""
    clock = Clock()
    encoder = load_encoder(job.model, job.backend)
    info = encoder.info()
    with one_line_errors():
        check = _Check(job)
        with staged_build(index_dir, force, holder_info(), wait_s) as staging:
            written = _write_one(_encoded(job, info, cluster), job, staging, check, progress, clock)
            shards = 0
            if written is None:  # more rows than a shard holds: a sharded index
                shards = math.ceil(check.rows() / job.shard_items)
                written = _write_shards(_encoded(job, info, cluster), job, staging, shards, info, encoder.tau,
                                        check.rows(), progress, clock)
            tau = Manifest.load(staging).tau
        clock.lap("install")
    return Built(*written, check.rows(), shards, float(tau) if tau is not None else float("nan"), clock.seconds)


def _encoded(job: BuildJob, info: dict, cluster: Cluster):  # noqa: ANN202 - ray.data.Dataset
    return encode_dataset(_read(job), job.model, info["backend"], job.batch_size, cluster, info["fingerprint"])


class _Check:
    """The check tasks: every row of every file read and checked (one Ray task a file, started at
    once, so they run while the encoder actors load the model); ``rows`` waits for them."""

    def __init__(self, job: BuildJob) -> None:
        import ray

        task = ray.remote(num_cpus=0, max_retries=RETRIES)(_count_file)
        self.paths = job.paths
        self._pending = [task.remote(str(p), job.columns, job.fmt, label)
                         for p, label in zip(job.paths, file_labels(job.paths))]
        self._rows: int | None = None

    def rows(self) -> int:
        """How many rows the corpus has (the first bad row's InputError, in corpus order, if any)."""
        if self._rows is None:
            import ray

            counts = [ray.get(ref) for ref in self._pending]  # in order: the first file's error first
            if not sum(counts):
                raise _empty(self.paths)
            self._rows = sum(counts)
        return self._rows


def _count_file(path: str, columns: Columns, fmt: str | None, label: str) -> int:
    """A check task: every row of one file read and checked (a bad row raises its InputError)."""
    return sum(1 for _ in read_corpus(Path(path), columns, fmt, label))


def _empty(paths: list[Path]):  # noqa: ANN202 - InputError
    from ..errors import InputError

    if len(paths) == 1:  # as the local build says it
        return InputError(paths[0], None, "no items in the file")
    return InputError(f"{len(paths)} files", None, "no items in the corpus")


def _read(job: BuildJob):  # noqa: ANN202 - ray.data.Dataset
    """The corpus as a Ray Dataset of rows (``file``, ``row``: corpus order; ``id``, ``text``,
    ``payload`` as JSON; ``input``: the normalised text), one read task a file."""
    import ray.data

    files = [{"file": n, "path": str(p), "label": label}
             for n, (p, label) in enumerate(zip(job.paths, file_labels(job.paths)))]
    # Reading takes little CPU beside encoding: read tasks reserve none, so that they run beside
    # encoder actors holding every core (reserving one would leave them waiting for each other).
    return ray.data.from_items(files, override_num_blocks=len(files)).map_batches(
        _read_files, fn_args=(job.columns, job.fmt), batch_size=1, batch_format="numpy", num_cpus=0,
        max_retries=RETRIES, compute=ray.data.TaskPoolStrategy(size=max(1, min(len(files), os.cpu_count() or 1))))


def _read_files(batch: dict, columns: Columns, fmt: str | None) -> Iterator[dict]:
    """A read task: the rows of its file, in blocks (a bad row raises its InputError)."""
    for number, path, label in zip(batch["file"], batch["path"], batch["label"]):
        rows = enumerate(read_corpus(Path(str(path)), columns, fmt, str(label)))
        for part in chunked(rows, BLOCK_ROWS):
            yield {"file": np.full(len(part), int(number), np.int64),
                   "row": np.array([n for n, _ in part], np.int64),
                   "id": np.array([r.id for _, r in part], dtype=object),
                   "text": np.array([r.text for _, r in part], dtype=object),
                   "payload": np.array([json.dumps(r.payload, ensure_ascii=False) for _, r in part], dtype=object),
                   "input": np.array([normalize(r.text) for _, r in part], dtype=object)}


def _write_one(encoded, job: BuildJob, staging: Path, check: _Check, progress: bool,  # noqa: ANN001
               clock: Clock) -> tuple[int, str] | None:
    """Stream the vectors, in corpus order, into one index in ``staging``; None (nothing written)
    when the check finds more rows than one shard holds."""
    from ..retriever import Item, Retriever

    batches = iter(encoded.iter_batches(batch_size=None, batch_format="numpy"))
    first = next(batches, None)  # the encoders start; the check tasks run meanwhile
    rows = check.rows()
    clock.lap("check")
    if rows > job.shard_items:
        return None
    with Retriever.create(staging, job.model, job.kind, target_recall=job.target_recall,
                          backend=job.backend) as retriever:
        with Progress(rows, "encoding on Ray", "item", enabled=progress) as bar:
            for batch in itertools.chain([first] if first is not None else [], batches):
                items = [Item(str(i), str(t), json.loads(p))
                         for i, t, p in zip(batch["id"], batch["text"], batch["payload"])]
                retriever.add_encoded(items, batch["vector"])
                bar.update(len(items))
        clock.lap("encode")
        retriever.save()
        clock.lap("index")
        return len(retriever), retriever.store.built_kind


def _write_shards(encoded, job: BuildJob, staging: Path, shards: int, info: dict,  # noqa: ANN001
                  tau: float | None, rows: int, progress: bool, clock: Clock) -> tuple[int, str]:
    """Each shard built by its own Ray task; then the top manifest naming them."""
    names = [f"shard-{STAGED_TOKEN}-{n:04d}" for n in range(shards)]
    routed = encoded.map_batches(_add_shard, fn_args=(shards,), batch_format="numpy")
    args = (str(staging), names, info, tau, job.kind, job.target_recall)
    done = routed.groupby("shard").map_groups(_build_shard, fn_args=args, batch_format="numpy", max_retries=RETRIES,
                                              memory=shard_memory(math.ceil(rows / shards), info["dimension"]))
    counts = {}
    with Progress(shards, "building shards on Ray", "shard", enabled=progress) as bar:
        for batch in done.iter_batches(batch_size=None, batch_format="numpy"):
            counts.update(zip(batch["shard"].tolist(), batch["count"].tolist()))
            bar.update(len(batch["shard"]))
    clock.lap("encode and index")  # streamed: shards are built as their rows arrive
    for n in set(range(shards)) - set(counts):  # a shard no id hashed to: empty, but present
        counts[n] = _build_shard({"shard": np.array([n]), "id": np.array([], dtype=object)}, *args)["count"][0]
    first = Manifest.load(staging / names[0])
    manifest = Manifest(dimension=first.dimension, kind=job.kind, built_kind=first.built_kind, encoder=info,
                        tau=tau, count=int(sum(counts.values())), params=first.params,
                        target_recall=job.target_recall, shards=names)
    manifest.save(staging)
    return manifest.count, f"{first.built_kind} x {shards} shards"


def shard_memory(rows: int, dimension: int) -> int:
    """Bytes a shard build holds (an estimate, for Ray's scheduling): its rows' float32 vectors
    twice (the group's batch and SQLite's pages), FAISS's hnsw-sq8 codes and links (536 bytes a
    vector at 384 dimensions), and about a kilobyte a row of texts and payloads."""
    return int(rows * (dimension * 4 * 2 + dimension * 536 // 384 + 1024))


def _add_shard(batch: dict, shards: int) -> dict:
    batch["shard"] = np.array([shard_of(str(i), shards) for i in batch["id"]], np.int64)
    return batch


def _build_shard(group: dict, staging: str, names: list[str], info: dict, tau: float | None, kind: str,
                 target_recall: float) -> dict:
    """A Ray task's work for one shard: its rows, in corpus order, into a new index folder (made
    afresh if a killed attempt left one half-built)."""
    shard = int(group["shard"][0])
    order = np.lexsort((group["row"], group["file"])) if len(group["id"]) else np.array([], np.int64)
    with VectorStore.create(Path(staging) / names[shard], info["dimension"], kind, encoder=info, tau=tau,
                            force=True, target_recall=target_recall) as store:
        for part in chunked(order.tolist(), 16_384):
            store.add([str(group["id"][r]) for r in part], group["vector"][part],
                      [str(group["text"][r]) for r in part], [json.loads(group["payload"][r]) for r in part])
        store.save()
        return {"shard": np.array([shard]), "count": np.array([len(store)])}
