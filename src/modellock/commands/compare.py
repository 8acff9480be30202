"""``modellock compare``: ModelLock and the block-wise key locks side by side (registered on the CLI app)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ModelLockError
from ..utils.results_json import write_json
from . import DATA, INPUTS, RUN, TRAINING, app

LOCKS = "Locks and attacks"


@app.command("compare")
def compare(
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME.", rich_help_panel=INPUTS),
    out: Path = typer.Option(Path("compare-output"), "--out", "-o",
                             help="Folder for the models, the (secret) keys, compare.json and report.html; "
                             "rerun with the same folder to resume.", rich_help_panel=INPUTS),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON here.",
                                            rich_help_panel=INPUTS),
    locks: str = typer.Option("modellock,pixel-shuffle,np,ffx", "--locks",
                              help="Comma-separated: modellock, pixel-shuffle, np (negative-positive), ffx "
                              "(default: all four).", show_default=False, rich_help_panel=LOCKS),
    block_size: str = typer.Option("4", help="Block size of the block-wise locks: an integer, or 'patch' "
                                   "(the model's ViT patch size).", rich_help_panel=LOCKS),
    modellock_editor: str = typer.Option("keyed-filter", help="Editor of the 'modellock' lock: keyed-filter "
                                         "(CPU) or instruct-pix2pix (needs --diffusion-model).", rich_help_panel=LOCKS),
    diffusion_model: Optional[str] = typer.Option(None, help="Diffusion model (hub id or folder) of the "
                                                  "'modellock' lock with instruct-pix2pix.", rich_help_panel=LOCKS),
    seal: bool = typer.Option(False, "--seal/--no-seal", help="Seal every lock's weights with its key (off: the "
                              "comparison is between the locks' methods).", rich_help_panel=LOCKS),
    budget: str = typer.Option("quick", help="Attack budget: quick (a small grid) or full (the fine-tune attack's "
                               "optimizer x lr x part grid).", rich_help_panel=LOCKS),
    samples: Optional[int] = typer.Option(None, help="Training samples per attacker model (default: the "
                                          "budget's).", rich_help_panel=LOCKS),
    fine_tune_fraction: float = typer.Option(0.05, help="The fine-tuning attacker's clean share of the "
                                             "training split.", rich_help_panel=LOCKS),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model: classification small-cnn (default), "
                                        "tiny-cnn, a timm name, torchvision:NAME; segmentation small-segnet "
                                        "(default), ...", rich_help_panel=TRAINING),
    pretrained: Optional[str] = typer.Option(None, help="Pretrained weights: hub id, .safetensors file or folder.",
                                             rich_help_panel=TRAINING),
    image_size: Optional[int] = typer.Option(None, help="Model input size (default: the backbone's own).",
                                             rich_help_panel=TRAINING),
    epochs: Optional[int] = typer.Option(None, help="Training epochs of the baseline and of every lock (default "
                                         "10).", rich_help_panel=TRAINING),
    batch_size: Optional[int] = typer.Option(None, help="Images per training step (default 128).",
                                             rich_help_panel=TRAINING),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default 0.001).", rich_help_panel=TRAINING),
    seed: int = typer.Option(0, help="Seed of the keys, the lock sets, training and the attacks.",
                             rich_help_panel=TRAINING),
    num_workers: Optional[int] = typer.Option(None, help="Data-loader worker processes (default 2).",
                                              rich_help_panel=TRAINING),
    train_limit: Optional[int] = typer.Option(None, help="Use a class-balanced subset of N training images.",
                                              rich_help_panel=DATA),
    test_limit: Optional[int] = typer.Option(None, help="Use a class-balanced subset of N test images.",
                                             rich_help_panel=DATA),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1, ... (default: cuda when present).",
                                         rich_help_panel=RUN),
):
    """Train the baseline and each lock with the same budget; evaluate, attack and compare them in one table."""
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..attacks.context import budget_named
    from ..data import open_source
    from ..data.checks import check_train_limit
    from ..lock.settings import load_settings, train_config_from
    from ..tasks import task_type
    from ..workflows.compare import compare_locks, format_markdown, parse_locks

    parse_locks(locks)  # unknown names fail before any work
    if modellock_editor == "instruct-pix2pix" and not diffusion_model and "modellock" in parse_locks(locks):
        raise ModelLockError("compare: --modellock-editor instruct-pix2pix needs --diffusion-model")
    settings = load_settings(None, model=model, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                             num_workers=num_workers, train_limit=train_limit)
    budget_named(budget)
    source = open_source(data)
    check_train_limit(source, "train", train_limit)
    for split, limit in (("train", train_limit), ("test", test_limit)):
        if limit is not None:
            source.limit(split, limit)
    model = model or task_type(source.task).default_model
    typer.echo(f"comparing {', '.join(parse_locks(locks))} on {model}; keys go to {out / 'keys'} (secret: "
               "they unlock the models)")
    result = compare_locks(source, model, locks, out, train_config_from(settings), seed=seed,
                           block_size=block_size, modellock_editor=modellock_editor,
                           diffusion_model=diffusion_model, fine_tune_fraction=fine_tune_fraction,
                           image_size=image_size, pretrained=pretrained, budget=budget, samples=samples,
                           device=device, log=typer.echo, seal=seal)
    typer.echo(format_markdown(result))
    typer.echo(f"wrote {out / 'compare.json'} and {out / 'report.html'}")
    if json_out:
        write_json(json_out, result)
        typer.echo(f"wrote {json_out}")
