"""Image items: decoding with bounds, and image corpora (a folder, a zip, or a table of paths).

Every problem is one line naming the file and why: an ``InputError`` for files and tables, an
``ImageProblem`` (a ``TwinError``) for bytes that came without a file (HTTP bodies). An image is
read at most ``MAX_IMAGE_BYTES`` and decoded at most ``MAX_PIXELS``: the size in its header is
checked before any pixel is decoded, so a 20,000 x 20,000 image costs nothing.

Layouts:
- a folder or a zip: every image file below it (``IMAGE_SUFFIXES``), in path order; its id is
  its path relative to the folder (inside the zip);
- a CSV, TSV, JSONL or Parquet file with a ``path`` column (``--text-column`` names another),
  paths relative to that file; ids from the ``id`` column, else the path; other columns are the
  payload;
- a class tree (training and one-shot evaluation): the leaf folders are the classes and their
  parents the groups (Omniglot: ``alphabet/character/*.png``).
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from .corpus import Columns, pick_column, read_records, text_value
from .errors import InputError, TwinError
from .validate import id_problem, payload_problem

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})
#: The largest image file read (bytes) and decoded (width x height).
MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 40_000_000
TABLE_SUFFIXES = frozenset({".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".parquet", ".pq"})


class ImageProblem(TwinError):
    """Bytes that are not a usable image; ``too_large`` marks the bounds (HTTP 413, else 422)."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def decode_image(data: bytes, what: str = "image") -> np.ndarray:
    """``data`` decoded as an (H, W) uint8 greyscale or (H, W, 3) RGB array; ImageProblem naming
    ``what`` when it is empty, too large, not an image or damaged."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageProblem(f"{what}: is empty (0 bytes)")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageProblem(f"{what}: {len(data):,} bytes; the limit is {MAX_IMAGE_BYTES:,}", too_large=True)
    Image.MAX_IMAGE_PIXELS = None  # our bound (checked below, before decoding) replaces Pillow's
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageProblem(f"{what}: {width} x {height} = {width * height:,} pixels; the limit is "
                                   f"{MAX_PIXELS:,}", too_large=True)
            image.load()
            return _array(image)
    except ImageProblem:
        raise
    except UnidentifiedImageError:
        raise ImageProblem(f"{what}: not an image (no format Pillow reads recognises it)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageProblem(f"{what}: {exc}", too_large=True) from None
    except (OSError, ValueError, SyntaxError, EOFError, zlib.error) as exc:  # truncated or damaged data
        raise ImageProblem(f"{what}: damaged image ({exc})") from None


def _array(image) -> np.ndarray:  # noqa: ANN001 - PIL.Image
    if image.mode in ("1", "L", "I", "I;16", "F", "LA", "P") and not _colour_palette(image):
        return np.asarray(image.convert("L"), dtype=np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _colour_palette(image) -> bool:  # noqa: ANN001 - PIL.Image
    if image.mode != "P":
        return False
    rgb = np.asarray(image.convert("RGB"))
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())


@dataclass
class ImageRow:
    """One image of a corpus: its id, where it is (for messages), how to read its bytes, the other
    columns of its table row, and that row's line (0 outside a table)."""

    id: str
    where: str
    read: Callable[[], bytes] = field(repr=False)
    payload: dict = field(default_factory=dict)
    line: int = 0
    table: tuple[str, int, str] | None = None  #: the listing file, the path's column, the path as listed

    @property
    def text(self) -> str:
        """What the index stores as the item's text: where the image came from."""
        return self.where

    def load(self) -> np.ndarray:
        """The decoded image; an InputError naming the file (and line) when it is unusable."""
        try:
            return decode_image(self.read(), self.where)
        except ImageProblem as exc:
            why = str(exc).removeprefix(f"{self.where}: ")
            if self.table:
                listing, column, listed = self.table
                raise InputError(listing, self.line, f"{listed}: {why}", column) from None
            raise InputError(self.where, None, why) from None


def is_image_file(path: str | PurePosixPath | Path) -> bool:
    """True for a name with an image suffix (hidden files and macOS resource forks excluded)."""
    name = PurePosixPath(str(path))
    return (name.suffix.lower() in IMAGE_SUFFIXES and not name.name.startswith(".")
            and "__MACOSX" not in name.parts)


