"""The `twin` command line: a thin layer over Retriever. Results go to stdout, progress and
summaries to stderr; every error is one line and a non-zero exit."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from index import KIND_NAMES, StoreError, VectorStore
from index.kinds import AUTO_APPROXIMATE_FROM
from index.manifest import MANIFEST

from .corpus import FORMATS, Columns, Row, read_corpus
from .errors import TwinError
from .util import chunked

EXIT_ERROR = 1


class TwinGroup(click.Group):
    """Turns every expected failure into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (TwinError, StoreError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug: still one line, the traceback only on request
            if os.environ.get("TWIN_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {exc} (set TWIN_DEBUG=1 for a traceback)"
            ) from None


@click.group(cls=TwinGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="twin-retrieval")
def cli() -> None:
    """twin: one-shot near-duplicate retrieval with a siamese encoder and FAISS."""


# -- shared options -----------------------------------------------------------------------
def index_option(f: Callable) -> Callable:
    return click.option("--index", "index_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                        help="Index folder.")(f)


def model_option(f: Callable) -> Callable:
    return click.option("--model", type=click.Path(path_type=Path), default=None,
                        help="sentence-transformers model folder (default: the one the index was built "
                             "with; for a new index, the packaged all-MiniLM-L6-v2).")(f)


def corpus_options(f: Callable) -> Callable:
    options = [
        click.option("--text-column", default=None,
                     help="Column holding the text (default: 'text', or the only column)."),
        click.option("--id-column", default=None,
                     help="Column holding the id (default: 'id' if present, else the line number)."),
        click.option("--no-header", is_flag=True, help="CSV/TSV without a header row: columns are named 1, 2, 3, ..."),
        click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                     help="Input format (default: from the suffix; unknown suffixes are plain text, one item a line)."),
        click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True,
                     help="Texts encoded per model call."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _rows(
    path: Path, text_column: str | None, id_column: str | None, no_header: bool, fmt: str | None
) -> Iterator[Row]:
    """The rows of a corpus file, as the corpus options describe it."""
    return read_corpus(path, Columns(text=text_column, id=id_column, header=not no_header), fmt)


def _checked_rows(path: Path, *args: object) -> tuple[int, Iterator[Row]]:
    """Read the whole file once to find any bad row before anything is written; then the rows."""
    total = sum(1 for _ in _rows(path, *args))
    if not total:
        raise TwinError(f"{path}: no items in the file")
    return total, _rows(path, *args)


def _items(rows: Iterator[Row]) -> Iterator:
    from .retriever import Item

    return (Item(r.id, r.text, r.payload) for r in rows)


def _say(message: str) -> None:
    click.echo(message, err=True)


# -- commands -----------------------------------------------------------------------------
@cli.command()
@click.argument("corpus", type=click.Path(path_type=Path))
@index_option
@model_option
@corpus_options
@click.option("--index-type", type=click.Choice(KIND_NAMES), default="auto", show_default=True,
              help=f"FAISS index kind: auto is exact (flat) below {AUTO_APPROXIMATE_FROM:,} items, "
                   "then ivf-sq8; hnsw and ivf-pq on request.")
@click.option("--force", is_flag=True, help="Replace an existing index in the folder.")
def build(corpus: Path, index_dir: Path, model: Path | None, text_column: str | None, id_column: str | None,
          no_header: bool, fmt: str | None, batch_size: int, index_type: str, force: bool) -> None:
    """Build an index from CORPUS (CSV, TSV, JSONL, Parquet or plain text).

    The index is built in a temporary folder beside INDEX and moved into place when complete, so
    a failure leaves any previous index untouched."""
    from .retriever import Retriever

    total, rows = _checked_rows(corpus, text_column, id_column, no_header, fmt)
    _check_target(index_dir, force)
    staging = index_dir.with_name(f".{index_dir.name}.building")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with Retriever.create(staging, model, index_type) as retriever:
            retriever.add(_items(rows), batch_size, total=total)
            retriever.save()
            summary = (f"built {index_dir}: {len(retriever)} items from {total} rows of {corpus} "
                       f"({retriever.store.built_kind}, tau {retriever.tau:.4f})")
        _swap_in(staging, index_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _say(summary)


def _check_target(index_dir: Path, force: bool) -> None:
    if (index_dir / MANIFEST).exists():
        if not force:
            raise TwinError(f"{index_dir}: an index already exists (use --force to replace it)")
    elif index_dir.exists() and (not index_dir.is_dir() or any(index_dir.iterdir())):
        raise TwinError(f"{index_dir}: exists and is not an index; choose another folder")


def _swap_in(staging: Path, index_dir: Path) -> None:
    """Replace ``index_dir`` by ``staging`` with two renames."""
    old = index_dir.with_name(f".{index_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if index_dir.exists():
        index_dir.rename(old)
    staging.rename(index_dir)
    shutil.rmtree(old, ignore_errors=True)


@cli.command()
@click.argument("corpus", type=click.Path(path_type=Path))
@index_option
@model_option
@corpus_options
def add(corpus: Path, index_dir: Path, model: Path | None, text_column: str | None, id_column: str | None,
        no_header: bool, fmt: str | None, batch_size: int) -> None:
    """Add or replace (same id) the items of CORPUS in an existing index; no retraining."""
    from .retriever import Retriever

    total, rows = _checked_rows(corpus, text_column, id_column, no_header, fmt)
    with Retriever.open(index_dir, model) as retriever:
        before = len(retriever)
        written = retriever.add(_items(rows), batch_size, total=total)
        retriever.save()
        _say(f"added {written} rows to {index_dir}: {len(retriever) - before} new, {len(retriever)} items in all")


@cli.command()
@click.argument("texts", nargs=-1)
@index_option
@model_option
@click.option("-k", "k", type=click.IntRange(1, 10_000), default=5, show_default=True, help="Matches per query.")
@click.option("--threshold", type=click.FloatRange(-1, 1), default=None,
              help="Duplicate when cosine > this (default: the index's calibrated tau).")
@click.option("--duplicates-only", is_flag=True, help="Show only matches above the threshold.")
@click.option("--nprobe", type=click.IntRange(1), default=None, help="IVF lists to visit (ivf kinds).")
@click.option("--ef-search", type=click.IntRange(1), default=None, help="HNSW search breadth (hnsw kind).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a query, one a line.")
def query(texts: tuple[str, ...], index_dir: Path, model: Path | None, k: int, threshold: float | None,
          duplicates_only: bool, nprobe: int | None, ef_search: int | None, as_json: bool) -> None:
    """Find the nearest stored items of each TEXT (none given: one query a line from stdin)."""
    from .retriever import Retriever

    lines = list(texts) if texts else [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not lines:
        raise TwinError("no query: give TEXT arguments or lines on stdin")
    with Retriever.open(index_dir, model) as retriever:
        tau = retriever.tau if threshold is None else threshold
        for start in range(0, len(lines), 256):
            results = retriever.search(lines[start : start + 256], k, threshold, duplicates_only,
                                       nprobe=nprobe, ef_search=ef_search)
            for result in results:
                click.echo(json.dumps(result.to_dict(), ensure_ascii=False) if as_json else _format(result, tau))


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
@corpus_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write results to OUT.csv or OUT.jsonl (default: CSV on stdout).")
@click.option("--threshold", type=click.FloatRange(-1, 1), default=None,
              help="Duplicate when cosine > this (default: the index's calibrated tau).")
@click.option("--exclude-self", is_flag=True, help="Skip a match whose id is the row's own id "
              "(for checking a corpus against its own index).")
def dedup(input_path: Path, index_dir: Path, model: Path | None, text_column: str | None, id_column: str | None,
          no_header: bool, fmt: str | None, batch_size: int, output: Path | None, threshold: float | None,
          exclude_self: bool) -> None:
    """For each row of INPUT: its best match in the index, the score and the verdict."""
    from .retriever import Retriever

    fields = ["id", "text", "match_id", "match_text", "score", "duplicate"]
    _, rows = _checked_rows(input_path, text_column, id_column, no_header, fmt)
    total = duplicates = 0
    with Retriever.open(index_dir, model) as retriever, _Writer(output, fields) as write:
        for chunk in chunked(rows, 256):
            results = retriever.search([r.text for r in chunk], 2 if exclude_self else 1, threshold,
                                       batch_size=batch_size)
            for row, result in zip(chunk, results):
                best = next((m for m in result.matches if not (exclude_self and m.id == row.id)), None)
                total += 1
                duplicates += bool(best and best.duplicate)
                write({"id": row.id, "text": row.text, "match_id": best.id if best else "",
                       "match_text": best.text if best else "", "score": round(best.score, 6) if best else "",
                       "duplicate": bool(best and best.duplicate)})
        tau = retriever.tau if threshold is None else threshold
    _say(f"dedup: {total} rows, {duplicates} duplicates, {total - duplicates} new (cosine > {tau:.4f})"
         + (f"; written to {output}" if output else ""))


class _Writer:
    """Writes dicts as CSV (file or stdout) or JSONL, by the output's suffix."""

    def __init__(self, path: Path | None, fields: list[str]) -> None:
        self.path, self.fields = path, fields

    def __enter__(self) -> Callable[[dict], None]:
        self.file = open(self.path, "w", newline="", encoding="utf-8") if self.path else sys.stdout
        if self.path and self.path.suffix.lower() in (".jsonl", ".ndjson"):
            return lambda row: self.file.write(json.dumps(row, ensure_ascii=False) + "\n")
        tsv = self.path is not None and self.path.suffix.lower() == ".tsv"
        writer = csv.DictWriter(self.file, self.fields, delimiter="\t" if tsv else ",")
        writer.writeheader()
        return writer.writerow

    def __exit__(self, *_: object) -> None:
        if self.path:
            self.file.close()


@cli.command()
@click.argument("ids", nargs=-1, required=True)
@index_option
def delete(ids: tuple[str, ...], index_dir: Path) -> None:
    """Delete items by ID; exits 1 if some id was not in the index."""
    with VectorStore.open(index_dir) as store:
        found = store.delete(list(ids))
        store.save()
        missing = [i for i in dict.fromkeys(ids) if i not in set(found)]
        _say(f"deleted {len(found)} items from {index_dir}; {len(store)} remain")
    if missing:
        raise TwinError(f"not in the index: {', '.join(missing)}")


def pair_options(f: Callable) -> Callable:
    options = [
        click.option("--first-column", default="question1", show_default=True, help="Column of the first text."),
        click.option("--second-column", default="question2", show_default=True, help="Column of the second text."),
        click.option("--label-column", default="is_duplicate", show_default=True,
                     help="Column of the 0/1 label (1 = duplicate)."),
        click.option("--no-header", is_flag=True, help="CSV/TSV without a header row: columns are named 1, 2, 3, "
                     "... (a BiMPM-style 'label TAB q1 TAB q2 TAB id' file is recognised by itself)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _pairs(path: Path, first: str, second: str, label: str, no_header: bool):  # noqa: ANN202 - Labelled
    from .pairs import PairColumns, read_labelled

    if no_header and (first, second, label) == ("question1", "question2", "is_duplicate"):
        first, second, label = "2", "3", "1"
    return read_labelled(path, PairColumns(first, second, label, header=not no_header))


def _model_encoder(model: Path | None):  # noqa: ANN202 - Encoder
    from .encoders import load_encoder

    return load_encoder(model)


@cli.command()
@click.argument("pairs_path", metavar="PAIRS", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Model folder to write.")
@click.option("--encoder", "encoder_kind", type=click.Choice(["transformer", "lstm"]), default="transformer",
              show_default=True, help="Fine-tune the packaged MiniLM, or train a siamese BiLSTM from scratch.")
@click.option("--model", "base", type=click.Path(path_type=Path), default=None,
              help="transformer: the sentence-transformers folder to start from (default: packaged MiniLM).")
@click.option("--epochs", type=click.IntRange(1), default=1, show_default=True, help="Passes over the pairs.")
@click.option("--batch-size", type=click.IntRange(2), default=32, show_default=True, help="Duplicate pairs a batch.")
@click.option("--margin", type=click.FloatRange(0, 2), default=0.3, show_default=True,
              help="Triplet margin alpha (chosen on QQP dev among 0.1/0.3/0.5; see BENCHMARKS.md).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Learning rate (default: 2e-5 transformer, 2e-3 LSTM).")
@click.option("--max-seq-length", type=click.IntRange(4, 512), default=64, show_default=True, help="Tokens a text.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same data: same model.")
@click.option("--dev", type=click.Path(path_type=Path), default=None,
              help="Labelled dev pairs: early stopping, leakage filter and calibration of tau.")
@click.option("--exclude", type=click.Path(path_type=Path), multiple=True,
              help="Another evaluation file whose questions must not be trained on (repeatable).")
@click.option("--objective", default="accuracy", show_default=True, help="tau objective: accuracy, f1, precision@R.")
@click.option("--topic-batches/--random-batches", default=False, show_default=True,
              help="Fill each batch with neighbouring anchors (hard in-batch negatives, but unlabelled "
                   "duplicates too: 0.774 vs 0.787 QQP dev accuracy), or at random.")
@click.option("--near-miss-rows/--no-near-miss-rows", default=False, show_default=True,
              help="Also train on each labelled non-duplicate as anchor = positive (dropout view) vs its partner.")
@click.option("--near-miss-pairs", type=click.IntRange(0), default=32, show_default=True,
              help="Labelled non-duplicate pairs sampled into each batch for the quadruplet term (0: off).")
@pair_options
@click.option("--force", is_flag=True, help="Replace an existing model folder.")
def train(pairs_path: Path, out: Path, encoder_kind: str, base: Path | None, epochs: int, batch_size: int,
          margin: float, lr: float | None, max_seq_length: int, seed: int, dev: Path | None, exclude: tuple[Path, ...],
          objective: str, topic_batches: bool, near_miss_rows: bool, near_miss_pairs: int, first_column: str,
          second_column: str, label_column: str, no_header: bool, force: bool) -> None:
    """Train a siamese encoder with triplet loss on PAIRS (or triplets) and save it to --out."""
    from .calibrate import calibrate_model, save_calibration
    from .pairs import drop_leaks, leakage_key
    from .training.batches import TripletBatches
    from .training.trainer import LSTMTrainable, TrainConfig, TransformerTrainable
    from .training.trainer import train as run

    if out.exists() and any(out.iterdir()) and not force:
        raise TwinError(f"{out}: exists and is not empty (use --force to replace it)")
    data = _pairs(pairs_path, first_column, second_column, label_column, no_header)
    dev_data = _pairs(dev, first_column, second_column, label_column, no_header) if dev else None
    held_out = set(dev_data.texts()) if dev_data else set()
    for path in exclude:
        held_out |= _pairs(path, first_column, second_column, label_column, no_header).texts()
    pairs, dropped = drop_leaks(data.pairs, held_out)
    keys = {leakage_key(t) for t in held_out}
    triplets = [t for t in data.triplets if not any(leakage_key(x) in keys for x in t)]
    dropped += len(data.triplets) - len(triplets)
    _say(f"train: {len(pairs) + len(triplets)} rows of {pairs_path} kept, {dropped} dropped for sharing a "
         f"question with the evaluation files")
    try:
        batches = TripletBatches(pairs, triplets, batch_size, seed, near_miss_rows, near_miss_pairs)
    except ValueError as exc:
        raise TwinError(f"{pairs_path}: {exc}") from None
    config = TrainConfig(encoder_kind, epochs, batch_size, margin, lr, max_seq_length, seed,
                         topic_batches=topic_batches)
    if encoder_kind == "transformer":
        trainable = TransformerTrainable(base, max_seq_length)
    else:
        trainable = LSTMTrainable([t for p in pairs for t in (p.a, p.b)] + [x for t in triplets for x in t],
                                  max_seq_length, seed)
    if out.exists() and force:
        shutil.rmtree(out)
    summary = run(trainable, batches, config, out, dev_data.pairs if dev_data else None)
    _say(f"trained {encoder_kind} on {summary['pairs']} duplicate pairs in {summary['seconds']} s -> {out}")
    if dev_data:
        calibration = calibrate_model(_model_encoder(out), dev_data.pairs, objective)
        save_calibration(out, calibration, str(dev))
        m = calibration["metrics"]
        _say(f"calibrated on {dev}: tau {calibration['tau']:.4f}, accuracy {m['accuracy']:.4f}, F1 {m['f1']:.4f}")


@cli.command()
@click.argument("pairs_path", metavar="PAIRS", type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Model folder (default: packaged MiniLM).")
@click.option("--objective", default="accuracy", show_default=True,
              help="Maximise accuracy, f1, or precision@R (best precision with recall >= R, e.g. precision@0.9).")
@pair_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def calibrate(pairs_path: Path, model: Path | None, objective: str, first_column: str, second_column: str,
              label_column: str, no_header: bool, as_json: bool) -> None:
    """Choose tau on labelled PAIRS and save it in the model folder."""
    from .calibrate import calibrate_model, save_calibration

    if model is None:
        raise TwinError("--model is required: the packaged model's folder is read-only (its tau is built in)")
    data = _pairs(pairs_path, first_column, second_column, label_column, no_header)
    result = calibrate_model(_model_encoder(model), data.pairs, objective)
    save_calibration(model, result, str(pairs_path))
    if as_json:
        click.echo(json.dumps(result))
    else:
        _say(f"tau {result['tau']:.4f} ({objective} {result['objective_value']:.4f}) saved in {model}")


@cli.command(name="eval")
@click.argument("pairs_path", metavar="PAIRS", type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Model folder (default: packaged MiniLM).")
@click.option("--threshold", type=click.FloatRange(-1, 1), default=None, help="tau (default: the model's).")
@pair_options
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write score histograms and the precision-recall curve to this PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate(pairs_path: Path, model: Path | None, threshold: float | None, first_column: str, second_column: str,
             label_column: str, no_header: bool, plot: Path | None, as_json: bool) -> None:
    """Pair metrics of a model on labelled PAIRS at its tau."""
    import numpy as np

    from . import evaluate as ev
    from .retriever import DEFAULT_TAU

    data = _pairs(pairs_path, first_column, second_column, label_column, no_header)
    encoder = _model_encoder(model)
    tau = threshold if threshold is not None else (encoder.tau if encoder.tau is not None else DEFAULT_TAU)
    scores = ev.pair_scores(encoder, data.pairs)
    labels = np.array([p.label for p in data.pairs])
    metrics = ev.pair_metrics(scores, labels, tau)
    if plot:
        ev.plot(scores, labels, tau, plot, title=f"{encoder.name} on {pairs_path.name}")
    if as_json:
        click.echo(json.dumps(metrics))
        return
    for key, value in metrics.items():
        click.echo(f"{key:18} {value:.4f}" if isinstance(value, float) else f"{key:18} {value}")


@cli.command(name="eval-retrieval")
@click.argument("pairs_path", metavar="PAIRS", type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Model folder (default: packaged MiniLM).")
@pair_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_retrieval(pairs_path: Path, model: Path | None, first_column: str, second_column: str, label_column: str,
                   no_header: bool, as_json: bool) -> None:
    """One-shot retrieval: index every question of PAIRS, find each one's duplicates."""
    from .evaluate import retrieval_metrics

    data = _pairs(pairs_path, first_column, second_column, label_column, no_header)
    metrics = retrieval_metrics(_model_encoder(model), data.pairs)
    if as_json:
        click.echo(json.dumps(metrics))
        return
    for key, value in metrics.items():
        click.echo(f"{key:12} {value:.4f}" if isinstance(value, float) else f"{key:12} {value}")


@cli.command()
@index_option
@model_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless told).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--api-key", envvar="TWIN_API_KEY", default=None,
              help="Writes need 'Authorization: Bearer KEY' (also from env TWIN_API_KEY).")
@click.option("--read-only", is_flag=True, help="Refuse every write with 403.")
@click.option("--no-batching", is_flag=True, help="Encode each search on its own (no micro-batching).")
@click.option("--max-wait-ms", type=click.FloatRange(0, 1000), default=2.0, show_default=True,
              help="How long a search may wait for others to share its encoder call.")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Allow this browser origin (repeatable; none by default).")
@click.option("--snapshot-every", type=click.FloatRange(1), default=30.0, show_default=True,
              help="Seconds between FAISS snapshots when writes happened (writes are durable at once).")
def serve(index_dir: Path, model: Path | None, host: str, port: int, api_key: str | None, read_only: bool,
          no_batching: bool, max_wait_ms: float, cors_origins: tuple[str, ...], snapshot_every: float) -> None:
    """Serve nearest-match lookups, upserts and deletes over HTTP (OpenAPI at /docs)."""
    import faiss
    import uvicorn

    from .api import Settings, create_app
    from .retriever import Retriever

    faiss.omp_set_num_threads(1)  # many request threads, one query each: one OpenMP thread is faster
    retriever = Retriever.open(index_dir, model)
    settings = Settings(api_key=api_key or None, read_only=read_only, batching=not no_batching,
                        max_wait_ms=max_wait_ms, cors_origins=list(cors_origins), snapshot_every_s=snapshot_every)
    _say(f"serving {index_dir} ({len(retriever)} items) on http://{host}:{port} (docs at /docs)")
    try:
        uvicorn.run(create_app(retriever, settings), host=host, port=port, workers=1, log_level="warning")
    finally:
        retriever.close()


@cli.command()
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(index_dir: Path, as_json: bool) -> None:
    """Describe an index: size, kind, encoder, tau."""
    from .retriever import describe

    with VectorStore.open(index_dir) as store:
        facts = describe(store)
    if as_json:
        click.echo(json.dumps(facts))
        return
    encoder = facts["encoder"]
    click.echo(f"index      {facts['folder']}\nitems      {facts['count']}\n"
               f"kind       {facts['kind']} (built as {facts['built_kind']}) {facts['params'] or ''}\n"
               f"dimension  {facts['dimension']}\nencoder    {encoder.get('name')} "
               f"(fingerprint {encoder.get('fingerprint')})\ntau        {facts['tau']:.4f}\n"
               f"on disk    {facts['bytes_on_disk'] / 1e6:.1f} MB")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="twin")


if __name__ == "__main__":
    main()
