"""``modellock predict``: classes (or colour-coded masks) of image files, unlocked with a key."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..utils.results_json import dumps
from . import INPUTS, RUN, app, fail, load_key

OUTPUT = "Output"


def _image_files(paths: List[Path]) -> List[Path]:
    """The files given, with each folder replaced by the image files in it (and its subfolders), sorted."""
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..data.source import IMAGE_EXTENSIONS

    files = []
    for p in paths:
        if not p.is_dir():
            files.append(p)
            continue
        found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
        if not found:
            fail(f"{p}: a folder with no image files ({', '.join(sorted(IMAGE_EXTENSIONS)[:6])}, ...)")
        files.extend(found)
    return files


@app.command()
def predict(
    images: List[Path] = typer.Argument(..., help="Image files, or folders of them (every image inside, sorted).",
                                        show_default=False),
    model: str = typer.Option(..., "--model", "-m", help="Model folder or hub repo id.", rich_help_panel=INPUTS),
    key: Optional[Path] = typer.Option(None, "--key", "-k", help="Key file; without it the model stays locked.",
                                       rich_help_panel=INPUTS),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line.", rich_help_panel=OUTPUT),
    top_k: int = typer.Option(3, min=1, help="Classes listed per image in --json output.", rich_help_panel=OUTPUT),
    masks: Path = typer.Option(Path("masks"), "--masks", help="Segmentation: folder for the colour-coded mask PNGs.",
                               rich_help_panel=OUTPUT),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1, ... (default: cuda when present).",
                                         rich_help_panel=RUN),
):
    """Predict classes of images (segmentation: a colour-coded mask per image), unlocking the model with KEY."""
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..model_folder import LockedModel
    from ..tasks import task_type

    images = _image_files(images)
    m = LockedModel.from_pretrained(model, device=device)
    if key is None:
        if m.is_locked and not m.is_sealed:  # a sealed one stops at the next line: its weights need the key
            typer.echo("note: no key given: this is the locked model's behaviour on clean inputs", err=True)
        predictor = m.predictor()
    else:
        predictor = m.unlock(load_key(key), device=device)
    if task_type(m.task).per_pixel:
        _write_masks(images, predictor.segment(list(images)), m, masks, as_json, top_k)
        return
    for p, r in zip(images, predictor.predict(list(images), top_k=top_k)):
        if as_json:
            typer.echo(dumps({"image": str(p), **r}))
        else:
            typer.echo(f"{p}\t{r['class']}\t{r['probability']:.3f}")


def _write_masks(images: List[Path], results: list, m, folder: Path, as_json: bool, top_k: int) -> None:
    """One colour PNG per input (``<stem>.png``, numbered when stems repeat), then a line per image."""
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..utils.images import colour_mask, save_png_atomic

    stems = [p.stem for p in images]
    for i, (p, r) in enumerate(zip(images, results)):
        name = stems[i] if stems.count(stems[i]) == 1 else f"{i:04d}-{stems[i]}"
        out = folder / f"{name}.png"
        save_png_atomic(colour_mask(r["mask"], len(m.classes)), out)
        areas = dict(list(r["class_areas"].items())[:top_k]) if not as_json else r["class_areas"]
        if as_json:
            typer.echo(dumps({"image": str(p), "mask": str(out), "class_areas": areas}))
        else:
            shares = ", ".join(f"{c} {a:.1%}" for c, a in areas.items())
            typer.echo(f"{p}\t{out}\t{shares}")
