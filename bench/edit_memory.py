"""Peak memory of editing (and locking) 1,000 vs 10,000 images: the stages stream from disk.

Each measurement runs in a fresh process (so one peak does not hide another) on the same folder of
32x32 JPEGs with the CPU key editor (``keyed-filter``):

- ``edit``: ``edit_split`` of the first N images, pipelined (one reader and one writer process);
- ``lock`` (``--lock``): ``lock_model`` of a ``tiny-cnn`` on the first N images, 1 epoch (edits through
  the edit cache, as the diffusion editor does, then trains from the edited PNGs on disk); no decoy keys,
  to keep it short.

Reported per run: the process's peak RSS (VmHWM), its RSS after the imports (the floor), the peak of
its largest helper process, and peak minus floor. The ratio 10k / 1k says whether memory grows
with the dataset.

    python bench/edit_memory.py                  # edit 1k vs 10k
    python bench/edit_memory.py --lock           # and lock 1k vs 10k
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edit_pipeline import PROMPT, make_sources  # noqa: E402
from _common import machine_description, write_result  # noqa: E402


def rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(stage: str, data: str, n: int, out: str) -> dict:
    """One measurement, in this (fresh) process."""
    from modellock.utils import distributed
    from modellock.data import open_source
    from modellock.edit import edit_split
    from modellock.keys import Key
    from modellock.lock import lock_model
    from modellock.lock.lock_set import LockRecipe
    from modellock.train import TrainConfig

    distributed.state()
    key = Key.create("keyed-filter", PROMPT)
    source = open_source(data, {"train": n})
    floor = rss_mib("VmRSS")
    if stage == "edit":
        edit_split(key, source.split("train"), out, progress=False, num_workers=1, writers=1)
    else:
        lock_model(key, source, "tiny-cnn", out, LockRecipe(decoy_fraction=0.0, online=False),
                   TrainConfig(epochs=1, batch_size=128, num_workers=1), edits_dir=Path(out) / "edits",
                   progress=False)
    helpers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"stage": stage, "n": n, "floor_mib": floor, "peak_mib": rss_mib("VmHWM"), "helper_peak_mib": helpers}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000", help="dataset sizes to compare (default 1000,10000)")
    p.add_argument("--lock", action="store_true", help="also measure lock (edit + 1 epoch of tiny-cnn)")
    p.add_argument("--json", metavar="OUT")
    p.add_argument("--child", nargs=4, metavar=("STAGE", "DATA", "N", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        stage, data, n, out = args.child
        print(json.dumps(child(stage, data, int(n), out)))
        return {}
    sizes = [int(s) for s in args.sizes.split(",")]
    stages = ["edit"] + (["lock"] if args.lock else [])
    runs = []
    with tempfile.TemporaryDirectory(prefix="modellock-bench-") as tmp:
        data = make_sources(Path(tmp) / "src", max(sizes), 32)
        env = {**os.environ, "MODELLOCK_CACHE": str(Path(tmp) / "cache"), "OMP_NUM_THREADS": "1"}
        for stage in stages:
            for n in sizes:
                out = Path(tmp) / f"{stage}-{n}"
                proc = subprocess.run([sys.executable, __file__, "--child", stage, str(data), str(n), str(out)],
                                      env=env, capture_output=True, text=True, check=True)
                runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    result = {"machine": machine_description("cpu"), "image_size": 32, "editor": "keyed-filter", "runs": runs,
              "command": "python bench/edit_memory.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    print(f"machine: {result['machine']}; 32x32 JPEG sources, keyed-filter\n")
    print("| stage | images | RSS after imports MiB | peak RSS MiB | peak - floor MiB | largest helper MiB |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['stage']} | {r['n']} | {r['floor_mib']:.0f} | {r['peak_mib']:.0f} | "
              f"{r['peak_mib'] - r['floor_mib']:.0f} | {r['helper_peak_mib']:.0f} |")
    for stage in stages:
        a, b = [r for r in runs if r["stage"] == stage and r["n"] in (sizes[0], sizes[-1])]
        ratio = b["peak_mib"] / a["peak_mib"]
        growth = (b["peak_mib"] - b["floor_mib"]) - (a["peak_mib"] - a["floor_mib"])
        per_image = growth * 1024 / (sizes[-1] - sizes[0])
        result[f"{stage}_peak_ratio"] = ratio
        result[f"{stage}_kib_per_image"] = per_image
        print(f"\n{stage}: peak RSS {sizes[-1]} / {sizes[0]} images = {ratio:.2f}x; "
              f"growth {growth:.1f} MiB = {per_image:.2f} KiB per image")
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
