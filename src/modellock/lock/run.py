"""The lock stage: build the lock set, fine-tune, and write a locked model folder.

``lock_model`` edits (through the edit cache) the share of training images the recipe names, trains
the backbone on edited images with true labels and clean ones toward the locked answer, and saves the
folder. ``train_baseline`` runs the same recipe on clean data only: the original model of every
comparison. Both checkpoint every epoch under ``<out>/.work`` (mode 0700; a sealed lock's checkpoints are sealed
with its key, see ``modellock.keys.seal``) and resume when rerun; ``.work`` goes once the folder is written. Launched
with several processes, the editing and the training are shared among them and the main process writes the folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.checks import check_data
from ..data.handling import RandomHandling
from ..data.source import ImageSource
from ..edit import cache_dir, edit_split
from ..editors import editor_class, get_editor, resolve_key
from ..errors import ModelLockError
from ..keys.seal import Sealer
from ..model_folder import CONFIG, LockedModel, ModelFolderConfig, holds_model, library_versions
from ..tasks import task_type
from ..train import TrainConfig, fit
from ..utils import distributed
from ..utils.images import IMAGENET_MEAN, IMAGENET_STD
from ..utils.paths import private_dir
from ..utils.progress import plural, stage_bar
from .hardening import build_hardening
from .lock_set import (LOCKED_CLASS_NAME, DecodedOnce, EditingCollate, LockRecipe, OnlineLockDataset, decoy_keys,
                       plan_lock_set)


def default_image_size(model_name: str, task: str = "classification") -> int:
    """The model's native input size for ``task`` (see tasks.TaskType.default_image_size)."""
    return task_type(task).default_image_size(model_name)


