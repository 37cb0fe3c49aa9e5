"""Commands over an index folder: build, add, query, dedup, delete, info.

Writers (build, add, delete) hold the folder's writer lock while they run; readers (query,
dedup, info) take none and see the index as it was committed when they opened it."""

from __future__ import annotations

import csv
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from index import KIND_NAMES, open_store
from index.folder import holder_info, staged_build
from index.kinds import AUTO_APPROXIMATE_FROM, MEASURED_KEYS
from index.tuning import DEFAULT_TARGET_RECALL

from ..corpus import Columns
from ..distributed.build import SHARD_ITEMS
from ..errors import TwinError
from ..progress import Clock
from ..tables import TableWriter, table_format
from ..util import chunked
from .group import cli
from .options import (
    backend_option,
    checked_rows,
    corpora_argument,
    corpus_columns,
    corpus_options,
    expand,
    index_modality,
    index_option,
    items,
    model_option,
    ray_options,
    say,
    wait_option,
)


@cli.command()
@corpora_argument
@index_option
@model_option
@backend_option
@corpus_options
@click.option("--index-type", type=click.Choice(KIND_NAMES), default="auto", show_default=True,
              help=f"FAISS index kind: auto is exact (flat) below {AUTO_APPROXIMATE_FROM:,} items, "
                   "then hnsw-sq8; hnsw, ivf-sq8 and ivf-pq on request.")
@click.option("--target-recall", type=click.FloatRange(0, 1, min_open=True), default=DEFAULT_TARGET_RECALL,
              show_default=True, help="Recall@10 the approximate kinds are tuned to reach: at each build they "
                                      "measure it on a sample of the index's own vectors and pick the smallest "
                                      "nprobe (ivf) or efSearch (hnsw) that reaches it.")
@click.option("--force", is_flag=True, help="Replace an existing index in the folder (its own files only).")
@wait_option
@ray_options
@click.option("--shard-items", type=click.IntRange(1), default=None,
              help=f"With --ray: a corpus of more items than this (default {SHARD_ITEMS:,}) becomes a sharded index "
                   "(a folder of shards, each an index of about this many items, built in parallel and searched "
                   "together).")
@click.option("--json", "as_json", is_flag=True,
              help="Print what was built as one JSON object: items, rows, kind, tau, shards, seconds per stage.")
def build(corpora: tuple[Path, ...], index_dir: Path, model: Path | None, backend: str | None,
          text_column: str | None, id_column: str | None, id_prefix: str, no_header: bool, fmt: str | None,
          batch_size: int, index_type: str, target_recall: float, force: bool, wait_s: float,
          ray_address: str | None, shard_items: int | None, as_json: bool) -> None:
    """Build an index from CORPORA: files (CSV, TSV, JSONL, Parquet or plain text) or globs
    ('parts/*.parquet'); with an image model, one folder or zip of images, or a table with a
    'path' column. Several files without an id column number their rows FILE:LINE.

    The whole corpus is checked first; the index is built in a staging folder inside INDEX and
    installed when complete, so a failure or a kill leaves any previous index untouched."""
    paths = expand(corpora)
    if shard_items is not None and ray_address is None:
        raise TwinError("--shard-items applies to builds on Ray: add --ray")
    if ray_address is not None:
        built = _build_on_ray(paths, index_dir, model, backend, corpus_columns(text_column, id_column, id_prefix,
                              no_header), fmt, batch_size, index_type, target_recall, force, wait_s, ray_address,
                              shard_items or SHARD_ITEMS)
    else:
        built = _build_here(paths, index_dir, model, backend, (text_column, id_column, id_prefix, no_header, fmt),
                            batch_size, index_type, target_recall, force, wait_s)
    named = paths[0] if len(paths) == 1 else f"{len(paths)} files"
    where = f" on Ray ({built['ray']['cpus']} CPUs, {built['ray']['gpus']} GPUs)" if "ray" in built else ""
    say(f"built {index_dir}{where}: {built['items']} items from {built['rows']} rows of {named} "
        f"({built['kind']}, tau {built['tau']:.4f})")
    if as_json:
        click.echo(json.dumps({"index": str(index_dir), **built}))


def _build_here(paths: list[Path], index_dir: Path, model: Path | None, backend: str | None, corpus_args: tuple,
                batch_size: int, index_type: str, target_recall: float, force: bool, wait_s: float) -> dict:
    """The local build; what it built (as ``build --json`` prints it)."""
    from ..encoders import modality_of
    from ..retriever import Retriever

    clock = Clock()
    total, _, source = checked_rows(paths, *corpus_args, modality=modality_of(model))
    clock.lap("check")
    with staged_build(index_dir, force, holder_info(), wait_s) as staging:
        with Retriever.create(staging, model, index_type, target_recall=target_recall, backend=backend) as retriever:
            retriever.add(items(source), batch_size, total=total)
            clock.lap("encode")
            retriever.save()
            clock.lap("index")
            facts = {"items": len(retriever), "rows": total, "kind": retriever.store.built_kind,
                     "tau": retriever.tau, "shards": 0}
    clock.lap("install")
    return {**facts, "seconds": clock.seconds}


