"""Retriever: encoder + vector store + tau. The one path the CLI and the HTTP service use."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from index import ShardedStore, VectorStore, open_store
from index.manifest import Manifest
from index.tuning import DEFAULT_TARGET_RECALL

from .admission import ON_DUPLICATE, Admitted, Outcome, admit
from .encoders import DEFAULT_BACKEND, Encoder, load_encoder
from .encoders.base import PACKAGED_TAUS
from .encoders.transformer import PACKAGED_NAME
from .errors import ModelError, TwinError
from .images import decode_image
from .progress import Progress
from .text import normalize
from .util import chunked
from .validate import id_problem, payload_problem, text_problem

#: tau when nothing else says: the packaged model's on the default backend (``PACKAGED_TAUS``).
DEFAULT_TAU = PACKAGED_TAUS[DEFAULT_BACKEND]


@dataclass
class Item:
    """Something to index: an id, its text, and a JSON payload; for an index of images, the image
    too (its file's bytes, or a decoded array) and, as its text, where it came from."""

    id: str
    text: str
    payload: dict = field(default_factory=dict)
    image: bytes | np.ndarray | None = field(default=None, repr=False)


@dataclass
class Match:
    """A stored item found for a query; ``duplicate`` is ``score > tau``."""

    id: str
    score: float
    duplicate: bool
    text: str | None
    payload: dict

    def to_dict(self) -> dict:
        """The JSON shape shared by ``twin query --json`` and the HTTP service."""
        return asdict(self)


@dataclass
class QueryResult:
    """One query and its matches, best first."""

    query: str
    matches: list[Match]

    def to_dict(self) -> dict:
        """``{"query": str, "matches": [...]}``."""
        return {"query": self.query, "matches": [m.to_dict() for m in self.matches]}


class Retriever:
    """Encodes items with one encoder, stores them, and answers nearest-match queries.

    Thread-safe: the encoder serialises its own calls and the store locks its index.
    """

    def __init__(self, encoder: Encoder, store: VectorStore) -> None:
        self.encoder, self.store = encoder, store
        self._writing = threading.Lock()  # a dedup look-up and the write it decides are one step

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(
        cls, folder: str | Path, model: str | Path | None = None, kind: str = "auto", force: bool = False,
        holder: dict | None = None, wait_s: float = 0.0, target_recall: float = DEFAULT_TARGET_RECALL,
        backend: str | None = None,
    ) -> Retriever:
        """A new, empty index in ``folder`` for the encoder in ``model`` (default: packaged),
        holding the folder's writer lock until closed. Approximate kinds tune their search knob
        at each build to reach ``target_recall`` (recall@10). ``backend``: see ``choose_backend``."""
        encoder = load_encoder(model, backend)
        store = VectorStore.create(folder, encoder.dimension, kind, encoder=encoder.info(), tau=encoder.tau,
                                   force=force, holder=holder, wait_s=wait_s, target_recall=target_recall)
        return cls(encoder, store)

    @classmethod
    def open(cls, folder: str | Path, model: str | Path | None = None, read_only: bool = False,
             holder: dict | None = None, wait_s: float = 0.0, backend: str | None = None) -> Retriever:
        """Open an index; the model and backend default to those it was built with. A writer (the
        default) holds the folder's writer lock until closed; ``read_only`` takes none and writes nothing."""
        manifest = Manifest.load(Path(folder))
        encoder = load_encoder(model if model is not None else built_model(Path(folder), manifest.encoder),
                               backend, manifest.encoder)
        built = manifest.encoder.get("modality") or "text"
        if encoder.modality != built:
            raise ModelError(f"{folder} holds {built}s and {encoder.name} encodes {encoder.modality}s; "
                             "use the model the index was built with")
        store = open_store(folder, encoder=encoder.info(), read_only=read_only, holder=holder, wait_s=wait_s)
        return cls(encoder, store)

    def save(self) -> None:
        """Write the index snapshot (every write is already durable in SQLite)."""
        self.store.save()

    def close(self) -> None:
        """Release the store."""
        self.store.close()

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- properties -----------------------------------------------------------------------
    @property
    def tau(self) -> float:
        """The duplicate threshold: the index's, else the model's, else twin's default."""
        for tau in (self.store.manifest.tau, self.encoder.tau):
            if tau is not None:
                return float(tau)
        return DEFAULT_TAU

    @property
    def modality(self) -> str:
        """What the index holds: ``text`` or ``image`` (its encoder's kind of item)."""
        return self.encoder.modality

    def __len__(self) -> int:
        return len(self.store)

    # -- writes ---------------------------------------------------------------------------
    def add(self, items: Iterable[Item], batch_size: int = 64, total: int | None = None,
            progress: bool = True, on_duplicate: str = "add",
            report: Callable[[Outcome], None] | None = None) -> int:
        """Encode and store items, a chunk at a time (``on_duplicate``: see ``insert``); returns
        how many were stored. ``report`` receives each item's outcome."""
        written = 0
        admitted = Admitted(self.encoder.dimension) if on_duplicate == "report" else None
        with Progress(total, "indexing", "item", enabled=progress) as bar:
            for chunk in chunked(items, max(batch_size * 16, 256)):
                outcomes = self.insert(chunk, on_duplicate, batch_size, admitted)
                written += sum(o.stored for o in outcomes)
                for outcome in outcomes if report else ():
                    report(outcome)
                bar.update(len(chunk))
        return written

    def upsert(self, items: Sequence[Item], batch_size: int = 64) -> list[str]:
        """Encode and upsert ``items`` as one atomic batch: a search sees all of it or none.
        Returns the ids written (a repeated id keeps its last item). Every item must meet the
        rules of ``validate`` (TwinError naming the item otherwise)."""
        return list(dict.fromkeys(o.id for o in self.insert(items, "add", batch_size)))

    def insert(self, items: Sequence[Item], on_duplicate: str = "add", batch_size: int = 64,
               admitted: Admitted | None = None) -> list[Outcome]:
        """Store ``items`` as one atomic batch (``add``: all of them, a repeated id keeps its last
        item; ``skip``: those that are no duplicate of a stored item or of an earlier item of the
        batch; ``report``: none) and say, per item, what became of it (see ``admission``).
        ``admitted`` carries the items ``report`` admitted in earlier batches of the same run."""
        if on_duplicate not in ON_DUPLICATE:
            raise TwinError(f"on_duplicate must be one of {', '.join(ON_DUPLICATE)}, not {on_duplicate!r}")
        _check_items(items, self.modality)
        if not items:
            return []
        vectors = self.encoder.encode(self._inputs(items), batch_size)
        ids = [item.id for item in items]
        with self._writing:
            if on_duplicate == "add":
                self._store(items, vectors, range(len(items)))
                return [Outcome(i, True) for i in ids]
            known = self._best_other(ids, vectors, admitted)
            outcomes = admit(ids, vectors, known, self.tau, store=on_duplicate == "skip")
            fresh = [n for n, o in enumerate(outcomes) if o.duplicate_of is None]
            if on_duplicate == "skip":
                self._store(items, vectors, fresh)
            elif admitted is not None:
                admitted.add([ids[n] for n in fresh], vectors[fresh])
        return outcomes

    def add_encoded(self, items: Sequence[Item], vectors: np.ndarray) -> list[str]:
        """Store ``items`` whose vectors were encoded elsewhere (by this index's model, e.g. on a
        Ray cluster) as one atomic batch, as ``upsert`` would; returns the ids written."""
        _check_items(items, self.modality)
        if len(vectors) != len(items):
            raise TwinError(f"{len(items)} items for {len(vectors)} vectors")
        with self._writing:
            return self._store(items, vectors, range(len(items)))

    def _inputs(self, items: Sequence[Item]) -> list:
        """What the encoder takes: normalised texts, or decoded images (a TwinError names the first
        item whose image is unusable)."""
        if self.modality == "text":
            return [normalize(item.text) for item in items]
        return [_decoded(item.image, f"item {n} ({str(item.id)[:60]!r})") for n, item in enumerate(items, 1)]

    def _store(self, items: Sequence[Item], vectors, rows: Sequence[int]) -> list[str]:  # noqa: ANN001
        if not len(rows):
            return []
        chosen = [items[n] for n in rows]
        return self.store.add([i.id for i in chosen], vectors[list(rows)], [i.text for i in chosen],
                              [i.payload for i in chosen])

    def _best_other(self, ids: list[str], vectors, admitted: Admitted | None) -> list:  # noqa: ANN001
        """Each item's best stored (or earlier admitted) match with another id: (id, score) or None."""
        found = [next(((h.id, h.score) for h in row if h.id != own), None)
                 for own, row in zip(ids, self.store.search(vectors, 2))]
        if admitted is None:
            return found
        return [max((m for m in pair if m is not None), key=lambda m: m[1], default=None)
                for pair in zip(found, admitted.best(ids, vectors))]

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Delete by id; returns the ids that existed."""
        return self.store.delete(list(ids))

    def existing(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` that are stored."""
        return self.store.existing(ids)

    def get(self, item_id: str) -> Item | None:
        """The stored item, or None."""
        record = self.store.get(item_id)
        return Item(record.id, record.text or "", record.payload) if record else None

    # -- queries --------------------------------------------------------------------------
    def search(
        self, texts: Sequence[str], k: int = 5, threshold: float | None = None,
        duplicates_only: bool = False, batch_size: int = 64, **knobs: int | None,
    ) -> list[QueryResult]:
        """The ``k`` nearest stored items of each text. ``threshold`` overrides tau for the
        verdict; ``duplicates_only`` keeps only matches above it. ``knobs``: nprobe, ef_search."""
        vectors = self.encode_queries(texts, batch_size)
        return self.match(texts, vectors, k, threshold, duplicates_only, **knobs)

    def lookup(self, queries: Sequence, names: Sequence[str], k: int = 5, threshold: float | None = None,
               duplicates_only: bool = False, batch_size: int = 64, **knobs: int | None) -> list[QueryResult]:
        """``search`` for an index of texts (``queries`` are the texts), ``search_images`` for one
        of images (``queries`` are images, answered under ``names``)."""
        if self.modality == "image":
            return self.search_images(queries, names, k, threshold, duplicates_only, batch_size, **knobs)
        return self.search(queries, k, threshold, duplicates_only, batch_size, **knobs)

    def warm_up(self) -> None:
        """Encode one item of the index's kind: the model is loaded (and compiled) before the first query."""
        if self.modality == "image":
            self.encoder.encode([np.full((8, 8), 255, np.uint8)])
        else:
            self.encode_queries(["warm up"])

    def search_images(
        self, images: Sequence[bytes | np.ndarray], names: Sequence[str], k: int = 5, threshold: float | None = None,
        duplicates_only: bool = False, batch_size: int = 64, **knobs: int | None,
    ) -> list[QueryResult]:
        """The ``k`` nearest stored images of each image (file bytes or decoded arrays), answered
        under ``names``; as ``search`` otherwise."""
        vectors = self.encode_images(images, names, batch_size)
        return self.match(list(names), vectors, k, threshold, duplicates_only, **knobs)

    def encode_images(self, images: Sequence[bytes | np.ndarray], names: Sequence[str] | None = None,
                      batch_size: int = 64) -> np.ndarray:
        """Query images decoded and encoded (an ImageProblem names the first unusable one)."""
        if self.modality != "image":
            raise TwinError(f"this index holds {self.modality}s, not images: query it with {self.modality}s")
        names = names or [f"image {n}" for n in range(1, len(images) + 1)]
        return self.encoder.encode([_decoded(image, name) for image, name in zip(images, names)], batch_size)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64):  # noqa: ANN201 - ndarray
        """Normalised texts encoded in one call (the step worth batching across requests)."""
        if self.modality != "text":
            raise TwinError(f"this index holds {self.modality}s, not texts: query it with image files "
                            "(twin query --index I IMAGE..., or {\"images\": [base64, ...]} over HTTP)")
        for n, text in enumerate(texts, 1):
            problem = text_problem(text)
            if problem:
                raise TwinError(f"query {n} {problem}")
        return self.encoder.encode([normalize(t) for t in texts], batch_size)

    def match(
        self, texts: Sequence[str], vectors, k: int = 5, threshold: float | None = None,  # noqa: ANN001
        duplicates_only: bool = False, **knobs: int | None,
    ) -> list[QueryResult]:
        """Search the store with already-encoded queries and give each match its verdict."""
        if not len(texts):
            return []
        tau = self.tau if threshold is None else float(threshold)
        hits = self.store.search(vectors, k, **knobs)
        results = []
        for text, row in zip(texts, hits):
            matches = [Match(h.id, h.score, h.score > tau, h.text, h.payload) for h in row]
            if duplicates_only:
                matches = [m for m in matches if m.duplicate]
            results.append(QueryResult(text, matches))
        return results

    def info(self) -> dict:
        """What the index is: count, kinds, encoder, tau, folder."""
        return describe(self.store, self.tau)


