"""The end-to-end demo on built-in data, no downloads: keygen → edit → baseline → lock → evaluate → report."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ..attacks import available_attacks
from ..attacks.report import attacks_html
from ..attacks.suite import format_table as attack_table, run_suite
from ..data import open_source
from ..data.synthetic import make_shapes_dataset, make_shapes_segmentation_dataset
from ..editors import editor_class
from ..evaluation.matrix import default_wrong_keys, evaluate
from ..evaluation.report import COUNTED, IGNORED, GridColumn, format_table, write_html_report
from ..keys import Key
from ..lock import lock_model, train_baseline
from ..lock.lock_set import LockRecipe
from ..tasks import task_type
from ..train import TrainConfig
from ..utils.images import colour_mask, label_palette
from ..utils.results_json import write_json

# The demo's key is public (it is in this file): a prompt outside the attacks' catalogue, so the guessing
# attack meets it as it would meet a real key's composed prompt.
DEMO_PROMPT = "as a woodcut print, with hints of amber lantern quiet orchard"
# bf16 autocast where the CPU (or GPU) computes it natively: the demo's training 2.4x faster on such a CPU, the
# same figures within their noise (docs/benchmarks.md, "make demo time"); float32 elsewhere
DEMO_TRAIN = dict(epochs=20, batch_size=128, lr=3e-3, warmup_epochs=0.5, num_workers=0, mixed_precision="auto")
DEMO_LOCK_EPOCHS = 8  # the lock fine-tunes the original model for this many epochs
# the thief of the demo's attack summary: the quick budget, 5 % of the training data, 40 guessed prompts, trained
# at the demo's precision
DEMO_ATTACK = dict(budget="quick", samples=3000, fractions=(0.05,), limit_prompts=40, screen=300, top_k=2, random_keys=1,
                   mixed_precision="auto")


def run_demo(out: str | Path = "demo-output", n_train: int = 3000, n_test: int = 1000, epochs: int | None = None,
             model: str = "small-cnn", log=print, attack: dict | None = None) -> dict:
    """Run the whole flow into ``out``; return the evaluation result (``attack`` overrides the thief's
    settings, ``DEMO_ATTACK``)."""
    out, clock = Path(out), StepClock(log)
    out.mkdir(parents=True, exist_ok=True)
    source = open_source(make_shapes_dataset(out / "data", n_train, n_test))
    log(f"[1/7] built-in shapes dataset: {len(source.split('train'))} train, {len(source.split('test'))} test "
        f"images, {len(source.classes)} classes")
    clock.done("data")
    train = TrainConfig(**{**DEMO_TRAIN, **({"epochs": epochs} if epochs else {})})
    lock_train = TrainConfig(**{**DEMO_TRAIN, "epochs": epochs or DEMO_LOCK_EPOCHS})
    return _lock_and_evaluate(out, source, model, train, None, True, 256, _report, log, clock, lock_train=lock_train,
                              attack=attack)


class StepClock:
    """Wall and CPU seconds of each demo step, logged as each ends: the demo's own profile (one process: the
    CPU seconds are this process's)."""

    def __init__(self, log):
        self.log, self.steps = log, {}
        self.start = self.wall, self.cpu = time.perf_counter(), time.process_time()

    def done(self, step: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.steps[step] = (wall - self.wall, cpu - self.cpu)
        self.log(f"      {step}: {wall - self.wall:.0f} s ({cpu - self.cpu:.0f} s CPU)")
        self.wall, self.cpu = wall, cpu

    def total(self) -> str:
        """``N s (M s CPU; K s CPU with start-up)``: the steps' time, and the process's CPU time since it started."""
        return (f"{time.perf_counter() - self.start[0]:.0f} s ({time.process_time() - self.start[1]:.0f} s CPU; "
                f"{time.process_time():.0f} s CPU with start-up)")


def _lock_and_evaluate(out: Path, source, model: str, train: TrainConfig, image_size, lock_original: bool,
                       eval_batch: int, report, log, clock: StepClock, lock_train: TrainConfig | None = None,
                       attack: dict | None = None) -> dict:
    """Steps 2-7 of both demos: key, original model, lock (from scratch or fine-tuning the original),
    evaluation with the default wrong keys, the quick thief's attack summary, result.json and report.html."""
    key = Key.create("keyed-filter", DEMO_PROMPT)
    key.save(out / "key.toml")
    log(f"[2/7] demo key written to {out / 'key.toml'} (editor keyed-filter; a real key stays secret)")
    log("[3/7] training the original model on clean images")
    baseline = train_baseline(source, model, out / "original-model", train, image_size, overwrite=True)
    clock.done("original model")
    log("[4/7] editing the training set with the key and "
        + ("locking: fine-tuning the original model on the lock set" if lock_original else "training the locked model"))
    pretrained = baseline.path / "model.safetensors" if lock_original else None
    locked = lock_model(key, source, model, out / "locked-model", LockRecipe(), lock_train or train,
                        image_size, pretrained,
                        edits_dir=_own_edits_dir(out / "edits", key), overwrite=True)
    clock.done("lock")
    log(f"[5/7] evaluating: clean, key-edited, wrong keys ({locked.config.get('task')}, "
        f"{task_type(locked.task).metric_label})")
    wrong = default_wrong_keys(key)
    result = evaluate(locked, key, source, "test", baseline, wrong, batch_size=eval_batch)
    locked.save_evaluation(result)
    write_json(out / "result.json", result)
    log(format_table(result))
    clock.done("evaluation")
    log("[6/7] attacking the lock without the key (a quick thief: small fine-tune grid, adapters, distillation, "
        "guessed prompts, transforms)")
    attacks = _attack(out, locked, key, source, baseline, log, {**DEMO_ATTACK, **(attack or {})})
    clock.done("attacks")
    result["attack_summary"] = attacks["summary"]
    write_json(out / "result.json", result)
    log("[7/7] writing the report")
    report(out, locked, key, wrong, source, result, attacks)
    clock.done("report")
    log(f"done in {clock.total()}: {out / 'report.html'}")
    return result


def _attack(out: Path, locked, key, source, baseline, log, options: dict) -> dict:
    """The attack suite with the demo's quick thief; its summary goes to the model card too."""
    run = run_suite(locked, key, source, None, baseline, progress=False, work_dir=out / "attack-work", **options)
    write_json(out / "attacks.json", run.result)
    locked.save_attack_summary(run.result["summary"], run.result["settings"], available_attacks())
    log(attack_table(run.result))
    return run.result


def _own_edits_dir(folder: Path, key) -> Path:
    """The demo's edit folder, emptied when an earlier modellock wrote it with another editor version."""
    header = folder / "edit.json"
    if header.exists() and json.loads(header.read_text()).get("editor_version", 1) != editor_class(key.editor).version:
        shutil.rmtree(folder)
    return folder


def _report(out: Path, locked, key, wrong: dict, source, result: dict, attacks: dict | None = None, n: int = 8) -> Path:
    split = source.split("test")
    samples = split.samples[:: max(1, len(split.samples) // n)][:n]
    clean = [split.load(s) for s in samples]
    truth = [s.label for s in samples]
    names, c = locked.output_names, locked.config["num_classes"]
    has_locked = locked.locked_class is not None
    opened = locked.open(key)  # the lock itself: no key, the key and a wrong key on the opened weights
    columns, cells = [], []
    for k, column in _grid_columns(key, wrong):
        predictor = opened.predictor(k)
        images = predictor.edit(clean)
        logits = predictor.logits(images, edited=True)
        counted, ignored = logits.argmax(1).tolist(), logits[:, :c].argmax(1).tolist()
        right = sum(a == t for a, t in zip(counted, truth))
        column.summary = f"right: {right}/{len(truth)}" + (
            f" ({COUNTED}); {sum(b == t for b, t in zip(ignored, truth))}/{len(truth)} ({IGNORED})"
            if has_locked else "")
        captions = [f"answer: {names[a]} {_mark(a == t)}" + (f"\n{IGNORED}: {names[b]} {_mark(b == t)}"
                                                           if has_locked else "")
                    for a, b, t in zip(counted, ignored, truth)]
        columns.append(column)
        cells.append(list(zip(images, captions)))
    rows = [[(im, (f"true class: {split.classes[truth[i]]}\n" if col == 0 else "") + cap)
             for col, (im, cap) in enumerate(cell[i] for cell in cells)] for i in range(len(samples))]
    notes = ["ModelLock demo on the built-in shapes dataset with the CPU key editor (keyed-filter). "
             "The locked model answers wrongly on clean images and correctly on images edited with the key; every "
             "figure and image here is the lock on its opened weights."]
    return write_html_report(out, "modellock demo", result, columns, rows, notes, *_files_and_commands(out, samples),
                             grid_note=f"{len(samples)} test images; ✓ right, ✗ wrong. The table above scores all "
                             f"{result['n_test']} test images the same two ways.", attacks=attacks,
                             attacks_html=attacks_html(attacks) if attacks else "")


def _mark(right: bool) -> str:
    return "✓" if right else "✗"


def _grid_columns(key, wrong: dict) -> list[tuple]:
    """(key, column) for the grid: no key, the key, the first wrong key."""
    wrong_name, wrong_key = next(iter(wrong.items()))
    return [(None, GridColumn("clean image: locked model, no key", "no key")),
            (key, GridColumn("edited with the key: unlocked", "unlocked")),
            (wrong_key, GridColumn(f"edited with a wrong key ({wrong_name})", "wrong key"))]


def _files_and_commands(out: Path, samples) -> tuple[dict, list[str]]:
    """Where the demo's key and model folders are, and the two commands that use them."""
    files = {"key (secret: whoever holds it can unlock the model)": str(out / "key.toml"),
             "locked model folder (safe to share: useless without the key)": str(out / "locked-model"),
             "original model folder (unlocked: keep private)": str(out / "original-model"),
             "data": str(out / "data"), "evaluation (JSON)": str(out / "result.json")}
    image = samples[0].path if samples and samples[0].path else "IMAGE.png"
    commands = [
        f"modellock predict --model {out / 'locked-model'} --key {out / 'key.toml'} {image}",
        f"modellock eval --model {out / 'locked-model'} --key {out / 'key.toml'} --data {out / 'data'} "
        f"--baseline {out / 'original-model'}",
    ]
    return files, commands


SEGMENTATION_DEMO_TRAIN = dict(epochs=15, batch_size=32, lr=3e-3, warmup_epochs=0.5, num_workers=0, mixed_precision="auto")
# the lock fine-tunes the original model for this many more epochs (20 left the unlocked model 3.3-5.3 points
# below the original; 40: 0.2-1.8; 60: -1.4-2.0 on 8 originals, 80: -0.2 and 1.0 on the two of them 60 missed;
# every step up narrowed the gap on every original measured: docs/benchmarks.md)
SEGMENTATION_DEMO_LOCK_EPOCHS = 80


def run_segmentation_demo(out: str | Path = "demo-output-segmentation", n_train: int = 1500, n_test: int = 300,
                          epochs: int | None = None, model: str = "small-segnet", image_size: int = 32,
                          log=print) -> dict:
    """The same flow for semantic segmentation: built-in shapes with masks, mIoU; returns the evaluation.

    The lock fine-tunes the original model (a fresh output layer with the locked class on top) for 80
    epochs, as an owner locks a model they have (bf16 autocast where the hardware computes it, as the other demo); from scratch, this small U-Net needs far more epochs
    to reach the same unlocked mIoU (docs/benchmarks.md).
    """
    out, clock = Path(out), StepClock(log)
    out.mkdir(parents=True, exist_ok=True)
    source = open_source(make_shapes_segmentation_dataset(out / "data", n_train, n_test, size=image_size))
    log(f"[1/7] built-in segmentation dataset: {len(source.split('train'))} train, {len(source.split('test'))} "
        f"test images, classes {', '.join(source.classes)}")
    clock.done("data")
    train = TrainConfig(**{**SEGMENTATION_DEMO_TRAIN, **({"epochs": epochs} if epochs else {})})
    lock_train = TrainConfig(**{**SEGMENTATION_DEMO_TRAIN, "epochs": epochs or SEGMENTATION_DEMO_LOCK_EPOCHS})
    return _lock_and_evaluate(out, source, model, train, image_size, True, 64, _segmentation_report, log, clock,
                              lock_train=lock_train)


def _segmentation_report(out: Path, locked, key, wrong: dict, source, result: dict, attacks: dict,
                         n: int = 6) -> Path:
    split = source.split("test")
    samples = split.samples[:: max(1, len(split.samples) // n)][:n]
    clean = [split.load(s) for s in samples]
    truths = [split.load_mask(s) for s in samples]
    c = len(locked.classes)
    columns = [GridColumn("image"), GridColumn("edited with the key", "unlocked")]
    grid = []  # per column: (mask, caption) per image
    opened = locked.open(key)  # the lock itself: no key, the key and a wrong key on the opened weights
    for k, column in _grid_columns(key, wrong):
        predictor = opened.predictor(k)
        logits = predictor.logits(predictor.edit(clean), edited=True)
        masks, accs = [], []
        for out_logits, truth in zip(logits, truths):
            up = torch.nn.functional.interpolate(out_logits[None], size=truth.shape, mode="bilinear",
                                                 align_corners=False)[0]
            counted, ignored = up.argmax(0).numpy(), up[:c].argmax(0).numpy()
            valid = truth != split.ignore_index
            accs.append([float((p[valid] == truth[valid]).mean()) if valid.any() else float("nan")
                         for p in (counted, ignored)])
            masks.append(counted)
        column.title = column.title.replace("clean image: ", "")
        column.summary = f"mean pixel accuracy {np.nanmean([a for a, _ in accs]):.2f} ({COUNTED}); " \
            f"{np.nanmean([b for _, b in accs]):.2f} ({IGNORED})"
        columns.append(column)
        grid.append([(colour_mask(m, c), f"pixel acc {a:.2f}\n{IGNORED}: {b:.2f}") for m, (a, b) in zip(masks, accs)])
    columns.append(GridColumn("ground truth"))
    edited = opened.predictor(key).edit(clean)
    rows = [[(clean[i], samples[i].id), (edited[i], "input of the unlocked model"), *(col[i] for col in grid),
             (colour_mask(truths[i], c, split.ignore_index), "true mask")] for i in range(len(samples))]
    legend = ", ".join(f"{name} = RGB{tuple(int(v) for v in col)}" for name, col in
                       zip(locked.classes, label_palette(c)))
    notes = ["ModelLock demo for semantic segmentation on built-in shapes with masks, CPU key editor "
             "(keyed-filter). On clean images the locked model paints the locked output (magenta) or wrong classes; "
             "on images edited with the key it segments correctly. The locked model is the original model "
             "fine-tuned on the lock set.", f"Mask colours: {legend}; locked output = magenta."]
    return write_html_report(out, "modellock segmentation demo", result, columns, rows, notes,
                             *_files_and_commands(out, samples),
                             grid_note="Masks show each model's answer with the locked output counted (magenta).",
                             attacks=attacks, attacks_html=attacks_html(attacks) if attacks else "")


# the demo of each task and its default output folder (``modellock demo --task``)
DEMOS = {"classification": (run_demo, "demo-output"), "segmentation": (run_segmentation_demo, "demo-output-segmentation")}
