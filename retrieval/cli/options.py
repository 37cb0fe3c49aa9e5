"""Options and helpers shared by the `twin` commands."""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import click

from ..corpus import FORMATS, Columns, Row, corpus_paths, read_corpora
from ..errors import TwinError
from ..images import ImageRow, read_images


def index_option(f: Callable) -> Callable:
    return click.option("--index", "index_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                        help="Index folder.")(f)


def model_option(f: Callable) -> Callable:
    return click.option("--model", type=click.Path(path_type=Path), default=None,
                        help="sentence-transformers, twin LSTM or twin CNN (images) model folder (default: the one "
                             "the index was built with; for a new index, the packaged all-MiniLM-L6-v2).")(f)


def backend_option(f: Callable) -> Callable:
    return click.option("--backend", type=click.Choice(["onnx", "torch"]), envvar="TWIN_BACKEND", default=None,
                        help="What runs the model: onnx (int8 ONNX Runtime, exported once into the model folder) "
                             "or torch (also from env TWIN_BACKEND; default: the index's, else onnx).")(f)


def wait_option(f: Callable) -> Callable:
    return click.option("--wait", "wait_s", type=click.FloatRange(0), default=0.0, show_default=True,
                        help="Seconds to wait for another process writing the index to finish "
                             "(one writer at a time; 0: fail at once, naming it).")(f)


def corpus_options(f: Callable) -> Callable:
    options = [
        click.option("--text-column", default=None,
                     help="Column holding the text (default: 'text', or the only column); for an image model, "
                          "the column holding image paths, relative to the file (default: 'path')."),
        click.option("--id-column", default=None,
                     help="Column holding the id (default: 'id' if present, else the line number)."),
        click.option("--id-prefix", default="", help="Put this before every id (e.g. 'b-': line 7 becomes b-7)."),
        click.option("--no-header", is_flag=True, help="CSV/TSV without a header row: columns are named 1, 2, 3, ..."),
        click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                     help="Input format (default: from the suffix; unknown suffixes are plain text, one item a line)."),
        click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True,
                     help="Texts encoded per model call."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def corpus_columns(text_column: str | None, id_column: str | None, id_prefix: str, no_header: bool) -> Columns:
    """The corpus options as ``Columns``."""
    return Columns(text=text_column, id=id_column, header=not no_header, id_prefix=id_prefix)


def rows(paths: Path | Sequence[Path], text_column: str | None, id_column: str | None, id_prefix: str,
         no_header: bool, fmt: str | None, modality: str = "text") -> Iterator[Row | ImageRow]:
    """The rows of a corpus file (or of several, one after the other: ``corpus.read_corpora``),
    as the corpus options describe it; for an image model, the images of a folder, a zip or a
    table of paths (``images.read_images``)."""
    paths = [paths] if isinstance(paths, Path) else list(paths)
    columns = corpus_columns(text_column, id_column, id_prefix, no_header)
    if modality == "image":
        if len(paths) != 1:
            raise TwinError(f"{len(paths)} corpora given; an image model reads one folder, zip or table of paths")
        return read_images(paths[0], columns, fmt)
    for path in paths:
        if path.is_dir() or (path.suffix.lower() == ".zip" and zipfile.is_zipfile(path)):
            raise TwinError(f"{path}: a {'folder' if path.is_dir() else 'zip'}; a text model reads corpus files "
                            "(folders and zips of images need an image model: --model with a folder from twin "
                            "train --encoder cnn)")
    return read_corpora(paths, columns, fmt)


def checked_rows(path: Path | Sequence[Path], *args: object,
                 modality: str = "text") -> tuple[int, bool, Iterator[Row | ImageRow]]:
    """Read the whole corpus once to find any bad row (or unreadable image) before anything is
    written; then (count, whether ids are line numbers, the rows again)."""
    total = 0
    numbered = False
    for row in progress_rows(rows(path, *args, modality=modality), modality):
        total += 1
        numbered = numbered or getattr(row, "numbered", False)
        if modality == "image":
            row.load()
    if not total:
        paths = [path] if isinstance(path, Path) else list(path)
        one = len(paths) == 1 and modality != "image"
        raise TwinError(f"{paths[0] if len(paths) == 1 else f'{len(paths)} files'}: no "
                        f"{'images' if modality == 'image' else 'items'} in the {'file' if one else 'corpus'}")
    return total, numbered, rows(path, *args, modality=modality)


def progress_rows(source: Iterator, modality: str) -> Iterator:
    """Images are checked with a progress bar (decoding takes time); text rows without."""
    if modality != "image":
        return source
    from tqdm import tqdm

    return tqdm(source, desc="checking images", unit="image", disable=None, file=sys.stderr, leave=False)


def items(source: Iterator[Row | ImageRow]) -> Iterator:
    """Corpus rows as Retriever items (an image row's bytes read as the item is reached)."""
    from ..retriever import Item

    return (Item(r.id, r.text, r.payload, image=r.read() if isinstance(r, ImageRow) else None) for r in source)


def index_modality(index_dir: Path) -> str:
    """What an index holds (its manifest's encoder), without loading a model."""
    from index.manifest import Manifest

    return Manifest.load(index_dir).encoder.get("modality") or "text"


def say(message: str) -> None:
    """A summary or notice on stderr (stdout is for results)."""
    click.echo(message, err=True)


def corpora_argument(f: Callable) -> Callable:
    return click.argument("corpora", nargs=-1, required=True, type=click.Path(path_type=Path))(f)


def expand(corpora: Sequence[Path]) -> list[Path]:
    """The CORPUS arguments with globs expanded (``corpus.corpus_paths``)."""
    return corpus_paths(corpora)


def ray_options(f: Callable) -> Callable:
    return click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
                        help="Run on Ray (the twin-retrieval[ray] extra): --ray alone starts a local Ray runtime "
                             "on this machine's cores; --ray HOST:PORT (or ray://HOST:PORT, or auto) joins an "
                             "existing cluster, whose nodes must all see the corpus, the model and the index "
                             "folder.")(f)
