"""``modellock lock`` and ``modellock train``: the locked model and its unlocked baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import DATA, IGNORE_HELP, INPUTS, RECIPE, RUN, TASK_HELP, TRAINING, app, fail, load_key

_TRAIN_HELP = ("Settings may also come from --config FILE (YAML with the same names, e.g. epochs: 10); flags "
               "override it. Every value is checked by type and range.")

# the defaults named in the help texts are those of TrainConfig and LockRecipe (tests/test_help.py holds them
# equal); they are written out here because those modules import torch, which `--help` should not wait for


def _common_train(config, model, pretrained, image_size, epochs, batch_size, lr, seed, num_workers,
                  mixed_precision, train_limit, split, **extra) -> dict:
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..lock.settings import load_settings

    return load_settings(config, model=model, pretrained=pretrained, image_size=image_size, epochs=epochs,
                         batch_size=batch_size, lr=lr, seed=seed, num_workers=num_workers,
                         mixed_precision=mixed_precision, train_limit=train_limit, split=split, **extra)


def _open_training_data(data: str, s: dict, task, ignore_index: int, skip_bad: bool):
    """The source and the name of the split to train on (``--split``, else train or the only split),
    limited to ``--train-limit`` images; images that cannot be decoded are named (or, with ``skip_bad``,
    left out) before any work."""
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..data import open_source
    from ..data.checks import check_decodes, check_train_limit, pick_split

    source = open_source(data, task=task, ignore_index=ignore_index)
    split = pick_split(source, s.get("split"), "train")
    check_train_limit(source, split, s.get("train_limit"))
    source.limit(split, s.get("train_limit"))
    check_decodes(source, split, skip_bad)
    return source, split


def _check_out(out: Path, force: bool) -> None:
    """Refuse, before any work, an --out folder that holds other things than a model or an interrupted run."""
    if not out.is_dir() or force:
        return
    entries = sorted(p.name for p in out.iterdir())
    ours = {"model.safetensors", ".work"}  # a model folder, or a run to resume
    if entries and not ours.intersection(entries):
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        fail(f"{out}: a folder with other files ({shown}); --out names the model folder to write: give a new or "
             "empty folder, or --force to write into this one")


_opt = dict(
    config=typer.Option(None, "--config", help="YAML file of settings; flags override it.", rich_help_panel=INPUTS),
    model=typer.Option(None, "--model", "-m", help="Classification: small-cnn (default), tiny-cnn, a timm name, "
                       "torchvision:NAME. Segmentation: small-segnet (default), torchvision:fcn_resnet50, "
                       "torchvision:deeplabv3_resnet50, torchvision:lraspp_mobilenet_v3_large, segformer:mit-b0, ...",
                       rich_help_panel=TRAINING),
    pretrained=typer.Option(None, help="Pretrained weights: hub id (hf-hub:...), .safetensors file or folder.",
                            rich_help_panel=TRAINING),
    image_size=typer.Option(None, help="Model input size in pixels, at least 8 (default: the backbone's own).",
                            rich_help_panel=TRAINING),
    epochs=typer.Option(None, help="Training epochs, at least 1 (default 10).",
                        rich_help_panel=TRAINING),
    batch_size=typer.Option(None, help="Images per training step and process, at least 1 (default "
                            "128).", rich_help_panel=TRAINING),
    lr=typer.Option(None, help="Peak learning rate, above 0 (default 0.001; warmup, then "
                    "cosine decay).", rich_help_panel=TRAINING),
    seed=typer.Option(None, help="Seed of the lock set and of training (default 0).",
                      rich_help_panel=TRAINING),
    num_workers=typer.Option(None, help="Data-loader worker processes (default "
                             "2; 0: load in the training process).",
                             rich_help_panel=TRAINING),
    mixed_precision=typer.Option(None, help="no (default), bf16, fp16 (GPU) or auto (bf16 where the GPU or CPU "
                                 "computes it natively).", rich_help_panel=TRAINING),
    train_limit=typer.Option(None, help="Use a class-balanced subset of N training images (N at least the number "
                             "of classes).", rich_help_panel=DATA),
    split=typer.Option(None, "--split", help="Split to train on (default: train, or the data's only split, "
                       "e.g. 'all' for a plain <class>/<image> folder).", rich_help_panel=DATA),
    skip_bad=typer.Option(False, "--skip-bad", help="Leave out images that cannot be decoded (each is named in a "
                          "warning) instead of stopping.", rich_help_panel=DATA),
    force=typer.Option(False, "--force", help="Replace a model in --out, or write into a folder that holds other "
                       "files.", rich_help_panel=INPUTS),
    task=typer.Option(None, "--task", help=TASK_HELP, rich_help_panel=DATA),
    ignore_index=typer.Option(255, "--ignore-index", help=IGNORE_HELP, rich_help_panel=DATA),
)


@app.command(epilog=_TRAIN_HELP)
def lock(
    key: Path = typer.Option(..., "--key", "-k", help="Key file.", rich_help_panel=INPUTS),
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME.", rich_help_panel=INPUTS),
    out: Path = typer.Option(..., "--out", "-o", help="Locked model folder to write.", rich_help_panel=INPUTS),
    config: Optional[Path] = _opt["config"], force: bool = _opt["force"],
    edited_fraction: Optional[float] = typer.Option(
        None, help="Share of training images edited with the key (default 0.7).",
        rich_help_panel=RECIPE),
    clean_fraction: Optional[float] = typer.Option(
        None, help="Share left unedited: 1 - edited fraction (0: train on edited images only, the block-wise papers' "
        "recipe).", rich_help_panel=RECIPE),
    clean_target: Optional[str] = typer.Option(
        None, help="What unedited images learn: locked-spread (default), locked-class, wrong-label; segmentation "
        "also wrong-mask.", rich_help_panel=RECIPE),
    decoy_fraction: Optional[float] = typer.Option(
        None, help="Share of training images edited with random decoy keys and trained toward the locked answer "
        "(default: two thirds of the rest).", rich_help_panel=RECIPE),
    paired: Optional[bool] = typer.Option(
        None, "--paired/--no-paired", help="Images trained toward the locked answer also appear key-edited with their "
        "label, so no labelled data is lost (default: paired).", rich_help_panel=RECIPE),
    seal: Optional[bool] = typer.Option(
        None, "--seal/--no-seal", help="Store the weights sealed with the key (model.sealed, AES-256-GCM): nothing "
        "loads without the key (default: sealed).", rich_help_panel=RECIPE),
    harden: Optional[bool] = typer.Option(
        None, "--harden/--no-harden", help="Every hardening lever on (adversary 0.25, simulated_thief 1.0, "
        "separation 0.1) or off; what each buys and costs: docs/benchmarks.md.", rich_help_panel=RECIPE),
    handling_share: Optional[float] = typer.Option(
        None, help="Share of training images the lock crops and resizes as ordinary handling would, so the unlocked "
        "model keeps working on handled inputs (default 0.5; editors that edit in the loop).", rich_help_panel=RECIPE),
    handling_jpeg: Optional[float] = typer.Option(
        None, help="Share of those handled images also re-encoded as JPEG at quality 60-95 (default 0.5).",
        rich_help_panel=RECIPE),
    edits: Optional[Path] = typer.Option(None, help="Edit folder to use and fill (default: the edit cache).",
                                         rich_help_panel=RECIPE),
    model: Optional[str] = _opt["model"], pretrained: Optional[str] = _opt["pretrained"],
    image_size: Optional[int] = _opt["image_size"], epochs: Optional[int] = _opt["epochs"],
    batch_size: Optional[int] = _opt["batch_size"], lr: Optional[float] = _opt["lr"],
    seed: Optional[int] = _opt["seed"], num_workers: Optional[int] = _opt["num_workers"],
    mixed_precision: Optional[str] = _opt["mixed_precision"],
    split: Optional[str] = _opt["split"], train_limit: Optional[int] = _opt["train_limit"],
    skip_bad: bool = _opt["skip_bad"], task: Optional[str] = _opt["task"], ignore_index: int = _opt["ignore_index"],
    device: Optional[str] = typer.Option(None, help="Device of the editor: cpu, cuda, cuda:1, ... (default: cuda "
                                         "when present).", rich_help_panel=RUN),
):
    """Fine-tune a model locked with KEY and write the locked model folder.

    Under `accelerate launch` or `torchrun` the editing and the training are shared among the processes.
    """
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..lock import lock_model
    from ..lock.hardening import HARDEN_PRESET
    from ..lock.settings import recipe_from, train_config_from
    from ..tasks import task_type
    from ..utils import distributed

    levers = {k: (v if harden else 0.0) for k, v in HARDEN_PRESET.items()} if harden is not None else {}
    if clean_fraction is not None:
        if edited_fraction is not None:
            fail("give --edited-fraction or --clean-fraction, not both")
        if not 0.0 <= clean_fraction <= 1.0:
            fail(f"--clean-fraction: input should be between 0 and 1, not {clean_fraction!r}")
        edited_fraction = 1.0 - clean_fraction
    s = _common_train(config, model, pretrained, image_size, epochs, batch_size, lr, seed, num_workers,
                      mixed_precision, train_limit, split, edited_fraction=edited_fraction, clean_target=clean_target,
                      decoy_fraction=decoy_fraction, paired=paired, seal=seal, handling_share=handling_share,
                      handling_jpeg=handling_jpeg,
                      edits=str(edits) if edits else None, **levers)
    recipe, train_config = recipe_from(s), train_config_from(s)
    _check_out(out, force)
    k = load_key(key)
    source, split_name = _open_training_data(data, s, task, ignore_index, skip_bad)
    locked = lock_model(k, source, s.get("model", task_type(source.task).default_model), out, recipe,
                        train_config, s.get("image_size"), s.get("pretrained"), s.get("edits"), split_name,
                        device=device, overwrite=force)
    if distributed.is_main():
        typer.echo(f"wrote locked {locked.task} model {out} ({len(locked.classes)} classes"
                   f"{', locked output' if locked.locked_class is not None else ''})")


@app.command(epilog=_TRAIN_HELP)
def train(
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME.", rich_help_panel=INPUTS),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write.", rich_help_panel=INPUTS),
    config: Optional[Path] = _opt["config"], force: bool = _opt["force"],
    model: Optional[str] = _opt["model"], pretrained: Optional[str] = _opt["pretrained"],
    image_size: Optional[int] = _opt["image_size"], epochs: Optional[int] = _opt["epochs"],
    batch_size: Optional[int] = _opt["batch_size"], lr: Optional[float] = _opt["lr"],
    seed: Optional[int] = _opt["seed"], num_workers: Optional[int] = _opt["num_workers"],
    mixed_precision: Optional[str] = _opt["mixed_precision"],
    split: Optional[str] = _opt["split"], train_limit: Optional[int] = _opt["train_limit"],
    skip_bad: bool = _opt["skip_bad"], task: Optional[str] = _opt["task"], ignore_index: int = _opt["ignore_index"],
):
    """Fine-tune the same recipe on clean data without a lock: the original (baseline) model."""
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..lock import train_baseline
    from ..lock.settings import train_config_from
    from ..tasks import task_type
    from ..utils import distributed

    s = _common_train(config, model, pretrained, image_size, epochs, batch_size, lr, seed, num_workers,
                      mixed_precision, train_limit, split)
    train_config = train_config_from(s)
    _check_out(out, force)
    source, split_name = _open_training_data(data, s, task, ignore_index, skip_bad)
    train_baseline(source, s.get("model", task_type(source.task).default_model), out, train_config,
                   s.get("image_size"), s.get("pretrained"), split_name, overwrite=force)
    if distributed.is_main():
        typer.echo(f"wrote baseline model {out}")