def _build_on_ray(paths: list[Path], index_dir: Path, model: Path | None, backend: str | None, columns: Columns,
                  fmt: str | None, batch_size: int, index_type: str, target_recall: float, force: bool,
                  wait_s: float, ray_address: str, shard_items: int) -> dict:
    """The build on Ray (``distributed.build``); what it built, and on how many CPUs and GPUs."""
    from ..distributed import connect, disconnect
    from ..distributed.build import BuildJob, build_on_ray
    from ..encoders import modality_of

    if modality_of(model) != "text":
        raise TwinError("--ray builds indexes of texts; build an index of images without --ray")
    job = BuildJob(paths, columns, fmt, str(model) if model else None, backend, batch_size, index_type,
                   target_recall, shard_items)
    clock = Clock()
    cluster = connect(ray_address)
    clock.lap("connect")
    try:
        built = build_on_ray(job, index_dir, cluster, force, wait_s)
    finally:
        disconnect(cluster)
    return {"items": built.items, "rows": built.rows, "kind": built.kind, "tau": built.tau, "shards": built.shards,
            "seconds": {**clock.seconds, **built.seconds}, "ray": {"cpus": cluster.cpus, "gpus": cluster.gpus}}


@cli.command()
@click.argument("corpus", type=click.Path(path_type=Path))
@index_option
@model_option
@backend_option
@corpus_options
@click.option("--on-duplicate", type=click.Choice(["add", "skip", "report"]), default="add", show_default=True,
              help="add: store every item; skip: store only items with no match above tau (in the index or "
                   "earlier in CORPUS); report: store nothing, list what skip would skip.")
@click.option("--json", "as_json", is_flag=True,
              help="Print every item's outcome as a JSON line (id, stored, duplicate_of, score).")
@wait_option
def add(corpus: Path, index_dir: Path, model: Path | None, backend: str | None, text_column: str | None,
        id_column: str | None, id_prefix: str, no_header: bool, fmt: str | None, batch_size: int, on_duplicate: str,
        as_json: bool, wait_s: float) -> None:
    """Add or replace (same id) the items of CORPUS in an existing index; no retraining. (An index
    of images takes a folder, a zip or a table of image paths.)

    With --on-duplicate skip or report, the items skipped (or that would be) are listed on
    stdout as CSV: id, duplicate_of, score. A file without an id column numbers its items by
    line; when those numbers are already ids of the index, nothing is added (it would replace
    them): name an id column or give --id-prefix."""
    from ..retriever import Retriever

    modality = index_modality(index_dir)
    total, numbered, source = checked_rows(corpus, text_column, id_column, id_prefix, no_header, fmt,
                                           modality=modality)
    report_only = on_duplicate == "report"
    opened = Retriever.open(index_dir, model, read_only=report_only,
                            holder=None if report_only else holder_info(), wait_s=wait_s, backend=backend)
    with opened as retriever:
        if numbered and not report_only:
            _refuse_numbered_clashes(corpus, index_dir, retriever, checked_rows(
                corpus, text_column, id_column, id_prefix, no_header, fmt)[2])
        before = len(retriever)
        outcomes = _OutcomeLines(as_json, listed=on_duplicate != "add")
        written = retriever.add(items(source), batch_size, total=total, on_duplicate=on_duplicate,
                                report=outcomes)
        if not report_only:
            retriever.save()
        if report_only:
            say(f"report: {total} rows, {outcomes.duplicates} would be skipped as duplicates, "
                f"{total - outcomes.duplicates} would be added; nothing was written to {index_dir}")
        else:
            say(f"added {written} of {total} rows to {index_dir}: {len(retriever) - before} new, {len(retriever)} "
                f"items in all" + (f"; {outcomes.duplicates} skipped as duplicates" if on_duplicate == "skip" else ""))


class _OutcomeLines:
    """Each item's outcome on stdout: every one as JSON lines, or the duplicates as CSV."""

    def __init__(self, as_json: bool, listed: bool) -> None:
        self.as_json, self.listed, self.duplicates = as_json, listed, 0
        self._csv = None

    def __call__(self, outcome) -> None:  # noqa: ANN001 - admission.Outcome
        self.duplicates += outcome.duplicate_of is not None
        if self.as_json:
            click.echo(json.dumps(outcome.to_dict(), ensure_ascii=False))
        elif self.listed and outcome.duplicate_of is not None:
            if self._csv is None:
                self._csv = csv.writer(sys.stdout)
                self._csv.writerow(["id", "duplicate_of", "score"])
            self._csv.writerow([outcome.id, outcome.duplicate_of, outcome.score])


