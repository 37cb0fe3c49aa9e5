"""Commands over a person's verdicts: `twin feedback export`, and the index side of `twin
calibrate` (a tau from the verdicts, from labelled pairs, or given by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import TwinError
from .group import cli
from .options import index_option, say


@cli.group()
def feedback() -> None:
    """The verdicts given on the review page of `twin serve` (stored in the index folder)."""


@feedback.command(name="export")
@index_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Pairs file to write: .csv, .tsv, .jsonl or .parquet (default: CSV on stdout). Columns "
                   "question1, question2, is_duplicate (as `twin eval`, `calibrate` and `train` read them), "
                   "then id1, id2, score, at.")
def export(index_dir: Path, output: Path | None) -> None:
    """Write every verdict on the index's pairs as a labelled pairs file."""
    from index.manifest import Manifest

    from ..review import FeedbackStore, export_verdicts
    from ..tables import table_format

    table_format(output)
    Manifest.load(index_dir)  # one clear line for a folder that is no index
    with FeedbackStore(index_dir, read_only=True) as store:
        written = export_verdicts(store, output)
        counts = store.counts()
    say(f"{written} verdicts ({counts['duplicate']} duplicate, {counts['not_duplicate']} not duplicate)"
        + (f" written to {output}" if output else ""))


def set_index_tau(index_dir: Path, tau: float, wait_s: float) -> None:
    """`twin calibrate --index I --tau T`: write T to the index's manifest (no model needed)."""
    from index import open_store
    from index.folder import holder_info

    with open_store(index_dir, holder=holder_info(command="calibrate"), wait_s=wait_s) as store:
        before = store.manifest.tau
        store.set_tau(tau)
    say(f"tau of {index_dir}: {'unset' if before is None else f'{before:.4f}'} -> {tau:.4f}")


def calibrate_index(index_dir: Path, pairs: list | None, objective: str, min_verdicts: int, apply: bool,
                    plot: Path | None, as_json: bool, backend: str | None, wait_s: float) -> None:
    """`twin calibrate --index I` with ``--from-feedback`` (``pairs`` None) or a labelled PAIRS
    file: choose the index's tau, show the metrics before and after, write it with ``apply``."""
    from index.folder import holder_info

    from ..retriever import Retriever
    from ..review import Reviewer
    from ..review.tau import choose_tau

    holder = holder_info(command="calibrate")
    with Retriever.open(index_dir, read_only=not apply, holder=holder, wait_s=wait_s, backend=backend) as retriever:
        with Reviewer(retriever) as reviewer:
            if pairs is None:
                choice = reviewer.choose_tau(objective, min_verdicts)
            else:
                choice = choose_tau(_scored(retriever, pairs, reviewer.encoder), reviewer.encoder, retriever.tau,
                                    objective, 1)
            if apply:
                reviewer.set_tau(choice.tau)
    if plot:
        plot.parent.mkdir(parents=True, exist_ok=True)
        plot.write_bytes(choice.plot_png())
    if as_json:
        click.echo(json.dumps({**choice.to_dict(), "applied": apply}))
        return
    _report(choice, index_dir, apply, "verdicts" if pairs is None else "pairs")


def _scored(retriever, pairs: list, encoder: str) -> list:  # noqa: ANN001 - Retriever; Pair, Verdict
    """Labelled pairs as verdicts scored by the index's encoder."""
    from ..evaluate import pair_scores
    from ..review import Verdict

    if retriever.modality != "text":
        raise TwinError("a pairs file calibrates an index of texts; for images use --from-feedback or --tau")
    scores = pair_scores(retriever.encoder, pairs)
    return [Verdict(None, p.a, "", p.b, float(s), bool(p.label), encoder) for p, s in zip(pairs, scores)]


def _report(choice, index_dir: Path, applied: bool, what: str) -> None:  # noqa: ANN001 - TauChoice
    v = choice.verdicts
    aside = f"; {v['set_aside']} scored by another model set aside" if v["set_aside"] else ""
    click.echo(f"{what}: {v['duplicate']} duplicate, {v['not_duplicate']} not duplicate{aside}")
    click.echo(f"{'':12} {'now':>8} {'new':>8}")
    click.echo(f"{'tau':12} {choice.tau_before:8.4f} {choice.tau:8.4f}")
    for name in ("accuracy", "precision", "recall", "f1"):
        click.echo(f"{name:12} {choice.before[name]:8.4f} {choice.after[name]:8.4f}")
    say(f"tau {choice.tau:.4f} written to {index_dir}" if applied
        else "nothing written: pass --apply to write the new tau to the index")

