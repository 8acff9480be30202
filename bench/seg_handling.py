"""Segmentation under ordinary handling: original vs unlocked vs unlocked under each handling, per seed.

Runs the segmentation demo's steps without its attack (train the original, lock it by fine-tuning, evaluate
with ``handling=True``), and scores the original model under the same handlings (no key) for reference.
``--data shapes`` builds the demo's shapes (1,500 / 300 images, 32x32); ``--data DIR`` is a segmentation
folder (e.g. CamVid extracted from ../shared/data/camvid-seg.tar.gz). One JSON per seed under OUT, then a
markdown table; reruns reuse finished steps.

    python bench/seg_handling.py --seeds 0,1 --out bench-output/seg-handling
    python bench/seg_handling.py --data /tmp/camvid/camvid --image-size 64 --epochs 40 --lock-epochs 20 \
        --seeds 0,1 --out bench-output/seg-handling-camvid

``--models-from OLD_OUT --jpeg-444`` scores an earlier run's original and locked models again, without training,
with JPEG q75 without chroma subsampling (4:4:4) among the handlings.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path


RECIPE_SHARES = {"probability": "handling_share", "jpeg_probability": "handling_jpeg"}
# JPEG handlings scored on request besides the evaluation's own (Pillow save options; 4:4:4: colour not subsampled)
EXTRA_JPEG = {"jpeg q90": dict(quality=90), "jpeg q75 4:4:4": dict(quality=75, subsampling=0)}


def add_jpeg_handling(*names: str) -> None:
    """Score ``names`` (of EXTRA_JPEG) too, as JPEG q75 is scored (the whole mask)."""
    from modellock.data import handling

    for name in names:
        handling.HANDLING[name] = lambda a, save=EXTRA_JPEG[name]: handling.jpeg(a, **save)


def original_under_handling(baseline, data, batch_size: int) -> dict:
    """The original model's mIoU on each handled clean test image (scored as ``evaluate`` scores the unlocked)."""
    from modellock.data import handling
    from modellock.tasks import task_type

    task = task_type("segmentation")
    joint = "handling" in inspect.signature(task.evaluate_split).parameters
    out = {}
    for name, handle in handling.HANDLING.items():
        if not joint and name.startswith("crop"):
            continue  # the code before issue 20 scores no cropped image (no handled masks)
        loaders = [lambda s=s: handle(data.load(s)) for s in data.samples]
        kw = {"handling": name} if joint else {}
        out[name] = task.evaluate_split(baseline, data, loaders, batch_size, False, **kw)["score"]
    return out


def run_seed(args, seed: int) -> dict:
    import torch

    from modellock.data import open_source
    from modellock.data.synthetic import make_shapes_segmentation_dataset
    from modellock.workflows.demo import DEMO_PROMPT, SEGMENTATION_DEMO_TRAIN
    from modellock.evaluation.matrix import default_wrong_keys, evaluate
    from modellock.keys import Key
    from modellock.lock import lock_model, train_baseline
    from modellock.lock.lock_set import LockRecipe
    from modellock.train import TrainConfig

    out = Path(args.out) / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    if (out / "result.json").exists():
        return json.loads((out / "result.json").read_text())
    torch.set_num_threads(1)
    if args.jpeg_444:
        add_jpeg_handling("jpeg q75 4:4:4")
    data = args.data
    image_size = args.image_size or 32
    if data == "shapes":  # drawn at the model's input size
        data = make_shapes_segmentation_dataset(Path(args.out) / "shapes", args.n_train, args.n_test, size=image_size)
    source = open_source(data)
    settings = {**SEGMENTATION_DEMO_TRAIN, "seed": seed, "batch_size": args.batch_size,
                **({"mixed_precision": args.mixed_precision} if args.mixed_precision else {})}
    train = TrainConfig(**{**settings, "epochs": args.epochs})
    lock_train = TrainConfig(**{**settings, "epochs": args.lock_epochs, **json.loads(args.lock_train)})
    # --handling names RandomHandling's settings; the recipe carries them as handling_share / handling_jpeg
    shares = {RECIPE_SHARES[k]: v for k, v in json.loads(args.handling).items()}
    recipe = LockRecipe(seed=seed, **{**shares, **json.loads(args.recipe)})
    key = Key.create("keyed-filter", DEMO_PROMPT)
    times = {}
    t = time.time()
    from modellock.model_folder import LockedModel

    earlier = args.original_from or args.models_from  # the same seed's original from an earlier run
    if earlier:
        baseline = LockedModel.from_pretrained(Path(earlier) / f"seed{seed}" / "original")
    else:
        baseline = train_baseline(source, "small-segnet", out / "original", train, image_size, overwrite=True)
    times["original_s"] = round(time.time() - t)
    t = time.time()
    if args.models_from:  # its lock time is the earlier run's
        run = Path(args.models_from) / f"seed{seed}"
        locked = LockedModel.from_pretrained(run / "locked", key=key)
        times["lock_s"] = json.loads((run / "result.json").read_text())["times"]["lock_s"]
    else:
        locked = lock_model(key, source, "small-segnet", out / "locked", recipe, lock_train, image_size,
                            baseline.path / "model.safetensors", edits_dir=out / "edits", overwrite=True,
                            progress=False)
        times["lock_s"] = round(time.time() - t)
    t = time.time()
    test = args.test_split
    result = evaluate(locked, key, source, test, baseline, default_wrong_keys(key), batch_size=64, progress=False,
                      handling=True)
    result["original_under_handling"] = original_under_handling(baseline, source.split(test), 64)
    times["eval_s"] = round(time.time() - t)
    result.update(seed=seed, times=times, recipe=recipe.to_dict(), train=train.to_dict(),
                  lock_train=lock_train.to_dict(), data=str(args.data), image_size=image_size,
                  handling=json.loads(args.handling))
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


