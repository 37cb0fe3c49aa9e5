"""Commands over image models: training the siamese CNN (``twin train --encoder cnn``) and
``twin eval-oneshot``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from ..errors import TwinError
from .group import cli
from .options import say


def train_images(images: Path, out: Path, dev: Path | None, epochs: int | None, margin: float, lr: float | None,
                 seed: int, image_size: int, width: int, mirrors: bool, composed: float, hard_loss: str,
                 max_minutes: float | None, objective: str, force: bool) -> None:
    """``twin train IMAGES --encoder cnn``: see ``training.images``."""
    from ..images import class_tree
    from ..training.images import ImageTrainConfig, train_cnn

    if objective != "accuracy":
        raise TwinError("--objective: a cnn's tau is chosen for accuracy on its dev image pairs; recalibrate with "
                        "twin calibrate for another objective")
    train = class_tree(images)
    held_out = class_tree(dev) if dev else None
    if held_out:
        shared = {i.label for i in train} & {i.label for i in held_out}
        if shared and Path(images).resolve() == Path(dev).resolve():
            raise TwinError(f"--dev {dev} is the training tree itself; give classes not trained on")
    defaults = ImageTrainConfig()
    config = ImageTrainConfig(epochs=epochs or defaults.epochs, margin=margin, lr=lr or defaults.lr, seed=seed,
                              image_size=image_size, width=width, mirrors=mirrors, composed=composed,
                              hard_loss=hard_loss, max_minutes=max_minutes)
    say(f"train: {len(train)} images of {len({i.label for i in train})} classes from {images}"
        + (f"; dev: {len(held_out)} images of {len({i.label for i in held_out})} classes" if held_out else
           "; no --dev: every epoch runs and tau is calibrated on training pairs"))
    if out.exists() and force:
        shutil.rmtree(out)
    summary = train_cnn(train, held_out, config, out)
    m = summary["calibration"]["metrics"]
    say(f"trained cnn on {summary['images']} images in {summary['seconds']} s ({len(summary['epochs'])} epochs) -> "
        f"{out}" + (f"; best dev one-shot accuracy {summary['best_dev_accuracy']:.4f}" if held_out else ""))
    say(f"calibrated on {'dev' if held_out else 'training'} image pairs: tau {summary['calibration']['tau']:.4f}, "
        f"accuracy {m['accuracy']:.4f}, F1 {m['f1']:.4f}")


@cli.command(name="eval-oneshot")
@click.argument("episodes_path", metavar="EPISODES", type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path), required=True, help="An image model folder (twin CNN).")
@click.option("--ways", type=click.IntRange(2), default=20, show_default=True, help="Classes an episode.")
@click.option("--shots", type=click.IntRange(1), default=1, show_default=True, help="Stored examples a class.")
@click.option("--episodes", type=click.IntRange(1), default=400, show_default=True,
              help="Episodes drawn (a folder of official runs: every run, once).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same episodes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (accuracy, ways, shots, episodes, ci95).")
def eval_oneshot(episodes_path: Path, model: Path, ways: int, shots: int, episodes: int, seed: int,
                 as_json: bool) -> None:
    """N-way K-shot accuracy on classes never trained on: each query image is named by its nearest
    stored example (cosine). EPISODES is a class tree (a folder or a zip; episodes are drawn
    within one group, e.g. one alphabet) or a folder of Omniglot's runs (runNN/training,
    runNN/test, runNN/class_labels.txt)."""
    from .. import oneshot
    from ..encoders import load_encoder
    from ..images import class_tree

    encoder = load_encoder(model)
    if encoder.modality != "image":
        raise TwinError(f"{model}: a {encoder.modality} model; eval-oneshot needs an image model (twin train "
                        "--encoder cnn)")
    if oneshot.is_runs_folder(episodes_path):
        episode_set = oneshot.official_runs(episodes_path)
    else:
        episode_set = oneshot.tree_episodes(class_tree(episodes_path), ways, shots, episodes, seed, str(episodes_path))
    result = oneshot.run(encoder.encode, episode_set)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{result['ways']}-way {result['shots']}-shot accuracy {result['accuracy']:.4f} "
               f"+- {result['ci95']:.4f} (95% CI) over {result['episodes']} episodes")
