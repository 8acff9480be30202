"""Task-agnostic training on Hugging Face ``accelerate``; one process on a CPU, many GPUs via ``accelerate launch``.

``fit(model, dataset, config, loss_fn, work_dir)`` trains on a Dataset of ``(input CxHxW float, target)`` pairs
that are already augmented (augmentation belongs to the dataset, so segmentation can move image and mask
together). Each finished epoch is checkpointed into ``work_dir/checkpoints/epoch-NNNN`` (written to a temporary
folder, then renamed; with a ``sealer``, the model and optimizer states sealed from memory, see ``modellock.keys.seal``);
a rerun resumes from the latest complete checkpoint. The shuffling order and every random
draw of epoch ``e`` are seeded by ``(seed, e)`` (and the rank), so a run interrupted and resumed ends with the same weights as
one run straight through. Launched with several processes (``accelerate launch``, ``torchrun``), each trains on
its own block of every global batch, gradients are averaged (DDP), and only the main process writes.

Also here: ``predict_logits`` (inference over a Dataset, sharded across processes by ``predict_logits_shared``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from safetensors.torch import load, save
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .errors import ModelLockError
from .keys.seal import read_sealed, write_sealed
from .utils import distributed
from .utils.fields import Count, Fraction, NonNegative, NonNegativeInt, Positive, check_fields
from .utils.progress import plural, stage_bar
from .utils.workers import quiet_workers

log = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^epoch-(\d{4,})$")
STATE_FILE = "trainer_state.json"


@dataclass
class TrainConfig:
    """Fine-tuning settings; ``grad_clip`` 0 means off, ``warmup_epochs`` may be fractional. Each field's type
    and range is checked (``modellock.utils.fields``) when a config is made, and checks a YAML ``--config`` and flags."""

    epochs: Count = 10
    batch_size: Count = 128
    lr: Positive = 1e-3
    weight_decay: NonNegative = 0.05
    optimizer: Literal["adamw", "sgd"] = "adamw"  # sgd: momentum 0.9, nesterov
    schedule: Literal["cosine", "onecycle"] = "cosine"  # cosine: linear warmup, cosine to 0; onecycle: up from lr/25
    warmup_epochs: NonNegative = 1.0
    label_smoothing: Fraction = 0.0
    seed: NonNegativeInt = 0
    num_workers: NonNegativeInt = 2
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = "no"  # auto: see resolve_precision
    grad_clip: NonNegative = 0.0
    checkpoint_every_epochs: Count = 1
    keep_checkpoints: Count = 1

    def __post_init__(self):
        check_fields(self, "train config")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; biases and norm weights (1-d parameters) get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_at(step: int, total_steps: int, warmup_steps: int, config: TrainConfig) -> float:
    """The learning rate after ``step`` optimizer steps: a pure function of the step, so resuming needs no state."""
    if config.schedule == "onecycle":  # as torch's OneCycleLR with its defaults (cos annealing, 25, 1e4)
        up = max(1, min(warmup_steps or round(0.3 * total_steps), total_steps - 1))
        low, end = config.lr / 25, config.lr / 25e4
        if step < up:
            return low + (config.lr - low) * (1 - math.cos(math.pi * step / up)) / 2
        t = min(1.0, (step - up) / max(1, total_steps - up))
        return end + (config.lr - end) * (1 + math.cos(math.pi * t)) / 2
    if step < warmup_steps:
        return config.lr * (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return config.lr * (1 + math.cos(math.pi * t)) / 2


# ----------------------------------------------------------------------------- checkpoints


def latest_checkpoint(checkpoint_dir: Path) -> tuple[int, Path] | None:
    """``(epoch, folder)`` of the newest complete checkpoint, or None."""
    found = []
    if checkpoint_dir.is_dir():
        for d in checkpoint_dir.iterdir():
            m = _CHECKPOINT.match(d.name)
            if m and (d / STATE_FILE).is_file():
                found.append((int(m.group(1)), d))
    return max(found) if found else None


def _save_checkpoint(accelerator, checkpoint_dir: Path, epoch: int, state: dict, keep: int, sealed=None) -> None:
    """``save_state`` into a temporary folder, renamed to ``epoch-NNNN`` once complete; old ones pruned. With
    ``sealed`` (``(model, optimizer, sealer)``), the states are sealed from memory instead (``_save_sealed``)."""
    final = checkpoint_dir / f"epoch-{epoch:04d}"
    tmp = checkpoint_dir / f".epoch-{epoch:04d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    if sealed is not None:
        _save_sealed(accelerator, tmp, *sealed)
    else:
        accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        if final.exists():  # a rerun with resume=False: move the old one aside before replacing it
            old = checkpoint_dir / f".epoch-{epoch:04d}.old"
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
        kept = sorted((e for e, _ in _checkpoints(checkpoint_dir) if e <= epoch), reverse=True)[:keep]
        for e, d in _checkpoints(checkpoint_dir):
            if e not in kept:  # older than the last `keep`, or stale ones from a run that went further
                shutil.rmtree(d)
    accelerator.wait_for_everyone()


def _checkpoints(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    return [(int(m.group(1)), d) for d in checkpoint_dir.iterdir() if (m := _CHECKPOINT.match(d.name))]


def _save_sealed(accelerator, folder: Path, model, optimizer, sealer) -> None:
    """The model's and the optimizer's state (and the fp16 loss scaler's), each serialised in memory and sealed
    into ``NAME.sealed``: no plain byte of them reaches the disk. (Random states are not kept: every epoch
    reseeds from ``(seed, epoch)``.)"""
    weights = accelerator.get_state_dict(model)  # every process: collective where the model is sharded
    if not accelerator.is_main_process:
        return
    parts = {"model.safetensors": save({k: v.detach().cpu().clone().contiguous() for k, v in weights.items()}),
             "optimizer.pt": _torch_bytes(optimizer.state_dict())}
    if accelerator.scaler is not None:
        parts["scaler.pt"] = _torch_bytes(accelerator.scaler.state_dict())
    for name, data in parts.items():
        write_sealed(folder / f"{name}.sealed", data, sealer, f"checkpoint/{name}".encode())


def _load_sealed(accelerator, folder: Path, model, optimizer, sealer) -> None:
    """Open what ``_save_sealed`` wrote, in memory, into ``model`` and ``optimizer`` (each process)."""
    def read(name: str) -> bytes:
        return read_sealed(folder / f"{name}.sealed", sealer, f"checkpoint/{name}".encode())

    def tensors(name: str):
        return torch.load(io.BytesIO(read(name)), map_location="cpu", weights_only=True)

    accelerator.unwrap_model(model).load_state_dict(load(read("model.safetensors")))
    optimizer.load_state_dict(tensors("optimizer.pt"))
    if accelerator.scaler is not None and (folder / "scaler.pt.sealed").is_file():
        accelerator.scaler.load_state_dict(tensors("scaler.pt"))


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- the loop


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles), where oneDNN runs bf16 convolutions
    faster than float32; elsewhere bf16 autocast is emulated and slower."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(mixed_precision: str) -> str:
    """``auto``: bf16 where the hardware computes it natively (a GPU that supports it, or a CPU with
    ``native_cpu_bf16``: 1.9-2.4x a small CNN's training step on one core, bench/train_speed.py), else ``no``;
    any other value as it is."""
    if mixed_precision != "auto":
        return mixed_precision
    if not distributed.use_cpu():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if native_cpu_bf16() else "no"


def _accelerator(config: TrainConfig):
    """An Accelerator for ``config``; one process may switch precision between fits (accelerate keeps one state).

    Launched with several processes, every global batch of ``batch_size * processes`` images (shuffled as in
    one process) is split into one block of ``batch_size`` per process: no image is seen twice in an epoch.
    """
    precision = resolve_precision(config.mixed_precision)
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") != precision and distributed.num_processes() == 1:
        AcceleratorState._reset_state()
    try:
        return Accelerator(
            cpu=distributed.use_cpu(),  # without GPUs, a launched run forms its process group on gloo
            mixed_precision=precision,
            dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True,
                                                      data_seed=config.seed),
        )
    except ValueError as e:  # e.g. fp16 without a GPU, or another precision in a multi-process run
        raise ModelLockError(f"train config: mixed_precision {config.mixed_precision!r}: {e}") from None


def fit(
    model: nn.Module,
    train_dataset: Dataset,
    config: TrainConfig,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    work_dir: str | os.PathLike | None = None,
    resume: bool = True,
    desc: str = "train",
    progress: bool = True,
    collate_fn: Callable | None = None,
    hooks=None,
    sealer=None,
) -> nn.Module:
    """Train ``model`` in place and return it (unwrapped, in eval mode, on the accelerator's device).

    ``loss_fn(outputs, targets)`` defaults to cross-entropy with ``config.label_smoothing``. With a ``work_dir``,
    every ``checkpoint_every_epochs`` epochs (and the last) are checkpointed under ``work_dir/checkpoints``, and
    with ``resume`` a rerun continues after the latest complete one. ``collate_fn`` builds batches (e.g. editing
    them on the fly). ``hooks`` (see ``modellock.lock.hardening``) may add samples to a batch
    (``on_batch(model, inputs, targets, step)``), a loss term (``extra_loss(model, inputs, targets, outputs)``)
    and gradient (``after_backward(model, step)``): the lock's simulated thief. ``sealer`` (``modellock.keys.seal``):
    checkpoints are sealed with it (the weights and optimizer state of a sealed lock never rest on disk in plain).
    """
    if loss_fn is None:
        loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    if len(train_dataset) == 0:
        raise ModelLockError(f"{desc}: the training set is empty")
    accelerator = _accelerator(config)
    set_seed(config.seed)
    global_batch = config.batch_size * accelerator.num_processes  # split into batch_size per process
    loader = DataLoader(
        train_dataset,
        batch_size=global_batch,
        shuffle=True,
        drop_last=len(train_dataset) > global_batch,  # no size-1 last batch for BatchNorm; no image twice
        num_workers=config.num_workers,
        pin_memory=accelerator.device.type == "cuda",
        collate_fn=collate_fn,
        **quiet_workers(config.num_workers),  # Ctrl-C: the main process alone ends the run (one line, exit 130)
    )
    optimizer = build_optimizer(model, config)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = len(loader)
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)

    checkpoint_dir = Path(work_dir) / "checkpoints" if work_dir is not None else None
    start_epoch = 0
    found = latest_checkpoint(checkpoint_dir) if checkpoint_dir is not None and resume else None
    if found:
        start_epoch, folder = found
        saved = json.loads((folder / STATE_FILE).read_text())
        if start_epoch > config.epochs:
            raise ModelLockError(
                f"{folder}: already trained {start_epoch} epochs, more than epochs={config.epochs}; "
                "use another work_dir or resume=False"
            )
        changed = [k for k, v in saved.get("config", {}).items() if k not in ("epochs", "num_workers")
                   and getattr(config, k, v) != v]
        if changed:
            log.warning("%s: resuming with changed settings %s", folder, ", ".join(changed))
        if (folder / "model.safetensors.sealed").is_file():
            if sealer is None:
                raise ModelLockError(f"{folder}: a sealed checkpoint; resuming it needs the key it was sealed with")
            _load_sealed(accelerator, folder, model, optimizer, sealer)
        else:
            accelerator.load_state(str(folder))
        accelerator.print(f"{desc}: resumed after epoch {start_epoch}/{config.epochs} from {folder}")

    # one bar for the whole stage (every epoch left), so its estimate of the time left covers the stage
    bar = stage_bar(f"{desc} ({plural(config.epochs, 'epoch')})", (config.epochs - start_epoch) * steps_per_epoch,
                    unit="step", enabled=progress and accelerator.is_local_main_process)
    for epoch in range(start_epoch, config.epochs):
        # augmentation, dropout and worker seeds depend on (seed, epoch, rank) only
        set_seed(config.seed + epoch, device_specific=True)
        loader.set_epoch(epoch)  # and so does the shuffling order
        model.train()
        start, seen, loss_sum, loss_n = time.perf_counter(), 0, torch.zeros((), device=accelerator.device), 0
        for i, (inputs, targets) in enumerate(loader):
            step = epoch * steps_per_epoch + i
            lr = lr_at(step, total_steps, warmup_steps, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if hooks is not None:
                inputs, targets = hooks.on_batch(model, inputs, targets, step)
            outputs = model(inputs)
            loss = loss_fn(outputs, targets)
            if hooks is not None:
                loss = loss + hooks.extra_loss(model, inputs, targets, outputs)
            accelerator.backward(loss)
            if hooks is not None:
                hooks.after_backward(model, step)
            if config.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach().float()
            loss_n += 1
            seen += inputs.shape[0] * accelerator.num_processes
            if i % 10 == 9 or i == steps_per_epoch - 1:  # .item() waits for the device: not every step
                mean_loss = loss_sum.item() / loss_n
                if not math.isfinite(mean_loss):
                    raise ModelLockError(f"{desc}: the loss became {mean_loss} in epoch {epoch + 1}; try a lower lr")
                rate = seen / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix_str(f"epoch {epoch + 1}/{config.epochs}, loss {mean_loss:.4f}, lr {lr:.2e}, "
                                    f"{rate:.0f} img/s", refresh=False)
                loss_sum.zero_()
                loss_n = 0
            bar.update(1)
        last = epoch + 1 == config.epochs
        if checkpoint_dir is not None and ((epoch + 1) % config.checkpoint_every_epochs == 0 or last):
            state = {"epoch": epoch + 1, "global_step": (epoch + 1) * steps_per_epoch, "config": config.to_dict()}
            _save_checkpoint(accelerator, checkpoint_dir, epoch + 1, state, config.keep_checkpoints,
                             (model, optimizer, sealer) if sealer is not None else None)
    bar.close()

    model = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    return model.eval()


# ----------------------------------------------------------------------------- inference


@torch.inference_mode()
def predict_logits(model: nn.Module, data, batch_size: int = 256, num_workers: int = 0) -> torch.Tensor:
    """Model outputs (float32, on the CPU) for every item of a Dataset or DataLoader, in order.

    Items may be ``(input, target)`` pairs or bare inputs; the model runs in eval mode on its own device.
    """
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                                                                  **quiet_workers(num_workers))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs = []
    try:
        for batch in tqdm(loader, desc="predict", leave=False, disable=None):
            inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
            outputs.append(model(inputs.to(device, non_blocking=True)).float().cpu())
    finally:
        model.train(was_training)
    if not outputs:
        raise ModelLockError("predict_logits: no inputs")
    return torch.cat(outputs)


def predict_logits_shared(model: nn.Module, data: Dataset, batch_size: int = 256) -> torch.Tensor:
    """``predict_logits`` of every item of ``data``; launched with several processes, each predicts its own
    block and every process returns all the logits, in order (so every process must call it)."""
    if distributed.num_processes() == 1:
        return predict_logits(model, data, batch_size)
    mine = distributed.shard(range(len(data)))
    part = predict_logits(model, Subset(data, mine), batch_size) if mine else None
    return torch.cat([p for p in distributed.gather(part) if p is not None])