def table(results: list[dict]) -> str:
    names = list(results[0]["unlocked_under_handling"])
    head = ["seed", "original", "unlocked (gap)"] + [f"{n}: unlocked (drop) / original" for n in names] + [
        "locked", "wrong keys (max)", "lock time"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        u, o = r["unlocked"], r["original_clean"]
        cells = [str(r["seed"]), f"{o:.4f}", f"{u:.4f} ({100 * (o - u):+.1f})"]
        for n in names:
            h = r["unlocked_under_handling"][n]
            orig = r.get("original_under_handling", {}).get(n)
            cells.append(f"{h:.4f} ({100 * (u - h):+.1f}) / " + (f"{orig:.4f}" if orig is not None else "-"))
        cells += [f"{r['locked_clean']:.4f}", f"{max(r['wrong_keys'].values()):.4f}", f"{r['times']['lock_s']} s"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="shapes")
    p.add_argument("--test-split", default="test")
    p.add_argument("--n-train", type=int, default=1500)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--image-size", type=int, default=None,
                   help="the model's input side (default 32; the built-in shapes are drawn at it)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lock-epochs", type=int, default=80, help="the segmentation demo's (SEGMENTATION_DEMO_LOCK_EPOCHS)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--mixed-precision", help="no, bf16 or auto (default: the segmentation demo's, auto; the runs "
                   "in docs/benchmarks.md before 2026-12-03 were float32: no)")
    p.add_argument("--lock-train", default="{}", help="TrainConfig fields of the lock as JSON, e.g. '{\"lr\": 1e-3}'")
    p.add_argument("--recipe", default="{}", help="LockRecipe fields as JSON, e.g. '{\"handling\": false}'")
    p.add_argument("--handling", default="{}", help="the lock's handling shares as JSON: probability (the recipe's "
                   "handling_share), jpeg_probability (handling_jpeg), e.g. '{\"jpeg_probability\": 1.0}'")
    p.add_argument("--original-from", help="an earlier OUT whose seedN/original models to reuse")
    p.add_argument("--models-from", help="an earlier OUT whose seedN/locked (and, without --original-from, "
                   "seedN/original) models to score again (no training; the same --data, --image-size and test split)")
    p.add_argument("--jpeg-444", action="store_true", help="also score under JPEG q75 without chroma subsampling")
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", default="bench-output/seg-handling")
    args = p.parse_args()
    unknown = sorted(set(json.loads(args.handling)) - set(RECIPE_SHARES))
    if unknown:
        p.error(f"--handling: unknown setting {unknown[0]!r} (known: {', '.join(RECIPE_SHARES)})")
    results = [run_seed(args, int(s)) for s in args.seeds.split(",")]
    print(table(results))


if __name__ == "__main__":
    main()