def _refuse_numbered_clashes(corpus: Path, index_dir: Path, retriever, source: Iterator) -> None:  # noqa: ANN001
    clashes: list[str] = []
    for chunk in chunked((r.id for r in source if r.numbered), 10_000):
        clashes += retriever.existing(chunk)
    if clashes:
        shown = ", ".join(clashes[:3]) + (", ..." if len(clashes) > 3 else "")
        raise TwinError(f"{corpus}: no id column, so its items are numbered by line, and {len(clashes)} of those "
                        f"ids ({shown}) are already in {index_dir}: adding would replace them. Name an id column "
                        "(--id-column) or number these apart (--id-prefix PREFIX); nothing was added")


@cli.command()
@click.argument("texts", nargs=-1)
@index_option
@model_option
@backend_option
@click.option("-k", "k", type=click.IntRange(1, 10_000), default=5, show_default=True, help="Matches per query.")
@click.option("--threshold", type=click.FloatRange(-1, 1), default=None,
              help="Duplicate when cosine > this (default: the index's calibrated tau).")
@click.option("--duplicates-only", is_flag=True, help="Show only matches above the threshold.")
@click.option("--nprobe", type=click.IntRange(1), default=None, help="IVF lists to visit (ivf kinds).")
@click.option("--ef-search", type=click.IntRange(1), default=None, help="HNSW search breadth (hnsw kind).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a query, one a line.")
def query(texts: tuple[str, ...], index_dir: Path, model: Path | None, backend: str | None, k: int,
          threshold: float | None, duplicates_only: bool, nprobe: int | None, ef_search: int | None,
          as_json: bool) -> None:
    """Find the nearest stored items of each TEXT (none given: one query a line from stdin,
    each answered as soon as it is read). For an index of images, each TEXT is an image file."""
    from ..retriever import Retriever

    batches = _query_batches(texts)
    first = next(batches, None)
    if first is None:
        raise TwinError("no query: give TEXT arguments or lines on stdin")
    with Retriever.open(index_dir, model, read_only=True, backend=backend) as retriever:
        tau = retriever.tau if threshold is None else threshold
        for batch in itertools.chain([first], batches):
            queries = _image_files(batch) if retriever.modality == "image" else batch
            for result in retriever.lookup(queries, batch, k, threshold, duplicates_only, nprobe=nprobe,
                                           ef_search=ef_search):
                click.echo(json.dumps(result.to_dict(), ensure_ascii=False) if as_json else _format(result, tau))
            sys.stdout.flush()


def _query_batches(texts: tuple[str, ...]) -> Iterator[list[str]]:
    """The arguments in batches of 256; else each stdin line as it comes (for use in a pipe)."""
    if texts:
        yield from chunked(texts, 256)
        return
    for line in iter(sys.stdin.readline, ""):
        if line.strip():
            yield [line.rstrip("\n")]


def _image_files(paths: list[str]) -> list:
    """Each query image decoded (an InputError names a file that is missing or not an image)."""
    from ..images import ImageRow

    found = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise TwinError(f"{name}: {'no such file' if not path.exists() else 'not a file'} (this index holds "
                            "images: each query is an image file)")
        found.append(ImageRow(name, name, path.read_bytes).load())
    return found


def _format(result, tau: float) -> str:  # noqa: ANN001 - QueryResult
    lines = [f"? {result.query}"]
    for m in result.matches:
        mark = "DUPLICATE" if m.duplicate else "         "
        lines.append(f"  {m.score:.4f} {mark} [{m.id}] {m.text}")
    if not result.matches:
        lines.append(f"  (no match above tau {tau:.4f})")
    return "\n".join(lines)


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@index_option
@model_option
@backend_option
@corpus_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write results to OUT.csv, .tsv, .jsonl or .parquet (default: CSV on stdout).")
@click.option("--threshold", type=click.FloatRange(-1, 1), default=None,
              help="Duplicate when cosine > this (default: the index's calibrated tau).")
@click.option("--exclude-self", is_flag=True, help="Skip a match whose id is the row's own id "
              "(for checking a corpus against its own index).")
