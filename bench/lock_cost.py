"""What each lock variant costs in training time, side by side in one run, as a ratio to the default lock.

    OMP_NUM_THREADS=1 python bench/lock_cost.py [--data ../shared/data/cifar10-jpeg.tar.gz] [--train-limit 2000]
        [--epochs 2] [--variants default,cache,keyed-net,harden,keyed-net+harden]

Every variant locks the same images (class-balanced subset) with ``small-cnn`` for the same epochs through
``lock_model``; the wall time of each lock is printed with its ratio to ``default`` (keyed-filter, edits in the
training loop, sealed). ``cache`` goes through the edit cache (emptied first, so its editing is counted).
The issue's bound: a hardened lock takes at most 3x the default lock's time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from modellock.data import open_source
from modellock.lock.hardening import HARDEN_PRESET
from modellock.keys import Key
from modellock.lock import lock_model
from modellock.lock.lock_set import LockRecipe
from modellock.train import TrainConfig

from lock_levers import PROMPT  # noqa: E402  (bench/ is on the path when run as a script: the same key prompt)
VARIANTS = {  # name -> (editor, recipe settings)
    "default": ("keyed-filter", {}),
    "cache": ("keyed-filter", {"online": False}),
    "keyed-net": ("keyed-net", {}),
    "harden": ("keyed-filter", dict(HARDEN_PRESET)),
    "keyed-net+harden": ("keyed-net", dict(HARDEN_PRESET)),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    p.add_argument("--train-limit", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    source = open_source(args.data)
    source.limit("train", args.train_limit)
    train = TrainConfig(epochs=args.epochs, num_workers=0)
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MODELLOCK_CACHE"] = str(Path(tmp) / "cache")
        for name in names:
            editor, settings = VARIANTS[name]
            shutil.rmtree(Path(tmp) / "cache", ignore_errors=True)
            key = Key.create(editor, PROMPT)
            start = time.perf_counter()
            lock_model(key, source, "small-cnn", Path(tmp) / name, LockRecipe.from_dict(settings), train,
                       progress=False)
            times[name] = time.perf_counter() - start
            print(f"{name}: {times[name]:.1f} s", flush=True)
    base = times.get("default")
    print(f"\n{args.train_limit} images, {args.epochs} epochs, small-cnn, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}\n")
    print("| variant | lock time | vs default |\n| --- | --- | --- |")
    for name, t in times.items():
        print(f"| {name} | {t:.1f} s | {t / base:.2f}x |" if base else f"| {name} | {t:.1f} s | - |")


if __name__ == "__main__":
    main()
