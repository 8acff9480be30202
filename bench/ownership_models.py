"""The models of the ownership benchmark (issue 18): the owner's, the independent negatives, the positives.

    python bench/ownership_models.py --task classification --out bench-output/ownership-cifar
    python bench/ownership_models.py --task segmentation --out bench-output/ownership-seg

Stage ``base`` writes the data, the key, the owner's original and locked model folders and the held-out
independent models (the negatives: other seeds, other architectures, other data, another party's lock of
the same architecture with its own key). Stage ``positives`` makes every positive from the *opened* locked model, as a thief
who reads the running weights would (fine-tuned at 1/5/10 %, input adapters, pruned, int8, distilled
through ``modellock serve`` with labels or probabilities, transferred to other classes). Every model is
written once (``model.safetensors`` + ``config.json``) and reused when rerun. ``bench/ownership.py`` builds
the evidence and verifies them all.
"""

from __future__ import annotations

import argparse
import os
import tarfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CIFAR = Path(os.environ.get("MODELLOCK_SHARED_DATA", ROOT.parent / "shared" / "data")) / "cifar10-jpeg.tar.gz"
PROMPT = "as a linocut, with hints of velvet orchard lantern quiet"  # composed, outside the attack catalogue
OTHER_PROMPT = "in watercolour, with hints of copper meadow signal calm"  # another party's key
OTHER_LOCK = "other-key-lock"  # a negative: the owner's recipe, locked by another party with its own key

