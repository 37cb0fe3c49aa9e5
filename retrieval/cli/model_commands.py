"""Commands over models: train, calibrate, eval, eval-retrieval."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import click

from ..errors import TwinError
from ..training.recipe import (
    COSENT_WEIGHT,
    DISTIL_WEIGHT,
    MARGIN_MSE_WEIGHT,
    MINED_NEGATIVES,
    RANKING_WEIGHT,
    STUDENT_DISTIL_WEIGHT,
    STUDENT_RANKING,
    STUDENT_RANKING_MEMORY,
    TEACHER_EPOCHS,
    TEACHER_LR,
    student_epochs,
)
from .group import cli
from .options import backend_option, say, wait_option


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
    from ..pairs import PairColumns, read_labelled

    if no_header and (first, second, label) == ("question1", "question2", "is_duplicate"):
        first, second, label = "2", "3", "1"
    return read_labelled(path, PairColumns(first, second, label, header=not no_header))


def _silver(pairs: list, base: Path | None, backend: str | None, neighbours: int, epochs: int, lr: float,
            seed: int, dev: list | None) -> tuple[list, dict]:  # Pair
    """Pairs mined among the training texts, labelled by a cross-encoder teacher trained on ``pairs``,
    and what ``twin_training.json`` records of the teacher."""
    from ..encoders import packaged_model_path
    from ..training.teacher import silver_pairs

    if not pairs:
        raise TwinError("--teacher needs labelled pairs (triplets alone give it nothing to learn from)")
    started = time.perf_counter()
    silver = silver_pairs(pairs, base or packaged_model_path(), _model_encoder(base, backend), neighbours, epochs,
                          seed, dev, lr)
    say(f"teacher: {len(silver.pairs)} silver pairs mined among the training texts, "
        f"{sum(p.label for p in silver.pairs)} of them called duplicates (P > {silver.threshold:.3f}"
        f"{f', chosen on --dev, where the teacher scores {silver.dev_accuracy:.4f}' if dev else ''}; "
        f"{silver.left_out} more left out for chaining groups)")
    record = {"epochs": epochs, "learning_rate": lr, "threshold": silver.threshold,
              "dev_accuracy": silver.dev_accuracy, "silver_pairs": len(silver.pairs),
              "seconds": round(time.perf_counter() - started, 1)}
    return silver.pairs, record


def _reused_silver(paths: tuple[Path, ...], held_out: set[str]) -> tuple[list, int]:  # Pair
    """The pairs of ``--silver`` files, less any that share a text with the evaluation files (and
    how many those were)."""
    from ..pairs import drop_leaks, read_labelled

    return drop_leaks([p for path in paths for p in read_labelled(path).pairs], held_out)


def _distiller(source: str, backend: str | None, texts: list[str], variant_rate: float,  # noqa: ANN202
               seed: int):
    """The teacher of --distil-from (an EmbeddingTeacher), with its vectors of the training texts
    (and of their variants, with --distil-variants)."""
    from ..training.trainer import EmbeddingTeacher

    model = None if source == "packaged" else Path(source)
    variants = f" and a variant of each (--distil-variants {variant_rate})" if variant_rate else ""
    say(f"distillation: encoding {len(set(texts))} training texts{variants} with {source}")
    return EmbeddingTeacher(_model_encoder(model, backend), texts, variant_rate=variant_rate, seed=seed)


def _model_encoder(model: Path | None, backend: str | None):  # noqa: ANN202 - Encoder
    from ..encoders import load_encoder

    return load_encoder(model, backend)


@cli.command()
@click.argument("pairs_path", metavar="PAIRS", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Model folder to write.")
@click.option("--encoder", "encoder_kind", type=click.Choice(["transformer", "lstm", "cnn"]), default="transformer",
              show_default=True, help="Fine-tune the packaged MiniLM, train a siamese BiLSTM from scratch, or (cnn) "
                                      "a siamese CNN for images from scratch: PAIRS is then a folder or a zip whose "
                                      "leaf folders are classes (alphabet/character/*.png).")
@click.option("--model", "base", type=click.Path(path_type=Path), default=None,
              help="transformer: the sentence-transformers folder to start from (default: packaged MiniLM).")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Passes over the pairs (default 1; a transformer on gold + silver pairs: the whole epochs nearest "
                   "to 1,400 steps, 1-3: MRPC and QQP 3), or over the images (cnn: at most this many, default 20; "
                   "early stopping on --dev).")
@click.option("--batch-size", type=click.IntRange(2), default=32, show_default=True, help="Duplicate pairs a batch.")
@click.option("--margin", type=click.FloatRange(0, 2), default=0.3, show_default=True,
              help="Triplet margin alpha (chosen on QQP dev among 0.1/0.3/0.5; see BENCHMARKS.md).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Learning rate (default: 4e-5 transformer, which beat 2e-5 on QQP and MRPC with the teacher "
                   "and without; 2e-3 LSTM).")
@click.option("--max-seq-length", type=click.IntRange(4, 512), default=64, show_default=True, help="Tokens a text.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same data: same model.")
@click.option("--dev", type=click.Path(path_type=Path), default=None,
              help="Labelled dev pairs: early stopping, leakage filter and calibration of tau (cnn: a class tree "
                   "of classes not trained on, scored by one-shot accuracy; tau from its image pairs).")
@click.option("--image-size", type=click.IntRange(16, 512), default=48, show_default=True,
              help="cnn: the side images are resized to (48 beat 28 and 64 on Omniglot; BENCHMARKS.md).")
@click.option("--cnn-width", type=click.IntRange(8, 512), default=64, show_default=True,
              help="cnn: channels of each of the four convolution blocks (compute grows with its square). On "
                   "Omniglot 96 gave 20-way 0.826 against 0.804 at 64 in one direction, 0.735 against 0.733 in "
                   "the other, in 2.5 times the training time.")
@click.option("--mirror-classes/--no-mirror-classes", default=True, show_default=True,
              help="cnn: the mirror image of each class (and of its 90/180/270-degree rotations, always used) is a "
                   "new class too; right for characters, wrong where mirror images are the same thing.")
@click.option("--composed-classes", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              metavar="SHARE", help="cnn: this share of each batch's classes are new classes made of two "
                                    "classes' halves (a's left or top half joined to b's other half). On "
                                    "Omniglot it did not help: 0.5 gave 20-way 0.783, 0.25 gave 0.797, "
                                    "against 0.804 without.")
@click.option("--hard-loss", type=click.Choice(["batch-hard", "selective"]), default="batch-hard", show_default=True,
              help="cnn: the loss after the batch-all warm-up: batch-hard triplets, or selective (a triplet whose "
                   "negative is nearer than its positive only pushes the negative away; Xuan et al. 2020). On "
                   "Omniglot selective kept the vectors apart but dev 20-way fell from 0.852 to 0.79-0.81, "
                   "where batch-hard lifts it to 0.87.")
@click.option("--max-minutes", type=click.FloatRange(0, min_open=True), default=None,
              help="cnn: stop after the epoch that passes this many minutes (the best epoch is kept).")
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
@click.option("--teacher", type=click.Choice(["auto", "none", "cross-encoder"]), default="auto", show_default=True,
              help="cross-encoder: first train a cross-encoder from the base model on PAIRS, let it label pairs "
                   "mined among the training texts (--silver-neighbours a text; its threshold chosen on --dev), "
                   "and train on gold + silver (QQP dev: accuracy 0.830 vs 0.809, AP 0.890 vs 0.868, 40-50 min "
                   "vs 8 on 2 cores; BENCHMARKS.md). auto: cross-encoder for --encoder transformer on labelled "
                   "pairs, none otherwise.")
@click.option("--silver-neighbours", type=click.IntRange(1, 50), default=2, show_default=True,
              help="--teacher: candidate pairs mined a training text (its nearest others by the base model).")
@click.option("--silver", "silver_paths", type=click.Path(path_type=Path), multiple=True,
              help="Pairs a teacher labelled before (the silver_pairs.jsonl a --teacher cross-encoder run writes "
                   "into its model folder), trained on beside PAIRS without training a teacher again "
                   "(repeatable; --teacher auto then trains none).")
@click.option("--teacher-epochs", type=click.IntRange(1), default=TEACHER_EPOCHS, show_default=True,
              help="--teacher: passes of the cross-encoder over PAIRS (2 at 4e-5: 0.827 on QQP dev, as good as 3 "
                   "at 2e-5 in two thirds of the steps; 5 at 2e-5 made a better teacher but no better student).")
@click.option("--teacher-lr", type=click.FloatRange(0, min_open=True), default=TEACHER_LR, show_default=True,
              help="--teacher: the cross-encoder's learning rate (3 epochs: 0.835 on QQP dev at 4e-5, 0.828 at "
                   "2e-5).")
@click.option("--margin-mse", type=click.FloatRange(0), default=MARGIN_MSE_WEIGHT, show_default=True,
              help="--teacher: weight of the margin-MSE term, which asks a triplet's cosine gap s(a, p) - s(a, n) "
                   "to equal the teacher's P(duplicate) gap (gold pairs: their labels); 0: off.")
@click.option("--cosent", type=click.FloatRange(0), default=COSENT_WEIGHT, show_default=True,
              help="Weight of the CoSENT term, which ranks the cosines of each batch's labelled pairs (its "
                   "duplicate rows and near-miss pairs) in the order of their scores: a teacher's P(duplicate) "
                   "for silver pairs, the label for gold ones (Su 2022). 1 gave QQP dev 0.815 vs 0.817 accuracy "
                   "and 0.869 vs 0.875 AP, MRPC dev 0.762 vs 0.772: off (0).")
@click.option("--ranking", type=click.FloatRange(0), default=None, metavar="WEIGHT",
              help="Weight of the in-batch ranking term (InfoNCE, sentence-transformers' "
                   "MultipleNegativesRankingLoss, scale 20): each anchor's positive ranked first among all the "
                   "batch's candidates, its duplicates through a third text left out. Default: "
                   f"{STUDENT_RANKING} for a transformer student of silver pairs (with --ranking-memory, over two "
                   "seeds of 3 epochs on QQP dev: accuracy +0.2, AP -0.2, recall@1 +0.35 points), 0 otherwise (the "
                   "transformer on gold pairs alone: recall@1 +0.4, accuracy -0.3 points at 1).")
@click.option("--ranking-memory", type=click.IntRange(0), default=None, metavar="VECTORS",
              help="--ranking: also rank each positive against this many candidates of the last batches, kept "
                   "without gradient (a cross-batch memory, XBM; 0: the batch's own only). Default: "
                   f"{STUDENT_RANKING_MEMORY} for a transformer student of silver pairs that ranks, 0 otherwise; 4096 "
                   "was worse on every QQP figure.")
@click.option("--layer-decay", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              metavar="FACTOR", help="transformer: each layer learns at this factor of the rate of the layer above "
                                     "it, the token embeddings least (layer-wise rate decay; 1: all at --lr). On "
                                     "QQP 0.8 gave recall@1 +0.5, accuracy -0.25, AP -0.5 points: off.")
@click.option("--mined-negatives/--no-mined-negatives", default=MINED_NEGATIVES, show_default=True,
              help="Also give each row a negative mined among all the training texts with the model being "
                   "trained: the anchor's nearest text outside its duplicate group whose cosine is under 0.95 x "
                   "its positive's (the guard against unlabelled duplicates; NV-Retriever). Mined again at each "
                   "epoch's start and every --mine-every steps. On QQP it gave recall@1 0.696 vs 0.690 but "
                   "accuracy 0.816 vs 0.821, in 35% more time: off.")
@click.option("--mine-every", type=click.IntRange(0), default=0, show_default=True, metavar="STEPS",
              help="--mined-negatives: mine again every this many steps within an epoch (0: once an epoch).")
@click.option("--lstm-tokens", type=click.Choice(["words", "packaged"]), default="packaged", show_default=True,
              help="lstm: the packaged MiniLM's WordPiece tokenizer with its token embeddings as the start "
                   "(QQP dev accuracy 0.764 vs 0.734), or words with a vocabulary of the training texts and "
                   "embeddings from scratch.")
@click.option("--lstm-pooling", type=click.Choice(["max", "attention", "max+attention"]), default="max",
              show_default=True, help="lstm: how the BiLSTM's states become one vector (BENCHMARKS.md).")
@click.option("--lstm-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="lstm: share of token embedding and pooled units zeroed while training (0.2 cost 1.9 QQP "
                   "dev accuracy points by the 4th epoch: off).")
@click.option("--lstm-hidden", type=click.IntRange(8, 4096), default=256, show_default=True,
              help="lstm: units of each direction of the BiLSTM and of the output vector (384 scored 0.5 QQP "
                   "dev points less than 256, in 1.5x the time).")
@click.option("--lstm-embeddings", type=click.Choice(["auto", "train", "freeze"]), default="auto", show_default=True,
              help="lstm: keep the token embedding table as it starts (freeze), so tokens no training text holds "
                   "stay in place among the others, or train it with the rest. auto: freeze MiniLM's table "
                   "(--lstm-tokens packaged; QQP dev +1.0 accuracy and +3.2 recall@1 points), train a table "
                   "of words.")
@click.option("--distil-from", type=str, default="auto", show_default=True, metavar="MODEL|packaged|none|auto",
              help="Also learn from this model's vectors ('packaged': the packaged MiniLM; what is learnt: "
                   "--distil-loss). auto: packaged for --encoder lstm (QQP dev recall@1 0.627 vs 0.575, "
                   "embeddings trained) and for a transformer student of silver pairs (two seeds on QQP dev: "
                   "recall@1 +0.6 points, accuracy and AP within 0.25, 0.1 on their mean), none otherwise.")
@click.option("--distil-weight", type=click.FloatRange(0, min_open=True), default=None, metavar="WEIGHT",
              help=f"--distil-from: weight of the distillation term beside the triplet loss. Default: "
                   f"{DISTIL_WEIGHT} for cosines (10 beat 1 on QQP), {STUDENT_DISTIL_WEIGHT} for ranking (1: "
                   f"recall@1 +1.3, accuracy and AP -0.8 points on QQP dev).")
@click.option("--distil-loss", type=click.Choice(["cosines", "ranking"]), default=None,
              help="--distil-from: what is learnt from it: every cosine of the batch (squared error), or how "
                   "each anchor ranks its candidates, the --ranking-memory's among them (KL divergence of the "
                   "two softmax distributions at scale 20; a shift of an anchor's cosines costs nothing). "
                   "Default: ranking for a transformer student of silver pairs, cosines otherwise.")
@click.option("--distil-variants", type=click.FloatRange(0, 0.5), default=0.0, show_default=True, metavar="RATE",
              help="--distil-from: also distil on a variant of each batch anchor, its words replaced by training "
                   "words or dropped at this rate each (Tang et al. 2019's transfer set; 0.15 gave the LSTM "
                   "no gain on QQP: off).")
@click.option("--weight-average", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              metavar="DECAY", help="Evaluate and save a moving average of the weights, each step folding in "
                                    "1 - DECAY of the new ones (Polyak averaging; 0.998 gave the LSTM "
                                    "nothing on QQP); 0: the last step's weights.")
@pair_options
@backend_option
@click.option("--force", is_flag=True, help="Replace an existing model folder.")
def train(pairs_path: Path, out: Path, encoder_kind: str, base: Path | None, epochs: int, batch_size: int,
          margin: float, lr: float | None, max_seq_length: int, seed: int, dev: Path | None, exclude: tuple[Path, ...],
          objective: str, topic_batches: bool, near_miss_rows: bool, near_miss_pairs: int, first_column: str,
          second_column: str, label_column: str, no_header: bool, backend: str | None, force: bool,
          image_size: int, cnn_width: int, mirror_classes: bool, composed_classes: float, hard_loss: str,
          max_minutes: float | None, lstm_tokens: str, lstm_pooling: str, lstm_dropout: float, lstm_hidden: int,
          teacher: str, silver_neighbours: int, silver_paths: tuple[Path, ...], teacher_epochs: int,
          teacher_lr: float, margin_mse: float, cosent: float, ranking: float, ranking_memory: int,
          mined_negatives: bool, mine_every: int, distil_from: str,
          lstm_embeddings: str, distil_weight: float | None, distil_loss: str | None, distil_variants: float,
          weight_average: float, layer_decay: float) -> None:
    """Train a siamese encoder with triplet loss on PAIRS (or triplets), or (--encoder cnn) on a
    class tree of images, and save it to --out."""
    if out.exists() and any(out.iterdir()) and not force:
        raise TwinError(f"{out}: exists and is not empty (use --force to replace it)")
    if distil_from not in ("auto", "none", "packaged") and not Path(distil_from).is_dir():
        raise TwinError(f"--distil-from {distil_from}: no such model folder")
    if layer_decay != 1 and encoder_kind != "transformer":
        raise TwinError(f"--layer-decay scales a transformer's layers' learning rates; it does not apply to "
                        f"--encoder {encoder_kind}")
    if encoder_kind == "cnn":
        if (teacher not in ("auto", "none") or distil_from not in ("auto", "none") or margin_mse or cosent
                or ranking or ranking_memory or mined_negatives or silver_paths or weight_average):
            raise TwinError("--teacher, --silver, --margin-mse, --cosent, --ranking(-memory), --mined-negatives, "
                            "--distil-from and --weight-average work on text pairs; they do not apply to "
                            "--encoder cnn")
        from .image_commands import train_images

        train_images(pairs_path, out, dev, epochs, margin, lr, seed, image_size, cnn_width, mirror_classes,
                     composed_classes, hard_loss, max_minutes, objective, force)
        return
    if composed_classes or hard_loss != "batch-hard" or not mirror_classes or cnn_width != 64:
        raise TwinError("--cnn-width, --composed-classes, --hard-loss and --no-mirror-classes train an image model; "
                        f"they do not apply to --encoder {encoder_kind}")
    if mine_every and not mined_negatives:
        raise TwinError("--mine-every sets how often --mined-negatives mines: give --mined-negatives too")
    from ..calibrate import calibrate_model, save_calibration
    from ..pairs import drop_leaks, leakage_key
    from ..training.batches import TripletBatches
    from ..training.trainer import LSTMTrainable, TrainConfig, TransformerTrainable
    from ..training.trainer import train as run

    data = _pairs(pairs_path, first_column, second_column, label_column, no_header)
    dev_data = _pairs(dev, first_column, second_column, label_column, no_header) if dev else None
    held_out = set(dev_data.texts()) if dev_data else set()
    for path in exclude:
        held_out |= _pairs(path, first_column, second_column, label_column, no_header).texts()
    reused, dropped_silver = _reused_silver(silver_paths, held_out)  # checked before anything is trained
    pairs, dropped = drop_leaks(data.pairs, held_out)
    keys = {leakage_key(t) for t in held_out}
    triplets = [t for t in data.triplets if not any(leakage_key(x) in keys for x in t)]
    dropped += len(data.triplets) - len(triplets)
    say(f"train: {len(pairs) + len(triplets)} rows of {pairs_path} kept, {dropped} dropped for sharing a "
         f"question with the evaluation files")
    if silver_paths:
        say(f"silver: {len(reused)} pairs of {', '.join(map(str, silver_paths))} kept, {dropped_silver} dropped "
            f"for sharing a question with the evaluation files")
    if teacher == "auto":
        labelled = any(p.label for p in pairs) and not silver_paths
        teacher = "cross-encoder" if encoder_kind == "transformer" and labelled else "none"
    if margin_mse and teacher == "none" and not any(p.score is not None for p in reused):
        raise TwinError("--margin-mse distils the cross-encoder teacher's scores: it needs --teacher cross-encoder "
                        "or --silver pairs that carry them")
    student = encoder_kind == "transformer" and (teacher == "cross-encoder" or bool(reused))
    ranking, ranking_memory = _ranking(student, ranking, ranking_memory)
    distil_from, distil_loss, distil_weight = _distillation(student, encoder_kind, distil_from, distil_loss,
                                                            distil_weight, distil_variants)
    silver, taught = reused, {}
    if teacher == "cross-encoder":
        mined, record = _silver(pairs, base, backend, silver_neighbours, teacher_epochs, teacher_lr, seed,
                                dev_data.pairs if dev_data else None)
        silver, taught = silver + mined, {"teacher": record}
    pairs = pairs + silver
    try:
        batches = TripletBatches(pairs, triplets, batch_size, seed, near_miss_rows, near_miss_pairs)
    except ValueError as exc:
        raise TwinError(f"{pairs_path}: {exc}") from None
    epochs = epochs or (student_epochs(len(batches)) if encoder_kind == "transformer" and silver else 1)
    config = TrainConfig(encoder_kind, epochs, batch_size, margin, lr, max_seq_length, seed,
                         topic_batches=topic_batches, distil_weight=distil_weight, distil_loss=distil_loss,
                         margin_mse=margin_mse, cosent=cosent,
                         ranking=ranking, ranking_memory=ranking_memory, mined_negatives=mined_negatives,
                         mine_every=mine_every, distil_variants=distil_variants, weight_average=weight_average,
                         layer_decay=layer_decay,
                         freeze_embeddings=_frozen(encoder_kind, lstm_embeddings, lstm_tokens))
    texts = [t for p in pairs for t in (p.a, p.b)] + [x for t in triplets for x in t]
    distiller = _distiller(distil_from, backend, texts, distil_variants, seed) if distil_from != "none" else None
    if encoder_kind == "transformer":
        trainable = TransformerTrainable(base, max_seq_length)
    else:
        trainable = LSTMTrainable(texts, max_seq_length, seed, lstm_tokens, lstm_pooling, lstm_dropout,
                                  lstm_hidden, config.freeze_embeddings)
    if out.exists() and force:
        shutil.rmtree(out)
    summary = run(trainable, batches, config, out, dev_data.pairs if dev_data else None, distiller, taught)
    if silver:
        from ..training.teacher import SILVER_FILE, write_silver

        write_silver(out / SILVER_FILE, silver)
    say(f"trained {encoder_kind} on {summary['pairs']} duplicate pairs in {summary['seconds']} s -> {out}")
    if dev_data:
        calibration = calibrate_model(_model_encoder(out, backend), dev_data.pairs, objective)
        save_calibration(out, calibration, str(dev))
        m = calibration["metrics"]
        say(f"calibrated on {dev}: tau {calibration['tau']:.4f}, accuracy {m['accuracy']:.4f}, F1 {m['f1']:.4f}")


def _ranking(student: bool, weight: float | None, memory: int | None) -> tuple[float, int]:
    """``--ranking`` and ``--ranking-memory`` with their defaults filled in: a transformer student of
    silver pairs ranks at ``STUDENT_RANKING`` with a memory of ``STUDENT_RANKING_MEMORY``; anything
    else does not rank unless asked to, and a memory needs the term it serves."""
    weight = (STUDENT_RANKING if student else RANKING_WEIGHT) if weight is None else weight
    memory = (STUDENT_RANKING_MEMORY if student and weight else 0) if memory is None else memory
    if memory and not weight:
        raise TwinError("--ranking-memory keeps negatives for the ranking term: give --ranking a weight too")
    return weight, memory


def _distillation(student: bool, encoder_kind: str, source: str, loss: str | None, weight: float | None,
                  variants: float) -> tuple[str, str, float]:
    """``--distil-from``, ``--distil-loss`` and ``--distil-weight`` with their defaults filled in: the
    LSTM learns the packaged model's cosines at ``DISTIL_WEIGHT``, a transformer student of silver
    pairs its ranking of each anchor's candidates at ``STUDENT_DISTIL_WEIGHT``; anything else
    distils nothing unless asked to."""
    if source == "auto":
        source = "packaged" if encoder_kind == "lstm" or student else "none"
    loss = loss or ("ranking" if student else "cosines")
    if loss == "ranking" and source == "none":
        raise TwinError("--distil-loss ranking says how to learn from the model of --distil-from: give "
                        "--distil-from packaged or MODEL")
    if loss == "ranking" and variants:
        raise TwinError("--distil-variants adds texts to the cosines the student learns; --distil-loss ranking "
                        "ranks each anchor's candidates only: give --distil-loss cosines or no variants")
    weight = weight if weight is not None else (STUDENT_DISTIL_WEIGHT if loss == "ranking" else DISTIL_WEIGHT)
    return source, loss, weight


def _frozen(encoder_kind: str, embeddings: str, tokens: str) -> bool:
    """Whether ``--lstm-embeddings`` keeps an LSTM's token embedding table as it starts."""
    return encoder_kind == "lstm" and (embeddings == "freeze" or (embeddings == "auto" and tokens == "packaged"))


