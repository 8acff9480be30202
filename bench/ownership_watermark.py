"""Watermarked service answers against students distilled through ``modellock serve`` (classification).

For each ``--rates`` value: the real service (``load_service`` of the locked folder and the key, with
``--watermark``) answers ``--queries`` of the thief's unlabelled images (the pool ``ownership_positives.py``'s
``distilled`` family draws from, the same draw); a student of the owner's architecture is trained from scratch
on the answers (labels only, and probabilities) for ``--epochs`` passes over the queries; then the watermark test
(``modellock.ownership.watermark``) asks the student, the plain original and every independent model in
``negatives/`` the recorded images. Writes ``watermark.json`` in ``--work``.

    PYTHONPATH=src:bench OMP_NUM_THREADS=1 python bench/ownership_watermark.py --out OUT --work WORK \\
        [--rates 0.01,0.05] [--queries 1000] [--epochs 4]

``OUT`` holds what ``ownership_models.py`` made: ``locked/``, ``key.toml``, ``data/``, ``original/``,
``negatives/`` (read only; the watermark folders and students go to ``WORK``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from ownership_models import key_for, open_data
from ownership_positives import _ctx, log, save_plain, serve_in_thread, student_pairs


def _student(ctx, opened, queries, teacher, mode: str, samples: int, seed: int):
    pairs, loss = student_pairs(ctx, opened, queries, teacher, mode)
    spec = {**opened.config["architecture"], "num_classes": ctx.num_classes}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ctx.task.model_from_spec(spec)
    model = ctx.train(model, pairs, f"student {mode}", loss_fn=loss, samples=samples)
    return model, ctx.score(ctx.outputs(ctx.test, model=model))


def main() -> None:
    from modellock.model_folder import LockedModel
    from modellock.ownership import ModelSuspect, load_watermark, watermark_test
    from modellock.ownership.suspects import HttpSuspect
    from modellock.serve.limits import Limits
    from modellock.serve.server import load_service

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--rates", default="0.01,0.05")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--modes", default="labels,probs")
    a = p.parse_args()
    torch.set_num_threads(1)
    out, work = a.out, a.work
    work.mkdir(parents=True, exist_ok=True)
    source = open_data("classification", out)
    key = key_for(out)
    locked = LockedModel.from_pretrained(out / "locked", device="cpu")
    opened = locked.open(key) if locked.is_sealed else locked
    ctx = _ctx("classification", out, opened, source, key)
    k = ctx.num_classes
    pool = ctx.images(ctx.source.split("other")) + ctx.images(ctx.train_data)
    rng = np.random.default_rng(a.queries)
    queries = [pool[i] for i in rng.permutation(len(pool))[:a.queries]]
    transform = opened.inference_transform()
    others = {"original": out / "original", **{f"negative {d.name}": d for d in sorted((out / "negatives").iterdir())
                                                if (d / "config.json").exists()}}
    results = []
    for rate in [float(r) for r in a.rates.split(",")]:
        folder = work / f"wm-{rate:g}"
        shutil.rmtree(folder, ignore_errors=True)
        app = load_service(str(out / "locked"), out / "key.toml", limits=Limits(max_queue=4096), max_batch=64,
                           watermark=folder, watermark_rate=rate)
        url, stop = serve_in_thread(app)
        try:
            t = time.time()
            teacher = HttpSuspect(url, max_queries=a.queries).answer(queries)
            log(f"rate {rate:g}: {a.queries} queries in {time.time() - t:.0f} s")
        finally:
            stop()
        record = load_watermark(folder)
        row = {"rate": rate, "queries": a.queries, "records": len(record), "chance": record.chance, "suspects": {}}
        log(f"rate {rate:g}: {len(record)} watermarked queries recorded")
        for mode in a.modes.split(","):
            model, score = _student(ctx, opened, queries, teacher, mode, a.epochs * a.queries, 54321 + a.queries)
            save_plain(model, opened.config, work / f"student-{rate:g}-{mode}", info={"score": score})
            r = watermark_test(record, ModelSuspect(model, transform, "classification", keep=k, name=mode))
            row["suspects"][f"student {mode}"] = {**r, "test_score": score}
            log(f"rate {rate:g} student {mode} (test {score:.4f}): {r['agreed']}/{r['asked']} agree, "
                f"p {r['p_value']:.2e}")
        for name, path in others.items():
            m = LockedModel.from_pretrained(path, device="cpu")
            if m.config["num_classes"] != k or m.classes != opened.classes:
                continue
            r = watermark_test(record, ModelSuspect(m.model, m.inference_transform(), "classification", keep=k,
                                                    name=name))
            row["suspects"][name] = r
            log(f"rate {rate:g} {name}: {r['agreed']}/{r['asked']} agree, p {r['p_value']:.2e}")
        results.append(row)
        (work / "watermark.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
