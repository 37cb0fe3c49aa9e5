"""Duplicate groups inside a corpus: the ``twin groups`` job, a sibling of ``Retriever``.

One pass over the corpus collects ids and the distinct texts (identical texts after
``normalize`` are one "unit": one vector, one encoding); the units are encoded, or their vectors
are taken from an index built from the same corpus; a self-join finds every pair of units above
tau; linkage makes groups; the result gives every item its group, representative, cosine to it,
and whether to keep it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from index import VectorStore, open_store
from index.manifest import Manifest

from ..corpus import Row
from ..encoders import Encoder, choose_backend, load_encoder
from ..images import ImageRow
from ..progress import Clock, Progress
from ..retriever import DEFAULT_TAU, built_model
from ..tables import TableWriter, column_type
from ..text import normalize
from ..util import chunked
from .join import Pairs, self_join
from .linkage import link

#: Output columns before the payload's.
COLUMNS = ["id", "group", "representative", "score", "keep"]


@dataclass
class Units:
    """A corpus's items (ids, in corpus order) and its distinct texts ("units")."""

    ids: list[str] = field(default_factory=list)
    unit_of: list[int] = field(default_factory=list)  #: per item: its unit
    texts: list[str] = field(default_factory=list)  #: per unit: its normalised text (images: a hash)
    first: list[int] = field(default_factory=list)  #: per unit: its first item
    payload_types: dict[str, set[type]] = field(default_factory=dict)
    images: list[ImageRow] = field(default_factory=list)  #: per unit of an image corpus: its first image

    @classmethod
    def collect(cls, rows: Iterable[Row | ImageRow], progress: bool = True) -> Units:
        """Read every row once; identical normalised texts (images: identical files) become one unit."""
        units, seen = cls(), {}
        with Progress(None, "reading", "row", enabled=progress) as bar:
            for row in rows:
                image = isinstance(row, ImageRow)
                key = "sha256:" + hashlib.sha256(row.read()).hexdigest() if image else normalize(row.text)
                unit = seen.setdefault(key, len(units.texts))
                if unit == len(units.texts):
                    units.texts.append(key)
                    units.first.append(len(units.ids))
                    units.images += [row] if image else []
                units.unit_of.append(unit)
                units.ids.append(row.id)
                for key, value in row.payload.items():
                    units.payload_types.setdefault(key, set()).add(type(value))
                bar.update(1)
        return units

    def copies(self) -> np.ndarray:
        """Items per unit."""
        return np.bincount(np.asarray(self.unit_of, np.int64), minlength=len(self.texts))

    def lengths(self) -> np.ndarray:
        """Characters per unit's text."""
        return np.fromiter((len(t) for t in self.texts), np.int64, len(self.texts))


@dataclass
class Grouping:
    """The groups of a corpus: per item, a group number (0: in no group; groups are numbered 1,
    2, ... in the order of their first item), its representative item (-1: none), its cosine to
    it, and whether to keep it; the unit pairs above tau; the tau used."""

    units: Units
    group: np.ndarray
    representative: np.ndarray
    score: np.ndarray
    keep: np.ndarray
    pairs: Pairs
    tau: float
    seconds: dict[str, float] = field(default_factory=dict)  #: wall time of each stage

    def summary(self) -> dict:
        """Counts for the one-line summary and ``--json``."""
        in_groups = int((self.group > 0).sum())
        return {"items": len(self.group), "groups": int(self.group.max(initial=0)), "items_in_groups": in_groups,
                "items_to_drop": int((~self.keep).sum()), "tau": self.tau}

    def rows(self, payloads: Iterator[dict] | None = None) -> Iterator[dict]:
        """One output row per item, in corpus order (``payloads``: the items' payloads, in order)."""
        ids = self.units.ids
        for n, item_id in enumerate(ids):
            in_group = self.group[n] > 0
            row = {"id": item_id, "group": int(self.group[n]) if in_group else None,
                   "representative": ids[self.representative[n]] if in_group else None,
                   "score": round(float(self.score[n]), 6) if in_group else None, "keep": bool(self.keep[n])}
            payload = next(payloads) if payloads is not None else {}
            row.update({_payload_column(k): v for k, v in payload.items()})
            yield row

    def pair_rows(self) -> Iterator[dict]:
        """Every pair above tau once: distinct texts by their first items, and each further copy
        of a text against its first copy (score 1)."""
        ids, first = self.units.ids, self.units.first
        for a, b, s in zip(self.pairs.a.tolist(), self.pairs.b.tolist(), self.pairs.score.tolist()):
            yield {"id_a": ids[first[a]], "id_b": ids[first[b]], "score": round(s, 6)}
        for n, unit in enumerate(self.units.unit_of):
            if first[unit] != n:
                yield {"id_a": ids[first[unit]], "id_b": ids[n], "score": 1.0}


