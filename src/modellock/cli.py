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


def _parse_value(text: str):
    """An int, float, true/false, or else the string itself."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _limits(train_limit: Optional[int], test_limit: Optional[int]) -> dict:
    return {k: v for k, v in (("train", train_limit), ("test", test_limit)) if v is not None}


_TASK_HELP = ("classification or segmentation (default: from the data's layout: split folders with images/ and "
              "masks/ are segmentation)")
_IGNORE_HELP = "Mask value that marks unlabelled pixels (segmentation)."


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
    from .key import Key

    if out.exists() and not force:
        _fail(f"{out}: already exists (a key may lock models; use --force to overwrite)")
    params = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            _fail(f"--param {item!r}: expected NAME=VALUE")
        params[name] = _parse_value(value)
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
    task: Optional[str] = typer.Option(None, help=_TASK_HELP),
):
    """Edit a dataset with a key; resumable (rerun after an interruption to finish)."""
    from .data import open_source
    from .edit import edit_dataset, write_skip_list
    from .key import Key

    k = Key.load(key)
    source = open_source(data, _limits(train_limit, test_limit), task=task)
    reports = edit_dataset(k, source, out, splits=split, skip_bad=skip_bad, batch_size=batch_size, device=device)
    for r in reports:
        typer.echo(f"{r.split}: {r.total} images, {r.edited} edited, {r.reused} already done, "
                   f"{len(r.skipped)} skipped")
    skipped = write_skip_list(out, reports)
    if skipped:
        typer.echo(f"skipped images are listed in {skipped}")


_TRAIN_HELP = "Settings may also come from --config FILE (YAML with the same names, e.g. epochs: 10)."


def _common_train(config, model, pretrained, image_size, epochs, batch_size, lr, seed, num_workers,
                  mixed_precision, train_limit, **extra) -> dict:
    from .settings import load_settings

    return load_settings(config, model=model, pretrained=pretrained, image_size=image_size, epochs=epochs,
                         batch_size=batch_size, lr=lr, seed=seed, num_workers=num_workers,
                         mixed_precision=mixed_precision, train_limit=train_limit, **extra)


_opt = dict(
    config=typer.Option(None, "--config", help="YAML file of settings; flags override it."),
    model=typer.Option(None, "--model", "-m", help="Classification: small-cnn (default), tiny-cnn, a timm name, "
                       "torchvision:NAME. Segmentation: small-segnet (default), torchvision:fcn_resnet50, "
                       "torchvision:deeplabv3_resnet50, torchvision:lraspp_mobilenet_v3_large, segformer:mit-b0, ..."),
    pretrained=typer.Option(None, help="Pretrained weights: hub id (hf-hub:...), .safetensors file or folder."),
    image_size=typer.Option(None, help="Model input size (default: the backbone's own)."),
    epochs=typer.Option(None), batch_size=typer.Option(None), lr=typer.Option(None),
    seed=typer.Option(None, help="Seed of the lock set and of training."),
    num_workers=typer.Option(None, help="Data loader workers."),
    mixed_precision=typer.Option(None, help="no, bf16 or fp16 (GPU)."),
    train_limit=typer.Option(None, help="Use a class-balanced subset of N training images."),
    force=typer.Option(False, "--force", help="Replace a model already in --out."),
    task=typer.Option(None, "--task", help=_TASK_HELP),
    ignore_index=typer.Option(255, "--ignore-index", help=_IGNORE_HELP),
)


@app.command(epilog=_TRAIN_HELP)
def lock(
    key: Path = typer.Option(..., "--key", "-k", help="Key file."),
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME."),
    out: Path = typer.Option(..., "--out", "-o", help="Locked model folder to write."),
    edited_fraction: Optional[float] = typer.Option(None, help="Share of training images edited (default 0.7)."),
    clean_fraction: Optional[float] = typer.Option(None, help="Share left unedited: 1 - edited fraction "
                                                   "(0 = train on edited images only, the block-wise papers' recipe)."),
    clean_target: Optional[str] = typer.Option(None, help="What unedited images learn: locked-spread (default), "
                                               "locked-class, wrong-label; segmentation also wrong-mask."),
    decoy_fraction: Optional[float] = typer.Option(None, help="Share of training images edited with random decoy "
                                                   "keys and trained toward the locked answer."),
    paired: Optional[bool] = typer.Option(None, "--paired/--no-paired", help="Images trained toward the locked "
                                          "answer also appear key-edited with their label (no labelled data lost)."),
    edits: Optional[Path] = typer.Option(None, help="Edit folder to use and fill (default: the edit cache)."),
    device: Optional[str] = typer.Option(None, help="Device of the editor."),
    config: Optional[Path] = _opt["config"], model: Optional[str] = _opt["model"],
    pretrained: Optional[str] = _opt["pretrained"], image_size: Optional[int] = _opt["image_size"],
    epochs: Optional[int] = _opt["epochs"], batch_size: Optional[int] = _opt["batch_size"],
    lr: Optional[float] = _opt["lr"], seed: Optional[int] = _opt["seed"],
    num_workers: Optional[int] = _opt["num_workers"], mixed_precision: Optional[str] = _opt["mixed_precision"],
    train_limit: Optional[int] = _opt["train_limit"], force: bool = _opt["force"],
    task: Optional[str] = _opt["task"], ignore_index: int = _opt["ignore_index"],
):
    """Fine-tune a model locked with KEY and write the locked model folder."""
    from .data import open_source
    from .key import Key
    from .lock import lock_model
    from .settings import recipe_from, train_config_from
    from .tasks import task_type

    if clean_fraction is not None:
        if edited_fraction is not None:
            _fail("give --edited-fraction or --clean-fraction, not both")
        edited_fraction = 1.0 - clean_fraction
    s = _common_train(config, model, pretrained, image_size, epochs, batch_size, lr, seed, num_workers,
                      mixed_precision, train_limit, edited_fraction=edited_fraction, clean_target=clean_target,
                      decoy_fraction=decoy_fraction, paired=paired,
                      edits=str(edits) if edits else None)
    k = Key.load(key)
    source = open_source(data, _limits(s.get("train_limit"), None), task=task, ignore_index=ignore_index)
    locked = lock_model(k, source, s.get("model", task_type(source.task).default_model), out, recipe_from(s),
                        train_config_from(s),
                        s.get("image_size"), s.get("pretrained"), s.get("edits"), s.get("split", "train"),
                        device=device, overwrite=force)
    typer.echo(f"wrote locked {locked.task} model {out} ({len(locked.classes)} classes"
               f"{', locked output' if locked.locked_class is not None else ''})")


@app.command(epilog=_TRAIN_HELP)
def train(
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write."),
    config: Optional[Path] = _opt["config"], model: Optional[str] = _opt["model"],
    pretrained: Optional[str] = _opt["pretrained"], image_size: Optional[int] = _opt["image_size"],
    epochs: Optional[int] = _opt["epochs"], batch_size: Optional[int] = _opt["batch_size"],
    lr: Optional[float] = _opt["lr"], seed: Optional[int] = _opt["seed"],
    num_workers: Optional[int] = _opt["num_workers"], mixed_precision: Optional[str] = _opt["mixed_precision"],
    train_limit: Optional[int] = _opt["train_limit"], force: bool = _opt["force"],
    task: Optional[str] = _opt["task"], ignore_index: int = _opt["ignore_index"],
):
    """Fine-tune the same recipe on clean data without a lock: the original (baseline) model."""
    from .data import open_source
    from .lock import train_baseline
    from .settings import train_config_from
    from .tasks import task_type

    s = _common_train(config, model, pretrained, image_size, epochs, batch_size, lr, seed, num_workers,
                      mixed_precision, train_limit)
    source = open_source(data, _limits(s.get("train_limit"), None), task=task, ignore_index=ignore_index)
    train_baseline(source, s.get("model", task_type(source.task).default_model), out, train_config_from(s), s.get("image_size"),
                   s.get("pretrained"), s.get("split", "train"), overwrite=force)
    typer.echo(f"wrote baseline model {out}")


@app.command()
def predict(
    images: List[Path] = typer.Argument(..., help="Image files."),
    model: str = typer.Option(..., "--model", "-m", help="Model folder or hub repo id."),
    key: Optional[Path] = typer.Option(None, "--key", "-k", help="Key file; without it the model stays locked."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    top_k: int = typer.Option(3, help="Classes listed per image in --json output."),
    masks: Path = typer.Option(Path("masks"), "--masks", help="Segmentation: folder for the colour-coded mask PNGs."),
    device: Optional[str] = typer.Option(None),
):
    """Predict classes of images (segmentation: a colour-coded mask per image), unlocking the model with KEY."""
    from .images import load_image
    from .key import Key
    from .model_folder import LockedModel

    m = LockedModel.from_pretrained(model, device=device)
    if key is None:
        if m.is_locked:
            typer.echo("note: no key given: this is the locked model's behaviour on clean inputs", err=True)
        predictor = m.predictor()
    else:
        predictor = m.unlock(Key.load(key), device=device)
    arrays = []
    for p in images:
        try:
            arrays.append(load_image(p))
        except (OSError, ValueError) as e:
            _fail(f"{p}: cannot read image ({type(e).__name__})")
    if m.task == "segmentation":
        _write_masks(images, predictor.segment(arrays), m, masks, as_json, top_k)
        return
    for p, r in zip(images, predictor.predict(arrays, top_k=top_k)):
        if as_json:
            typer.echo(json.dumps({"image": str(p), **r}))
        else:
            typer.echo(f"{p}\t{r['class']}\t{r['probability']:.3f}")


def _write_masks(images: List[Path], results: list, m, folder: Path, as_json: bool, top_k: int) -> None:
    """One colour PNG per input (``<stem>.png``, numbered when stems repeat), then a line per image."""
    from .images import colour_mask, save_png_atomic

    stems = [p.stem for p in images]
    for i, (p, r) in enumerate(zip(images, results)):
        name = stems[i] if stems.count(stems[i]) == 1 else f"{i:04d}-{stems[i]}"
        out = folder / f"{name}.png"
        save_png_atomic(colour_mask(r["mask"], len(m.classes)), out)
        areas = dict(list(r["class_areas"].items())[:top_k]) if not as_json else r["class_areas"]
        if as_json:
            typer.echo(json.dumps({"image": str(p), "mask": str(out), "class_areas": areas}))
        else:
            shares = ", ".join(f"{c} {a:.1%}" for c, a in areas.items())
            typer.echo(f"{p}\t{out}\t{shares}")


@app.command("eval")
def eval_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Locked model folder."),
    key: Path = typer.Option(..., "--key", "-k", help="The key it was locked with."),
    data: str = typer.Option(..., "--data", "-d", help="Folder, .tar.gz, or torchvision:NAME."),
    split: str = typer.Option("test", help="Split to evaluate on."),
    baseline: Optional[str] = typer.Option(None, help="Baseline (original) model folder."),
    wrong_key: Optional[List[Path]] = typer.Option(None, "--wrong-key", help="Wrong key file(s); default: "
                                                   "the next seed and two other prompts."),
    test_limit: Optional[int] = typer.Option(None, help="Use a class-balanced subset of N test images."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here."),
    update_card: bool = typer.Option(True, help="Store the result in the model folder's config and card."),
    batch_size: int = typer.Option(256),
    device: Optional[str] = typer.Option(None),
):
    """Evaluate a locked model: original, locked, unlocked and wrong-key accuracy (segmentation: mIoU)."""
    from .data import open_source
    from .evaluate import evaluate
    from .key import Key
    from .model_folder import LockedModel
    from .report import format_table

    k = Key.load(key)
    m = LockedModel.from_pretrained(model, device=device)
    m.unlock(k)  # refuse a key that does not match, before any work
    base = LockedModel.from_pretrained(baseline, device=device) if baseline else None
    wrong = {f"key {p.name}": Key.load(p) for p in wrong_key} if wrong_key else None
    limits = _limits(None, test_limit) if split == "test" else {split: test_limit} if test_limit else {}
    source = open_source(data, limits, task=m.task, ignore_index=m.ignore_index)
    result = evaluate(m, k, source, split, base, wrong, batch_size=batch_size, device=device)
    typer.echo(format_table(result))
    if json_out:
        from .images import write_bytes_atomic

        write_bytes_atomic(json.dumps(result, indent=2).encode(), json_out)
    if update_card and m.path is not None and Path(model).is_dir():
        m.save_evaluation(result)


@app.command()
def demo(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the demo's outputs (default: "
                                       "demo-output, or demo-output-segmentation)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the evaluation JSON here."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: the demo's)."),
    task: str = typer.Option("classification", help="classification or segmentation."),
):
    """Run the whole flow on built-in data, no downloads: keygen, edit, train, lock, evaluate, report."""
    from .demo import run_demo, run_segmentation_demo
    from .images import write_bytes_atomic

    demos = {"classification": run_demo, "segmentation": run_segmentation_demo}
    if task not in demos:
        _fail(f"--task {task!r}: expected classification or segmentation")
    out = out or Path("demo-output" if task == "classification" else "demo-output-segmentation")
    result = demos[task](out, epochs=epochs, log=typer.echo)
    if json_out:
        write_bytes_atomic(json.dumps(result, indent=2).encode(), json_out)


from .attacks import command as _attack_command  # noqa: E402,F401  (registers `modellock attack`)
from . import compare_command as _compare_command  # noqa: E402,F401  (registers `modellock compare`)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line and exit code 2; Ctrl-C exits 130."""
    try:
        rv = app(args=argv, standalone_mode=False)  # returns the exit code of a typer.Exit
        if isinstance(rv, int) and rv:
            sys.exit(rv)
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
