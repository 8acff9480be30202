"""``modellock demo``: the whole flow on built-in data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..utils.results_json import write_json
from . import INPUTS, TRAINING, app, fail


@app.command()
def demo(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the demo's outputs (default: "
                                       "demo-output, or demo-output-segmentation).", rich_help_panel=INPUTS),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the evaluation JSON here.",
                                            rich_help_panel=INPUTS),
    epochs: Optional[int] = typer.Option(None, min=1, help="Training epochs (default: the demo's).",
                                         rich_help_panel=TRAINING),
    task: str = typer.Option("classification", help="classification or segmentation.", rich_help_panel=TRAINING),
):
    """Run the whole flow on built-in data, no downloads: keygen, edit, train, lock, evaluate, report."""
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..workflows.demo import DEMOS

    if task not in DEMOS:
        fail(f"--task {task!r}: expected classification or segmentation")
    run, default_out = DEMOS[task]
    result = run(out or Path(default_out), epochs=epochs, log=typer.echo)
    if json_out:
        write_json(json_out, result)
