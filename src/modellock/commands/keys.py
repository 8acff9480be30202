"""``modellock keygen`` and ``modellock editors``: write a key file, list the editors."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app, fail, parse_value


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
    param: Optional[List[str]] = typer.Option(None, "--param", help="Editor setting NAME=VALUE (repeatable)."),
    force: bool = typer.Option(False, help="Overwrite an existing key file."),
):
    """Write a new key file (the paper's settings unless overridden)."""
    from ..key import Key

    if out.exists() and not force:
        fail(f"{out}: already exists (a key may lock models; use --force to overwrite)")
    params = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            fail(f"--param {item!r}: expected NAME=VALUE")
        params[name] = parse_value(value)
    key = Key.create(editor, prompt, model=model, revision=revision, seed=seed, steps=steps,
                     image_guidance=image_guidance, guidance=guidance, resolution=resolution, alpha=alpha,
                     params=params or None)
    key.save(out)
    typer.echo(f"wrote key {out} (editor {key.editor}); keep it secret")
    if prompt is None:
        typer.echo("note: the prompt was drawn from modellock's public list of style prompts, which an "
                   "attacker can try too; pass --prompt with your own for a stronger key", err=True)


@app.command()
def editors():
    """List the registered editors."""
    from ..editors import available_editors, editor_class

    for name in available_editors():
        doc = (editor_class(name).__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:20s} {doc}")
