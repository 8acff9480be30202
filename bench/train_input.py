"""How many training images one CPU core decodes and augments per second: what feeds a GPU during a lock.

The lock reads every image from disk (edited PNGs from the edit cache, clean ones from the source) and
applies the training transform (``classification_transforms(224, train=True)``: RandomResizedCrop, flip,
normalise). This times that per image in one process (one core, one torch thread), for PNG and JPEG files
of ImageNet's mean size (``--size``, default 469x387; generated pictures, so the decode cost is that of
the size, not of real photos' content). docs/scaling.md divides a GPU's training rate by it: the cores a
GPU needs.

    python bench/train_input.py [--n 200] [--size 469x387]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--size", default="469x387", help="WIDTHxHEIGHT of the files (default 469x387)")
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    import torch
    from PIL import Image

    from modellock.utils.images import load_image
    from modellock.testing import sample_images
    from modellock.tasks.classification.transforms import classification_transforms

    torch.set_num_threads(1)
    width, height = (int(v) for v in args.size.split("x"))
    transform = classification_transforms(224, train=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="modellock-bench-") as tmp:
        images = sample_images(args.n, (height, width))
        for fmt, options in (("png", {}), ("jpeg", {"quality": 90})):
            files = []
            for i, image in enumerate(images):
                files.append(Path(tmp) / f"{i}.{fmt}")
                Image.fromarray(image).save(files[-1], **options)
            for f in files[:10]:  # warm-up (page cache, first calls)
                transform(load_image(f))
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                for f in files:
                    transform(load_image(f))
                best = min(best, time.perf_counter() - start)
            rows.append({"format": fmt, "size": args.size, "images_per_s_per_core": args.n / best,
                         "bytes_per_file": sum(f.stat().st_size for f in files) / len(files)})
    from _common import machine_description, write_result

    result = {"machine": machine_description("cpu"), "rows": rows,
              "command": "python bench/train_input.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    print(f"machine: {result['machine']}\n")
    print("| files | decode + RandomResizedCrop 224 + flip + normalise, images/s per core |")
    print("|---|---|")
    for r in rows:
        print(f"| {r['format'].upper()} {r['size']} | {r['images_per_s_per_core']:.0f} |")
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