def check_output(out, overwrite: bool) -> Path:
    """Refuse to replace a finished model folder unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ModelLockError(f"{out}: exists and is not a folder (--out names the model folder to write)")
    if holds_model(out) and not overwrite:
        raise ModelLockError(f"{out}: already holds a model (use --force to replace it)")
    return out


def _prepare_work_dir(work: Path, signature: dict) -> None:
    """Keep an interrupted run's checkpoints only when it was started with the same settings (the main
    process decides; the others wait)."""
    if distributed.is_main():
        digest = hashlib.sha256(json.dumps(signature, sort_keys=True, default=str).encode()).hexdigest()
        marker = work / "run.sha256"
        if work.exists() and (not marker.exists() or marker.read_text() != digest):
            print(f"{work}: checkpoints of a run with other settings; starting over")
            shutil.rmtree(work)
        private_dir(work)
        marker.write_text(digest)
    distributed.barrier()


@dataclass
class LockJob:
    """One training run that ends in a model folder: the lock set (``items``, read from ``edits``/``decoys`` in
    the edit cache, or edited in the loop by ``editors``: the key's, then the decoys'), the network and its
    outputs, the training settings, and where it goes. ``run()`` trains and saves the folder (sealed with
    ``seal_key`` when given: then the checkpoints too, and the opened weights are returned)."""

    source: ImageSource
    split_name: str
    items: list
    model_name: str
    out: Path
    train: TrainConfig
    num_outputs: int
    classes: list[str]
    desc: str
    run_id: str
    edits: object = None
    locked_class: int | None = None
    lock_info: dict | None = None
    image_size: int | None = None
    pretrained: object = None
    decoys: list = field(default_factory=list)
    augment: bool = True
    progress: bool = True
    recipe: LockRecipe | None = None
    editors: list | None = None
    seal_key: object = None

    def run(self) -> LockedModel:
        source, split_name, items, edits, recipe, train = (self.source, self.split_name, self.items, self.edits,
                                                           self.recipe, self.train)
        editors, lock_info, out, pretrained = self.editors, self.lock_info, self.out, self.pretrained
        task = task_type(source.task)
        split = source.split(split_name)
        image_size = self.image_size or task.default_image_size(self.model_name)
        torch.manual_seed(train.seed)  # the fresh head and from-scratch weights follow the seed too
        model = task.create_model(self.model_name, self.num_outputs, image_size, pretrained)
        transform = task.transform(image_size, True, self.augment, IMAGENET_MEAN, IMAGENET_STD, source.ignore_index)
        # every epoch reads every image: decoded once in this process (loader workers restart each epoch)
        dataset = task.lock_dataset(items, DecodedOnce(split) if train.num_workers == 0 else split, edits, transform,
                                    self.decoys)
        collate, hooks = None, None
        if editors is not None:
            handling = (RandomHandling(jpeg_probability=recipe.handling_jpeg, probability=recipe.handling_share)
                        if recipe.handling else None)  # segmentation: masks follow (lockset)
            dataset = OnlineLockDataset(dataset, handling)
            raw = get_editor(editors[0].key.replace(alpha=1.0)) if recipe.distractor > 0 else None
            collate = EditingCollate(dataset, editors, recipe.distractor, raw)
        if recipe is not None and recipe.harden.active:
            hooks = build_hardening(recipe, task, split, image_size, len(source.classes), train,
                                    editors[0] if editors else None, source.ignore_index)
        out = Path(out)
        work = out / ".work"
        _prepare_work_dir(work, {"run": self.run_id, "task": task.name, "model": self.model_name,
                                 "image_size": image_size, "pretrained": str(pretrained),
                                 "recipe": recipe.to_dict() if recipe is not None else None,
                                 "items": [(it.sample.id, it.edited, it.decoy, it.target, it.answer, it.other)
                                           for it in items],
                                 "train": {k: v for k, v in train.to_dict().items()
                                           if k not in ("epochs", "num_workers")}})
        loss = task.lock_loss(len(source.classes), recipe, source.ignore_index)
        sealer = Sealer(self.seal_key) if self.seal_key is not None else None
        model = fit(model, dataset, train, loss_fn=loss, work_dir=work, resume=True, desc=self.desc,
                    progress=self.progress, collate_fn=collate, hooks=hooks, sealer=sealer)
        if hooks is not None:
            hooks.close()
            lock_info = {**lock_info, "hardening": hooks.summary()}
        config = ModelFolderConfig(
            task=task.name, architecture=model.backbone_spec, classes=self.classes,
            num_classes=len(source.classes), locked_class=self.locked_class,
            preprocessing={"image_size": image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            lock=lock_info,
            training={**train.to_dict(), "n_train": len(items), "pretrained": str(pretrained) if pretrained else None,
                      "num_processes": distributed.num_processes()},
            versions=library_versions(), ignore_index=source.ignore_index if task.per_pixel else None).to_dict()
        locked = LockedModel(model.cpu(), config)
        if distributed.is_main():  # every process holds the same weights; one writes them (sealed with the key)
            locked.save_pretrained(out, seal_key=self.seal_key)
            shutil.rmtree(work, ignore_errors=True)
        distributed.barrier()
        if not distributed.is_main():  # the config as written (with its seal record), beside the same weights
            locked = LockedModel(locked.model, json.loads((out / CONFIG).read_text(encoding="utf-8")), out)
        return locked


def lock_model(key, source: ImageSource, model_name: str, out, recipe: LockRecipe | None = None,
               train: TrainConfig | None = None, image_size: int | None = None, pretrained=None,
               edits_dir=None, split: str = "train", device: str | None = None, progress: bool = True,
               overwrite: bool = False) -> LockedModel:
    """Lock ``model_name`` with ``key`` on ``source``'s ``split``; write the model folder to ``out``."""
    recipe, train = recipe or LockRecipe(), train or TrainConfig()
    check_output(out, overwrite)
    task = task_type(source.task)
    task.resolve_model(model_name)  # fail on an unknown architecture before any editing
    # the key as its editor applies it to this model (e.g. block size = patch size); the fingerprint
    # stays that of the key as the user holds it
    image_size = image_size or task.default_image_size(model_name)
    edit_key = resolve_key(key, model_name, image_size)
    check_data(source, split, image_size)
    data = source.split(split)
    items = plan_lock_set(data, recipe)
    cls = editor_class(key.editor)
    online = recipe.online if recipe.online is not None else cls.edits_in_loop
    if online and not cls.edits_in_loop:
        raise ModelLockError(f"recipe: online editing needs an editor cheap enough for the training loop; "
                             f"{key.editor!r} is not (use the edit cache: online: false)")
    edits, decoys, editors = None, [], None
    if online:  # every edit made in the training loop, after the random handling of the input
        used = {it.decoy for it in items if it.decoy >= 0}
        all_decoys = decoy_keys(edit_key, recipe) if used else []
        editors = [get_editor(edit_key, device=device)] + [get_editor(d, device=device) if i in used else None
                                                           for i, d in enumerate(all_decoys)]
    else:
        edits_dir = Path(edits_dir) if edits_dir else cache_dir(edit_key, source)
        keyed = [it.sample for it in items if it.edited]
        with stage_bar(f"editing {plural(len(keyed), 'training image')} with the key", len(keyed),
                       enabled=progress) as bar:
            edits = edit_split(edit_key, data, edits_dir, samples=keyed, device=device, progress=bar,
                               source=source).folder
        decoys = _edit_with_decoy_keys(edit_key, recipe, data, items, source, device, progress)
    classes = list(source.classes) + ([LOCKED_CLASS_NAME] if recipe.has_locked_class else [])
    lock_info = {"editor": key.editor, "editor_version": editor_class(key.editor).version,
                 "fingerprint": key.fingerprint(), "recipe": recipe.to_dict()}
    return LockJob(source, split, items, model_name, Path(out), train, recipe.num_outputs(len(source.classes)),
                   classes, "training the locked model", edit_key.cache_id, edits=edits,
                   locked_class=len(source.classes) if recipe.has_locked_class else None, lock_info=lock_info,
                   image_size=image_size, pretrained=pretrained, decoys=decoys, augment=cls.geometric_augmentation,
                   progress=progress, recipe=recipe, editors=editors, seal_key=key if recipe.seal else None).run()


