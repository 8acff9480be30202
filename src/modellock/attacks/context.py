"""What every attack gets: the locked model's opened weights, the data, the task's score, and the attacker's means.

``AttackContext`` never holds the true key. It holds a :class:`Machinery`: the key's editor and
settings *without the prompt*, which the guessing attacks assume the attacker knows (the method
and its settings are public, the prompt is the secret), or the editor's published defaults.

Shared helpers:

- ``sweep(candidates)``: score many candidate edits or transforms on a class-balanced *screening*
  subset of the test split, then the ``top_k`` best on the whole test split; ``best`` is the best
  whole-split score (selection on the screening subset, so no test-set optimism beyond top-k).
  Edits made with keys go through the edit cache, so a rerun re-edits nothing (a CPU editor that edits in
  the training loop edits in memory: cheaper than its cache).
- ``attacker_split(fraction)``: the thief's clean labelled share of the training split.
- ``train(model, split)``: train an attacker's model on it for a fixed number of samples (``grid``: the
  optimizers, learning rates and trainable parts a thief tries, from the ``budget`` preset).
- ``memo(kind, params, compute)``: a result stored under ``work_dir``, so a rerun skips training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data.image_list import ImageListDataset
from ..data.source import ImageSource, Split
from ..editors import editor_class, get_editor, resolve_key
from ..errors import ModelLockError
from ..evaluation.matrix import split_logits
from ..keys import PAPER_DEFAULTS, Key
from ..model_folder import LockedModel
from ..tasks import TaskType, task_for
from ..train import TrainConfig, fit, predict_logits, resolve_precision
from ..utils.atomic import write_bytes_atomic

_SETTINGS = ("editor", "model", "revision", "seed", "steps", "image_guidance", "guidance", "resolution", "alpha")
_IMAGE_CACHE_BYTES = 1 << 30  # keep decoded splits in memory up to this size


@dataclass(frozen=True, repr=False)
class Machinery:
    """A key's editor and settings without its prompt."""

    editor: str
    model: str
    revision: str
    seed: int
    steps: int
    image_guidance: float
    guidance: float
    resolution: int
    alpha: float
    params: tuple = ()  # the key's [params] as sorted (name, value) pairs

    @classmethod
    def of(cls, key: Key) -> "Machinery":
        return cls(**{f: getattr(key, f) for f in _SETTINGS}, params=tuple(sorted(key.params.items())))

    @classmethod
    def defaults(cls, editor: str) -> "Machinery":
        """The settings a new key of ``editor`` gets (the paper's, with the editor's own overrides)."""
        d = {**PAPER_DEFAULTS, **editor_class(editor).key_defaults, "editor": editor}
        return cls(**{f: d[f] for f in _SETTINGS}, params=tuple(sorted(d.get("params", {}).items())))

    def key(self, prompt: str, **changes) -> Key:
        """A key with these settings and ``prompt`` (``changes`` override fields)."""
        fields = {f: getattr(self, f) for f in _SETTINGS}
        fields.update(params=dict(self.params), **changes)
        return Key(prompt=prompt, **fields)

    def __repr__(self) -> str:  # the model id may be part of a secret setup: name the editor only
        return f"Machinery(editor={self.editor!r})"


@dataclass(frozen=True)
class Budget:
    """How hard the thief tries: training samples per model, and the hyper-parameter grid of trained attacks.

    Learning rates are multiples of the attacked model's own (the one it was locked with), three values
    spanning 100x per optimizer in ``full``: SGD gets higher multiples than AdamW, as is usual.
    """

    name: str
    samples: int  # image draws per trained attacker model
    optimizers: tuple
    lr_factors: dict  # optimizer -> multiples of the base learning rate
    parts: tuple  # what fine-tuning trains: whole, last (blocks + head), head
    queries: tuple  # distillation query budgets

    def grid(self, parts=None) -> list[tuple[str, float, str]]:
        """``(optimizer, lr factor, part)`` cells, in a stable order."""
        return [(o, f, p) for p in (parts or self.parts) for o in self.optimizers for f in self.lr_factors[o]]


