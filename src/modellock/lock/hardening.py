"""Hardened locking: a simulated thief in the training loop.

A thief who knows the method holds the locked weights and a little clean labelled data; the attack suite
measures what they get. Each lever here trains against one of the thief's moves, with the owner's own clean
training images standing in for the thief's data:

- ``adversary`` (adversarial decoys, against learned input adapters / JailNTL-style disguise networks):
  every ``adversary_every`` steps an input adapter (a small conv adapter, a narrow U-Net, or the key
  editor's own parameter family from a random key, in turn; each restarted now and then) takes
  ``adversary_steps`` steps to make the *current* model answer clean images right; its outputs then join
  each batch (``adversary`` of it) trained toward the locked answer. Outputs that come within
  ``KEY_DISTANCE`` of the key's own edit are left out: they are the key, not a disguise.
- ``simulated_thief`` (SOPHON-style, first order, against fine-tuning): every ``thief_every`` steps a copy
  of the model with a fresh head is fine-tuned for ``thief_steps`` steps on clean labelled batches with an
  optimizer and learning rate drawn from the attack grid; the gradient of its inverse cross-entropy
  (``-log(1 - p_true)``: small when the fine-tuned copy is wrong) at the fine-tuned weights is added to the
  model's gradient, weighted by ``simulated_thief``: the lock moves toward weights that fine-tuning does
  not turn into a good start.
- ``separation`` (NTL-style, against feature reuse: linear probes, head-only fine-tuning): the features
  (the head's input) of images trained toward the locked answer are pulled together, relative to the spread
  of the key-edited images' features: clean inputs give the head nothing to read.

Each lever costs training time; ``docs/benchmarks.md`` measures what each buys.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from ..nets.adapters import InputAdapter, PixelSpace, UNetAdapter
from ..nets.heads import head_names, with_fresh_head
from ..tasks.segmentation.loss import LOCKED, LOCKED_SPREAD
from ..utils.fields import Count, Fraction, NonNegative, Positive, check_fields
from ..utils.images import IMAGENET_MEAN, IMAGENET_STD

KEY_DISTANCE = 2.0 / 255  # mean absolute pixel difference under which an adapter's output is the key's edit
ADAPTER_RESTART = 8  # adapter updates before an adapter starts afresh (diverse disguises)
# `modellock lock --harden`: every lever on, at the weights measured in docs/benchmarks.md ("keyed-net+all")
HARDEN_PRESET = {"adversary": 0.25, "simulated_thief": 1.0, "separation": 0.1}


@dataclass
class HardenSettings:
    """The levers and their weights (0 = off); see the module docstring. A lock recipe's ``harden``; each field's
    type and range is checked when made (``modellock.utils.fields``), as the recipe's."""

    adversary: Fraction = 0.0  # a share of each batch
    adversary_every: Count = 20
    adversary_steps: Count = 5
    adversary_lr: Positive = 3e-3  # not a recipe setting (YAML, flags, config.json): kept at its default there
    simulated_thief: Annotated[NonNegative, Field(le=10.0)] = 0.0
    thief_every: Count = 10
    thief_steps: Count = 5
    separation: Annotated[NonNegative, Field(le=10.0)] = 0.0

    def __post_init__(self):
        check_fields(self, "recipe")

    @property
    def active(self) -> bool:
        return bool(self.adversary or self.simulated_thief or self.separation)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ThiefBatches:
    """An endless stream of clean labelled training batches (the owner's stand-in for the thief's data)."""

    def __init__(self, dataset, batch_size: int, seed: int):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self._it = None
        self._epoch = itertools.count()

    def next(self, device):
        while True:
            if self._it is None:
                g = torch.Generator().manual_seed(self.seed * 1000 + next(self._epoch))
                loader = torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True,
                                                     drop_last=len(self.dataset) > self.batch_size, generator=g)
                self._it = iter(loader)
            try:
                x, y = next(self._it)
                return x.to(device), y.to(device)
            except StopIteration:
                self._it = None


