"""``modellock edit``: write a key-edited copy of a dataset, resumably."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import DATA, INPUTS, RUN, TASK_HELP, app, limits, load_key


@app.command()
def edit(
    key: Path = typer.Option(..., "--key", "-k", help="Key file.", rich_help_panel=INPUTS),
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME.", rich_help_panel=INPUTS),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (ImageFolder layout, PNG).",
                             rich_help_panel=INPUTS),
    split: Optional[List[str]] = typer.Option(None, "--split", help="Split(s) to edit; all by default.",
                                              rich_help_panel=DATA),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images and list them in skipped.json.",
                                  rich_help_panel=DATA),
    train_limit: Optional[int] = typer.Option(None, min=1, help="Use a class-balanced subset of N training images.",
                                              rich_help_panel=DATA),
    test_limit: Optional[int] = typer.Option(None, min=1, help="Use a class-balanced subset of N test images.",
                                             rich_help_panel=DATA),
    task: Optional[str] = typer.Option(None, help=TASK_HELP, rich_help_panel=DATA),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Images per editor call (default: the editor's; "
                                             "instruct-pix2pix on a GPU: as many as fit).", rich_help_panel=RUN),
    num_workers: Optional[int] = typer.Option(None, min=0, help="Data-loader processes reading the sources "
                                              "and as many writing them (default: half the spare cores each, at "
                                              "most 4; 0: read and write in the editing process).",
                                              rich_help_panel=RUN),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1, ... (default: cuda when present).",
                                         rich_help_panel=RUN),
):
    """Edit a dataset with a key; resumable (rerun after an interruption to finish).

    Under `accelerate launch` or `torchrun` every process edits its own share of each split.
    """
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..data import open_source
    from ..edit import edit_dataset, write_skip_list
    from ..utils import distributed

    k = load_key(key)
    source = open_source(data, limits(train_limit, test_limit), task=task)
    reports = edit_dataset(k, source, out, splits=split, skip_bad=skip_bad, batch_size=batch_size, device=device,
                           num_workers=num_workers)
    if not distributed.is_main():
        return
    for r in reports:
        shares = ", ".join(f"rank {p['rank']}: {p['edited']}" for p in r.processes) if len(r.processes) > 1 else ""
        notes = [shares] if shares else []
        if r.repaired:
            notes.append(f"{r.repaired} of them damaged on disk: edited again")
        note = f" ({'; '.join(notes)})" if notes else ""
        typer.echo(f"{r.split}: {r.total} images, {r.edited} edited{note}, {r.reused} already done, "
                   f"{len(r.skipped)} skipped")
    skipped = write_skip_list(out, reports)
    if skipped:
        typer.echo(f"skipped images are listed in {skipped}")
