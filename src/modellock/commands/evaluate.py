"""``modellock eval``: the evaluation matrix of a locked model."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..utils.results_json import write_json
from . import DATA, EVALUATION, INPUTS, RUN, app, fail, load_key


@app.command("eval")
def eval_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Locked model folder.", rich_help_panel=INPUTS),
    key: Path = typer.Option(..., "--key", "-k", help="The key it was locked with.", rich_help_panel=INPUTS),
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME.", rich_help_panel=INPUTS),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here.",
                                            rich_help_panel=INPUTS),
    update_card: bool = typer.Option(True, help="Store the result in the model folder's config and card.",
                                     rich_help_panel=INPUTS),
    baseline: Optional[str] = typer.Option(None, help="Baseline (original) model folder.", rich_help_panel=EVALUATION),
    wrong_key: Optional[List[Path]] = typer.Option(None, "--wrong-key", help="Wrong key file(s); default: "
                                                   "the next seed and two other prompts.", rich_help_panel=EVALUATION),
    handling: Optional[bool] = typer.Option(None, "--handling/--no-handling", help="Also score the unlocked model "
                                            "on inputs JPEG-compressed (q75), resized by +-10 % or cropped to 90 % "
                                            "before the key edit (default: for CPU editors).",
                                            rich_help_panel=EVALUATION),
    split: str = typer.Option("test", help="Split to evaluate on.", rich_help_panel=DATA),
    test_limit: Optional[int] = typer.Option(None, min=1, help="Use a class-balanced subset of N test images.",
                                             rich_help_panel=DATA),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave out images that cannot be decoded (each is named "
                                  "in a warning) instead of stopping.", rich_help_panel=DATA),
    batch_size: int = typer.Option(256, min=1, help="Images predicted together.", rich_help_panel=RUN),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1, ... (default: cuda when present).",
                                         rich_help_panel=RUN),
):
    """Evaluate a locked model: original, locked, unlocked and wrong-key accuracy (segmentation: mIoU).

    Under `accelerate launch` or `torchrun` the edits and predictions are shared among the processes.
    """
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..data import open_source
    from ..data.checks import check_decodes, pick_split
    from ..evaluation.matrix import evaluate
    from ..evaluation.report import format_table
    from ..model_folder import LockedModel
    from ..utils import distributed

    k = load_key(key)
    device = device or distributed.device()  # launched: this process's GPU
    m = LockedModel.from_pretrained(model, device=device)
    if not m.is_locked:
        fail(f"{model}: not a locked model (trained without a key); eval scores a locked model with its key: give "
             f"this one as --baseline of the locked model's eval, or run `modellock predict --model {model}` "
             "without --key")
    m.unlock(k)  # refuse a key that does not match, before any work
    base = LockedModel.from_pretrained(baseline, device=device) if baseline else None
    wrong_keys = [(p, load_key(p)) for p in wrong_key or []]
    for p, w in wrong_keys:
        if w.canonical() == k.canonical():
            fail(f"--wrong-key {p}: this is the model's own key (the same as --key {key}), not a wrong one")
    wrong = {f"key {p.name}": w for p, w in wrong_keys} or None
    source = open_source(data, task=m.task, ignore_index=m.ignore_index)
    split = pick_split(source, split)
    source.limit(split, test_limit)
    check_decodes(source, split, skip_bad)
    result = evaluate(m, k, source, split, base, wrong, batch_size=batch_size, device=device, handling=handling)
    if not distributed.is_main():
        return
    typer.echo(format_table(result))
    if json_out:
        write_json(json_out, result)
    if update_card and m.path is not None and Path(model).is_dir():
        m.save_evaluation(result)