class LockHardening:
    """The ``hooks`` of :func:`modellock.train.fit` that put the simulated thief in the loop."""

    def __init__(self, settings: HardenSettings, num_classes: int, thief: ThiefBatches, task, key_view=None,
                 locked_target=None, adapters=None, thief_grid=None, seed: int = 0, ignore_index: int = 255,
                 pixel_std=(0.229, 0.224, 0.225)):
        """``key_view(x)``: the key's edit of normalised clean inputs (to leave the key's own edit out of the
        adversarial decoys; None skips that check). ``locked_target(y)``: the lock targets of clean inputs with
        true targets ``y`` (the recipe's locked answer). ``adapters``: zero-argument factories of input adapters
        (normalised images in and out). ``thief_grid``: ``(optimizer, lr)`` pairs of the simulated thief.
        ``pixel_std``: the normalisation's std, to measure distances in pixels."""
        self.s, self.num_classes, self.thief, self.task = settings, num_classes, thief, task
        self.key_view, self.locked_target = key_view, locked_target
        self.adapter_factories = list(adapters or [])
        self.thief_grid = list(thief_grid or [("adamw", 1e-3)])
        self.rng = torch.Generator().manual_seed(seed)
        self.ignore_index = ignore_index
        self._adapters: list = [None] * len(self.adapter_factories)
        self._opts: list = [None] * len(self.adapter_factories)
        self._updates = 0
        self._features = None
        self._hook = None
        self._current = None
        self._std = torch.tensor(pixel_std, dtype=torch.float32).view(1, 3, 1, 1)
        self._pending = None  # thief gradients to add after the next backward
        self.stats = {"adversary_updates": 0, "adversarial_decoys": 0, "decoys_like_the_key": 0,
                      "thief_rounds": 0, "thief_loss": [], "adapter_loss": []}

    # ------------------------------------------------------------------ helpers
    def _unwrap(self, model):
        return getattr(model, "module", model)

    def _feature_hook(self, model):
        if self._hook is None:
            net = self._unwrap(model)
            head = net.get_submodule(head_names(net, self.num_classes + 1)[0])
            self._hook = head.register_forward_hook(lambda m, inp, out: setattr(self, "_features", inp[0]))

    def _real(self, outputs):
        return outputs[:, : self.num_classes]

    # ------------------------------------------------------------------ adversarial decoys
    def _adapter_round(self, model, device):
        i = self._updates % len(self.adapter_factories)
        if self._adapters[i] is None or (self._updates // len(self.adapter_factories)) % ADAPTER_RESTART == 0:
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=self.rng)))
            self._adapters[i] = self.adapter_factories[i]().to(device)
            self._opts[i] = torch.optim.Adam(self._adapters[i].parameters(), lr=self.s.adversary_lr)
        adapter, opt = self._adapters[i], self._opts[i]
        net = self._unwrap(model)
        was = net.training
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        try:
            for _ in range(self.s.adversary_steps):
                x, y = self.thief.next(device)
                loss = self.task.train_loss(self._real(net(adapter(x))), y, self.ignore_index)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            self.stats["adapter_loss"].append(round(float(loss.detach()), 4))
        finally:
            for p in net.parameters():
                p.requires_grad_(True)
            net.train(was)
        self._updates += 1
        self.stats["adversary_updates"] += 1
        return adapter

    def on_batch(self, model, inputs, targets, step):
        if not self.s.adversary or not self.adapter_factories:
            return inputs, targets
        device = inputs.device
        if step % self.s.adversary_every == 0 or self._current is None:
            self._current = self._adapter_round(model, device)
        n = max(1, round(self.s.adversary * inputs.shape[0]))
        x, y = self.thief.next(device)
        x, y = x[:n], y[:n]
        with torch.no_grad():
            fake = self._current(x)
            keep = torch.ones(len(fake), dtype=torch.bool, device=device)
            if self.key_view is not None:
                pixels = (fake - self.key_view(x)).abs() * self._std.to(device)
                keep = pixels.flatten(1).mean(1) > KEY_DISTANCE
        self.stats["decoys_like_the_key"] += int((~keep).sum())
        if not keep.any():
            return inputs, targets
        self.stats["adversarial_decoys"] += int(keep.sum())
        return _cat(inputs, fake[keep]), _cat_targets(targets, self.locked_target(y[keep]))

    # ------------------------------------------------------------------ feature separation
    def extra_loss(self, model, inputs, targets, outputs):
        if not self.s.separation:
            return outputs.new_zeros(())
        self._feature_hook(model)
        feats = self._features
        if feats is None:
            return outputs.new_zeros(())
        locked = _locked_rows(targets, self.num_classes)
        if locked is None or locked.all() or not locked.any():
            return outputs.new_zeros(())
        f = feats.flatten(2).mean(2) if feats.dim() > 2 else feats
        a, b = f[locked], f[~locked]
        spread_locked = (a - a.mean(0)).pow(2).sum(1).mean()
        spread_key = (b - b.mean(0)).pow(2).sum(1).mean().detach()
        return self.s.separation * spread_locked / (spread_key + 1e-6)

    # ------------------------------------------------------------------ simulated fine-tuning thief
    def after_backward(self, model, step):
        if not self.s.simulated_thief or step % self.s.thief_every:
            return

        net = self._unwrap(model)
        device = next(net.parameters()).device
        outputs = self.num_classes + 1 if _has_locked_output(net, self.num_classes) else self.num_classes
        copy_ = with_fresh_head(net, outputs, self.num_classes).train()
        optimizer, lr = self.thief_grid[int(torch.randint(0, len(self.thief_grid), (1,), generator=self.rng))]
        params = [p for p in copy_.parameters()]
        opt = (torch.optim.SGD(params, lr=lr, momentum=0.9) if optimizer == "sgd"
               else torch.optim.AdamW(params, lr=lr, weight_decay=0.05))
        for _ in range(self.s.thief_steps):
            x, y = self.thief.next(device)
            loss = self.task.train_loss(copy_(x), y, self.ignore_index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        x, y = self.thief.next(device)
        out = copy_(x)
        p_true = _true_probability(out, y, self.ignore_index)
        inverse_ce = -torch.log((1 - p_true).clamp_min(1e-6)).mean()
        names = dict(copy_.named_parameters())
        own = dict(net.named_parameters())
        shared = [n for n in names if n in own and names[n].shape == own[n].shape]
        grads = torch.autograd.grad(inverse_ce, [names[n] for n in shared], allow_unused=True)
        with torch.no_grad():
            for n, g in zip(shared, grads):
                if g is not None and own[n].grad is not None and math.isfinite(float(g.abs().sum())):
                    own[n].grad.add_(g, alpha=self.s.simulated_thief)
        self.stats["thief_rounds"] += 1
        self.stats["thief_loss"].append(round(float(inverse_ce.detach()), 4))

    def close(self):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def summary(self) -> dict:
        out = {k: v for k, v in self.stats.items() if not isinstance(v, list)}
        for k in ("thief_loss", "adapter_loss"):
            if self.stats[k]:
                out[f"{k}_last"] = self.stats[k][-1]
        return out


def _has_locked_output(net, num_classes) -> bool:
    try:
        head_names(net, num_classes + 1)
        return True
    except Exception:  # noqa: BLE001 - no layer with num_classes + 1 outputs
        return False


def _true_probability(outputs, targets, ignore_index):
    """p(true class) per item (classification) or per labelled pixel (segmentation)."""
    p = outputs.float().softmax(1)
    if targets.dim() == 1:
        return p.gather(1, targets[:, None])[:, 0]
    valid = targets != ignore_index
    t = torch.where(valid, targets, torch.zeros_like(targets))
    return p.gather(1, t[:, None])[:, 0][valid]


def _locked_rows(targets, num_classes):
    """Rows trained toward the locked answer (classification targets with mass on the locked output;
    segmentation (mask, mode) pairs with a locked mode)."""
    if isinstance(targets, (list, tuple)):
        return targets[1] != 0
    if targets.dim() == 2 and targets.shape[1] > num_classes:
        return targets[:, num_classes] > 0
    return None


def _cat(a, b):
    return torch.cat([a, b.to(a.dtype)])


def _cat_targets(targets, extra):
    if isinstance(targets, (list, tuple)):
        return type(targets)(torch.cat([t, e.to(t.device)]) for t, e in zip(targets, extra))
    return torch.cat([targets, extra.to(targets.device, targets.dtype)])


class CleanPairs(torch.utils.data.Dataset):
    """Clean training images with their true targets, through the training transform (read lazily)."""

    def __init__(self, split, transform, segmentation: bool):
        self.split, self.transform, self.segmentation = split, transform, segmentation

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, i):
        s = self.split.samples[i]
        if self.segmentation:
            return self.transform(self.split.load(s), self.split.load_mask(s))
        return self.transform(self.split.load(s)), s.label


