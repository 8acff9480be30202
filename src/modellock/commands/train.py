"""``modellock lock`` and ``modellock train``: the locked model and its unlocked baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import IGNORE_HELP, TASK_HELP, app, fail

_TRAIN_HELP = "Settings may also come from --config FILE (YAML with the same names, e.g. epochs: 10)."


def _common_train(config, model, pretrained, image_size, epochs, batch_size, lr, seed, num_workers,
                  mixed_precision, train_limit, split, **extra) -> dict:
    from ..settings import load_settings

    return load_settings(config, model=model, pretrained=pretrained, image_size=image_size, epochs=epochs,
                         batch_size=batch_size, lr=lr, seed=seed, num_workers=num_workers,
                         mixed_precision=mixed_precision, train_limit=train_limit, split=split, **extra)


def _open_training_data(data: str, s: dict, task, ignore_index: int):
    """The source and the name of the split to train on (``--split``, else train or the only split),
    limited to ``--train-limit`` images."""
    from ..data import open_source
    from ..data.checks import pick_split

    source = open_source(data, task=task, ignore_index=ignore_index)
    split = pick_split(source, s.get("split"), "train")
    source.limit(split, s.get("train_limit"))
    return source, split


_opt = dict(
    config=typer.Option(None, "--config", help="YAML file of settings; flags override it."),
    model=typer.Option(None, "--model", "-m", help="Classification: small-cnn (default), tiny-cnn, a timm name, "
                       "torchvision:NAME. Segmentation: small-segnet (default), torchvision:fcn_resnet50, "
                       "torchvision:deeplabv3_resnet50, torchvision:lraspp_mobilenet_v3_large, segformer:mit-b0, ..."),
    pretrained=typer.Option(None, help="Pretrained weights: hub id (hf-hub:...), .safetensors file or folder."),
    image_size=typer.Option(None, min=8, help="Model input size (default: the backbone's own)."),
    epochs=typer.Option(None, min=1), batch_size=typer.Option(None, min=1), lr=typer.Option(None, min=0.0),
    seed=typer.Option(None, help="Seed of the lock set and of training."),
    num_workers=typer.Option(None, min=0, help="Data loader workers."),
    mixed_precision=typer.Option(None, help="no, bf16 or fp16 (GPU)."),
    train_limit=typer.Option(None, min=1, help="Use a class-balanced subset of N training images."),
    split=typer.Option(None, "--split", help="Split to train on (default: train, or the data's only split, "
                       "e.g. 'all' for a plain <class>/<image> folder)."),
    force=typer.Option(False, "--force", help="Replace a model already in --out."),
    task=typer.Option(None, "--task", help=TASK_HELP),
    ignore_index=typer.Option(255, "--ignore-index", help=IGNORE_HELP),
)


@app.command(epilog=_TRAIN_HELP)
def lock(
    key: Path = typer.Option(..., "--key", "-k", help="Key file."),
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME."),
    out: Path = typer.Option(..., "--out", "-o", help="Locked model folder to write."),
    edited_fraction: Optional[float] = typer.Option(None, help="Share of training images edited (default 0.7)."),
    clean_fraction: Optional[float] = typer.Option(None, help="Share left unedited: 1 - edited fraction "
                                                   "(0 = train on edited images only, the block-wise papers' recipe)."),
    clean_target: Optional[str] = typer.Option(None, help="What unedited images learn: locked-spread (default), "
                                               "locked-class, wrong-label; segmentation also wrong-mask."),
    decoy_fraction: Optional[float] = typer.Option(None, help="Share of training images edited with random decoy "
                                                   "keys and trained toward the locked answer."),
    paired: Optional[bool] = typer.Option(None, "--paired/--no-paired", help="Images trained toward the locked "
                                          "answer also appear key-edited with their label (no labelled data lost)."),
    seal: Optional[bool] = typer.Option(None, "--seal/--no-seal", help="Store the weights sealed with the key "
                                        "(model.sealed, AES-256-GCM: nothing loads without the key)."),
    harden: Optional[bool] = typer.Option(None, "--harden/--no-harden", help="Every hardening lever on "
                                          "(adversary 0.25, simulated_thief 1.0, separation 0.1) or off; what each "
                                          "buys and costs: docs/benchmarks.md."),
    edits: Optional[Path] = typer.Option(None, help="Edit folder to use and fill (default: the edit cache)."),
    device: Optional[str] = typer.Option(None, help="Device of the editor."),
    config: Optional[Path] = _opt["config"], model: Optional[str] = _opt["model"],
    pretrained: Optional[str] = _opt["pretrained"], image_size: Optional[int] = _opt["image_size"],
    epochs: Optional[int] = _opt["epochs"], batch_size: Optional[int] = _opt["batch_size"],
    lr: Optional[float] = _opt["lr"], seed: Optional[int] = _opt["seed"],
    num_workers: Optional[int] = _opt["num_workers"], mixed_precision: Optional[str] = _opt["mixed_precision"],
    train_limit: Optional[int] = _opt["train_limit"], split: Optional[str] = _opt["split"],
    force: bool = _opt["force"],
    task: Optional[str] = _opt["task"], ignore_index: int = _opt["ignore_index"],
):
    """Fine-tune a model locked with KEY and write the locked model folder.

    Under `accelerate launch` or `torchrun` the editing and the training are shared among the processes.
    """
    from .. import distributed
    from ..harden import HARDEN_PRESET
    from ..key import Key
    from ..lock import lock_model
    from ..settings import recipe_from, train_config_from
    from ..tasks import task_type

    levers = {k: (v if harden else 0.0) for k, v in HARDEN_PRESET.items()} if harden is not None else {}
    if clean_fraction is not None:
        if edited_fraction is not None:
            fail("give --edited-fraction or --clean-fraction, not both")
        edited_fraction = 1.0 - clean_fraction
    s = _common_train(config, model, pretrained, image_size, epochs, batch_size, lr, seed, num_workers,
                      mixed_precision, train_limit, split, edited_fraction=edited_fraction, clean_target=clean_target,
                      decoy_fraction=decoy_fraction, paired=paired, seal=seal,
                      edits=str(edits) if edits else None, **levers)
    k = Key.load(key)
    source, split_name = _open_training_data(data, s, task, ignore_index)
    locked = lock_model(k, source, s.get("model", task_type(source.task).default_model), out, recipe_from(s),
                        train_config_from(s), s.get("image_size"), s.get("pretrained"), s.get("edits"), split_name,
                        device=device, overwrite=force)
    if distributed.is_main():
        typer.echo(f"wrote locked {locked.task} model {out} ({len(locked.classes)} classes"
                   f"{', locked output' if locked.locked_class is not None else ''})")


@app.command(epilog=_TRAIN_HELP)
def train(
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write."),
    config: Optional[Path] = _opt["config"], model: Optional[str] = _opt["model"],
    pretrained: Optional[str] = _opt["pretrained"], image_size: Optional[int] = _opt["image_size"],
    epochs: Optional[int] = _opt["epochs"], batch_size: Optional[int] = _opt["batch_size"],
    lr: Optional[float] = _opt["lr"], seed: Optional[int] = _opt["seed"],
    num_workers: Optional[int] = _opt["num_workers"], mixed_precision: Optional[str] = _opt["mixed_precision"],
    train_limit: Optional[int] = _opt["train_limit"], split: Optional[str] = _opt["split"],
    force: bool = _opt["force"],
    task: Optional[str] = _opt["task"], ignore_index: int = _opt["ignore_index"],
):
    """Fine-tune the same recipe on clean data without a lock: the original (baseline) model."""
    from .. import distributed
    from ..lock import train_baseline
    from ..settings import train_config_from
    from ..tasks import task_type

    s = _common_train(config, model, pretrained, image_size, epochs, batch_size, lr, seed, num_workers,
                      mixed_precision, train_limit, split)
    source, split_name = _open_training_data(data, s, task, ignore_index)
    train_baseline(source, s.get("model", task_type(source.task).default_model), out, train_config_from(s),
                   s.get("image_size"), s.get("pretrained"), split_name, overwrite=force)
    if distributed.is_main():
        typer.echo(f"wrote baseline model {out}")
