"""Disk taken by the edit cache per image and per pixel, on real photos (the shared CIFAR-10 and CamVid archives).

Edits are lossless PNGs at each source image's own size, so their size follows the photos' entropy: this
script edits real photos with the CPU key editor (``keyed-filter``, alpha 0.5) and reports PNG bytes per image
and per pixel next to the source files'. docs/scaling.md scales bytes per pixel to ImageNet-sized images.

    python bench/edit_cache_disk.py [--data ../shared/data] [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVES = {"cifar10-jpeg.tar.gz": ("cifar10/test/", "JPEG 32x32"), "camvid-seg.tar.gz": ("camvid/test/images/",
                                                                                         "PNG 128x96")}


def extract(archive: Path, prefix: str, n: int, dest: Path) -> Path:
    """The first ``n`` images under ``prefix`` as one flat class folder (``dest/all/x/<file>``)."""
    folder = dest / archive.name.split(".")[0] / "all" / "x"
    folder.mkdir(parents=True)
    taken = 0
    with tarfile.open(archive) as tar:
        for member in tar:
            if taken < n and member.isfile() and member.name.startswith(prefix):
                (folder / f"{taken:05d}{Path(member.name).suffix}").write_bytes(tar.extractfile(member).read())
                taken += 1
    return folder.parent.parent


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder of the shared archives")
    p.add_argument("--n", type=int, default=1000, help="images per archive (default 1000)")
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    from PIL import Image

    from modellock.data import open_source
    from modellock.edit import edit_split
    from modellock.keys import Key

    key = Key.create("keyed-filter", "turn it into an oil pastel drawing")
    rows = []
    with tempfile.TemporaryDirectory(prefix="modellock-bench-") as tmp:
        for name, (prefix, kind) in ARCHIVES.items():
            archive = Path(args.data) / name
            if not archive.exists():
                sys.exit(f"error: {archive}: not found (give --data)")
            src = extract(archive, prefix, args.n, Path(tmp))
            split = open_source(src).split("all")
            out = Path(tmp) / f"edits-{name}"
            edit_split(key, split, out, progress=False)
            sources = [s.path for s in split.samples]
            pixels = sum(w * h for w, h in (Image.open(f).size for f in sources))
            src_bytes = sum(f.stat().st_size for f in sources)
            png_bytes = sum(f.stat().st_size for f in out.rglob("*.png"))
            rows.append({"archive": name, "sources": kind, "images": len(sources), "pixels": pixels,
                         "source_bytes_per_image": src_bytes / len(sources),
                         "edit_png_bytes_per_image": png_bytes / len(sources),
                         "edit_png_bytes_per_pixel": png_bytes / pixels,
                         "manifest_bytes_per_image": (out / "all" / "manifest.jsonl").stat().st_size / len(sources)})
    result = {"rows": rows, "editor": "keyed-filter",
              "command": "python bench/edit_cache_disk.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    print("| photos | images | source bytes/image | edit PNG bytes/image | edit PNG bytes/pixel | manifest bytes/image |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['archive']} ({r['sources']}) | {r['images']} | {r['source_bytes_per_image']:.0f} | "
              f"{r['edit_png_bytes_per_image']:.0f} | {r['edit_png_bytes_per_pixel']:.2f} | "
              f"{r['manifest_bytes_per_image']:.0f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