def dedup(input_path: Path, index_dir: Path, model: Path | None, backend: str | None, text_column: str | None,
          id_column: str | None, id_prefix: str, no_header: bool, fmt: str | None, batch_size: int, output: Path | None,
          threshold: float | None, exclude_self: bool) -> None:
    """For each row of INPUT: its best match in the index, the score and the verdict (an index of
    images: each image of a folder, a zip or a table of image paths)."""
    from ..retriever import Retriever

    table_format(output)
    fields = ["id", "text", "match_id", "match_text", "score", "duplicate"]
    types = {"score": float, "duplicate": bool}
    modality = index_modality(index_dir)
    _, _, source = checked_rows(input_path, text_column, id_column, id_prefix, no_header, fmt, modality=modality)
    total = duplicates = 0
    opened = Retriever.open(index_dir, model, read_only=True, backend=backend)
    with opened as retriever, TableWriter(output, fields, types) as table:
        for chunk in chunked(source, 256):
            queries = [r.load() for r in chunk] if modality == "image" else [r.text for r in chunk]
            results = retriever.lookup(queries, [r.text for r in chunk], 2 if exclude_self else 1, threshold,
                                       batch_size=batch_size)
            for row, result in zip(chunk, results):
                best = next((m for m in result.matches if not (exclude_self and m.id == row.id)), None)
                total += 1
                duplicates += bool(best and best.duplicate)
                table.write({"id": row.id, "text": row.text, "match_id": best.id if best else None,
                             "match_text": best.text if best else None,
                             "score": round(best.score, 6) if best else None,
                             "duplicate": bool(best and best.duplicate)})
        tau = retriever.tau if threshold is None else threshold
    say(f"dedup: {total} rows, {duplicates} duplicates, {total - duplicates} new (cosine > {tau:.4f})"
        + (f"; written to {output}" if output else ""))


@cli.command()
@click.argument("ids", nargs=-1, required=True)
@index_option
@wait_option
def delete(ids: tuple[str, ...], index_dir: Path, wait_s: float) -> None:
    """Delete items by ID; exits 1 if some id was not in the index."""
    with open_store(index_dir, holder=holder_info(), wait_s=wait_s) as store:
        found = store.delete(list(ids))
        store.save()
        missing = [i for i in dict.fromkeys(ids) if i not in set(found)]
        say(f"deleted {len(found)} items from {index_dir}; {len(store)} remain")
    if missing:
        raise TwinError(f"not in the index: {', '.join(missing)}")


def build_params(params: dict) -> str:
    """The build's own parameters (nlist, M, ...), without the tuned knob that ``search_line`` shows."""
    shown = {k: v for k, v in params.items() if k not in ("nprobe", "ef_search", *MEASURED_KEYS)}
    return " ".join(f"{k} {v}" for k, v in shown.items())


def search_line(params: dict) -> str:
    """How searches run by default: exact, or the tuned knob with the recall measured for it."""
    knob = next((k for k in ("nprobe", "ef_search") if k in params), None)
    if knob is None:
        return "exact (every vector compared)"
    if "recall_at_10" not in params:
        return f"{knob} {params[knob]} (not tuned; rebuild to measure recall)"
    return (f"{knob} {params[knob]}: recall@10 {params['recall_at_10']:.3f} measured on {params['tuned_on']} of "
            f"its own vectors held out (target {params['target_recall']})")


@cli.command()
@index_option
@click.option("--check", is_flag=True, help="Also compare FAISS with SQLite entry by entry (reads every id).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(index_dir: Path, check: bool, as_json: bool) -> None:
    """Describe an index: size, kind, encoder, tau (read-only: works while a writer runs)."""
    from ..retriever import describe

    with open_store(index_dir, read_only=True) as store:
        facts = describe(store)
        if check:
            facts["check"] = store.verify()
    if as_json:
        click.echo(json.dumps(facts))
        return
    encoder = facts["encoder"]
    click.echo(f"index      {facts['folder']}\nitems      {facts['count']}\n"
               f"kind       {facts['kind']} (built as {facts['built_kind']}) {build_params(facts['params'])}\n"
               f"search     {search_line(facts['params'])}\n"
               f"dimension  {facts['dimension']}\nencoder    {encoder.get('name')} "
               f"(fingerprint {encoder.get('fingerprint')}, backend {encoder.get('backend') or 'torch'}, "
               f"{encoder.get('modality') or 'text'}s)\n"
               f"tau        {facts['tau']:.4f}\n"
               f"on disk    {facts['bytes_on_disk'] / 1e6:.1f} MB")
    if facts["shards"]:
        click.echo(f"shards     {len(facts['shards'])}: " + ", ".join(f"{s['count']:,}" for s in facts["shards"])
                   + " items")
    if check:
        c = facts["check"]
        verdict = "ok" if not c["missing"] and c["live_entries"] == c["rows"] else "DAMAGED"
        click.echo(f"check      {verdict}: {c['rows']} rows, {c['entries']} FAISS entries "
                   f"({c['tombstones']} tombstones), {c['missing']} rows missing from FAISS")
