"""Evaluation: the lock matrix of a model on a test split.

original model on clean data | locked model on clean data | locked model on key-edited data |
locked model under wrong keys. Every locked row is scored on the *opened* weights (``LockedModel.open``
with the key: what the key holder runs, and what a thief who reads a running process holds), wrong keys
applied to those same weights: the figures measure the lock, not the seal. How the folder stores its
weights is reported apart (``sealed``, ``folder_alone``: what a thief with the folder alone gets).
Predictions of the locked output count as wrong; for models with a locked output the score with that
output ignored (the thief's first move) is reported as well.
Classification scores accuracy; segmentation scores mean IoU (with pixel accuracy and per-class IoU
alongside), at each mask's own resolution. Launched with several processes, the edits and the
classification predictions are shared among them (segmentation is scored by each process whole).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import torch

from ..data.checks import check_data
from ..data.handling import HANDLING
from ..data.image_list import ImageListDataset
from ..data.source import ImageSource, Split
from ..edit import cache_dir, edit_split
from ..editors import editor_class, get_editor, resolve_key
from ..keys.prompts import STYLE_PROMPTS
from ..model_folder import LockedModel
from ..tasks import task_type
from ..tasks.classification import accuracy  # noqa: F401  (re-exported)
from ..tasks.segmentation.metrics import majority_class_miou
from ..train import predict_logits_shared
from ..utils.progress import plural

FOLDER_ALONE = {True: "nothing loads without the key",
                False: "the weights load without the key (stored plain): the lock is all that protects them"}


def sealing(model: LockedModel) -> dict:
    """How the model folder stores its weights, reported apart from the lock: ``sealed`` and ``folder_alone``
    (what a thief holding the folder alone gets)."""
    sealed = bool((model.config.get("lock") or {}).get("seal"))
    return {"sealed": sealed, "folder_alone": FOLDER_ALONE[sealed]}


def covers(model: LockedModel, source: ImageSource, split: str, n: int) -> dict:
    """Which model (folder name, weights sha256 prefix), which data (name, source id, split, size) and when."""
    sha = model.config.get("weights_sha256")
    return {"model": model.path.name if model.path is not None else None, "weights_sha256": sha[:12] if sha else None,
            "data": Path(source.spec).name or source.spec, "source_id": source.source_id, "split": split, "n": n,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def default_wrong_keys(key) -> dict:
    """The same prompt with the next seed ("next seed": the name does not reveal the key's seed), and two other
    built-in prompts."""
    others = [p for p in STYLE_PROMPTS if p != key.prompt][:2]
    wrong = {"next seed": key.replace(seed=key.seed + 1)}  # named without the key's own seed
    wrong.update({f"prompt {p!r}": key.replace(prompt=p) for p in others})
    return wrong


def image_loaders(model: LockedModel, split: Split, key=None, source: ImageSource | None = None,
                  device: str | None = None, progress: bool = True, label: str = "with the key") -> list:
    """One zero-argument loader per sample: the clean image, or its edit with ``key`` (through the edit cache;
    ``label`` names the key on the progress bar)."""
    if key is None:
        return [lambda s=s: split.load(s) for s in split.samples]
    key = resolve_key(key, model.model, model.image_size)
    folder = cache_dir(key, source)
    edits = edit_split(key, split, folder, device=device, progress=progress, source=source,
                       desc=f"editing {plural(len(split), 'image')} of split {split.name!r} {label}").folder
    return [lambda s=s: edits.load(split.name, s) for s in split.samples]


def handled_loaders(model: LockedModel, split: Split, key, handle=None, device: str | None = None,
                    chunk: int = 256) -> list:
    """One loader per sample: the image after ``handle`` (e.g. JPEG re-encoding; none: as stored), then edited
    with ``key`` in memory (no cache: the handled images are not the source's), ``chunk`` images per editor
    call, only the current chunk kept, so memory stays flat."""
    editor = get_editor(resolve_key(key, model.model, model.image_size), device=device)
    handle = handle or (lambda image: image)
    samples, edited = split.samples, {}

    def load(i: int):
        start = i - i % chunk
        if start not in edited:
            edited.clear()
            edited[start] = editor.edit([handle(split.load(s)) for s in samples[start:start + chunk]])
        return edited[start][i - start]

    return [lambda i=i: load(i) for i in range(len(samples))]


def split_logits(model: LockedModel, split: Split, key=None, source: ImageSource | None = None,
                 batch_size: int = 256, device: str | None = None, progress: bool = True) -> torch.Tensor:
    """Logits of ``model`` on ``split``: clean, or edited with ``key`` through the edit cache (launched with
    several processes: shared among them, see ``predict_logits_shared``)."""
    loaders = image_loaders(model, split, key, source, device, progress)
    model = model.with_key(key)
    return predict_logits_shared(model.model, ImageListDataset(loaders, model.inference_transform()), batch_size)


def evaluate(model: LockedModel, key, source: ImageSource, split: str = "test", baseline: LockedModel | None = None,
             wrong_keys: dict | None = None, batch_size: int = 256, device: str | None = None,
             progress: bool = True, handling: bool | None = None) -> dict:
    """The evaluation matrix as a JSON-able dict (its fields: docs/reference/results.md), on ``model.open(key)``.

    ``handling``: also score the unlocked model on inputs that went through ordinary handling before the key
    edit (``modellock.data.handling.HANDLING``: JPEG quality 75, a resize by +-10 %, a 90 % crop; segmentation
    scores a cropped image against its window of the mask); default: when the key's editor is cheap (a CPU
    editor).
    """
    check_data(source, split, model.image_size, model.classes, training=False)
    folder, model = model, model.open(key)  # the lock itself: every locked row on the opened weights
    data = source.split(split)
    task = task_type(model.task)
    seg = task.per_pixel
    in_loop = editor_class(key.editor).edits_in_loop

    def scores(m: LockedModel, d: Split, key, run: dict) -> dict:
        if key is not None and in_loop:  # a cheap editor: editing again costs less than the cache's key id and files
            loaders = handled_loaders(m, d, key, device=run["device"])
        else:
            loaders = image_loaders(m, d, key, run["source"], run["device"], run["progress"],
                                    run.get("label", "with the key"))
        return task.evaluate_split(m.with_key(key), d, loaders, run["batch_size"], run["progress"])

    run = dict(source=source, batch_size=batch_size, device=device, progress=progress)
    clean = scores(model, data, None, run)
    result = {"task": model.task, "metric": task.metric, "chance": _chance(model, data, clean),
              "n_test": len(data), **sealing(folder), "covers": covers(folder, source, split, len(data))}
    extra: dict = {}
    if baseline is not None:
        original = scores(baseline, data, None, run)
        result["original_clean"] = original["score"]
        extra["original_clean"] = original
    result["locked_clean"] = clean["score"]
    extra["locked_clean"] = clean
    if "ignored" in clean:
        result["locked_clean_without_locked_class"] = clean["ignored"]
        result["locked_class_rate_clean"] = clean["locked_rate"]
    unlocked = scores(model, data, key, run)
    result["unlocked"] = unlocked["score"]
    if "ignored" in unlocked:  # what the unlocked predictor answers: it drops the locked output
        result["unlocked_without_locked_class"] = unlocked["ignored"]
    extra["unlocked"] = unlocked
    wrong_keys = default_wrong_keys(key) if wrong_keys is None else wrong_keys
    result["wrong_keys"], ignored = {}, {}
    for name, wk in wrong_keys.items():
        wrong = scores(model, data, wk, {**run, "label": f"with wrong key {name}"})  # no fingerprint check, on purpose
        result["wrong_keys"][name] = wrong["score"]
        ignored[name] = wrong.get("ignored")
    if model.locked_class is not None:
        result["wrong_keys_without_locked_class"] = ignored
    if handling is None:
        handling = in_loop
    if handling:
        result["unlocked_under_handling"] = {}
        for name, handle in HANDLING.items():
            loaders = handled_loaders(model, data, key, handle, device)
            masks = {"handling": name} if seg else {}  # each handled image scored against the labels it shows
            result["unlocked_under_handling"][name] = task.evaluate_split(model, data, loaders, batch_size,
                                                                          progress, **masks)["score"]
        result["handling_drop"] = max(result["unlocked"] - v for v in result["unlocked_under_handling"].values())
    if seg:
        result["pixel_accuracy"] = {k: v["pixel_accuracy"] for k, v in extra.items()}
        result["per_class_iou"] = {k: v["per_class_iou"] for k, v in extra.items()}
    return result


def _chance(model: LockedModel, split: Split, clean: dict) -> float:
    """The score of always answering the most frequent class (segmentation: its mIoU over the pixels)."""
    if task_type(model.task).per_pixel:
        return majority_class_miou(clean["pixel_counts"])
    counts = torch.bincount(torch.tensor([s.label for s in split.samples]), minlength=model.config["num_classes"])
    return float(counts.max() / max(len(split.samples), 1))