@cli.command()
@click.argument("pairs_path", metavar="[PAIRS]", required=False, type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="Model folder to calibrate on PAIRS; tau is saved in it (the packaged model's folder is "
                   "read-only and its tau is built in). Indexes built before keep their own tau.")
@click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Calibrate this index's tau instead (with its model): from PAIRS, from the verdicts of its "
                   "review page (--from-feedback), or set by hand (--tau).")
@click.option("--from-feedback", is_flag=True, help="With --index: learn tau from the verdicts stored in the index.")
@click.option("--tau", "given_tau", type=click.FloatRange(-1, 1), default=None,
              help="With --index: set the index's tau to this value (no model loaded).")
@click.option("--apply", is_flag=True, help="With --index: write the tau chosen to the index's manifest (without "
                                            "it, the metrics before and after are shown and nothing is written).")
@click.option("--min-verdicts", type=click.IntRange(1), default=10, show_default=True,
              help="--from-feedback: fewest verdicts of each kind (duplicate, not duplicate) to learn from.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --index: write score histograms and the precision-recall curve to this PNG.")
@click.option("--objective", default="accuracy", show_default=True,
              help="Maximise accuracy, f1, or precision@R (best precision with recall >= R, e.g. precision@0.9).")
@pair_options
@backend_option
@wait_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def calibrate(pairs_path: Path | None, model: Path | None, index_dir: Path | None, from_feedback: bool,
              given_tau: float | None, apply: bool, min_verdicts: int, plot: Path | None, objective: str,
              first_column: str, second_column: str, label_column: str, no_header: bool, backend: str | None,
              wait_s: float, as_json: bool) -> None:
    """Choose tau on labelled PAIRS and save it in a model folder (--model), or choose an index's
    tau (--index) from PAIRS, from its review page's verdicts (--from-feedback), or by hand (--tau)."""
    from ..calibrate import calibrate_model, check_objective, save_calibration
    from .review_commands import calibrate_index, set_index_tau

    _check_calibrate(pairs_path, model, index_dir, from_feedback, given_tau, apply, plot)
    check_objective(objective)
    if index_dir is not None and given_tau is not None:
        set_index_tau(index_dir, given_tau, wait_s)
        return
    data = _pairs(pairs_path, first_column, second_column, label_column, no_header) if pairs_path else None
    if data is not None and data.triplets:
        raise TwinError(f"{pairs_path}: triplets; calibration needs labelled pairs")
    if index_dir is not None:
        calibrate_index(index_dir, data.pairs if data else None, objective, min_verdicts, apply, plot, as_json,
                        backend, wait_s)
        return
    result = calibrate_model(_model_encoder(model, backend), data.pairs, objective)
    save_calibration(model, result, str(pairs_path))
    if as_json:
        click.echo(json.dumps(result))
    else:
        say(f"tau {result['tau']:.4f} ({objective} {result['objective_value']:.4f}) saved in {model}")


