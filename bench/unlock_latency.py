"""What unlocking costs at inference: a locked model's predictor with the key against plain inference.

For each case a real locked model folder is made (``lock_model``, 1 epoch on a few generated images: the
weights do not matter for speed) and loaded back; then, on the same inputs in one run:

- ``plain``: ``LockedModel.predictor()`` (no key: preprocessing + model, the cost of any classifier);
- ``unlocked``: ``LockedModel.unlock(key)`` (the key's edit of every input, then the same).

Latency is the median of ``--repeats`` calls with one image; throughput is images per second of calls
with ``--batch`` images (the best of ``--repeats`` / 4, at least 3). Plain and unlocked calls take turns. The ratio unlocked / plain is the price of the lock
(target in issue 13: <= 1.5x with the CPU key editor).

Cases: ``small-cnn`` at 32 px on 32x32 inputs (CIFAR-like), ``resnet18`` (timm, random init) at 224 px on
256x256 inputs (photo-like), both with ``keyed-filter``; and ``small-cnn`` with the tiny random
InstructPix2Pix pipeline (5 steps at 32x32: the diffusion editor's cost, not a real model's).

    python bench/unlock_latency.py
    python bench/unlock_latency.py --cases small-cnn/keyed-filter --repeats 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_description, write_result  # noqa: E402

PROMPT = "turn it into an oil pastel drawing"  # a benchmark prompt, not anybody's key
# case: (backbone, model input size, input image side, editor)
CASES = {
    "small-cnn/keyed-filter": ("small-cnn", 32, 32, "keyed-filter"),
    "resnet18/keyed-filter": ("resnet18", 224, 256, "keyed-filter"),
    "small-cnn/tiny-pix2pix": ("small-cnn", 32, 32, "tiny-pix2pix"),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    p.add_argument("--batch", type=int, default=64, help="images per call for throughput (default 64)")
    p.add_argument("--repeats", type=int, default=40, help="one-image calls per measurement (default 40)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steady on a shared machine)")
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}")
    if args.batch < 1 or args.repeats < 1 or args.threads < 1:
        p.error("--batch, --repeats and --threads must be >= 1")
    return args


def make_locked(case: str, workdir: Path):
    """A locked model folder for ``case`` (1 epoch on 40 generated images), loaded back, and its key."""
    from modellock.data import open_source
    from modellock.data.synthetic import make_shapes_dataset
    from modellock.keys import Key
    from modellock.lock import lock_model
    from modellock.lock.lock_set import LockRecipe
    from modellock.model_folder import LockedModel
    from modellock.testing import build_tiny_pix2pix
    from modellock.train import TrainConfig

    backbone, image_size, side, editor = CASES[case]
    data = workdir / f"shapes-{side}"
    if not data.exists():
        make_shapes_dataset(data, 40, 10, size=side)
    if editor == "keyed-filter":
        key = Key.create("keyed-filter", PROMPT)
    else:
        pipeline = workdir / "tiny-pix2pix"
        if not pipeline.exists():
            build_tiny_pix2pix(pipeline)
        key = Key.create("instruct-pix2pix", PROMPT, model=str(pipeline), resolution=side, steps=5)
    out = workdir / case.replace("/", "-")
    lock_model(key, open_source(data), backbone, out, LockRecipe(decoy_fraction=0.0),
               TrainConfig(epochs=1, batch_size=16, num_workers=0), image_size=image_size, device="cpu",
               progress=False)
    return LockedModel.from_pretrained(out, device="cpu"), key, side


def measure(predictors: dict, images: list, batch: int, repeats: int) -> dict:
    """Per predictor: median one-image latency (ms) and best batched throughput (images/s) of ``predict``.
    The predictors take turns call by call, so that a load that comes and goes hits them alike."""
    for p in predictors.values():  # warm-up
        p.predict(images[:1])
        p.predict(images[:batch])
    one = {name: [] for name in predictors}
    many = {name: [] for name in predictors}
    for i in range(repeats):
        for name, p in predictors.items():
            start = time.perf_counter()
            p.predict(images[i % len(images): i % len(images) + 1])
            one[name].append(time.perf_counter() - start)
    for _ in range(max(3, repeats // 4)):
        for name, p in predictors.items():
            start = time.perf_counter()
            p.predict(images[:batch])
            many[name].append(time.perf_counter() - start)
    return {name: {"latency_ms": 1e3 * statistics.median(one[name]), "images_per_s": batch / min(many[name])}
            for name in predictors}


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from modellock.testing import sample_images

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="modellock-bench-") as tmp:
        os.environ["MODELLOCK_CACHE"] = str(Path(tmp) / "cache")
        for case in args.cases.split(","):
            model, key, side = make_locked(case, Path(tmp))
            images = sample_images(max(args.batch, args.repeats), (side, side), seed=1)
            both = measure({"plain": model.predictor(), "unlocked": model.unlock(key)}, images, args.batch,
                           args.repeats)
            plain, unlocked = both["plain"], both["unlocked"]
            rows.append({"case": case, "input": f"{side}x{side}", "model_input": CASES[case][1], "plain": plain,
                         "unlocked": unlocked,
                         "latency_ratio": unlocked["latency_ms"] / plain["latency_ms"],
                         "throughput_ratio": plain["images_per_s"] / unlocked["images_per_s"]})
    result = {"machine": machine_description("cpu"), "threads": args.threads, "batch": args.batch,
              "repeats": args.repeats, "rows": rows,
              "command": "python bench/unlock_latency.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    print(f"machine: {result['machine']}; batch {args.batch}, {args.repeats} repeats\n")
    print("| model / editor | input | plain: 1 image ms | unlocked: 1 image ms | ratio | "
          f"plain: img/s (batch {args.batch}) | unlocked: img/s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['input']} | {r['plain']['latency_ms']:.2f} | {r['unlocked']['latency_ms']:.2f} | "
              f"{r['latency_ratio']:.2f}x | {r['plain']['images_per_s']:.0f} | {r['unlocked']['images_per_s']:.1f} | "
              f"{r['throughput_ratio']:.2f}x |")
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
