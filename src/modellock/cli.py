"""The ``modellock`` command: a thin layer over the Python API.

Bad input ends with one ``error: ...`` line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import ModelLockError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Lock vision models with a secret diffusion-edit key, and unlock them.")


def _fail(message: str, code: int = 2):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _limits(train_limit: Optional[int], test_limit: Optional[int]) -> dict:
    return {k: v for k, v in (("train", train_limit), ("test", test_limit)) if v is not None}


@app.command()
def keygen(
    out: Path = typer.Option(..., "--out", "-o", help="Key file to write (TOML, kept secret)."),
    prompt: Optional[str] = typer.Option(None, help="Key prompt; a random built-in style prompt when omitted."),
    editor: str = typer.Option("instruct-pix2pix", help="Editor name (see `modellock editors`)."),
    model: Optional[str] = typer.Option(None, help="Diffusion model hub id or local folder."),
    revision: Optional[str] = typer.Option(None, help="Hub revision of the diffusion model."),
    seed: Optional[int] = typer.Option(None),
    steps: Optional[int] = typer.Option(None),
    image_guidance: Optional[float] = typer.Option(None),
    guidance: Optional[float] = typer.Option(None),
    resolution: Optional[int] = typer.Option(None, help="Edit resolution (0 = the image's own size)."),
    alpha: Optional[float] = typer.Option(None, help="Blend weight of the edit, 0..1."),
    force: bool = typer.Option(False, help="Overwrite an existing key file."),
):
    """Write a new key file (the paper's settings unless overridden)."""
    from .key import Key

    if out.exists() and not force:
        _fail(f"{out}: already exists (a key may lock models; use --force to overwrite)")
    key = Key.create(editor, prompt, model=model, revision=revision, seed=seed, steps=steps,
                     image_guidance=image_guidance, guidance=guidance, resolution=resolution, alpha=alpha)
    key.save(out)
    typer.echo(f"wrote key {out} (editor {key.editor}); keep it secret")


@app.command()
def editors():
    """List the registered editors."""
    from .editors import available_editors, editor_class

    for name in available_editors():
        doc = (editor_class(name).__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:20s} {doc}")


@app.command()
def edit(
    key: Path = typer.Option(..., "--key", "-k", help="Key file."),
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (ImageFolder layout, PNG)."),
    split: Optional[List[str]] = typer.Option(None, "--split", help="Split(s) to edit; all by default."),
    skip_bad: bool = typer.Option(False, help="Skip unreadable images and list them in skipped.json."),
    batch_size: Optional[int] = typer.Option(None, help="Images per editor call."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1, ... (default: cuda when present)."),
    train_limit: Optional[int] = typer.Option(None, help="Use a class-balanced subset of N training images."),
    test_limit: Optional[int] = typer.Option(None, help="Use a class-balanced subset of N test images."),
):
    """Edit a dataset with a key; resumable (rerun after an interruption to finish)."""
    from .data import open_source
    from .edit import edit_dataset, write_skip_list
    from .key import Key

    k = Key.load(key)
    source = open_source(data, _limits(train_limit, test_limit))
    reports = edit_dataset(k, source, out, splits=split, skip_bad=skip_bad, batch_size=batch_size, device=device)
    for r in reports:
        typer.echo(f"{r.split}: {r.total} images, {r.edited} edited, {r.reused} already done, "
                   f"{len(r.skipped)} skipped")
    skipped = write_skip_list(out, reports)
    if skipped:
        typer.echo(f"skipped images are listed in {skipped}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line and exit code 2; Ctrl-C exits 130."""
    try:
        app(args=argv, standalone_mode=False)
    except ModelLockError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: rerun the same command to resume", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors come through here with standalone_mode=False
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
