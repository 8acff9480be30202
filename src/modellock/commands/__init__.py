"""The ``modellock`` commands: one module per command (or pair), each registering itself on ``app``.

A command module imports ``app`` (and the small helpers) from here and decorates its function with
``@app.command()``; ``cli.py`` imports the modules listed in ``COMMAND_MODULES`` and runs the app. Nothing
here imports ``cli``, so there is no import circle. Adding a command touches one module plus one line below.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Optional

import typer

from ..errors import one_line
from ..keys import Key
from ..version import __version__

# -h as well as --help, for every command (click hands the names down to subcommands)
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Lock vision models with a secret diffusion-edit key, and unlock them.")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"modellock {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                       help="Show the version and exit.")):
    """Lock vision models with a secret diffusion-edit key, and unlock them."""


# the panels that group the options of `--help` (typer's rich help panels), the same names in every command
INPUTS = "Inputs and outputs"
DATA = "Data"
RECIPE = "Lock recipe"
TRAINING = "Training"
EVALUATION = "Evaluation"
RUN = "Running"

# in the order ``modellock --help`` lists them
COMMAND_MODULES = ("keys", "edit", "train", "predict", "evaluate", "demo", "attack", "compare", "serve", "ownership")

TASK_HELP = ("classification or segmentation (default: from the data's layout: split folders with images/ and "
             "masks/ are segmentation)")
IGNORE_HELP = "Mask value that marks unlabelled pixels (segmentation)."


def load_commands() -> typer.Typer:
    """Import every command module (each registers its commands on ``app``) and return the app."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    return app


def warn(message: str) -> None:
    """One ``warning: ...`` line on stderr (the main process only, when launched with several)."""
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"warning: {one_line(message)}", err=True)


def load_key(path: Path):
    """``Key.load(path)``, with the warning of ``warn_if_readable``."""
    key = Key.load(path)
    warn_if_readable(path)
    return key


def warn_if_readable(path: Path) -> None:
    """A warning, as ssh gives, when a key file is readable by group or others."""
    try:
        mode = Path(path).stat().st_mode & 0o777
    except OSError:
        return
    if os.name == "posix" and mode & 0o077:
        warn(f"{path}: the key file is readable by others (mode {mode:04o}); anyone who reads it can unlock the "
             f"models it locked: chmod 600 {path}")


def fail(message: str, code: int = 2):
    """One ``error: ...`` line on stderr and exit ``code``."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def parse_value(text: str):
    """An int, float, true/false, or else the string itself."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def limits(train_limit: Optional[int], test_limit: Optional[int]) -> dict:
    """``--train-limit`` / ``--test-limit`` as the ``limits`` mapping of ``open_source``."""
    return {k: v for k, v in (("train", train_limit), ("test", test_limit)) if v is not None}