def _edit_with_decoy_keys(edit_key, recipe: LockRecipe, data, items, source, device, progress: bool) -> list:
    """Edit each decoy key's share of the lock set (one progress bar for all keys); the edit folder of
    decoy key i, or None for a key that got no image."""
    keys = decoy_keys(edit_key, recipe) if recipe.decoy_fraction > 0 else []
    by_key: dict[int, list] = {}
    for it in items:
        if it.decoy >= 0:
            by_key.setdefault(it.decoy, []).append(it.sample)
    if not by_key:
        return []
    n = sum(len(v) for v in by_key.values())
    folders = [None] * len(keys)
    with stage_bar(f"editing {plural(n, 'decoy image')} with {plural(len(by_key), 'decoy key')}", n,
                   enabled=progress) as bar:
        for i, samples in sorted(by_key.items()):
            folders[i] = edit_split(keys[i], data, cache_dir(keys[i], source), samples=samples, device=device,
                                    progress=bar, source=source).folder
    return folders


def train_baseline(source: ImageSource, model_name: str, out, train: TrainConfig | None = None,
                   image_size: int | None = None, pretrained=None, split: str = "train",
                   overwrite: bool = False) -> LockedModel:
    """Fine-tune the same recipe on clean data, without a lock (the original model)."""
    train = train or TrainConfig()
    check_output(out, overwrite)
    task = task_type(source.task)
    task.resolve_model(model_name)
    check_data(source, split, image_size or task.default_image_size(model_name))
    data = source.split(split)
    items = plan_lock_set(data, None)
    return LockJob(source, split, items, model_name, Path(out), train, len(source.classes), list(source.classes),
                   "training the original model", "baseline", image_size=image_size, pretrained=pretrained).run()
