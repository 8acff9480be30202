"""The ``modellock`` commands: one module per command (or pair), each registering itself on ``app``.

A command module imports ``app`` (and the small helpers) from here and decorates its function with
``@app.command()``; ``cli.py`` imports the modules listed in ``COMMAND_MODULES`` and runs the app. Nothing
here imports ``cli``, so there is no import circle. Adding a command touches one module plus one line below.
"""

from __future__ import annotations

import importlib
from typing import Optional

import typer

from ..errors import one_line

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Lock vision models with a secret diffusion-edit key, and unlock them.")

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