def _check_calibrate(pairs_path: Path | None, model: Path | None, index_dir: Path | None, from_feedback: bool,
                     given_tau: float | None, apply: bool, plot: Path | None) -> None:
    """One line for a combination of `twin calibrate` options that means nothing."""
    if index_dir is None:
        if from_feedback or given_tau is not None or apply or plot:
            raise TwinError("--from-feedback, --tau, --apply and --plot go with --index")
        if model is None or pairs_path is None:
            raise TwinError("give PAIRS and --model (a model's tau), or --index (an index's tau)")
        return
    if model is not None:
        raise TwinError("--index calibrates with the index's own model: leave out --model")
    sources = [name for name, given in (("PAIRS", pairs_path is not None), ("--from-feedback", from_feedback),
                                        ("--tau", given_tau is not None)) if given]
    if len(sources) != 1:
        raise TwinError("with --index, give exactly one of PAIRS, --from-feedback and --tau"
                        + (f" (got {', '.join(sources)})" if sources else ""))
    if given_tau is not None and (apply or plot):
        raise TwinError("--tau writes the given tau at once: leave out --apply and --plot")


@cli.command(name="eval")
@click.argument("pairs_path", metavar="PAIRS", type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Model folder (default: packaged MiniLM).")
@click.option("--threshold", type=click.FloatRange(-1, 1), default=None, help="tau (default: the model's).")
@pair_options
@backend_option
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write score histograms and the precision-recall curve to this PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate(pairs_path: Path, model: Path | None, threshold: float | None, first_column: str, second_column: str,
             label_column: str, no_header: bool, backend: str | None, plot: Path | None, as_json: bool) -> None:
    """Pair metrics of a model on labelled PAIRS at its tau."""
    import numpy as np

    from .. import evaluate as ev
    from ..retriever import DEFAULT_TAU

    data = _pairs(pairs_path, first_column, second_column, label_column, no_header)
    encoder = _model_encoder(model, backend)
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
@backend_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_retrieval(pairs_path: Path, model: Path | None, first_column: str, second_column: str, label_column: str,
                   no_header: bool, backend: str | None, as_json: bool) -> None:
    """One-shot retrieval: index every question of PAIRS, find each one's duplicates."""
    from ..evaluate import retrieval_metrics

    data = _pairs(pairs_path, first_column, second_column, label_column, no_header)
    metrics = retrieval_metrics(_model_encoder(model, backend), data.pairs)
    if as_json:
        click.echo(json.dumps(metrics))
        return
    for key, value in metrics.items():
        click.echo(f"{key:12} {value:.4f}" if isinstance(value, float) else f"{key:12} {value}")