def _decoded(image: bytes | np.ndarray | None, what: str) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    if image is None:
        raise TwinError(f"{what}: no image (this index holds images)")
    return decode_image(bytes(image), what)


def _check_items(items: Sequence[Item], modality: str = "text") -> None:
    """TwinError naming the first item that breaks a rule of ``validate``, or that carries an
    image for an index of texts."""
    for n, item in enumerate(items, 1):
        if modality == "text" and item.image is not None:
            raise TwinError(f"item {n} ({str(item.id)[:60]!r}): an image, but this index holds texts")
        for what, problem in (("id", id_problem(item.id)), ("text", text_problem(item.text)),
                              ("payload", payload_problem(item.payload))):
            if problem:
                raise TwinError(f"item {n} ({str(item.id)[:60]!r}): {what} {problem}")


def built_model(folder: Path, encoder: dict) -> str | None:
    """The model folder an index was built with (None: the packaged model). A model folder that
    is gone is an error naming it: another model would give vectors of another space."""
    path = encoder.get("path")
    if not path or encoder.get("packaged") or (encoder.get("name") == PACKAGED_NAME and "packaged" not in encoder):
        return None
    if not Path(path).is_dir():
        raise ModelError(f"{folder} was built with the model folder {path}, which is missing; "
                         "pass --model with that model's folder")
    return path


def describe(store: VectorStore | ShardedStore, tau: float | None = None) -> dict:
    """A store's facts for ``twin info`` and ``/stats``; needs no model loaded (``shards``: each
    shard's folder, count and kind, for a sharded index; empty otherwise)."""
    manifest = store.manifest
    on_disk = sum(p.stat().st_size for p in store.folder.rglob("*") if p.is_file())
    return {
        "folder": str(store.folder), "count": len(store), "kind": manifest.kind,
        "built_kind": store.built_kind, "dimension": manifest.dimension, "encoder": manifest.encoder,
        "tau": tau if tau is not None else (manifest.tau if manifest.tau is not None else DEFAULT_TAU),
        "params": manifest.params, "target_recall": manifest.target_recall, "bytes_on_disk": on_disk,
        "shards": [{"folder": s.folder.name, "count": len(s), "built_kind": s.built_kind}
                   for s in getattr(store, "shards", [])],
    }
