"""Training the siamese CNN from scratch on a class tree of images (``twin train --encoder cnn``).

Each step draws P classes x K images (Hermans et al. 2017), distorts every image with a random
affine map (Koch et al. 2015: small rotations, shear, scale and translation), and takes a step
on the batch-hard triplet loss on cosine, after ``warmup_epochs`` on the batch-all loss
(batch-hard alone collapses every vector onto one when it starts from random weights). Classes
rotated by 90, 180 and 270 degrees count as new classes (Vinyals et al. 2016; Snell et al.
2017), and so do their mirror images: eight times the classes to learn from. After each epoch
(one pass over the training images, copies included) the model is scored by ``ways``-way one-shot accuracy on fixed
episodes of the dev tree; the best epoch is kept and training stops after ``patience`` epochs
without gain. tau is then calibrated on image pairs drawn from the dev tree: pairs of one class,
and as many pairs of two classes of one group.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import oneshot
from ..calibrate import best_threshold, save_calibration
from ..encoders.cnn import CNNEncoder, resize
from ..errors import TwinError
from ..evaluate import pair_metrics
from ..images import Labelled
from .losses import batch_all_triplet_loss, batch_hard_triplet_loss, selective_contrastive_loss
from .trainer import seed_everything

#: Mean cosine within a batch above which the vectors have collapsed onto one (healthy: ~0.1-0.3).
COLLAPSED = 0.95
#: ``--hard-loss``: the loss after the batch-all warm-up.
HARD_LOSSES = {"batch-hard": batch_hard_triplet_loss, "selective": selective_contrastive_loss}


@dataclass
class ImageTrainConfig:
    """Options of ``twin train --encoder cnn``."""

    epochs: int = 20
    classes_per_batch: int = 32  #: P
    images_per_class: int = 4  #: K
    margin: float = 0.3
    lr: float = 1e-3
    image_size: int = 48
    channels: int = 1
    width: int = 64
    out_dim: int = 128
    warmup_epochs: int = 5  #: epochs on the batch-all loss before batch-hard (which collapses from scratch)
    rotations: bool = True  #: classes rotated by 90/180/270 degrees are new classes
    mirrors: bool = True  #: mirror images of classes (and their rotations) are new classes too
    augment: bool = True  #: random affine distortions
    patience: int = 10
    dev_ways: int = 20
    dev_episodes: int = 300
    seed: int = 0
    max_minutes: float | None = None  #: stop after the epoch that passes this time
    composed: float = 0.0  #: share of each batch's classes that are composed of two classes' halves
    hard_loss: str = "batch-hard"  #: after the warm-up: a key of ``HARD_LOSSES``


def load_pixels(labelled: Sequence[Labelled], size: int, channels: int, desc: str = "reading") -> torch.Tensor:
    """Every image decoded and resized: (n, channels, size, size) in [0, 1]."""
    rows = tqdm(labelled, desc=desc, unit="image", disable=None, file=sys.stderr)
    return torch.from_numpy(np.stack([resize(item.row.load(), size, channels) for item in rows]))


def class_ids(labelled: Sequence[Labelled]) -> np.ndarray:
    """Each image's class as an integer (classes numbered in order of first appearance)."""
    numbers: dict[str, int] = {}
    return np.array([numbers.setdefault(item.label, len(numbers)) for item in labelled])


class _Sampler:
    """P classes x K images a batch, every class with K images or more, seeded."""

    def __init__(self, labels: np.ndarray, per_batch: int, per_class: int, seed: int) -> None:
        members: dict[int, list[int]] = {}
        for n, label in enumerate(labels):
            members.setdefault(int(label), []).append(n)
        self.members = {c: m for c, m in members.items() if len(m) >= per_class}
        if len(self.members) < 2:
            raise TwinError(f"training needs two classes of {per_class} images or more; found {len(self.members)}")
        self.classes = sorted(self.members)
        self.per_batch, self.per_class = min(per_batch, len(self.classes)), per_class
        self.rng = random.Random(seed)

    def batch(self, classes: int | None = None) -> np.ndarray:
        """K images of each of ``classes`` (default P) distinct classes, class by class."""
        chosen = self.rng.sample(self.classes, self.per_batch if classes is None else classes)
        return np.array([i for c in chosen for i in self.rng.sample(self.members[c], self.per_class)])

    def composed(self, classes: int) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        """``classes`` new classes, each made of two distinct classes (a, b) cut in half: K images of
        a, K of b (image i of the new class joins a's image i and b's image i), and whether the
        cut is vertical (a's left half, b's right) or horizontal (a's top, b's bottom)."""
        firsts, seconds, vertical = [], [], []
        for _ in range(classes):
            a, b = self.rng.sample(self.classes, 2)
            firsts += self.rng.sample(self.members[a], self.per_class)
            seconds += self.rng.sample(self.members[b], self.per_class)
            vertical.append(self.rng.random() < 0.5)
        return np.array(firsts), np.array(seconds), vertical


