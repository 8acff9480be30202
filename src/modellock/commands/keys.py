"""``modellock keygen`` and ``modellock editors``: write a key file, list the editors."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import List, Optional

import typer

from ..editors import available_editors, editor_class
from ..keys import PAPER_DEFAULTS as D, Key
from ..keys.prompts import compose_prompt
from . import INPUTS, app, fail, parse_value

KEY = "Key"
RANKING = "Ranking prompts"


@app.command()
def keygen(
    out: Path = typer.Option(..., "--out", "-o", help="Key file to write (TOML, kept secret).", rich_help_panel=INPUTS),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing key file.", rich_help_panel=INPUTS),
    prompt: Optional[str] = typer.Option(None, help="Key prompt; when omitted, a composed prompt with 64+ bits of "
                                         "entropy (a style and random words).", rich_help_panel=KEY),
    editor: str = typer.Option("instruct-pix2pix", help="Editor name (see `modellock editors`).", rich_help_panel=KEY),
    model: Optional[str] = typer.Option(None, help="Diffusion model hub id or local folder (default "
                                        f"{D['model']}).", rich_help_panel=KEY),
    revision: Optional[str] = typer.Option(None, help="Hub revision of the diffusion model.", rich_help_panel=KEY),
    seed: Optional[int] = typer.Option(None, help="Seed of the edit's noise (default: 63 random bits from `secrets`; the "
                                       "diffusion editor's torch generator keeps its low 32 bits).",
                                       rich_help_panel=KEY),
    steps: Optional[int] = typer.Option(None, help=f"Diffusion steps (default {D['steps']}).", rich_help_panel=KEY),
    image_guidance: Optional[float] = typer.Option(None, help="Image guidance scale (default "
                                                   f"{D['image_guidance']}).", rich_help_panel=KEY),
    guidance: Optional[float] = typer.Option(None, help=f"Text guidance scale (default {D['guidance']}).",
                                             rich_help_panel=KEY),
    resolution: Optional[int] = typer.Option(None, help=f"Edit resolution (default {D['resolution']}; 0: the "
                                             "image's own size; the block-wise editors: 0).",
                                             rich_help_panel=KEY),
    alpha: Optional[float] = typer.Option(None, help=f"Blend weight of the edit, 0..1 (default {D['alpha']}; the "
                                          "block-wise editors: 1).",
                                          rich_help_panel=KEY),
    param: Optional[List[str]] = typer.Option(None, "--param", help="Editor setting NAME=VALUE (repeatable).",
                                              rich_help_panel=KEY),
    rank_on: Optional[str] = typer.Option(None, "--rank-on", help="Data (folder, .tar.gz, torchvision:NAME): "
                                          "compose --candidates prompts and keep the one whose edits separate "
                                          "best on a sample of these images.", rich_help_panel=RANKING),
    candidates: int = typer.Option(8, help="Prompts composed and ranked with --rank-on.", rich_help_panel=RANKING),
    sample: int = typer.Option(64, help="Images of --rank-on data the ranking edits.", rich_help_panel=RANKING),
):
    """Write a new key file (the paper's settings unless overridden)."""
    if out.exists() and not force:
        fail(f"{out}: already exists (a key may lock models; use --force to overwrite)")
    params = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            fail(f"--param {item!r}: expected NAME=VALUE")
        params[name] = parse_value(value)
    if prompt is not None and not prompt.strip():
        fail("--prompt is empty: give the key's prompt, or leave --prompt out to compose one with 64+ bits of entropy")
    if rank_on is not None and prompt is not None:
        fail("--rank-on composes and ranks prompts; it cannot be used with --prompt")
    if candidates < 1 or sample < 1:
        fail(f"--candidates and --sample must be at least 1, not {candidates} and {sample}")
    composed = compose_prompt() if prompt is None else None
    if seed is None:
        seed = secrets.randbits(63)  # the key file's seed field holds 63 bits (a TOML integer)
    key = Key.create(editor, prompt or composed[0], model=model, revision=revision, seed=seed, steps=steps,
                     image_guidance=image_guidance, guidance=guidance, resolution=resolution, alpha=alpha,
                     params=params or None)
    if rank_on is not None:
        key = _ranked(key, rank_on, candidates, sample)
    key.save(out)
    typer.echo(f"wrote key {out} (editor {key.editor}); keep it secret")
    if composed is not None:
        typer.echo(f"the prompt was composed with {composed[1]:.0f} bits of entropy (a style from the public pool and "
                   "random words); it is in the key file only")


def _ranked(key, data: str, candidates: int, sample: int):
    """The best of ``candidates`` composed prompts by their edits' separation on ``sample`` images of ``data``."""
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..data import open_source
    from ..keys.ranking import rank_prompts

    source = open_source(data)
    split = source.split("train" if "train" in source.splits else next(iter(source.splits)))
    images = [split.load(s) for s in split.subset(sample, 0).samples]
    prompts = [compose_prompt()[0] for _ in range(candidates)]
    others = [compose_prompt()[0] for _ in range(8)]
    rows = rank_prompts(key, prompts, images, others)
    typer.echo(f"ranked {candidates} composed prompts on {len(images)} images of {data} (prompts not shown):")
    for rank, r in enumerate(rows, 1):
        typer.echo(f"  #{rank} candidate {r['candidate'] + 1}: score {r['score']:.2f} (from clean {r['from_clean']:.1f}, "
                   f"from other prompts {r['from_others']:.1f}, structure {r['structure']:.2f})")
    return key.replace(prompt=rows[0]["prompt"])


@app.command()
def editors():
    """List the registered editors."""
    for name in available_editors():
        doc = (editor_class(name).__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:20s} {doc}")
