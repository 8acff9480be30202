"""The CPU key editors side by side: images per second edited in one call (batched) and one at a time.

    OMP_NUM_THREADS=1 python bench/cpu_editors.py [--n 4096] [--size 32] [--repeats 3]

Random images (the editors' cost does not depend on content); each figure is the best of ``--repeats``
runs after one warm-up call; the key's scrypt derivation is timed apart (it runs once per editor).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import torch  # noqa: F401  (imported before timing: the first editor would pay for it)

from modellock.editors import get_editor
from modellock.keys import Key

EDITORS = ("keyed-filter", "keyed-net")


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--single", type=int, default=256, help="images edited one call each")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.n)]
    print("| editor | key setup (s) | batched images/s | one image a call, images/s |")
    print("|---|---|---|---|")
    for name in EDITORS:
        key = Key.create(name, "a prompt for the benchmark")
        t = time.perf_counter()
        editor = get_editor(key)
        setup = time.perf_counter() - t
        editor.edit(images[:64])
        batched = args.n / best(lambda: editor.edit(images), args.repeats)
        single = args.single / best(lambda: [editor.edit([a]) for a in images[:args.single]], args.repeats)
        print(f"| {name} | {setup:.3f} | {batched:.0f} | {single:.0f} |")


if __name__ == "__main__":
    main()
