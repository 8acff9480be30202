"""``modellock attack``: run the attack suite on a locked model and print one table (registered on the CLI app)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ModelLockError
from ..utils.paths import cache_root
from ..utils.results_json import write_json
from . import DATA, INPUTS, RUN, app, fail, load_key

ATTACKS = "Attacks"


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ModelLockError(f"--fractions {text!r}: expected comma-separated numbers, e.g. 0.01,0.05,0.1") from None
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise ModelLockError(f"--fractions {text!r}: each fraction must be in (0, 1]")
    return values


@app.command("attack")
def attack(
    model: str = typer.Option(..., "--model", "-m", help="Locked model folder.", rich_help_panel=INPUTS),
    key: Path = typer.Option(..., "--key", "-k", help="The key it was locked with (for the unlocked reference, "
                             "and the similar-prompts and wrong-machinery attacks).", rich_help_panel=INPUTS),
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME.", rich_help_panel=INPUTS),
    baseline: Optional[str] = typer.Option(None, help="Original (unlocked) model folder, for original_clean.",
                                           rich_help_panel=INPUTS),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here.",
                                            rich_help_panel=INPUTS),
    report: Optional[Path] = typer.Option(None, "--report", help="Write report.html and charts to this folder.",
                                          rich_help_panel=INPUTS),
    update_card: bool = typer.Option(True, help="Store the summary (worst gain over scratch, worst case undone) in "
                                     "the model folder's config and card.", rich_help_panel=INPUTS),
    work_dir: Optional[Path] = typer.Option(None, help="Where trained attack scores are kept for reruns "
                                            "(default: the cache).", rich_help_panel=INPUTS),
    attack_names: str = typer.Option("all", "--attack", "-a", help="Attack name(s), comma-separated, or all.",
                                     rich_help_panel=ATTACKS),
    budget: str = typer.Option("full", help="quick (a small grid: CI, demos) or full (optimizer x lr x part grid, "
                               "20k samples per model, 1k and 10k distillation queries).", rich_help_panel=ATTACKS),
    fractions: str = typer.Option("0.01,0.05,0.1", help="Attacker's clean share(s) of the training split.",
                                  rich_help_panel=ATTACKS),
    limit_prompts: Optional[int] = typer.Option(None, help="Try only the first N guessed / similar prompts.",
                                                rich_help_panel=ATTACKS),
    screen: int = typer.Option(500, help="Screening subset size for the prompt and transform sweeps.",
                               rich_help_panel=ATTACKS),
    top_k: int = typer.Option(3, help="Best screened settings scored on the whole test split.",
                              rich_help_panel=ATTACKS),
    samples: Optional[int] = typer.Option(None, help="Training samples per attacker model (default: the "
                                          "budget's).", rich_help_panel=ATTACKS),
    lr: Optional[float] = typer.Option(None, help="Base learning rate of the attacker's grid (default: the lock's).",
                                       rich_help_panel=ATTACKS),
    diffusion_model: Optional[List[str]] = typer.Option(None, "--diffusion-model", help="A diffusion model the "
                                                        "attacker holds (repeatable).", rich_help_panel=ATTACKS),
    attacker_settings: str = typer.Option("known", help="known: guesses use the key's editor settings; "
                                          "defaults: the editor's published defaults.", rich_help_panel=ATTACKS),
    random_keys: int = typer.Option(3, help="Random keys per registered editor tried by generic-transforms.",
                                    rich_help_panel=ATTACKS),
    seed: int = typer.Option(0, help="Seed of the attackers' data shares, training and guesses.",
                             rich_help_panel=ATTACKS),
    mixed_precision: str = typer.Option("no", help="The thief's training precision: no, bf16 or auto (bf16 "
                                        "where the GPU or CPU computes it natively).", rich_help_panel=ATTACKS),
    test_limit: Optional[int] = typer.Option(None, help="Use a class-balanced subset of N test images.",
                                             rich_help_panel=DATA),
    train_limit: Optional[int] = typer.Option(None, help="Use a class-balanced subset of N training images "
                                              "(the split the attacker's fractions come from).", rich_help_panel=DATA),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1, ... (default: cuda when present).",
                                         rich_help_panel=RUN),
):
    """Attack a locked model without its key: guessed/similar prompts, wrong machinery, fine-tuning, adapters..."""
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..attacks import attack_spec, available_attacks
    from ..attacks.context import budget_named
    from ..attacks.suite import format_table, run_suite
    from ..data import open_source
    from ..data.checks import check_data
    from ..model_folder import LockedModel
    from ..tasks import task_for
    from ..train import TrainConfig
    from ..utils.fields import field_types, validate_value

    names = None if attack_names.strip() == "all" else [n.strip() for n in attack_names.split(",") if n.strip()]
    for n in names or []:
        attack_spec(n)  # unknown names fail before any work
    budget_named(budget)
    validate_value(field_types(TrainConfig)["mixed_precision"], mixed_precision, "--mixed-precision", "")
    k = load_key(key)
    m = LockedModel.from_pretrained(model, device=device)
    if not m.is_locked:
        fail(f"{model}: not a locked model (trained without a key); attack measures a locked model: give this one "
             "as --baseline")
    task_for(m.config)  # a task the attacks support, before any work
    m.unlock(k)  # the reference needs the right key: refuse a wrong one before any work
    m = m.open(k)  # the attacks measure the lock on the opened weights
    base = LockedModel.from_pretrained(baseline, device=device) if baseline else None
    limits = {name: v for name, v in (("train", train_limit), ("test", test_limit)) if v is not None}
    source = open_source(data, limits, task=m.task, ignore_index=m.ignore_index)
    check_data(source, "test", m.image_size, m.classes, training=False)  # before any attack trains or edits
    work = work_dir or cache_root() / "attacks" / str(m.config.get("weights_sha256", "model"))[:16]
    run = run_suite(m, k, source, names, base, attacker_settings, log=typer.echo,
                    grid_images=6 if report else 0, fractions=_fractions(fractions), limit_prompts=limit_prompts,
                    screen=screen, top_k=top_k, budget=budget, samples=samples, lr=lr, seed=seed, random_keys=random_keys,
                    diffusion_models=tuple(diffusion_model or ()), device=device, work_dir=work,
                    mixed_precision=mixed_precision)
    typer.echo(format_table(run.result))
    if json_out:
        write_json(json_out, run.result)
        typer.echo(f"wrote {json_out}")
    if update_card and m.path is not None and Path(model).is_dir():
        m.save_attack_summary(run.result["summary"], run.result["settings"], available_attacks())
    if report:
        # lazy: the command's own work; --help and the key commands stay light (no torch)
        from ..attacks.report import write_attack_report

        path = write_attack_report(report, run.result, run.grid_columns, run.grid_rows)
        typer.echo(f"wrote {path}")
