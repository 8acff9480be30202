"""``modellock evidence`` and ``modellock verify``: proof that a suspect model was derived from a locked model."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import DATA, INPUTS, RUN, app, fail, limits
from ..keys import Key
from ..errors import WrongKeyError
from ..utils.results_json import write_json

CALIBRATION = "Calibration (independent models)"
METHODS = "Methods"
SUSPECT = "Weights-only suspects"
SERVICE = "Service suspects"
WRONG_KEYS = 4  # ownership.evidence.DEFAULTS["wrong_keys"] (kept here: --help imports no torch)


@app.command("evidence")
def evidence_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Locked model folder (sealed or not).",
                              rich_help_panel=INPUTS),
    key: Path = typer.Option(..., "--key", "-k", help="The key it was locked with (used, never stored).",
                             rich_help_panel=INPUTS),
    data: str = typer.Option(..., "--data", "-d", help="The owner's data: folder, .tar.gz, or torchvision:NAME.",
                             rich_help_panel=INPUTS),
    out: Path = typer.Option(..., "--out", "-o", help="The evidence file to write (mode 0600, private).",
                             rich_help_panel=INPUTS),
    split: str = typer.Option("test", help="Held-out split the sample images come from.", rich_help_panel=DATA),
    train_split: str = typer.Option("train", help="Split the independent models train on.", rich_help_panel=DATA),
    independent_count: int = typer.Option(6, min=0, help="Independent models to train for the thresholds.",
                                          rich_help_panel=CALIBRATION),
    independent: Optional[List[Path]] = typer.Option(None, "--independent", help="Independent model folder(s) "
                                                     "trained elsewhere, added to the calibration.",
                                                     rich_help_panel=CALIBRATION),
    independent_arch: Optional[str] = typer.Option(None, help="Their architecture (default: the model's).",
                                                   rich_help_panel=CALIBRATION),
    independent_epochs: Optional[int] = typer.Option(None, min=1, help="Their epochs (default: the model's, "
                                                     "at most 10).", rich_help_panel=CALIBRATION),
    independent_limit: Optional[int] = typer.Option(None, min=1, help="Train them on N images at most.",
                                                    rich_help_panel=CALIBRATION),
    wrong: int = typer.Option(50, "--wrong", min=4, help="SAC-w: images the unlocked model gets wrong.",
                              rich_help_panel=METHODS),
    cutmix: int = typer.Option(50, "--cutmix", min=4, help="SAC-m: CutMix images.", rich_help_panel=METHODS),
    key_images: int = typer.Option(33, "--key-images", min=4, help="Key tests: held-out images, each asked clean, "
                                   "edited with the key and with wrong keys.", rich_help_panel=METHODS),
    wrong_keys: int = typer.Option(WRONG_KEYS, "--wrong-keys", min=1, max=16, help="Key tests: random "
                                   "wrong keys, the images split among them.", rich_help_panel=METHODS),
    every_wrong_key: bool = typer.Option(False, "--every-wrong-key", help="Key tests: each image edited with "
                                         "every wrong key (--wrong-keys times the queries).", rich_help_panel=METHODS),
    pool: int = typer.Option(1000, min=8, help="Held-out images the samples are chosen from (each edited with the "
                             "key once).", rich_help_panel=METHODS),
    alpha: float = typer.Option(0.01, help="False-positive rate of the verdict (split over the methods).",
                                rich_help_panel=CALIBRATION),
    work_dir: Optional[Path] = typer.Option(None, help="Keep the trained independent models here (reused when "
                                            "rerun); default: a temporary folder.", rich_help_panel=RUN),
    train_limit: Optional[int] = typer.Option(None, min=1, help="Use a class-balanced subset of N training images.",
                                              rich_help_panel=DATA),
    test_limit: Optional[int] = typer.Option(None, min=1, help="Use a class-balanced subset of N test images.",
                                             rich_help_panel=DATA),
    force: bool = typer.Option(False, "--force", help="Replace an existing evidence file.", rich_help_panel=RUN),
):
    """Build the owner's private evidence: sample sets, the locked model's answers, thresholds from independent
    models. Never the key."""
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..data import open_source
    from ..model_folder import LockedModel
    from ..ownership import build_evidence

    if out.exists() and not force:
        fail(f"{out}: exists (use --force to replace it)")
    if out.is_dir():
        fail(f"{out}: is a folder; --out names the evidence file to write")
    k = Key.load(key)
    m = LockedModel.from_pretrained(model, device="cpu")

    try:
        m.unlock(k)  # refuse a key that does not match, before any work
    except WrongKeyError as e:
        fail(f"{model}: {e} (--key {key})")
    source = open_source(data, limits(train_limit, test_limit), task=m.task, ignore_index=m.ignore_index)
    log = lambda text: typer.echo(text, err=True)  # noqa: E731
    ev = build_evidence(m, k, source, out, split=split, train_split=train_split, independent=independent_count,
                        independent_models=independent or (), independent_arch=independent_arch,
                        independent_epochs=independent_epochs, independent_limit=independent_limit, n_wrong=wrong,
                        n_cutmix=cutmix, n_key=key_images, wrong_keys=wrong_keys,
                        every_wrong_key=every_wrong_key, alpha=alpha, pool=pool,
                        work_dir=work_dir, log=log)
    sizes = ", ".join(f"{s} {n}" for s, n in ev.set_sizes().items())
    typer.echo(f"wrote {out} (private, mode 0600): {ev.num_queries} query images ({sizes}); "
               f"{len(ev.independent)} independent models; alpha {alpha:g}")


@app.command("verify")
def verify_cmd(
    evidence: Path = typer.Option(..., "--evidence", "-e", help="The evidence file (modellock evidence).",
                                  rich_help_panel=INPUTS),
    suspect: str = typer.Option(..., "--suspect", "-s", help="Model folder, .safetensors file (with --arch), "
                                "timm:NAME / torchvision:NAME, or the http(s) URL of a prediction service.",
                                rich_help_panel=INPUTS),
    arch: Optional[str] = typer.Option(None, help="Architecture of a .safetensors suspect (e.g. small-cnn).",
                                       rich_help_panel=SUSPECT),
    weights: Optional[Path] = typer.Option(None, help="A .safetensors file for a timm:/torchvision: suspect.",
                                           rich_help_panel=SUSPECT),
    image_size: Optional[int] = typer.Option(None, min=1, help="Input size of a weights-only suspect (default: "
                                             "the evidence's).", rich_help_panel=SUSPECT),
    token_file: Optional[Path] = typer.Option(None, help="Bearer token of the service (first line of the file; "
                                              "default: $MODELLOCK_TOKEN).", rich_help_panel=SERVICE),
    max_queries: int = typer.Option(300, min=1, help="Images a service may be asked, at most (one image, one "
                                    "query); with fewer than the evidence holds, a share of each sample set.",
                                    rich_help_panel=SERVICE),
    alpha: Optional[float] = typer.Option(None, help="False-positive rate (default: the evidence's).",
                                          rich_help_panel=CALIBRATION),
    watermark: Optional[Path] = typer.Option(None, "--watermark", help="The --watermark folder of `modellock "
                                             "serve`: adds the watermark test (its images asked first, at most "
                                             "half of --max-queries).", rich_help_panel=METHODS),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here.",
                                            rich_help_panel=INPUTS),
):
    """Is SUSPECT derived from the owner's model? Per method a statistic, its threshold, p-value and score, and one
    verdict. Exit code: 0 independent, 3 derived (2: bad input)."""
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..ownership import EXIT_DERIVED, EXIT_INDEPENDENT, Evidence, format_result, load_suspect, verify
    from ..ownership.suspects import read_token
    from ..ownership.watermark import load_watermark

    ev = Evidence.load(evidence)
    marks = load_watermark(watermark) if watermark is not None else None
    s = load_suspect(suspect, ev, arch=arch, weights=str(weights) if weights else None, image_size=image_size,
                     token=read_token(token_file), max_queries=max_queries)
    result = verify(ev, s, alpha=alpha, max_queries=max_queries if s.kind == "black-box" else None, watermark=marks)
    typer.echo(format_result(result))
    if json_out:
        write_json(json_out, result)
    raise typer.Exit(EXIT_DERIVED if result["verdict"] == "derived" else EXIT_INDEPENDENT)
