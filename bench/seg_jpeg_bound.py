"""How far JPEG q75 can go at 32 px (or ``--image-size``) without a lock: the segmentation demo's original model
trained on JPEG.

The demo's data (shapes, 1,500 / 300 images, 32x32) and original-model recipe (``small-segnet``,
SEGMENTATION_DEMO_TRAIN), trained three ways, no key anywhere: ``clean`` (the demo's original), ``mixed``
(each training image twice: as it is and re-encoded as JPEG at a random quality 60-95, the quality range of
the lock's RandomHandling, same mask; ``train_baseline`` takes no handling, so the set is built on disk) and
``q75`` (every training image as JPEG q75 only). Each is scored as bench/seg_handling.py scores the original
(``original_under_handling``, plus JPEG q90) and on the clean test split. One JSON per seed and variant under
OUT, then a markdown table; reruns reuse finished runs (another ``--epochs`` or ``--model``: another OUT).

Also scored under JPEG q75 without chroma subsampling ("q75 4:4:4": Pillow's default at q75 halves the colour
resolution, 4:2:0), to tell the colour detail JPEG removes from the rest. ``--model wide-segnet`` (registered
here: the small U-Net at twice the widths, about 4x the parameters) asks whether a larger model keeps more.

    python bench/seg_jpeg_bound.py --seeds 0,1 --out bench-output/seg-jpeg-bound
    python bench/seg_jpeg_bound.py --seeds 0,1 --epochs 30 --out bench-output/seg-jpeg-bound-e30
    python bench/seg_jpeg_bound.py --seeds 0 --image-size 64 --variants clean,mixed --out bench-output/seg-jpeg-bound-64
    python bench/seg_jpeg_bound.py --seeds 0 --variants mixed --model wide-segnet --out bench-output/seg-jpeg-bound-wide
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from seg_handling import add_jpeg_handling, original_under_handling  # noqa: E402 (bench/ is on sys.path as a script)

VARIANTS = ("clean", "mixed", "q75")


def register_wide_segnet() -> None:
    """``wide-segnet``: small-segnet's U-Net at twice its widths (a bench model, registered as a user would)."""
    from modellock.tasks.segmentation.models import SEGMENTERS, UNet, register_segmenter

    if "wide-segnet" not in SEGMENTERS:
        register_segmenter("wide-segnet")(lambda num_classes, image_size=32, pretrained=False, **kw:
                                          UNet(num_classes, widths=(32, 64, 96, 160), **kw))


def jpeg_copy(clean: Path, out: Path, variant: str, seed: int) -> Path:
    """A shapes folder whose train split is ``variant``'s (the JPEG pixels stored as PNG), test linked to ``clean``'s."""
    from PIL import Image

    from modellock.data.handling import jpeg

    done = out / ".complete"
    if done.exists():
        return out
    rng = np.random.default_rng(seed)
    for d in ("images", "masks"):
        (out / "train" / d).mkdir(parents=True, exist_ok=True)
    for f in sorted((clean / "train" / "images").glob("*.png")):
        image, mask = np.asarray(Image.open(f).convert("RGB")), (clean / "train" / "masks" / f.name).read_bytes()
        copies = [(f.stem, jpeg(image, 75))] if variant == "q75" else [
            (f.stem, image), (f.stem + "j", jpeg(image, int(rng.integers(60, 96))))]
        for stem, pixels in copies:
            Image.fromarray(pixels).save(out / "train" / "images" / f"{stem}.png")
            (out / "train" / "masks" / f"{stem}.png").write_bytes(mask)
    (out / "classes.txt").write_bytes((clean / "classes.txt").read_bytes())
    if not (out / "test").exists():
        (out / "test").symlink_to((clean / "test").resolve(), target_is_directory=True)
    done.write_text(variant)
    return out


def run(args, seed: int, variant: str) -> dict:
    import torch

    from modellock.data import open_source
    from modellock.data.synthetic import make_shapes_segmentation_dataset
    from modellock.lock import train_baseline
    from modellock.tasks import task_type
    from modellock.train import TrainConfig
    from modellock.workflows.demo import SEGMENTATION_DEMO_TRAIN

    out = Path(args.out) / f"seed{seed}" / variant
    if (out / "result.json").exists():
        return json.loads((out / "result.json").read_text())
    torch.set_num_threads(1)
    add_jpeg_handling("jpeg q90", "jpeg q75 4:4:4")
    register_wide_segnet()
    data = make_shapes_segmentation_dataset(Path(args.out) / "shapes", args.n_train, args.n_test, size=args.image_size)
    if variant != "clean":
        data = jpeg_copy(data, Path(args.out) / f"shapes-{variant}-seed{seed}", variant, seed)
    source = open_source(str(data))
    train = TrainConfig(**{**SEGMENTATION_DEMO_TRAIN, "seed": seed, "epochs": args.epochs,
                           "batch_size": args.batch_size})
    t = time.time()
    model = train_baseline(source, args.model, out / "model", train, args.image_size, overwrite=True)
    train_s = round(time.time() - t)
    test = source.split("test")
    clean = task_type("segmentation").evaluate_split(model, test, [lambda s=s: test.load(s) for s in test.samples],
                                                     64, False)["score"]
    result = {"seed": seed, "variant": variant, "image_size": args.image_size, "model": args.model,
              "parameters": sum(p.numel() for p in model.model.parameters()),
              "n_train": len(source.split("train").samples), "clean": clean,
              "handled": original_under_handling(model, test, 64), "train_s": train_s, "train": train.to_dict()}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


def table(results: list[dict]) -> str:
    lines = ["| seed | model (parameters) | training data (images) | epochs | clean mIoU | JPEG q75 mIoU (drop) "
             "| JPEG q75 4:4:4 (drop) | JPEG q90 (drop) | train time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        c, h = r["clean"], r["handled"]
        cells = [f"{h[k]:.4f} ({100 * (c - h[k]):+.1f})" if k in h else "-"
                 for k in ("jpeg q75", "jpeg q75 4:4:4", "jpeg q90")]
        model = f"{r.get('model', 'small-segnet')} ({r['parameters']:,})" if "parameters" in r else "small-segnet"
        lines.append(f"| {r['seed']} | {model} | {r['variant']} ({r['n_train']}) | {r['train']['epochs']} | {c:.4f} | "
                     + " | ".join(cells) + f" | {r['train_s']} s |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--n-train", type=int, default=1500)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=32, help="the shapes' side in pixels (the demo's: 32)")
    p.add_argument("--model", default="small-segnet",
                   help="a segmenter name (the demo's: small-segnet; or wide-segnet)")
    p.add_argument("--out", default="bench-output/seg-jpeg-bound")
    args = p.parse_args()
    results = [run(args, int(s), v) for s in args.seeds.split(",") for v in args.variants.split(",")]
    print(table(results))


if __name__ == "__main__":
    main()
