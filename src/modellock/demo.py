"""The end-to-end demo on built-in data, no downloads: keygen → edit → baseline → lock → evaluate → report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .data import open_source
from .data.synthetic import make_shapes_dataset
from .evaluate import default_wrong_keys, evaluate
from .images import write_bytes_atomic
from .key import Key
from .lock import lock_model, train_baseline
from .lockset import LockRecipe
from .report import format_table, write_html_report
from .train import TrainConfig

DEMO_PROMPT = "with oil pastel"
DEMO_TRAIN = dict(epochs=20, batch_size=128, lr=3e-3, warmup_epochs=0.5, num_workers=0)


def run_demo(out: str | Path = "demo-output", n_train: int = 3000, n_test: int = 1000, epochs: int | None = None,
             model: str = "small-cnn", log=print) -> dict:
    """Run the whole flow into ``out``; return the evaluation result."""
    out, t0 = Path(out), time.time()
    out.mkdir(parents=True, exist_ok=True)
    source = open_source(make_shapes_dataset(out / "data", n_train, n_test))
    log(f"[1/6] built-in shapes dataset: {len(source.split('train'))} train, {len(source.split('test'))} test "
        f"images, {len(source.classes)} classes")
    train = TrainConfig(**{**DEMO_TRAIN, **({"epochs": epochs} if epochs else {})})
    return _lock_and_evaluate(out, source, model, train, None, False, 256, _report, log, t0)


def _lock_and_evaluate(out: Path, source, model: str, train: TrainConfig, image_size, lock_original: bool,
                       eval_batch: int, report, log, t0: float, lock_train: TrainConfig | None = None) -> dict:
    """Steps 2-6 of both demos: key, original model, lock (from scratch or fine-tuning the original),
    evaluation with the default wrong keys, result.json and report.html."""
    key = Key.create("keyed-filter", DEMO_PROMPT)
    key.save(out / "key.toml")
    log(f"[2/6] demo key written to {out / 'key.toml'} (editor keyed-filter; a real key stays secret)")
    log("[3/6] training the original model on clean images")
    baseline = train_baseline(source, model, out / "original-model", train, image_size, overwrite=True)
    log("[4/6] editing the training set with the key and "
        + ("locking: fine-tuning the original model on the lock set" if lock_original else "training the locked model"))
    pretrained = baseline.path / "model.safetensors" if lock_original else None
    locked = lock_model(key, source, model, out / "locked-model", LockRecipe(), lock_train or train,
                        image_size, pretrained,
                        edits_dir=_own_edits_dir(out / "edits", key), overwrite=True)
    log(f"[5/6] evaluating: clean, key-edited, wrong keys ({locked.config.get('task')}, "
        f"{'mean IoU' if locked.task == 'segmentation' else 'accuracy'})")
    wrong = default_wrong_keys(key)
    result = evaluate(locked, key, source, "test", baseline, wrong, batch_size=eval_batch)
    locked.save_evaluation(result)
    write_bytes_atomic(json.dumps(result, indent=2).encode(), out / "result.json")
    log(format_table(result))
    log("[6/6] writing the report")
    report(out, locked, key, wrong, source, result)
    log(f"done in {time.time() - t0:.0f} s: {out / 'report.html'}")
    return result


def _own_edits_dir(folder: Path, key) -> Path:
    """The demo's edit folder, emptied when an earlier modellock wrote it with another editor version."""
    import shutil

    from .editors import editor_class

    header = folder / "edit.json"
    if header.exists() and json.loads(header.read_text()).get("editor_version", 1) != editor_class(key.editor).version:
        shutil.rmtree(folder)
    return folder


