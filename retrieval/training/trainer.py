"""Pairs -> aligned batches -> triplet loss -> a saved model folder, for either siamese encoder."""

from __future__ import annotations

import copy
import json
import random
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..calibrate import best_threshold
from ..encoders import Encoder, LSTMEncoder
from ..encoders.lstm import build_vocab
from ..encoders.transformer import TransformerEncoder, choose_precision
from ..pairs import Pair
from ..text import normalize
from .averaging import WeightAverage
from .batches import TripletBatches
from .layer_decay import layer_groups
from .lengths import forward_by_length
from .losses import (
    batch_triplet_loss,
    cosent_loss,
    in_batch_ranking_loss,
    margin_mse_loss,
    ranking_distillation_loss,
    similarity_distillation_loss,
)
from .memory import CandidateMemory
from .recipe import (
    COSENT_WEIGHT,
    DISTIL_WEIGHT,
    LSTM_LR,
    MARGIN_MSE_WEIGHT,
    MINED_NEGATIVES,
    RANKING_WEIGHT,
    TRANSFORMER_LR,
)
from .variants import word_variants


@dataclass
class TrainConfig:
    """Training options (the `twin train` flags)."""

    encoder: str = "transformer"
    epochs: int = 1
    batch_size: int = 32
    margin: float = 0.3
    lr: float | None = None  #: None: recipe.TRANSFORMER_LR or recipe.LSTM_LR, by encoder
    max_seq_length: int = 64
    seed: int = 0
    warmup: float = 0.1
    patience: int = 2
    topic_batches: bool = False  #: batches of neighbouring anchors (hard in-batch negatives)
    distil_weight: float = DISTIL_WEIGHT  #: weight of the distillation term (with a teacher)
    distil_loss: str = "cosines"  #: the distillation term: "cosines" (similarity) or "ranking" (listwise KL)
    margin_mse: float = MARGIN_MSE_WEIGHT  #: weight of the margin-MSE term (on pairs a teacher scored)
    cosent: float = COSENT_WEIGHT  #: weight of the CoSENT term over the batch's labelled pairs
    ranking: float = RANKING_WEIGHT  #: weight of the in-batch ranking (InfoNCE) term
    ranking_memory: int = 0  #: with ranking: past batches' candidates kept as its negatives too (0: off)
    mined_negatives: bool = MINED_NEGATIVES  #: each row also gets a negative mined with the model being trained
    mine_every: int = 0  #: with mined_negatives: mine again every this many steps (0: at each epoch's start)
    distil_variants: float = 0.0  #: recorded only: the variants are the teacher's (EmbeddingTeacher(variant_rate))
    freeze_embeddings: bool = False  #: recorded only: LSTMTrainable(freeze_embeddings) applies it
    weight_average: float = 0.0  #: decay of the moving average of the weights evaluated and saved (0: off)
    layer_decay: float = 1.0  #: transformer: each layer down learns at this factor of the one above (1: off)

    def learning_rate(self) -> float:
        """The learning rate, defaulted by encoder."""
        return self.lr if self.lr is not None else (TRANSFORMER_LR if self.encoder == "transformer" else LSTM_LR)


class Trainable(ABC):
    """A siamese encoder being trained: one network that embeds any text, with gradients."""

    encoder: Encoder

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """(n, d) unit vectors, differentiable."""

    @abstractmethod
    def module(self) -> torch.nn.Module:
        """The network whose parameters are trained."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write a model folder that ``--model`` accepts."""

    def parameter_groups(self, lr: float, layer_decay: float = 1.0) -> list[dict]:
        """The optimizer's parameter groups: every parameter at ``lr`` (``layer_decay`` is the
        transformer's)."""
        return [{"params": list(self.module().parameters()), "lr": lr}]