BUDGETS = {
    "quick": Budget("quick", 4000, ("adamw",), {"adamw": (1.0, 10.0)}, ("whole", "head"), (1000,)),
    "full": Budget("full", 20000, ("sgd", "adamw"), {"sgd": (1.0, 10.0, 100.0), "adamw": (0.1, 1.0, 10.0)},
                   ("whole", "last", "head"), (1000, 10000)),
}


def budget_named(name) -> Budget:
    if isinstance(name, Budget):
        return name
    if name not in BUDGETS:
        raise ModelLockError(f"--budget must be one of {', '.join(BUDGETS)}, not {name!r}")
    return BUDGETS[name]


@dataclass
class Candidate:
    """One setting a sweep scores: an edit with ``key``, or an image function ``fn(list of arrays) -> list``."""

    name: str
    key: Key | None = None
    fn: Callable[[list], list] | None = None
    info: dict = field(default_factory=dict)


class _Repeat(Dataset):
    """``base`` repeated up to ``length`` items (one long epoch: one progress bar, one LR schedule)."""

    def __init__(self, base: Dataset, length: int):
        self.base, self.length = base, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i):
        return self.base[i % len(self.base)]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class AttackContext:
    """The attacked model and the attacker's data and means (see the module docstring)."""

    model: LockedModel
    source: ImageSource
    machinery: Machinery
    fractions: tuple = (0.01, 0.05, 0.1)
    limit_prompts: int | None = None
    screen: int = 500
    top_k: int = 3
    budget: Budget | str = "full"  # how hard the thief tries (see BUDGETS)
    samples: int | None = None  # training samples per attacker model (default: the budget's)
    train_batch_size: int = 64
    mixed_precision: str = "no"  # the thief's training precision (TrainConfig.mixed_precision; auto: bf16 where native)
    lr: float | None = None  # base learning rate of the grid (default: the one the model was locked with)
    batch_size: int = 256
    seed: int = 0
    diffusion_models: tuple = ()  # diffusion models (hub ids or folders) the attacker holds
    random_keys: int = 3  # random keys per registered editor (generic transforms)
    device: str | None = None
    progress: bool = True
    work_dir: Path | None = None
    test_split: str = "test"
    train_split: str = "train"
    task: TaskType | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        for f in dataclasses.fields(self):  # structural guarantee: the true key is not in here
            if isinstance(getattr(self, f.name), Key):
                raise TypeError(f"AttackContext.{f.name}: an attack context never holds a key")
        if not isinstance(self.machinery, Machinery):
            raise TypeError("AttackContext.machinery must be a Machinery (a key's settings without its prompt)")
        if getattr(self.model, "is_sealed", False):  # attacks measure the lock, never the seal's noise
            raise ModelLockError("an attack context needs the opened weights (LockedModel.open(key)), not a sealed "
                                 "model")
        self.task = self.task or task_for(self.model.config)
        self.budget = budget_named(self.budget)
        self.samples = int(self.samples or self.budget.samples)
        self.fractions = tuple(float(f) for f in self.fractions)
        for f in self.fractions:
            if not 0.0 < f <= 1.0:
                raise ModelLockError(f"attack fractions must be in (0, 1], not {f!r}")
        if self.lr is None:
            self.lr = float((self.model.config.get("training") or {}).get("lr") or 1e-3)
        if self.work_dir is not None:
            self.work_dir = Path(self.work_dir)

    # ------------------------------------------------------------------ data
    @property
    def num_classes(self) -> int:
        return int(self.model.config["num_classes"])

    @property
    def num_outputs(self) -> int:
        return len(self.model.config["classes"])

    @property
    def test(self) -> Split:
        return self.source.split(self.test_split)

    @property
    def train_data(self) -> Split:
        return self.source.split(self.train_split)

    @property
    def screen_split(self) -> Split:
        """A class-balanced subset of the test split for screening many candidates."""
        return self.test.subset(self.screen, self.seed)

    def attacker_split(self, fraction: float) -> Split:
        """The attacker's clean labelled images: a class-balanced ``fraction`` of the training split."""
        train = self.train_data
        n = len(train) if fraction >= 1.0 else max(1, int(round(fraction * len(train))))
        return train.subset(n, self.seed)

    def images(self, split: Split) -> list[np.ndarray]:
        """The split's images as uint8 arrays, kept in memory while they fit in 1 GiB."""
        ident = (split.name, _digest([s.id for s in split.samples]))
        if ident in self._cache:
            return self._cache[ident]
        images = [split.load(s) for s in split.samples]
        if sum(a.nbytes for a in images) + self._cache.get("_bytes", 0) <= _IMAGE_CACHE_BYTES:
            self._cache[ident] = images
            self._cache["_bytes"] = self._cache.get("_bytes", 0) + sum(a.nbytes for a in images)
        return images

    def targets(self, split: Split):
        """Labels (a tensor) or masks (a list of tensors) of ``split``, kept in memory."""
        ident = ("targets", split.name, _digest([s.id for s in split.samples]))
        if ident not in self._cache:
            self._cache[ident] = self.task.targets(split)
        return self._cache[ident]

    # ------------------------------------------------------------------ predictions and scores
    def outputs(self, split: Split, key: Key | None = None, fn: Callable | None = None, model=None) -> torch.Tensor:
        """Outputs on ``split``: of the locked model on images edited with ``key`` (through the edit cache; in
        memory for an editor that edits in the training loop, whose edit costs less than its cache's key
        derivation and PNG files), or of ``model`` (default: the locked model) on the images, passed through
        ``fn`` when given."""
        if key is not None and not _edits_in_loop(key):
            return split_logits(self.model, split, key, self.source, batch_size=self.batch_size, device=self.device,
                                progress=False)
        images = self.images(split)
        if key is not None:  # an editor cheap enough for a training loop: editing again costs less than the cache
            images = get_editor(resolve_key(key, self.model.model, self.model.image_size), device=self.device) \
                .edit(images)
        if fn is not None:
            images = fn(images)
        data = ImageListDataset([lambda a=a: a for a in images], self.model.inference_transform())
        return predict_logits(model if model is not None else self.model.model, data, self.batch_size)

    def score(self, outputs: torch.Tensor, split: Split | None = None, ignore_locked: bool = True) -> float:
        """The task's score on ``split`` (default: test); a locked output is ignored (the thief sees its name)
        unless ``ignore_locked`` is False (then its answers count as wrong)."""
        split = split or self.test
        return self.task.score(outputs, self.targets(split), self.num_classes, ignore_locked,
                               self.model.ignore_index)

    def task_chance(self, split: Split | None = None) -> float:
        """The score of always answering the most frequent class on ``split`` (default: test)."""
        return self.task.chance(self.targets(split or self.test), self.num_classes, self.model.ignore_index)

    def clean_outputs(self) -> torch.Tensor:
        if "clean" not in self._cache:
            self._cache["clean"] = self.outputs(self.test)
        return self._cache["clean"]

    # ------------------------------------------------------------------ sweeps
    def sweep(self, candidates: list[Candidate], desc: str) -> dict:
        """Screen every candidate, score the ``top_k`` best on the whole test split; see the module docstring."""
        screen, test = self.screen_split, self.test
        whole = len(screen) < len(test)
        rows, failed = [], []
        for i, c in enumerate(tqdm(candidates, desc=desc, unit="setting", disable=not self.progress,
                                   dynamic_ncols=True)):
            try:
                s = self.score(self.outputs(screen, key=c.key, fn=c.fn), screen)
            except ModelLockError as e:
                failed.append({"name": c.name, **c.info, "error": str(e)})
                continue
            rows.append({"name": c.name, **c.info, "screen_score": s, "_i": i})
        rows.sort(key=lambda r: -r["screen_score"])
        for r in rows:
            if not whole:
                r["score"] = r["screen_score"]
        for r in rows[: self.top_k] if whole else []:
            c = candidates[r["_i"]]
            r["score"] = self.score(self.outputs(test, key=c.key, fn=c.fn), test)
        for r in rows:
            del r["_i"]
        scored = [r for r in rows if "score" in r]
        best = max(scored, key=lambda r: r["score"]) if scored else None
        return {
            "best": best["score"] if best else None,
            "best_setting": best["name"] if best else None,
            "evaluated": len(rows),
            "failed": failed,
            "screen_size": len(screen),
            "n_test": len(test),
            "distribution": distribution([r["screen_score"] for r in rows]),
            "candidates": rows,
        }

    # ------------------------------------------------------------------ attacker training
    def train(self, model: torch.nn.Module, split: Split | Dataset, desc: str, lr: float | None = None,
              outputs: int | None = None, optimizer: str = "adamw", loss_fn: Callable | None = None,
              samples: int | None = None) -> torch.nn.Module:
        """Train ``model`` on ``split``'s clean images (or on a Dataset of ``(input, target)`` pairs) for
        ``samples`` draws (default: the budget's); the loss sees the first ``outputs`` outputs (default: all).
        Trainable parameters are those with ``requires_grad``."""
        if isinstance(split, Split):
            pairs = self.task.training_pairs(self.images(split), self.targets(split), self.model.transform(train=True))
        else:
            pairs = split
        length = max(samples or self.samples, len(pairs))
        config = TrainConfig(epochs=1, batch_size=min(self.train_batch_size, len(pairs)), lr=lr or self.lr,
                             optimizer=optimizer, warmup_epochs=0.05, num_workers=0, seed=self.seed,
                             weight_decay=0.05 if optimizer == "adamw" else 5e-4, mixed_precision=self.mixed_precision)
        ignore = self.model.ignore_index
        base = loss_fn or (lambda out, t: self.task.train_loss(out, t, ignore))
        loss = base if outputs is None else (lambda out, t: base(out[:, :outputs], t))
        return fit(model, _Repeat(pairs, length), config, loss_fn=loss, desc=desc, progress=self.progress)

    def memo(self, kind: str, params: dict, compute: Callable[[], dict]) -> dict:
        """``compute()``, or its stored value from an earlier run with the same model, data and settings."""
        if self.work_dir is None:
            return compute()
        ident = {
            "kind": kind, "v": 2, **params,
            "weights": self.model.config.get("weights_sha256"), "source": self.source.source_id,
            "train": _digest([s.id for s in self.train_data.samples]),
            "test": _digest([s.id for s in self.test.samples]),
            "seed": self.seed, "samples": self.samples, "lr": self.lr, "batch": self.train_batch_size,
            **({"precision": resolve_precision(self.mixed_precision)} if self.mixed_precision != "no" else {}),
        }
        path = self.work_dir / f"{kind}-{_digest(ident)}.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())["value"]
            except (OSError, ValueError, KeyError):
                pass  # unreadable: compute again and overwrite
        value = compute()

        write_bytes_atomic(json.dumps({"ident": ident, "value": value}, indent=1).encode(), path)
        return value


def _edits_in_loop(key: Key) -> bool:
    try:
        return editor_class(key.editor).edits_in_loop
    except ModelLockError:  # an unknown editor: the edit cache path names it
        return False


def percent(fraction: float) -> str:
    """0.05 -> '5%'."""
    return f"{fraction * 100:g}%"


def distribution(values: list[float]) -> dict:
    """Summary statistics of scores (empty dict for none)."""
    if not values:
        return {}
    a = np.asarray(values, dtype=float)
    q = np.percentile(a, [10, 25, 50, 75, 90])
    return {"n": int(a.size), "min": float(a.min()), "p10": float(q[0]), "p25": float(q[1]), "median": float(q[2]),
            "mean": float(a.mean()), "p75": float(q[3]), "p90": float(q[4]), "max": float(a.max())}
