"""`twin groups`: every group of near-duplicates inside a corpus, and which item of each to keep."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..errors import TwinError
from ..tables import table_format
from .group import cli
from .options import (
    backend_option,
    checked_rows,
    corpora_argument,
    corpus_options,
    expand,
    index_modality,
    model_option,
    ray_options,
    rows,
    say,
)


@cli.command()
@corpora_argument
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="One row per item: OUT.csv, .tsv, .jsonl or .parquet (written beside, renamed when complete).")
@click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="An index built from this corpus: reuse its vectors (and its model and tau) instead of "
                   "encoding; items it lacks or holds with another text are encoded.")
@model_option
@backend_option
@corpus_options
@click.option("--threshold", type=click.FloatRange(-1, 1, min_open=True, max_open=True), default=None,
              help="Duplicates when cosine > this (default: the index's or the model's calibrated tau).")
@click.option("--linkage", type=click.Choice(["star", "connected"]), default="star", show_default=True,
              help="star: every member is a duplicate of its group's representative (no chains); "
                   "connected: groups are the connected components of 'duplicate of'.")
@click.option("--keep", type=click.Choice(["first", "longest", "central"]), default="first", show_default=True,
              help="The item kept of each group: first in corpus order, the longest text, or the one most "
                   "similar to the rest of its group.")
@click.option("--pairs", "pairs_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every pair above tau once (id_a, id_b, score) to this file, for review.")
@click.option("-k", "k", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Neighbours fetched per item in the self-join (an item with more above tau is searched "
                   "further, so this changes speed, not the result).")
@click.option("--nprobe", type=click.IntRange(1), default=None,
              help="IVF lists visited per item in the self-join of 50,000 items or more (default 8).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout.")
@ray_options
def groups(corpora: tuple[Path, ...], output: Path, index_dir: Path | None, model: Path | None, backend: str | None,
           text_column: str | None, id_column: str | None, id_prefix: str, no_header: bool, fmt: str | None,
           batch_size: int, threshold: float | None, linkage: str, keep: str, pairs_path: Path | None, k: int,
           nprobe: int | None, as_json: bool, ray_address: str | None) -> None:
    """Find every group of near-duplicates in CORPORA (files or globs, read one after the other)
    and choose one item of each to keep (with an image model: the images of a folder, a zip or a
    table of image paths). With --ray, the encoding and the self-join run on a Ray cluster and
    give the same groups.

    Writes one row per item (id, group, representative, score: cosine to the representative,
    keep, then the item's other columns); items in no group have an empty group and keep=true.
    Rows with keep=true are the deduplicated corpus."""
    from ..encoders import modality_of
    from ..groups import Grouper, write_groups, write_pairs

    corpus = expand(corpora)
    table_format(output)
    table_format(pairs_path) if pairs_path else None
    modality = index_modality(index_dir) if index_dir is not None else modality_of(model)
    corpus_args = (text_column, id_column, id_prefix, no_header, fmt)
    if modality == "image":  # every image checked before any work
        checked_rows(corpus, *corpus_args, modality=modality)
    elif next(rows(corpus, *corpus_args), None) is None:
        raise TwinError(f"{corpus[0] if len(corpus) == 1 else f'{len(corpus)} files'}: no items in the "
                        f"{'file' if len(corpus) == 1 else 'corpus'}")
    grouper = (Grouper.for_index(index_dir, model, threshold, backend) if index_dir is not None
               else Grouper.for_model(model, threshold, backend))
    cluster = _cluster(ray_address, modality)
    try:
        with grouper:
            if cluster is not None:
                grouper.on_ray(cluster)
            grouping = grouper.group(rows(corpus, *corpus_args, modality=modality), linkage, keep, k, batch_size,
                                     nprobe)
    finally:
        if cluster is not None:
            from ..distributed import disconnect

            disconnect(cluster)
    started = time.perf_counter()
    write_groups(grouping, output, (r.payload for r in rows(corpus, *corpus_args, modality=modality)))
    if pairs_path:
        write_pairs(grouping, pairs_path)
    grouping.seconds["write"] = round(time.perf_counter() - started, 3)
    facts = {**grouping.summary(), "pairs": len(grouping.pairs), "linkage": linkage, "keep": keep,
             "reused_vectors": grouper.reused, "seconds": grouping.seconds}
    say(f"groups: {facts['items']:,} items, {facts['groups']:,} groups, {facts['items_in_groups']:,} items in "
        f"groups, {facts['items_to_drop']:,} to drop (cosine > tau {facts['tau']:.4f}, {linkage} linkage, "
        f"keep {keep}); written to {output}" + (f", pairs to {pairs_path}" if pairs_path else ""))
    if as_json:
        click.echo(json.dumps(facts))


def _cluster(ray_address: str | None, modality: str):  # noqa: ANN202 - distributed.Cluster | None
    """The Ray cluster to group on, if asked for."""
    if ray_address is None:
        return None
    if modality != "text":
        raise TwinError("--ray groups corpora of texts; group images without --ray")
    from ..distributed import connect

    return connect(ray_address)