def _locked_targets(recipe, num_classes: int, segmentation: bool):
    """``y -> `` what clean inputs with true targets ``y`` are trained toward under ``recipe``."""
    if segmentation:
        mode = LOCKED if recipe.clean_target == "locked-class" else LOCKED_SPREAD
        return lambda y: (y, torch.full((len(y),), mode, dtype=torch.long))
    k = recipe.num_outputs(num_classes)

    def targets(y):
        t = torch.zeros(len(y), k)
        if recipe.clean_target == "locked-class":
            t[:, num_classes] = 1.0
        elif recipe.clean_target == "wrong-label":
            wrong = (y + torch.randint(1, max(num_classes, 2), y.shape)) % num_classes
            t[torch.arange(len(y)), wrong] = 1.0
        else:  # locked-spread
            t[:, :num_classes] = (1.0 - recipe.locked_weight) / max(num_classes - 1, 1)
            t[torch.arange(len(y)), y] = 0.0
            t[:, num_classes] = recipe.locked_weight
        return t

    return targets


def build_hardening(recipe, task, split, image_size: int, num_classes: int, train, key_editor=None,
                    ignore_index: int = 255, mean=None, std=None) -> LockHardening:
    """The hooks of a hardened lock: the thief's data (the training split's clean images with true targets),
    the adapters it learns (small, narrow U-Net, the key editor's family from random keys), the fine-tuning
    grid it samples (the attack grid's optimizers and learning-rate multiples around the lock's)."""
    mean, std = mean or IMAGENET_MEAN, std or IMAGENET_STD
    seg = task.per_pixel
    settings = recipe.harden
    thief = ThiefBatches(CleanPairs(split, task.transform(image_size, True, True, mean, std, ignore_index), seg),
                         max(8, train.batch_size // 2), recipe.seed)
    adapters = [lambda: InputAdapter(16), lambda: UNetAdapter((16, 32, 64))]
    key_view = None
    if key_editor is not None:
        family_of = type(key_editor).attack_family
        probe = key_editor.key.replace(prompt="random start")
        if family_of(probe) is not None:
            counter = itertools.count()
            adapters.append(lambda: PixelSpace(family_of(key_editor.key.replace(
                prompt=f"random start {recipe.seed}.{next(counter)}")), mean, std))
        key_view = _key_view(key_editor, mean, std)
    grid = [("sgd", train.lr * f) for f in (1.0, 10.0, 100.0)] + [("adamw", train.lr * f) for f in (0.1, 1.0, 10.0)]
    return LockHardening(settings, num_classes, thief, task, key_view=key_view,
                         locked_target=_locked_targets(recipe, num_classes, seg), adapters=adapters,
                         thief_grid=grid, seed=recipe.seed, ignore_index=ignore_index, pixel_std=std)


def _key_view(editor, mean, std):
    """Normalised inputs -> their key edit, normalised (through uint8, as the editor works)."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)

    def view(x):
        pixels = ((x.cpu() * s + m).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        edited = torch.from_numpy(np.stack(editor.edit(list(pixels)))).permute(0, 3, 1, 2)
        return ((edited.float() / 255 - m) / s).to(x.device)

    return view
