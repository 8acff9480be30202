"""Editing a folder: the sequential loop against the pipelined one (reader workers, writer processes).

``sequential`` is the edit stage as it was before issue 13: read, hash, edit and write PNGs one batch after
the other in one process (``num_workers=0, writers=0``). ``pipelined``: ``--workers`` data-loader worker
processes read and hash the sources, the main process edits, as many writer processes encode and write
the PNGs, so the three overlap (default: the edit stage's default, at least 1). Both write the same folder (checked byte for byte). The runs alternate
(sequential, pipelined, sequential, ...) and the median of ``--repeats`` is kept, so that a load that comes
and goes on a shared machine hits both alike.

    python bench/edit_pipeline.py                              # 4,000 JPEGs of 32x32, keyed-filter
    python bench/edit_pipeline.py --size 256 --n 500           # ImageNet-like sizes
    python bench/edit_pipeline.py --editor tiny-pix2pix --size 64 --n 64
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_description  # noqa: E402

PROMPT = "turn it into an oil pastel drawing"  # a benchmark prompt, not anybody's key


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4000, help="source images (default 4000)")
    p.add_argument("--size", type=int, default=32, help="side of the source images in pixels (default 32)")
    p.add_argument("--editor", choices=("keyed-filter", "tiny-pix2pix", "full-size-pix2pix"), default="keyed-filter")
    p.add_argument("--batch-size", type=int, default=None, help="editor batch (default: the edit stage's)")
    p.add_argument("--workers", type=int, default=None, help="readers and writers of the pipelined run "
                   "(default: the edit stage's default, at least 1)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each mode, alternating (default 3)")
    p.add_argument("--device", default=None)
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    args = p.parse_args(argv)
    for name in ("n", "size", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    return args


def make_sources(root: Path, n: int, size: int) -> Path:
    """``n`` JPEG pictures in an ImageFolder of 10 classes (a photo dataset's format and decode cost)."""
    from PIL import Image

    from modellock.testing import sample_images

    for i in range(0, n, 500):
        for j, image in enumerate(sample_images(min(500, n - i), (size, size), seed=i)):
            path = root / "train" / f"class{(i + j) % 10}" / f"{i + j:07d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, quality=90)
    return root


def make_key(editor: str, size: int, workdir: Path):
    from modellock.keys import Key

    if editor == "keyed-filter":
        return Key.create("keyed-filter", PROMPT)
    from modellock.testing import build_full_size_pix2pix, build_tiny_pix2pix

    builder = build_tiny_pix2pix if editor == "tiny-pix2pix" else build_full_size_pix2pix
    model = builder(workdir / "pipeline")
    return Key.create("instruct-pix2pix", PROMPT, model=str(model), resolution=size, steps=5)


def run(split, key, editor, out: Path, batch_size, workers: int | None, sequential: bool) -> float:
    """Seconds to edit ``split`` into a fresh ``out``."""
    from modellock.edit import edit_split

    shutil.rmtree(out, ignore_errors=True)
    options = dict(num_workers=0, writers=0) if sequential else dict(num_workers=workers, writers=workers)
    start = time.perf_counter()
    edit_split(key, split, out, editor=editor, batch_size=batch_size, progress=False, **options)
    return time.perf_counter() - start


def same_images(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    return names == sorted(p.relative_to(b) for p in b.rglob("*.png")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from modellock.utils import distributed
    from modellock.data import open_source
    from modellock.edit import default_workers
    from modellock.editors import get_editor

    distributed.state()  # import and set up accelerate before the clock starts
    workers = max(1, default_workers()) if args.workers is None else args.workers
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="modellock-bench-") as tmp:
        tmp = Path(tmp)
        source = open_source(make_sources(tmp / "src", args.n, args.size))
        split = source.split("train")
        key = make_key(args.editor, args.size, tmp)
        editor = get_editor(key, device=args.device, batch_size=args.batch_size)
        editor.edit([split.load(split.samples[0])])  # warm-up (loads a pipeline)
        times = {"sequential": [], "pipelined": []}
        for _ in range(args.repeats):
            for mode in times:
                times[mode].append(run(split, key, editor, tmp / mode, args.batch_size, workers,
                                       mode == "sequential"))
        identical = same_images(tmp / "sequential", tmp / "pipelined")
    result = {
        "editor": args.editor, "n": args.n, "size": args.size, "source_format": "jpeg",
        "batch_size": args.batch_size or min(editor.batch_size, 256), "readers": workers, "writers": workers,
        "machine": machine_description(str(getattr(editor, "device", "cpu"))),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "repeats": args.repeats,
        "seconds": times,
        "images_per_s": {m: args.n / statistics.median(t) for m, t in times.items()},
        "identical_output": identical,
        "command": "python bench/edit_pipeline.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    result["speedup"] = result["images_per_s"]["pipelined"] / result["images_per_s"]["sequential"]
    print_table(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_table(r: dict) -> None:
    print(f"{r['n']} JPEG images {r['size']}x{r['size']}, editor {r['editor']}, batch {r['batch_size']}; "
          f"machine: {r['machine']}; load average {r['load_average_before'][0]} -> {r['load_average_after'][0]}")
    print(f"median of {r['repeats']} alternating runs\n")
    print("| edit stage | seconds (each run) | images/s (median) |")
    print("|---|---|---|")
    names = {"sequential": "sequential (one process: read, edit, write in turn)",
             "pipelined": f"pipelined ({r['readers']} reader + {r['writers']} writer processes)"}
    for mode, name in names.items():
        runs = ", ".join(f"{t:.2f}" for t in r["seconds"][mode])
        print(f"| {name} | {runs} | {r['images_per_s'][mode]:.0f} |")
    print(f"\nspeed-up: {r['speedup']:.2f}x; same PNGs byte for byte: {r['identical_output']}")


if __name__ == "__main__":
    main()