# the owner's recipe, per task
OWNER = {
    "classification": dict(model="small-cnn", image_size=32, epochs=15, lr=1e-3, batch_size=128, lock_from_original=False,
                           lock_epochs=15),
    "segmentation": dict(model="small-segnet", image_size=32, epochs=15, lr=3e-3, batch_size=32, lock_from_original=True,
                         lock_epochs=20),  # the segmentation demo's settings
}
# held-out negatives: name -> (architecture, seed, split, optimizer, lr factor, epochs factor)
NEGATIVES = {
    "classification": {  # small-cnn 8 epochs (the owner's 15 did not fit the shared CPU), resnet10t 6, tiny 15
        "small-s1": ("small-cnn", 1, "train", "adamw", 1.0, 0.53),
        "small-s2": ("small-cnn", 2, "train", "adamw", 1.0, 0.53),
        "small-s3": ("small-cnn", 3, "train", "adamw", 1.0, 0.53),
        "small-sgd": ("small-cnn", 5, "train", "sgd", 30.0, 0.53),
        "tiny-s1": ("tiny-cnn", 1, "train", "adamw", 3.0, 1.0),
        "tiny-s2": ("tiny-cnn", 2, "train", "adamw", 3.0, 1.0),
        "tiny-s3": ("tiny-cnn", 3, "train", "adamw", 3.0, 1.0),
        "resnet10t": ("timm:resnet10t", 1, "train", "adamw", 1.0, 0.4),
        "other-data-small": ("small-cnn", 7, "other", "adamw", 1.0, 0.53),
        "other-data-tiny": ("tiny-cnn", 8, "other", "adamw", 3.0, 1.0),
    },
    "segmentation": {
        "small-s1": ("small-segnet", 1, "train", "adamw", 1.0, 1.0),
        "small-s2": ("small-segnet", 2, "train", "adamw", 1.0, 1.0),
        "small-s3": ("small-segnet", 3, "train", "adamw", 1.0, 1.0),
        "small-s4": ("small-segnet", 4, "train", "adamw", 1.0, 1.0),
        "small-sgd": ("small-segnet", 5, "train", "sgd", 10.0, 1.0),
        "small-long": ("small-segnet", 6, "train", "adamw", 1.0, 2.0),
        "tiny-s1": ("tiny-segnet", 1, "train", "adamw", 1.0, 1.0),
        "tiny-s2": ("tiny-segnet", 2, "train", "adamw", 1.0, 1.0),
        "other-data-small": ("small-segnet", 7, "other", "adamw", 1.0, 1.0),
        "other-data-tiny": ("tiny-segnet", 8, "other", "adamw", 1.0, 1.0),
    },
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------- data
def cifar_data(out: Path, per_class: int = 500, test_per_class: int = 100) -> Path:
    """CIFAR-10 from the shared archive: ``train`` (the owner's, ``per_class`` a class), ``other`` (the next
    ``per_class``, disjoint: another party's data) and ``test``."""
    root = out / "data"
    done = root / ".complete"
    stamp = f"{per_class},{test_per_class}"
    if done.exists() and done.read_text() == stamp:
        return root
    counts: dict[tuple[str, str], int] = {}
    with tarfile.open(CIFAR) as tar:
        for m in tar:
            parts = Path(m.name).parts  # cifar10/<split>/<class>/<file>
            if not m.isfile() or len(parts) != 4:
                continue
            k = (parts[1], parts[2])
            n = counts.get(k, 0)
            if parts[1] == "train" and n < 2 * per_class:
                split = "train" if n < per_class else "other"
            elif parts[1] == "test" and n < test_per_class:
                split = "test"
            else:
                continue
            counts[k] = n + 1
            dest = root / split / parts[2] / parts[3]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(tar.extractfile(m).read())
    done.write_text(stamp)
    return root


def segmentation_data(out: Path) -> Path:
    """The segmentation demo's data (1,500 / 300 shapes with masks, seed 0) and another party's (seed 1) as
    the ``other`` split."""
    from modellock.data.synthetic import make_shapes_segmentation_dataset

    root = out / "data"
    make_shapes_segmentation_dataset(root, 1500, 300, size=32, seed=0)
    other = make_shapes_segmentation_dataset(out / "data-other", 1500, 1, size=32, seed=1)
    link = root / "other"
    if not link.exists():
        link.symlink_to((other / "train").resolve())
    return root


def open_data(task: str, out: Path):
    from modellock.data import open_source

    root = cifar_data(out) if task == "classification" else segmentation_data(out)
    return open_source(root)


def key_for(out: Path):
    from modellock.keys import Key

    path = out / "key.toml"
    if not path.exists():
        Key.create("keyed-filter", PROMPT).save(path)
    return Key.load(path)


# ----------------------------------------------------------------------------------------------- base models
def train_config(task: str, seed: int = 0, optimizer: str = "adamw", lr_factor: float = 1.0,
                 epochs_factor: float = 1.0, epochs: int | None = None):
    from modellock.train import TrainConfig

    o = OWNER[task]
    return TrainConfig(epochs=epochs or max(1, round(o["epochs"] * epochs_factor)), batch_size=o["batch_size"],
                       lr=o["lr"] * lr_factor, optimizer=optimizer, seed=seed, num_workers=0,
                       warmup_epochs=0.5 if task == "segmentation" else 1.0,
                       weight_decay=5e-4 if optimizer == "sgd" else 0.05)


def base(task: str, out: Path, negatives: list[str] | None = None) -> None:
    from modellock.lock import lock_model, train_baseline
    from modellock.lock.lock_set import LockRecipe

    source = open_data(task, out)
    key = key_for(out)
    o = OWNER[task]
    if not (out / "original" / "model.safetensors").exists():
        t = time.time()
        train_baseline(source, o["model"], out / "original", train_config(task), image_size=o["image_size"],
                       overwrite=True)
        log(f"original: {time.time() - t:.0f} s")
    if not any((out / "locked" / f).exists() for f in ("model.safetensors", "model.sealed")):  # sealed by default
        t = time.time()
        pretrained = out / "original" / "model.safetensors" if o["lock_from_original"] else None
        lock_model(key, source, o["model"], out / "locked", LockRecipe(),
                   train_config(task, epochs=o["lock_epochs"]), image_size=o["image_size"], pretrained=pretrained,
                   progress=False, overwrite=True)
        log(f"locked: {time.time() - t:.0f} s")
    for name, (arch, seed, split, optimizer, lr_factor, epochs_factor) in NEGATIVES[task].items():
        if negatives is not None and name not in negatives:
            continue
        folder = out / "negatives" / name
        if (folder / "model.safetensors").exists():
            continue
        t = time.time()
        train_baseline(source, arch, folder, train_config(task, seed, optimizer, lr_factor, epochs_factor),
                       image_size=o["image_size"], split=split, overwrite=True)
        log(f"negative {name}: {time.time() - t:.0f} s")
    if negatives is None or OTHER_LOCK in negatives:
        other_lock(task, out, source)


def other_lock(task: str, out: Path, source) -> None:
    """Another party's lock: the owner's architecture and recipe, its own key (classification: locked from scratch;
    segmentation: from the independent ``small-s1``, as the owner locks from its own original), saved opened (its
    locked output kept), as a thief of *that* model would hold it. Neither key's edit means anything to the other."""
    from ownership_positives import save_plain

    from modellock.keys import Key
    from modellock.lock import lock_model
    from modellock.lock.lock_set import LockRecipe

    folder = out / "negatives" / OTHER_LOCK
    if (folder / "model.safetensors").exists():
        return
    o = OWNER[task]
    pretrained = None
    if o["lock_from_original"]:
        base(task, out, ["small-s1"])
        pretrained = out / "negatives" / "small-s1" / "model.safetensors"
    t = time.time()
    key = Key.create("keyed-filter", OTHER_PROMPT)
    locked = lock_model(key, source, o["model"], out / "work" / OTHER_LOCK, LockRecipe(),
                        train_config(task, seed=11, epochs=o["lock_epochs"]), image_size=o["image_size"],
                        pretrained=pretrained, progress=False, overwrite=True)
    opened = locked.open(key)
    save_plain(opened.model, opened.config, folder, info={"negative": "another party's lock, its own key"})
    log(f"negative {OTHER_LOCK}: {time.time() - t:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=("classification", "segmentation"), default="classification")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--stage", choices=("base", "positives", "all"), default="all")
    p.add_argument("--families", nargs="*", default=None, help="positives: only these families (default: all)")
    p.add_argument("--negatives", nargs="*", default=None,
                   choices=sorted({n for v in NEGATIVES.values() for n in v} | {OTHER_LOCK}),
                   help="base: only these held-out negatives (default: all)")
    a = p.parse_args()
    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.stage in ("base", "all"):
        base(a.task, a.out, a.negatives)
    if a.stage in ("positives", "all"):
        from ownership_positives import FAMILIES, positives  # noqa: E402 (bench/ is on sys.path as a script)

        positives(a.task, a.out, a.families or FAMILIES)


if __name__ == "__main__":
    main()
