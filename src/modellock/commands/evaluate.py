"""``modellock eval``: the evaluation matrix of a locked model."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app


@app.command("eval")
def eval_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Locked model folder."),
    key: Path = typer.Option(..., "--key", "-k", help="The key it was locked with."),
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME."),
    split: str = typer.Option("test", help="Split to evaluate on."),
    baseline: Optional[str] = typer.Option(None, help="Baseline (original) model folder."),
    wrong_key: Optional[List[Path]] = typer.Option(None, "--wrong-key", help="Wrong key file(s); default: "
                                                   "the next seed and two other prompts."),
    test_limit: Optional[int] = typer.Option(None, min=1, help="Use a class-balanced subset of N test images."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here."),
    update_card: bool = typer.Option(True, help="Store the result in the model folder's config and card."),
    batch_size: int = typer.Option(256, min=1),
    device: Optional[str] = typer.Option(None),
    handling: Optional[bool] = typer.Option(None, "--handling/--no-handling", help="Also score the unlocked model "
                                            "on inputs JPEG-compressed (q75), resized by +-10 % or cropped to 90 % "
                                            "before the key edit (default: for CPU editors)."),
):
    """Evaluate a locked model: original, locked, unlocked and wrong-key accuracy (segmentation: mIoU).

    Under `accelerate launch` or `torchrun` the edits and predictions are shared among the processes.
    """
    from .. import distributed
    from ..data import open_source
    from ..data.checks import pick_split
    from ..evaluate import evaluate
    from ..key import Key
    from ..model_folder import LockedModel
    from ..report import format_table

    k = Key.load(key)
    device = device or distributed.device()  # launched: this process's GPU
    m = LockedModel.from_pretrained(model, device=device)
    m.unlock(k)  # refuse a key that does not match, before any work
    base = LockedModel.from_pretrained(baseline, device=device) if baseline else None
    wrong = {f"key {p.name}": Key.load(p) for p in wrong_key} if wrong_key else None
    source = open_source(data, task=m.task, ignore_index=m.ignore_index)
    source.limit(pick_split(source, split), test_limit)
    result = evaluate(m, k, source, split, base, wrong, batch_size=batch_size, device=device, handling=handling)
    if not distributed.is_main():
        return
    typer.echo(format_table(result))
    if json_out:
        from ..results_json import write_json

        write_json(json_out, result)
    if update_card and m.path is not None and Path(model).is_dir():
        m.save_evaluation(result)