def read_images(path: str | Path, columns: Columns = Columns(), fmt: str | None = None) -> Iterator[ImageRow]:
    """The images of a folder, a zip or a table of paths (see the module docstring), in order."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "no such file or folder")
    if path.is_dir():
        return _folder(path)
    if zipfile.is_zipfile(path):
        return _zip(path)
    if fmt in ("csv", "tsv", "jsonl", "parquet") or path.suffix.lower() in TABLE_SUFFIXES:
        return _table(path, columns, fmt)
    if is_image_file(path):
        return iter([ImageRow(path.name, str(path), path.read_bytes)])
    raise InputError(path, None, "not an image corpus: give a folder or a zip of images, or a CSV, TSV, JSONL "
                                 "or Parquet file with a 'path' column")


def _folder(root: Path) -> Iterator[ImageRow]:
    """Image files below ``root`` (symbolic links to folders followed), in path order."""
    found = []
    for folder, _, names in os.walk(root, followlinks=True):
        found += [Path(folder) / name for name in names]
    for file in sorted(p for p in found if p.is_file() and is_image_file(p.relative_to(root))):
        relative = file.relative_to(root).as_posix()
        yield ImageRow(relative, str(file), file.read_bytes)


def _zip(path: Path) -> Iterator[ImageRow]:
    try:
        archive = zipfile.ZipFile(path)
        names = sorted(n for n in archive.namelist() if not n.endswith("/") and is_image_file(n))
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(path, None, f"not a readable zip ({exc})") from None
    for name in names:
        yield ImageRow(name, f"{path}:{name}", _member_reader(archive, path, name))


def _member_reader(archive: zipfile.ZipFile, path: Path, name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        info = archive.getinfo(name)
        if info.file_size > MAX_IMAGE_BYTES:
            raise InputError(f"{path}:{name}", None, f"{info.file_size:,} bytes; the limit is {MAX_IMAGE_BYTES:,}")
        try:
            return archive.read(name)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise InputError(f"{path}:{name}", None, f"damaged in the zip ({exc})") from None

    return read


def _table(path: Path, columns: Columns, fmt: str | None) -> Iterator[ImageRow]:
    base = path.parent
    chosen: dict[tuple, tuple[str, str | None]] = {}
    for record in read_records(path, columns.header, fmt):
        key = tuple(record.names)
        if key not in chosen:
            chosen[key] = (pick_column(path, record.names_line, columns.text or "path", "path", record.names, True),
                           pick_column(path, record.names_line, columns.id, "id", record.names, False))
        path_col, id_col = chosen[key]
        relative = text_value(path, record, path_col)
        file = base / relative
        column = record.names.index(path_col) + 1
        if not file.is_file():
            raise InputError(path, record.line, f"{relative}: {'no such file' if not file.exists() else 'not a file'}",
                             column)
        item_id = f"{columns.id_prefix}{record.values[id_col] if id_col else relative}"
        problem = id_problem(item_id)
        if problem:
            raise InputError(path, record.line, f"id {item_id[:60]!r} {problem}")
        payload = {k: v for k, v in record.values.items() if k not in (path_col, id_col)}
        problem = payload_problem(payload)
        if problem:
            raise InputError(path, record.line, f"the other columns (the payload) {problem}")
        yield ImageRow(item_id, str(file), file.read_bytes, payload, record.line, (str(path), column, relative))


@dataclass
class Labelled:
    """An image of a class tree: its class (leaf folder), its group (the class's parent folder)."""

    row: ImageRow
    label: str
    group: str


def class_tree(path: str | Path) -> list[Labelled]:
    """The images of a class tree (a folder or a zip), labelled by leaf folder; an InputError if
    images lie outside any class folder or fewer than two classes hold two images or more."""
    path = Path(path)
    if not path.is_dir() and not zipfile.is_zipfile(path):
        raise InputError(path, None, "not a folder or a zip of class folders")
    rows = list(read_images(path))
    found = []
    for row in rows:
        parts = PurePosixPath(row.id).parts
        if len(parts) < 2:
            raise InputError(row.where, None, "an image outside any class folder (classes are the leaf folders)")
        found.append(Labelled(row, "/".join(parts[:-1]), "/".join(parts[:-2])))
    _drop_common_root(found)
    sizes = _class_sizes(found)
    if sum(n >= 2 for n in sizes.values()) < 2:
        raise InputError(path, None, f"{len(sizes)} classes with two images or more are needed; found "
                                     f"{sum(n >= 2 for n in sizes.values())} (classes are the leaf folders)")
    return found


def _drop_common_root(found: list[Labelled]) -> None:
    """A zip of one top folder (``images_background/alphabet/char``): that folder is no group."""
    groups = {f.group for f in found}
    if len(groups) == 1 and "/" not in next(iter(groups)):
        return
    tops = {f.label.split("/")[0] for f in found}
    if len(tops) == 1 and all("/" in f.label for f in found):
        top = next(iter(tops)) + "/"
        for f in found:
            f.group = f.group.removeprefix(top) if f.group != top[:-1] else ""


def _class_sizes(found: Sequence[Labelled]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for f in found:
        sizes[f.label] = sizes.get(f.label, 0) + 1
    return sizes


def load_all(rows: Sequence[ImageRow]) -> list[np.ndarray]:
    """Every image decoded (an InputError names the first bad one)."""
    return [row.load() for row in rows]
