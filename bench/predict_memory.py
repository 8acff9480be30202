"""Peak memory and time of ``modellock predict`` on one image: a 4000x4000 photo against a 32x32 one.

Each measurement is one ``modellock predict`` process (the command a user runs), its peak resident set
size read with ``os.wait4``. The 32x32 run is the floor (Python, torch and the model); the large runs
show what one big image adds on top. Models: a tiny keyed-filter lock at 32 px (the demo's input size)
and at 224 px (a typical fine-tuning size); weights do not matter here, so each trains one epoch.

    OMP_NUM_THREADS=1 python bench/predict_memory.py                   # this checkout
    OMP_NUM_THREADS=1 python bench/predict_memory.py --src OLD/src     # another source tree, e.g. before a change
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=ROOT / "src", help="source tree to measure (default: this checkout)")
    p.add_argument("--side", type=int, default=4000, help="side of the large test images (default 4000)")
    p.add_argument("--sizes", default="32,224", help="model input sizes (default 32,224)")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


def build(folder: Path, image_size: int) -> tuple[Path, Path]:
    """A tiny lock of the shapes dataset at ``image_size`` (this checkout's code builds it)."""
    from modellock.data import make_shapes_dataset, open_source
    from modellock.errors import DataWarning
    from modellock.keys import Key
    from modellock.lock import lock_model
    from modellock.lock.lock_set import LockRecipe
    from modellock.train import TrainConfig

    warnings.simplefilter("ignore", DataWarning)  # the 224 model upscales the 32-pixel shapes: meant here
    data = make_shapes_dataset(folder / "data", 20, 10)
    key = Key.create("keyed-filter", "with oil pastel")
    key.save(folder / "key.toml")
    lock_model(key, open_source(data), "tiny-cnn", folder / f"locked-{image_size}",
               LockRecipe(decoy_fraction=0.0), TrainConfig(epochs=1, batch_size=8, num_workers=0),
               image_size=image_size, progress=False, overwrite=True)
    return folder / f"locked-{image_size}", folder / "key.toml"


def images(folder: Path, side: int) -> dict[str, Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)).resize((side, side))
    out = {f"{side}x{side} JPEG": folder / "big.jpg", f"{side}x{side} PNG": folder / "big.png",
           "32x32 PNG": folder / "small.png"}
    photo.save(out[f"{side}x{side} JPEG"], quality=90)
    photo.save(out[f"{side}x{side} PNG"])
    photo.resize((32, 32)).save(out["32x32 PNG"])
    return out


def measure(src: Path, model: Path, key: Path, image: Path) -> dict:
    """Peak RSS (MiB) and wall time of one ``modellock predict`` process."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "modellock", "predict", "--model", str(model), "--key", str(key),
                             str(image)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    out = proc.stdout.read().decode().strip()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"predict failed on {image}: {proc.stderr.read().decode()[-2000:]}")
    return {"peak_mib": usage.ru_maxrss / 1024, "seconds": seconds, "answer": out.split("\t")[1:]}


def main(argv=None) -> None:
    args = parse_args(argv)
    results = {"src": str(args.src), "python": platform.python_version(), "machine": platform.machine(),
               "cpus": os.cpu_count(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("MODELLOCK_CACHE", str(tmp / "cache"))
        files = images(tmp, args.side)
        print(f"{'model input':>11}  {'image':<16} {'peak MiB':>9} {'over 32x32':>10} {'seconds':>8}")
        for size in (int(s) for s in args.sizes.split(",")):
            model, key = build(tmp, size)
            floor = None
            for name in reversed(list(files)):  # the 32x32 floor first
                r = measure(args.src, model, key, files[name])
                floor = r["peak_mib"] if floor is None else floor
                results["runs"].append({"image_size": size, "image": name, **r, "over_floor_mib": r["peak_mib"] - floor})
                print(f"{size:>11}  {name:<16} {r['peak_mib']:9.0f} {r['peak_mib'] - floor:10.0f} {r['seconds']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