def distort(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random affine map per image (Koch et al. 2015's ranges, for a character filling the
    frame): rotation +-10 degrees, shear +-0.3, scale 0.8-1.2, translation +-5% of the side; the
    border pixels fill what comes into view."""
    n = len(pixels)

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) * (high - low) + low

    angle = uniform(-10, 10) * math.pi / 180
    shear_x, shear_y = uniform(-0.3, 0.3), uniform(-0.3, 0.3)
    scale_x, scale_y = uniform(0.8, 1.2), uniform(0.8, 1.2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotate = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    shear = torch.stack([torch.stack([torch.ones(n), shear_x], 1), torch.stack([shear_y, torch.ones(n)], 1)], 1)
    scale = torch.diag_embed(torch.stack([1 / scale_x, 1 / scale_y], 1))
    matrix = rotate @ shear @ scale
    shift = torch.stack([uniform(-0.1, 0.1), uniform(-0.1, 0.1)], 1)[:, :, None]
    grid = torch.nn.functional.affine_grid(torch.cat([matrix, shift], 2), list(pixels.shape), align_corners=False)
    return torch.nn.functional.grid_sample(pixels, grid, padding_mode="border", align_corners=False)


def join_halves(first: torch.Tensor, second: torch.Tensor, vertical: torch.Tensor) -> torch.Tensor:
    """Images made of ``first``'s left (or, where ``vertical`` is False, top) half and ``second``'s
    other half: a character no alphabet holds, as a new class to learn from. Like rotated copies,
    this multiplies the classes (task augmentation for few training classes: Yao et al., "Improving
    Generalization in Meta-learning via Task Augmentation", ICML 2021, mix classes into new ones;
    here the mix is a cut, as in CutMix: Yun et al., ICCV 2019)."""
    side = first.shape[-1]
    columns = torch.arange(side) < side // 2
    rows = torch.arange(first.shape[-2]) < first.shape[-2] // 2
    keep_first = torch.where(vertical[:, None, None], columns[None, None, :], rows[None, :, None])
    return torch.where(keep_first[:, None], first, second)


def with_rotations(pixels: torch.Tensor, labels: np.ndarray, mirrors: bool = False) -> tuple[torch.Tensor,
                                                                                             np.ndarray]:
    """The images and their copies rotated by 90, 180 and 270 degrees (and, with ``mirrors``, the
    mirror images of all four), each copy a new class."""
    classes = int(labels.max()) + 1
    views = [pixels, torch.flip(pixels, dims=(3,))] if mirrors else [pixels]
    turned = [torch.rot90(view, k, dims=(2, 3)) for view in views for k in range(4)]
    return torch.cat(turned), np.concatenate([labels + k * classes for k in range(len(turned))])


def train_cnn(train: Sequence[Labelled], dev: Sequence[Labelled] | None, config: ImageTrainConfig,
              out: Path) -> dict:
    """Train, keep the best dev epoch, calibrate tau on dev pairs (on training pairs without a
    dev tree), and save the model folder ``out``. Returns the summary (also ``twin_training.json``)."""
    seed_everything(config.seed)
    started = time.perf_counter()
    pixels = load_pixels(train, config.image_size, config.channels, "reading training images")
    labels = class_ids(train)
    mean, std = float(pixels.mean()), float(pixels.std()) or 1.0
    encoder = CNNEncoder({"image_size": config.image_size, "channels": config.channels, "width": config.width,
                          "out_dim": config.out_dim, "mean": mean, "std": std})
    dev_set = _dev_episodes(dev, config) if dev else None
    if config.rotations:
        pixels, labels = with_rotations(pixels, labels, config.mirrors)
    sampler = _Sampler(labels, config.classes_per_batch, config.images_per_class, config.seed)
    steps = max(1, math.ceil(len(pixels) / (sampler.per_batch * sampler.per_class)))
    draw = _Draw(pixels, labels, sampler, torch.Generator().manual_seed(config.seed), config.augment, mean, std,
                 round(config.composed * sampler.per_batch))
    module = encoder.module
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps)
    history, best, best_state, stale, hard = [], -1.0, None, 0, True
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train_log.jsonl", "w") as log:
        for epoch in range(config.epochs):
            hard_now = hard and epoch >= config.warmup_epochs
            loss_fn = HARD_LOSSES[config.hard_loss] if hard_now else batch_all_triplet_loss
            bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=None,
                       file=sys.stderr)
            losses, cosine = _epoch(module, draw, bar, loss_fn, config.margin, optimizer, schedule)
            record = {"epoch": epoch + 1, "mean_loss": losses, "loss": config.hard_loss if hard_now else "batch-all",
                      "mean_cosine": round(cosine, 4), "seconds": round(time.perf_counter() - started, 1)}
            if hard_now and cosine > COLLAPSED:
                hard = False
                print(f"epoch {epoch + 1}: the batch-hard loss collapsed (mean cosine {cosine:.3f}, loss "
                      f"{losses:.4f} ~ margin); back to the best epoch and the batch-all loss", file=sys.stderr)
                if best_state is not None:
                    module.load_state_dict(best_state)
            if dev_set is not None:
                record["dev_accuracy"] = _score(encoder, dev_set)
                print(f"epoch {epoch + 1}: loss {losses:.4f}, dev {dev_set[0].ways}-way one-shot "
                      f"accuracy {record['dev_accuracy']:.4f}", file=sys.stderr)
                if record["dev_accuracy"] > best:
                    best, stale, best_state = record["dev_accuracy"], 0, copy.deepcopy(module.state_dict())
                else:
                    stale += 1
            history.append(record)
            log.write(json.dumps(record) + "\n")
            log.flush()
            late = config.max_minutes is not None and time.perf_counter() - started > config.max_minutes * 60
            patient = epoch < config.warmup_epochs or stale < config.patience
            if (dev_set is not None and not patient) or late:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    encoder.save(out)
    calibration = calibrate_on_pairs(encoder, dev if dev else train, config.seed)
    save_calibration(out, calibration, f"image pairs of the {'dev' if dev else 'training'} classes")
    summary = {"config": asdict(config), "encoder": "cnn", "images": len(train),
               "classes": int(class_ids(train).max()) + 1, "steps": steps * len(history),
               "seconds": round(time.perf_counter() - started, 1), "epochs": history,
               "best_dev_accuracy": best if dev_set is not None else None, "calibration": calibration}
    (out / "twin_training.json").write_text(json.dumps(summary, indent=2))
    return summary


class _Draw:
    """Training batches: P x K images (``composed`` of the P classes made of two classes' halves),
    distorted, standardised, with their classes."""

    def __init__(self, pixels: torch.Tensor, labels: np.ndarray, sampler: _Sampler, generator: torch.Generator,
                 augment: bool, mean: float, std: float, composed: int = 0) -> None:
        self.pixels, self.labels, self.sampler, self.generator = pixels, labels, sampler, generator
        self.augment, self.mean, self.std = augment, mean, std
        self.composed = min(composed, sampler.per_batch - 1)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.sampler.batch(self.sampler.per_batch - self.composed)
        batch, labels = self.pixels[rows], torch.from_numpy(self.labels[rows])
        if self.composed:
            firsts, seconds, vertical = self.sampler.composed(self.composed)
            cut = torch.tensor(vertical).repeat_interleave(self.sampler.per_class)
            batch = torch.cat([batch, join_halves(self.pixels[firsts], self.pixels[seconds], cut)])
            new = int(self.labels.max()) + 1 + torch.arange(self.composed).repeat_interleave(self.sampler.per_class)
            labels = torch.cat([labels, new])
        batch = distort(batch, self.generator) if self.augment else batch
        return (batch - self.mean) / self.std, labels


def _epoch(module: torch.nn.Module, draw: _Draw, bar, loss_fn, margin: float, optimizer,  # noqa: ANN001
           schedule) -> tuple[float, float]:  # noqa: ANN001
    """One pass of steps: the mean loss, and the mean cosine between the vectors of the last batch
    (near 1: every vector on one, the collapse)."""
    module.train()
    losses, cosine = [], 0.0
    for _ in bar:
        batch, labels = draw()
        vectors = module(batch)
        loss = loss_fn(vectors, labels, margin)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        cosine = float((vectors.detach() @ vectors.detach().T).mean())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    return float(np.mean(losses)), cosine


def _dev_episodes(dev: Sequence[Labelled], config: ImageTrainConfig) -> tuple[oneshot.EpisodeSet, torch.Tensor]:
    groups: dict[str, set[str]] = {}
    for item in dev:
        groups.setdefault(item.group, set()).add(item.label)
    ways = min(config.dev_ways, max(len(v) for v in groups.values()))
    episodes = oneshot.tree_episodes(dev, ways, 1, config.dev_episodes, config.seed, "--dev")
    return episodes, load_pixels(dev, config.image_size, config.channels, "reading dev images")


def _score(encoder: CNNEncoder, dev_set: tuple[oneshot.EpisodeSet, torch.Tensor]) -> float:
    episodes, pixels = dev_set
    return oneshot.evaluate(embed_pixels(encoder, pixels), episodes.episodes)["accuracy"]


def embed_pixels(encoder: CNNEncoder, pixels: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Unit vectors of already resized images (``load_pixels``)."""
    c = encoder.config
    encoder.module.eval()
    with torch.inference_mode():
        return np.concatenate([encoder.module((pixels[s : s + batch_size] - c["mean"]) / c["std"]).numpy()
                               for s in range(0, len(pixels), batch_size)])


def image_pairs(labelled: Sequence[Labelled], seed: int = 0, limit: int = 5000) -> tuple[list[tuple[int, int]],
                                                                                           np.ndarray]:
    """Labelled pairs for calibration: up to ``limit`` pairs of one class, and as many of two
    classes of the same group (the hard negatives; another group where a group has one class)."""
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for n, item in enumerate(labelled):
        by_class.setdefault(item.label, []).append(n)
    positives = [(a, b) for members in by_class.values() for i, a in enumerate(members) for b in members[i + 1 :]]
    positives = rng.sample(positives, min(limit, len(positives)))
    by_group: dict[str, list[int]] = {}
    for n, item in enumerate(labelled):
        by_group.setdefault(item.group, []).append(n)
    negatives: set[tuple[int, int]] = set()
    tries = 0
    while len(negatives) < len(positives) and tries < 50 * len(positives):
        tries += 1
        a = rng.randrange(len(labelled))
        pool = by_group[labelled[a].group] if len(by_group) == 1 or rng.random() < 0.9 else range(len(labelled))
        b = rng.choice(pool)
        if labelled[a].label != labelled[b].label:
            negatives.add((min(a, b), max(a, b)))
    pairs = positives + sorted(negatives)
    return pairs, np.array([1] * len(positives) + [0] * len(negatives))


def calibrate_on_pairs(encoder: CNNEncoder, labelled: Sequence[Labelled], seed: int = 0,
                       objective: str = "accuracy") -> dict:
    """tau chosen on image pairs of ``labelled`` (``image_pairs``), and the metrics at it."""
    pairs, labels = image_pairs(labelled, seed)
    pixels = load_pixels(labelled, encoder.config["image_size"], encoder.config["channels"], "calibrating")
    vectors = embed_pixels(encoder, pixels)
    scores = np.array([float(vectors[a] @ vectors[b]) for a, b in pairs])
    tau, value = best_threshold(scores, labels, objective)
    calibration = {"tau": tau, "objective": objective, "objective_value": value,
                   "metrics": pair_metrics(scores, labels, tau)}
    return calibration
