"""N-way K-shot evaluation: given K labelled images of each of N classes never seen in training,
name the class of a new image by its nearest stored image (cosine), as an index lookup would.

Episodes come from a class tree (``images.class_tree``), drawn within one group (Omniglot: one
alphabet, the hard setting of Lake et al. 2015), or from Omniglot's official one-shot runs
(``runNN/training``, ``runNN/test``, ``runNN/class_labels.txt``).

accuracy = correct queries / queries over all episodes; ci95 = 1.96 * std(episode accuracies) /
sqrt(episodes) (the normal-approximation interval reported by Vinyals et al. 2016 and Snell et
al. 2017).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .images import ImageRow, Labelled, read_images


@dataclass
class Episode:
    """Support images (index into the image list, class) and queries (index, true class)."""

    support: list[tuple[int, str]]
    queries: list[tuple[int, str]]


@dataclass
class EpisodeSet:
    """The images the episodes refer to, the episodes, and their shape."""

    rows: list[ImageRow]
    episodes: list[Episode]
    ways: int
    shots: int


def tree_episodes(labelled: Sequence[Labelled], ways: int, shots: int, episodes: int, seed: int = 0,
                  where: str = "") -> EpisodeSet:
    """``episodes`` episodes of ``ways`` classes of one group each, ``shots`` support images and
    one query a class (all distinct images); an InputError if no group has ``ways`` classes with
    ``shots + 1`` images."""
    by_class: dict[str, list[int]] = {}
    group_of: dict[str, str] = {}
    for n, item in enumerate(labelled):
        by_class.setdefault(item.label, []).append(n)
        group_of[item.label] = item.group
    groups: dict[str, list[str]] = {}
    for label, members in by_class.items():
        if len(members) >= shots + 1:
            groups.setdefault(group_of[label], []).append(label)
    eligible = sorted(g for g, labels in groups.items() if len(labels) >= ways)
    if not eligible:
        largest = max((len(v) for v in groups.values()), default=0)
        raise InputError(where or "episodes", None, f"no group holds {ways} classes of {shots + 1} images or more "
                                                     f"(the largest holds {largest}); lower --ways or --shots")
    rng = random.Random(seed)
    drawn = []
    for _ in range(episodes):
        labels = rng.sample(sorted(groups[rng.choice(eligible)]), ways)
        support, queries = [], []
        for label in labels:
            chosen = rng.sample(by_class[label], shots + 1)
            support += [(i, label) for i in chosen[:shots]]
            queries.append((chosen[shots], label))
        drawn.append(Episode(support, queries))
    return EpisodeSet([item.row for item in labelled], drawn, ways, shots)


def is_runs_folder(path: Path) -> bool:
    """True for a folder of Omniglot one-shot runs (``run01/class_labels.txt``, ...)."""
    return path.is_dir() and any((run / "class_labels.txt").is_file() for run in path.glob("run*"))


def official_runs(path: str | Path) -> EpisodeSet:
    """Omniglot's official runs: each a 20-way 1-shot episode whose ``class_labels.txt`` pairs each
    test image with its training image (``runNN/test/itemNN.png runNN/training/itemNN.png``)."""
    path = Path(path)
    rows = {row.id: row for row in read_images(path)}
    order = list(rows)
    index = {name: n for n, name in enumerate(order)}
    episodes = []
    for labels in sorted(path.glob("run*/class_labels.txt")):
        support: set[str] = set()
        queries = []
        run = labels.parent.relative_to(path).as_posix()
        for line_no, line in enumerate(labels.read_text().splitlines(), 1):
            if not line.strip():
                continue
            # paths relative to the runs folder (run01/test/item01.png), or to the run itself
            parts = [p if p in index else f"{run}/{p}" for p in line.split()]
            if len(parts) != 2 or any(p not in index for p in parts):
                raise InputError(labels, line_no, "expected 'runNN/test/IMAGE runNN/training/IMAGE', two "
                                                  f"images under {path}")
            queries.append((index[parts[0]], parts[1]))
            support.add(parts[1])
        training = sorted(n for n in order if n.startswith(f"{run}/training/"))
        episodes.append(Episode([(index[n], n) for n in sorted(support | set(training))], queries))
    if not episodes:
        raise InputError(path, None, "no runNN/class_labels.txt found")
    ways = len(episodes[0].support)
    return EpisodeSet(list(rows.values()), episodes, ways, 1)


def evaluate(vectors: np.ndarray, episodes: Sequence[Episode]) -> dict:
    """Nearest-support accuracy of unit ``vectors`` (one row an image) over ``episodes``."""
    per_episode = []
    for episode in episodes:
        support = vectors[[i for i, _ in episode.support]]
        labels = [label for _, label in episode.support]
        scores = vectors[[i for i, _ in episode.queries]] @ support.T
        best = scores.argmax(axis=1)
        per_episode.append(np.mean([labels[b] == truth for b, (_, truth) in zip(best, episode.queries)]))
    accuracies = np.asarray(per_episode)
    ci95 = 1.96 * accuracies.std(ddof=1) / np.sqrt(len(accuracies)) if len(accuracies) > 1 else 0.0
    return {"accuracy": float(accuracies.mean()), "episodes": len(accuracies), "ci95": float(ci95)}


def used_images(episode_set: EpisodeSet) -> list[int]:
    """The indexes of the images some episode uses (only those need encoding)."""
    return sorted({i for e in episode_set.episodes for i, _ in (*e.support, *e.queries)})


def run(encode, episode_set: EpisodeSet) -> dict:  # noqa: ANN001 - Callable[[list[np.ndarray]], np.ndarray]
    """Encode the images the episodes use with ``encode`` and evaluate: the ``eval-oneshot`` result
    (accuracy, ways, shots, episodes, ci95)."""
    used = used_images(episode_set)
    encoded = encode([episode_set.rows[i].load() for i in used])
    vectors = np.zeros((len(episode_set.rows), encoded.shape[1]), dtype=np.float32)
    vectors[used] = encoded
    return {**evaluate(vectors, episode_set.episodes), "ways": episode_set.ways, "shots": episode_set.shots}
