"""A cross-encoder teacher that labels more training pairs for the bi-encoder (AugSBERT: Thakur et
al., "Augmented SBERT", NAACL 2021).

1. ``CrossEncoderTeacher.train``: a cross-encoder (both texts in one input, one logit) from the
   packaged MiniLM's weights and a new head, trained with binary cross-entropy on the labelled
   pairs, each shown either way round.
2. ``mine``: candidate pairs among the training texts only: each text's nearest other texts by
   the base bi-encoder, minus the pairs already labelled.
3. ``CrossEncoderTeacher.label``: P(duplicate) of the pair as mined; above the teacher's
   threshold (its best-accuracy one on the dev pairs, or 0.5 without them) a silver duplicate,
   else a silver non-duplicate.
4. ``bounded``: silver duplicates that would chain duplicate groups into large ones are left out.

The product stays a bi-encoder + cosine + tau: the teacher only labels, and is not kept; what it
labelled is (``write_silver``: ``silver_pairs.jsonl`` in the model folder), so that another model
can be trained on the same silver pairs without training the teacher again (``twin train --silver``).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..encoders import Encoder
from ..errors import ModelError
from ..pairs import Pair
from ..text import normalize
from .lengths import by_length, forward_by_length
from .recipe import TEACHER_EPOCHS, TEACHER_LR

TRAIN_CHUNK = 8  #: pairs a forward pass in training (of a batch of 32)


class CrossEncoderTeacher:
    """A one-logit cross-encoder over a pair of texts."""

    def __init__(self, base: str | Path, max_length: int = 128, seed: int = 0) -> None:
        """The base model with a new one-logit head, whose initial weights come from ``seed`` alone (not
        from whatever drew random numbers earlier in the process: same seed, same teacher)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # "newly initialised head" is the point here, not news
        hf_logging.disable_progress_bar()
        torch.manual_seed(seed)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(base))
            self.model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{base}: cannot be loaded as a cross-encoder teacher ({exc})") from None
        self.max_length = max_length

    def _logits(self, first: Sequence[str], second: Sequence[str], chunk: int = TRAIN_CHUNK) -> torch.Tensor:
        """One logit a pair, the pairs run in chunks of like length (``lengths``)."""
        first, second = list(first), list(second)
        pieces = self.tokenizer(first, second, truncation=True, max_length=self.max_length)["input_ids"]
        return forward_by_length(lambda rows: self._forward([first[i] for i in rows], [second[i] for i in rows]),
                                 [len(p) for p in pieces], chunk)

    def _forward(self, first: list[str], second: list[str]) -> torch.Tensor:
        features = self.tokenizer(first, second, padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model(**features).logits.squeeze(-1).float()

    def train(self, pairs: Sequence[Pair], epochs: int = 1, batch_size: int = 32, lr: float = TEACHER_LR,
              seed: int = 0) -> None:
        """Binary cross-entropy on the labelled pairs; linear warm-up over 10% of the steps, then decay."""
        rng = random.Random(seed)
        torch.manual_seed(seed)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr)
        steps = max(1, epochs * -(-len(pairs) // batch_size))
        warm = max(1, steps // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
        loss_fn = torch.nn.BCEWithLogitsLoss()
        self.model.train()
        with tqdm(total=steps, desc="teacher", unit="batch", disable=None, file=sys.stderr) as bar:
            for _ in range(epochs):
                order = list(range(len(pairs)))
                rng.shuffle(order)
                for start in range(0, len(order), batch_size):
                    chosen = [pairs[i] for i in order[start:start + batch_size]]
                    flip = [rng.random() < 0.5 for _ in chosen]  # either way round: the teacher is symmetric
                    logits = self._logits([p.b if f else p.a for p, f in zip(chosen, flip)],
                                          [p.a if f else p.b for p, f in zip(chosen, flip)])
                    loss = loss_fn(logits, torch.tensor([float(p.label) for p in chosen]))
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                    optimizer.step()
                    schedule.step()
                    bar.update(1)
        self.model.eval()

    def save(self, folder: str | Path) -> None:
        """Write the cross-encoder (weights, head and tokenizer) to ``folder``, which
        ``CrossEncoderTeacher(folder)`` loads again (for analysis scripts: `twin train` keeps only what it labelled)."""
        self.model.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))

    def label(self, pairs: Sequence[tuple[str, str]], batch_size: int = 128) -> np.ndarray:
        """P(duplicate) of each pair, in the order given. The teacher saw each training pair either
        way round; the mean of both orders, twice the work, was the default until round 13, whose
        one-order teacher's student scored as well (BENCHMARKS.md)."""
        out = np.empty(len(pairs), np.float32)
        self.model.eval()
        with torch.inference_mode(), tqdm(total=len(pairs), desc="labelling", unit="pair", disable=None,
                                          file=sys.stderr) as bar:
            for rows in by_length([len(a) + len(b) for a, b in pairs], batch_size):  # of like length, in characters
                out[rows] = torch.sigmoid(self._forward([pairs[i][0] for i in rows],
                                                        [pairs[i][1] for i in rows])).numpy()
                bar.update(len(rows))
        return out


def mine(pairs: Sequence[Pair], encoder: Encoder, neighbours: int = 2) -> list[tuple[str, str]]:
    """Each training text's ``neighbours`` nearest other training texts by ``encoder``, once per
    pair, minus the pairs already labelled (only texts of ``pairs``: never evaluation texts)."""
    import faiss

    texts = sorted({normalize(t) for p in pairs for t in (p.a, p.b)})
    if len(texts) < 2:
        return []
    vectors = encoder.encode(texts, 128)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    _, found = index.search(vectors, min(len(texts), neighbours + 1))
    seen = {frozenset((normalize(p.a), normalize(p.b))) for p in pairs}
    out = []
    for i, row in enumerate(found.tolist()):
        for j in row:
            key = frozenset((texts[i], texts[j]))
            if j >= 0 and j != i and key not in seen:
                seen.add(key)
                out.append((texts[i], texts[j]))
    return out


@dataclass
class Silver:
    """What the teacher labelled: the pairs kept, its threshold (and its accuracy there on the dev
    pairs, where given), and the duplicates left out."""

    pairs: list[Pair]
    threshold: float
    left_out: int
    dev_accuracy: float | None = None


def silver_pairs(pairs: Sequence[Pair], base: str | Path, encoder: Encoder, neighbours: int = 2,
                 epochs: int = TEACHER_EPOCHS, seed: int = 0, dev: Sequence[Pair] | None = None,
                 lr: float = TEACHER_LR) -> Silver:
    """Pairs mined among the training texts and labelled by a cross-encoder trained on ``pairs``,
    and the teacher's threshold: the best-accuracy one on ``dev`` where given (a teacher trained
    on few pairs is not calibrated at 0.5: on MRPC it called every mined pair a duplicate), else 0.5."""
    teacher = CrossEncoderTeacher(base, seed=seed)
    teacher.train(pairs, epochs, lr=lr, seed=seed)
    threshold, accuracy = 0.5, None
    if dev:
        from ..calibrate import best_threshold

        scores = teacher.label([(p.a, p.b) for p in dev])
        threshold, accuracy = map(float, best_threshold(scores, np.array([p.label for p in dev])))
    candidates = mine(pairs, encoder, neighbours)
    scores = teacher.label(candidates) if candidates else np.zeros(0, np.float32)
    silver = [Pair(a, b, int(s > threshold), score=float(s)) for (a, b), s in zip(candidates, scores)]
    kept = bounded(silver, pairs)
    return Silver(kept, threshold, len(silver) - len(kept), accuracy)


def bounded(silver: Sequence[Pair], gold: Sequence[Pair], largest: int = 8) -> list[Pair]:
    """``silver`` without the duplicates that would chain groups (through the gold duplicates and
    the silver ones kept before them) into one of more than ``largest`` texts.

    Duplicates are transitive in training (a group's members are never each other's negatives), and
    nearest-neighbour pairs chain: a teacher that says "duplicate" to most of them (on MRPC, 82%)
    would fuse thousands of texts into one group, which then has no negatives and fills batches of
    one. Real duplicate groups are small: in the QQP training sample 99.3% of the gold groups hold
    at most 8 texts (88.6% hold 2); in MRPC's, all hold at most 5."""
    from .batches import Groups

    groups = Groups()
    for p in gold:
        if p.label == 1:
            groups.union(normalize(p.a), normalize(p.b))
    kept = []
    for p in silver:
        a, b = normalize(p.a), normalize(p.b)
        if p.label == 1:
            if groups.size_if_joined(a, b) > largest:
                continue
            groups.union(a, b)
        kept.append(p)
    return kept


SILVER_FILE = "silver_pairs.jsonl"


def write_silver(path: Path, silver: Sequence[Pair]) -> None:
    """The silver pairs as JSONL that ``pairs.read_labelled`` reads back, scores included
    (``question1``, ``question2``, ``is_duplicate``, ``teacher_p``); written whole or not at all."""
    from ..tables import TableWriter

    with TableWriter(path, ["question1", "question2", "is_duplicate", "teacher_p"]) as table:
        for p in silver:
            table.write({"question1": p.a, "question2": p.b, "is_duplicate": p.label,
                         "teacher_p": None if p.score is None else round(float(p.score), 6)})