def _report(out: Path, locked, key, wrong: dict, source, result: dict, n: int = 8) -> Path:
    split = source.split("test")
    samples = split.samples[:: max(1, len(split.samples) // n)][:n]
    clean = [split.load(s) for s in samples]
    wrong_name, wrong_key = next(iter(wrong.items()))
    columns = ["clean (locked model)", "edited with the key (unlocked)", f"wrong key: {wrong_name}"]
    cells = []
    for k in (None, key, wrong_key):
        predictor = locked.predictor(k)
        images = predictor.edit(clean)
        preds = predictor.predict(images if k is None else clean)
        cells.append(list(zip(images, preds)))
    rows = []
    for i, s in enumerate(samples):
        truth = split.classes[s.label]
        rows.append([(cells[c][i][0], f"{cells[c][i][1]['class']} {'✓' if cells[c][i][1]['class'] == truth else '✗'}"
                      f" (true: {truth})") for c in range(3)])
    notes = ["ModelLock demo on the built-in shapes dataset with the CPU key editor (keyed-filter). "
             "The locked model answers wrongly on clean images and correctly on images edited with the key."]
    return write_html_report(out, "modellock demo", result, columns, rows, notes)


SEGMENTATION_DEMO_TRAIN = dict(epochs=15, batch_size=32, lr=3e-3, warmup_epochs=0.5, num_workers=0)
SEGMENTATION_DEMO_LOCK_EPOCHS = 20  # the lock fine-tunes the original model for this many more epochs


def run_segmentation_demo(out: str | Path = "demo-output-segmentation", n_train: int = 1500, n_test: int = 300,
                          epochs: int | None = None, model: str = "small-segnet", image_size: int = 32,
                          log=print) -> dict:
    """The same flow for semantic segmentation: built-in shapes with masks, mIoU; returns the evaluation.

    The lock fine-tunes the original model (a fresh output layer with the locked class on top) for 20
    epochs, as an owner locks a model they have; from scratch, this small U-Net needs far more epochs
    to reach the same unlocked mIoU (docs/benchmarks.md).
    """
    from .data.synthetic import make_shapes_segmentation_dataset

    out, t0 = Path(out), time.time()
    out.mkdir(parents=True, exist_ok=True)
    source = open_source(make_shapes_segmentation_dataset(out / "data", n_train, n_test, size=image_size))
    log(f"[1/6] built-in segmentation dataset: {len(source.split('train'))} train, {len(source.split('test'))} "
        f"test images, classes {', '.join(source.classes)}")
    train = TrainConfig(**{**SEGMENTATION_DEMO_TRAIN, **({"epochs": epochs} if epochs else {})})
    lock_train = TrainConfig(**{**SEGMENTATION_DEMO_TRAIN, "epochs": epochs or SEGMENTATION_DEMO_LOCK_EPOCHS})
    return _lock_and_evaluate(out, source, model, train, image_size, True, 64, _segmentation_report, log, t0,
                              lock_train=lock_train)


def _segmentation_report(out: Path, locked, key, wrong: dict, source, result: dict, n: int = 6) -> Path:
    from .images import colour_mask, label_palette

    split = source.split("test")
    samples = split.samples[:: max(1, len(split.samples) // n)][:n]
    clean = [split.load(s) for s in samples]
    c = len(locked.classes)
    wrong_name, wrong_key = next(iter(wrong.items()))
    unlocked = locked.predictor(key)
    edited = unlocked.edit(clean)
    columns = ["image", "edited with the key", "locked model, clean", "unlocked (key)", f"wrong key: {wrong_name}",
               "ground truth"]
    masks = [locked.predictor(k).segment(clean) for k in (None, key, wrong_key)]
    rows = []
    for i, s in enumerate(samples):
        truth = split.load_mask(s)
        cells = [(clean[i], s.id), (edited[i], "input of the unlocked model")]
        for name, m in zip(("locked", "unlocked", "wrong key"), masks):
            pred = m[i]["mask"]
            valid = truth != split.ignore_index
            acc = float((pred[valid] == truth[valid]).mean()) if valid.any() else float("nan")
            cells.append((colour_mask(pred, c), f"{name}: pixel acc {acc:.2f}"))
        cells.append((colour_mask(truth, c, split.ignore_index), "true mask"))
        rows.append(cells)
    legend = ", ".join(f"{name} = RGB{tuple(int(v) for v in col)}" for name, col in
                       zip(locked.classes, label_palette(c)))
    notes = ["ModelLock demo for semantic segmentation on built-in shapes with masks, CPU key editor "
             "(keyed-filter). On clean images the locked model paints the locked output (magenta) or wrong classes; "
             "on images edited with the key it segments correctly. The locked model is the original model "
             "fine-tuned on the lock set.", f"Colours: {legend}; locked output = magenta."]
    return write_html_report(out, "modellock segmentation demo", result, columns, rows, notes)