class TransformerTrainable(Trainable):
    """Fine-tunes a sentence-transformers model (default: the packaged all-MiniLM-L6-v2)."""

    def __init__(self, base: str | Path | None, max_seq_length: int) -> None:
        self.model = copy.deepcopy(TransformerEncoder(base).model)  # never train the shared loaded copy
        self.model.max_seq_length = max_seq_length
        self.bf16 = choose_precision("cpu") == "bf16"
        self.encoder = _InMemoryTransformer(self)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit vectors, the texts run in chunks of like length (``lengths``): half the padding work."""
        texts = list(texts)
        pieces = self.model.tokenizer(texts, truncation=True, max_length=self.model.max_seq_length)["input_ids"]
        return forward_by_length(lambda chunk: self._embed([texts[i] for i in chunk]), [len(p) for p in pieces])

    def _embed(self, texts: list[str]) -> torch.Tensor:
        features = self.model.preprocess(texts)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(out.float(), dim=1)

    def module(self) -> torch.nn.Module:
        return self.model

    def parameter_groups(self, lr: float, layer_decay: float = 1.0) -> list[dict]:
        """``layer_decay.layer_groups``: each layer down at ``layer_decay`` times the rate above."""
        return layer_groups(self.model.named_parameters(), lr, layer_decay)

    def save(self, folder: Path) -> None:
        self.model.save(str(folder))


class LSTMTrainable(Trainable):
    """Trains the siamese BiLSTM. ``tokens``: ``words`` (a vocabulary built from the training
    texts, embeddings from scratch) or ``packaged`` (the packaged MiniLM's WordPiece tokenizer,
    and its token embedding table as the starting embeddings: no download, nothing else of
    MiniLM is used). ``pooling`` and ``dropout``: see ``SiameseLSTM``; ``hidden``: the units of each
    LSTM direction, and the vector's dimension; ``freeze_embeddings``: the token embedding table
    stays as it starts (InferSent's fixed word vectors), so a token no training text holds keeps its
    place among the others."""

    def __init__(self, texts: Sequence[str], max_seq_length: int, seed: int = 0, tokens: str = "packaged",
                 pooling: str = "max", dropout: float = 0.0, hidden: int = 256,
                 freeze_embeddings: bool = False) -> None:
        seed_everything(seed)  # the initial weights are part of "same seed, same model"
        config = {"embed_dim": 200, "hidden": hidden, "out_dim": hidden, "max_seq_length": max_seq_length,
                  "pooling": pooling, "dropout": dropout}
        if tokens == "words":
            self.encoder = LSTMEncoder(build_vocab(texts), config)
        else:
            tokenizer, table = packaged_token_embeddings()
            self.encoder = LSTMEncoder(tokenizer, {**config, "embed_dim": int(table.shape[1])})
            with torch.no_grad():
                self.encoder.module.embed.weight.copy_(table)
        self.encoder.module.embed.weight.requires_grad_(not freeze_embeddings)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encoder.module(self.encoder.ids(texts))

    def module(self) -> torch.nn.Module:
        return self.encoder.module

    def save(self, folder: Path) -> None:
        self.encoder.save(folder)


def packaged_token_embeddings() -> tuple:
    """The packaged MiniLM's WordPiece tokenizer and its (vocabulary, 384) token embedding table."""
    from safetensors import safe_open
    from tokenizers import Tokenizer

    from ..encoders.transformer import packaged_model_path

    folder = Path(packaged_model_path())
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        table = weights.get_tensor("embeddings.word_embeddings.weight").float()
    return Tokenizer.from_file(str(folder / "tokenizer.json")), table


class EmbeddingTeacher:
    """A fixed encoder's unit vectors of the training texts, computed once, for the distillation
    term (``losses.similarity_distillation_loss``); a text not seen before is encoded when asked.
    With ``variant_rate`` > 0, each text also has a word-level variant (``variants.word_variants``)
    whose vector is computed with the texts', for ``variants_of``."""

    def __init__(self, encoder: Encoder, texts: Sequence[str], batch_size: int = 128,
                 variant_rate: float = 0.0, seed: int = 0) -> None:
        self.encoder, self.batch_size = encoder, batch_size
        unique = sorted({normalize(t) for t in texts})  # as the batches hold them
        self.variants = word_variants(unique, seed, variant_rate) if variant_rate > 0 else {}
        unique = sorted(set(unique) | set(self.variants.values()))
        vectors = encoder.encode(unique, batch_size) if unique else np.zeros((0, encoder.dimension), np.float32)
        self.rows = {text: i for i, text in enumerate(unique)}
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """(n, e) teacher vectors of ``texts``."""
        missing = sorted({t for t in texts if t not in self.rows})
        if missing:
            extra = torch.from_numpy(np.ascontiguousarray(self.encoder.encode(missing, self.batch_size), np.float32))
            self.rows.update({t: len(self.rows) + i for i, t in enumerate(missing)})
            self.vectors = torch.cat([self.vectors, extra])
        return self.vectors[[self.rows[t] for t in texts]]

    def variants_of(self, texts: Sequence[str]) -> list[str]:
        """The variants of those of ``texts`` that have one (none without ``variant_rate``)."""
        return [self.variants[t] for t in texts if t in self.variants]


def seed_everything(seed: int) -> None:
    """Same seed, same data: same model."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pair_accuracy(encoder: Encoder, pairs: Sequence[Pair]) -> float:
    """Best-threshold accuracy of cosine on labelled pairs (the early-stopping signal)."""
    from ..evaluate import pair_scores

    return best_threshold(pair_scores(encoder, pairs), np.array([p.label for p in pairs]))[1]


def train(
    trainable: Trainable, batches: TripletBatches, config: TrainConfig, out: Path,
    dev: Sequence[Pair] | None = None, teacher: EmbeddingTeacher | None = None, notes: dict | None = None,
) -> dict:
    """Train with the batch triplet loss plus, where each is on: ``config.distil_weight`` x the
    distillation term where a ``teacher`` is given (``config.distil_loss`` "cosines": every cosine
    of the batch; "ranking": each anchor's ranking of its candidates, the memory's among them);
    ``config.margin_mse`` x the margin-MSE term where a cross-encoder scored the pairs;
    ``config.cosent`` x the CoSENT term over the batch's labelled pairs, ranked by their teacher
    scores or labels; ``config.ranking`` x the in-batch ranking term, each anchor's positive against
    all its negatives, with ``config.ranking_memory`` past candidates among them
    (``memory.CandidateMemory``). Keep the epoch with the best dev accuracy (early stopping after
    ``patience`` epochs without gain); save to ``out``. With ``config.weight_average``, the moving
    average of the weights (``averaging.WeightAverage``) is what is evaluated and saved.
    Returns a summary, ``notes`` added (what came before this training: the teacher's record); the
    loss log goes to ``out/train_log.jsonl``."""
    seed_everything(config.seed)
    module = trainable.module()
    optimizer = torch.optim.AdamW(trainable.parameter_groups(config.learning_rate(), config.layer_decay))
    total = max(1, len(batches) * config.epochs)
    warm = max(1, int(total * config.warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warm, max(0.0, (total - step) / max(1, total - warm))))
    average = WeightAverage(module, config.weight_average) if config.weight_average else None
    memory = CandidateMemory(config.ranking_memory) if config.ranking and config.ranking_memory else None
    out.mkdir(parents=True, exist_ok=True)
    history, best, best_state, stale, step = [], -1.0, None, 0, 0
    started = time.perf_counter()
    with open(out / "train_log.jsonl", "w") as log:
        for epoch in range(config.epochs):
            encode = _encoder_of(trainable)
            epoch_batches = batches.epoch(epoch, encode if config.topic_batches else None,
                                          encode if config.mined_negatives else None, config.mine_every)
            module.train()
            losses = []
            bar = tqdm(epoch_batches, total=len(batches), desc=f"epoch {epoch + 1}/{config.epochs}",
                       unit="batch", disable=None, file=sys.stderr)
            for batch in bar:
                loss = _step(trainable, batch, config, teacher, memory)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                if average:
                    average.update()
                losses.append(loss.item())
                step += 1
                log.write(json.dumps({"epoch": epoch + 1, "step": step, "loss": round(losses[-1], 5)}) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            module.eval()
            record = {"epoch": epoch + 1, "mean_loss": float(np.mean(losses)) if losses else 0.0}
            if dev:
                with average.applied() if average else nullcontext():
                    record["dev_accuracy"] = pair_accuracy(trainable.encoder, dev)
                    if record["dev_accuracy"] > best:
                        best, stale = record["dev_accuracy"], 0
                        best_state = copy.deepcopy(module.state_dict())
                    else:
                        stale += 1
                print(f"epoch {epoch + 1}: loss {record['mean_loss']:.4f}, dev best-threshold accuracy "
                      f"{record['dev_accuracy']:.4f}", file=sys.stderr)
            history.append(record)
            if dev and stale >= config.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    elif average:
        average.copy_to()
    trainable.save(out)
    summary = {"config": asdict(config), "learning_rate": config.learning_rate(), "pairs": len(batches.duplicates),
               "steps": step, "seconds": round(time.perf_counter() - started, 1), "epochs": history,
               **(notes or {})}
    (out / "twin_training.json").write_text(json.dumps(summary, indent=2))
    return summary


def _encoder_of(trainable: Trainable) -> Callable[[list[str]], np.ndarray]:
    """texts -> unit vectors from the weights as they stand, in eval mode (no dropout), leaving the
    network in the mode it was in: batches call it in the middle of an epoch to mine negatives."""
    def encode(texts: list[str]) -> np.ndarray:
        module = trainable.module()
        training = module.training
        module.eval()
        try:
            return trainable.encoder.encode(texts)
        finally:
            module.train(training)
    return encode


def _step(trainable: Trainable, batch, config: TrainConfig,  # noqa: ANN001 - Batch
          teacher: EmbeddingTeacher | None, memory: CandidateMemory | None = None) -> torch.Tensor:
    pair_texts = [t for pair in batch.near_misses for t in pair]
    texts = batch.anchors + batch.positives + batch.negatives + pair_texts
    vectors = trainable.embed(texts)
    n, m = len(batch.anchors), len(pair_texts)
    groups = torch.tensor(batch.anchor_groups + batch.positive_groups + batch.negative_groups)
    candidates = vectors[n : len(texts) - m]
    near = vectors[len(texts) - m :]
    near_scores = (near[0::2] * near[1::2]).sum(dim=1) if m else None
    margin = config.margin
    loss = batch_triplet_loss(vectors[:n], candidates, groups[:n], groups[n:], margin, near_scores, margin / 3)
    ranked, ranked_groups = (candidates, groups[n:]) if memory is None else memory.extended(candidates, groups[n:])
    if config.ranking:
        loss = loss + config.ranking * in_batch_ranking_loss(vectors[:n], ranked, groups[:n], ranked_groups)
    taught = None
    if teacher is not None and config.distil_loss == "ranking":
        taught = teacher(texts)[: len(texts) - m]
        known = taught[n:] if memory is None else memory.teacher_extended(taught[n:])
        loss = loss + config.distil_weight * ranking_distillation_loss(vectors[:n], ranked, taught[:n], known)
    if memory is not None:
        memory.remember(candidates, groups[n:], None if taught is None else taught[n:])
    if config.margin_mse and batch.scored:
        loss = loss + config.margin_mse * _margin_term(vectors[:n], candidates[:n], candidates[n:], batch.scored)
    if config.cosent:
        cosines = (vectors[:n] * candidates[:n]).sum(dim=1)
        cosines = torch.cat([cosines, near_scores]) if m else cosines
        loss = loss + config.cosent * cosent_loss(cosines, torch.tensor(batch.pair_targets))
    if teacher is not None and config.distil_loss == "cosines":
        extra = teacher.variants_of(batch.anchors)
        student = torch.cat([vectors, trainable.embed(extra)]) if extra else vectors
        loss = loss + config.distil_weight * similarity_distillation_loss(student, teacher(texts + extra))
    return loss


def _margin_term(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                 scored: list[tuple[int, int, bool, float]]) -> torch.Tensor:
    """``margin_mse_loss`` over the batch's rows whose pairs a teacher scored (``Batch.scored``)."""
    rows = torch.tensor([r for r, _, _, _ in scored])
    negative = negatives[torch.tensor([j for _, j, _, _ in scored])]
    x = torch.where(torch.tensor([v for _, _, v, _ in scored])[:, None], positives[rows], anchors[rows])
    student = (anchors[rows] * positives[rows]).sum(dim=1) - (x * negative).sum(dim=1)
    return margin_mse_loss(student, torch.tensor([t for _, _, _, t in scored]))


class _InMemoryTransformer(Encoder):
    """The model being fine-tuned, as an encoder, for dev evaluation between epochs."""

    def __init__(self, trainable: TransformerTrainable) -> None:
        self.trainable, self.name = trainable, "training"

    @property
    def dimension(self) -> int:
        return int(self.trainable.model.get_embedding_dimension())

    def encode(self, items: Sequence[str], batch_size: int = 64) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.trainable.bf16):
            return self.trainable.model.encode(list(items), batch_size=batch_size, normalize_embeddings=True,
                                               convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