class Grouper:
    """Finds duplicate groups in a corpus with one encoder and one tau, optionally reusing the
    vectors of an index built from the same corpus (``store``)."""

    def __init__(self, encoder: Encoder | None, tau: float, store: VectorStore | None = None,
                 model: str | Path | None = None, backend: str | None = None) -> None:
        self._encoder, self.tau, self.store, self.model = encoder, float(tau), store, model
        self.backend = backend
        self.reused = 0  #: vectors the last ``vectors`` call took from the index
        self.cluster = None  #: a Ray cluster (``distributed.connect``): encode and join there

    def on_ray(self, cluster) -> Grouper:  # noqa: ANN001 - distributed.Cluster
        """Encode and self-join on ``cluster`` from now on (the groups come out the same)."""
        self.cluster = cluster
        return self

    @classmethod
    def for_model(cls, model: str | Path | None = None, threshold: float | None = None,
                  backend: str | None = None) -> Grouper:
        """Encode with ``model`` (default: packaged) run by ``backend``; tau: ``threshold``, else the model's."""
        encoder = load_encoder(model, backend)
        return cls(encoder, _first_set(threshold, encoder.tau, DEFAULT_TAU), model=model, backend=backend)

    @classmethod
    def for_index(cls, folder: str | Path, model: str | Path | None = None,
                  threshold: float | None = None, backend: str | None = None) -> Grouper:
        """Reuse the vectors of the index in ``folder`` (read-only; its model encodes whatever it
        lacks, and another ``model`` is refused); tau: ``threshold``, else the index's."""
        manifest = Manifest.load(Path(folder))
        backend = choose_backend(backend, manifest.encoder)
        encoder = load_encoder(model, backend) if model is not None else None
        store = open_store(folder, encoder=encoder.info() if encoder else None, read_only=True)
        model = model if model is not None else built_model(Path(folder), manifest.encoder)
        tau = _first_set(threshold, store.manifest.tau, encoder.tau if encoder else None, DEFAULT_TAU)
        return cls(encoder, tau, store, model, backend)

    def close(self) -> None:
        """Release the index, if any."""
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> Grouper:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded at first use (not at all when the index has every vector)."""
        if self._encoder is None:
            self._encoder = load_encoder(self.model, self.backend)
        return self._encoder

    def group(self, rows: Iterable[Row], linkage: str = "star", keep: str = "first", k: int = 16,
              batch_size: int = 64, nprobe: int | None = None, progress: bool = True) -> Grouping:
        """Group the items of ``rows`` (corpus order)."""
        clock = Clock()
        units = Units.collect(rows, progress)
        clock.lap("read")
        vectors = self.vectors(units, batch_size, progress)
        clock.lap("vectors")
        searcher = None
        if self.cluster is not None:
            from ..distributed.join import search_on_ray as searcher
        pairs = self_join(vectors, self.tau, k, nprobe, progress, searcher)
        clock.lap("join")
        copies = units.copies()
        unit_rep = link(pairs, copies, units.lengths(), linkage, keep).representative
        grouping = _per_item(units, vectors, unit_rep, copies, pairs, self.tau)
        del vectors  # before the output is written
        clock.lap("link")
        grouping.seconds = clock.seconds
        return grouping

    def vectors(self, units: Units, batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """A unit vector per unit: from the index where it holds the unit's first item with the
        same text, else encoded."""
        vectors = np.zeros((len(units.texts), self._dimension()), np.float32)
        todo = np.ones(len(units.texts), bool)
        if self.store is not None:
            with Progress(len(units.texts), "reading vectors from the index", "item", enabled=progress) as bar:
                for part in chunked(range(len(units.texts)), 10_000):
                    ids = [units.ids[units.first[u]] for u in part]
                    stored = self.store.records_of(ids)
                    for u, item_id in zip(part, ids):
                        record = stored.get(item_id)
                        if record is not None and self._same(record.text or "", units, u):
                            vectors[u], todo[u] = record.vector, False
                    bar.update(len(part))
            self.reused = int((~todo).sum())
        missing = np.flatnonzero(todo)
        if self.cluster is not None and not units.images and len(missing):
            from ..distributed.encode import encode_texts

            info = self.encoder.info()
            vectors[missing] = encode_texts([units.texts[u] for u in missing], self.model, info["backend"],
                                            batch_size, self.cluster, info["fingerprint"], info["dimension"],
                                            progress)
            return vectors
        with Progress(len(missing), "encoding", "item", enabled=progress and len(missing) > 0) as bar:
            for part in chunked(missing.tolist(), max(batch_size * 16, 256)):
                inputs = [units.images[u].load() for u in part] if units.images else [units.texts[u] for u in part]
                vectors[part] = self.encoder.encode(inputs, batch_size)
                bar.update(len(part))
        return vectors

    @staticmethod
    def _same(stored_text: str, units: Units, unit: int) -> bool:
        """An index row holds this unit: the same normalised text (images: the same file)."""
        if units.images:
            return stored_text == units.images[unit].text
        return normalize(stored_text) == units.texts[unit]

    def _dimension(self) -> int:
        return self.store.dimension if self.store is not None else self.encoder.dimension


def _per_item(units: Units, vectors: np.ndarray, unit_rep: np.ndarray, copies: np.ndarray,
              pairs: Pairs, tau: float) -> Grouping:
    size = np.bincount(unit_rep, weights=copies, minlength=len(copies))
    grouped_units = size[unit_rep] > 1
    # groups numbered by their first item: the smallest unit number among members is the first
    first_member = np.full(len(copies), len(copies), np.int64)
    np.minimum.at(first_member, unit_rep, np.arange(len(copies)))
    reps = np.flatnonzero((unit_rep == np.arange(len(copies))) & (size > 1))
    number = np.zeros(len(copies), np.int64)
    number[reps[np.argsort(first_member[reps], kind="stable")]] = np.arange(1, len(reps) + 1)
    unit_score = np.ones(len(copies), np.float32)
    members = np.flatnonzero(unit_rep != np.arange(len(copies)))
    for start in range(0, len(members), 1 << 16):  # in parts: never a second copy of every vector
        part = members[start:start + (1 << 16)]
        unit_score[part] = np.einsum("ij,ij->i", vectors[part], vectors[unit_rep[part]]).clip(-1, 1)
    unit_of = np.asarray(units.unit_of, np.int64)
    first = np.asarray(units.first, np.int64)
    rep_item = first[unit_rep[unit_of]]
    grouped = grouped_units[unit_of]
    keep = ~grouped | (rep_item == np.arange(len(unit_of)))
    return Grouping(units, np.where(grouped, number[unit_rep[unit_of]], 0), np.where(grouped, rep_item, -1),
                    np.where(grouped, unit_score[unit_of], 0.0).astype(np.float32), keep, pairs, tau)


def _first_set(*values: float | None) -> float:
    return float(next(v for v in values if v is not None))


def _payload_column(name: str) -> str:
    """A payload column's output name: its own, unless it is one of twin's columns."""
    return f"payload_{name}" if name in COLUMNS else name


def write_groups(grouping: Grouping, path: Path, payloads: Iterator[dict] | None, progress: bool = True) -> None:
    """One row per item to ``path`` (CSV, TSV, JSONL, Parquet), written beside and renamed."""
    extra = {_payload_column(k): column_type(t) for k, t in grouping.units.payload_types.items()}
    types = {"id": str, "group": int, "representative": str, "score": float, "keep": bool, **extra}
    with TableWriter(path, COLUMNS + list(extra), types) as table, \
            Progress(len(grouping.group), "writing", "row", enabled=progress) as bar:
        for row in grouping.rows(payloads):
            table.write(row)
            bar.update(1)


def write_pairs(grouping: Grouping, path: Path) -> None:
    """Every pair above tau once (``id_a, id_b, score``)."""
    with TableWriter(path, ["id_a", "id_b", "score"], {"id_a": str, "id_b": str, "score": float}) as table:
        for row in grouping.pair_rows():
            table.write(row)
