"""How stable is a verdict from one evidence draw to the next? (issue 18: the sample sets are drawn with
``secrets``, so two evidence records of the same model ask different images.)

The test suite's small case (tests/test_ownership_outcomes.py): a locked shapes classifier (small-cnn, 16 px,
6 epochs), then ``--draws`` evidence records built from it (each a fresh secret draw; the independent models are
trained once and reused), and for each, two suspects answering with labels only: a copy of the opened weights
with 30 % of them pruned (derived) and an independently trained model (independent), asked 150 and 250 images.

    python bench/ownership_draws.py --out bench-output/ownership-draws --independent 8 --draws 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
SIZE = 16


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--independent", type=int, default=8)
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--queries", type=int, nargs="+", default=[150, 250])
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MODELLOCK_CACHE", str(a.out / "cache"))
    torch.set_num_threads(1)

    from test_ownership_outcomes import RealClasses, _pruned

    from modellock.data import make_shapes_dataset, open_source
    from modellock.keys import Key
    from modellock.lock import lock_model
    from modellock.model_folder import LockedModel
    from modellock.ownership import build_evidence, verify
    from modellock.ownership.calibration import train_independent
    from modellock.ownership.correlation import label_answers
    from modellock.ownership.suspects import Suspect, model_outputs
    from modellock.train import TrainConfig

    torch.manual_seed(0)
    source = open_source(make_shapes_dataset(a.out / "data", 400, 120, size=SIZE))
    key = Key.create("keyed-filter", "with oil pastel and a quiet harbour")
    if (a.out / "locked" / "config.json").exists():
        locked = LockedModel.from_pretrained(a.out / "locked", device="cpu")
    else:
        locked = lock_model(key, source, "small-cnn", a.out / "locked", image_size=SIZE, progress=False,
                            train=TrainConfig(epochs=6, batch_size=32, lr=3e-3, num_workers=0))
    k = locked.config["num_classes"]
    suspects = {"pruned copy": RealClasses(_pruned(locked.open(key).model, 0.3).eval(), k),
                "independent": train_independent(source, "small-cnn", 77, 6, a.out / "other", SIZE, lr=3e-3).model}

    class LabelsOnly(Suspect):
        mode, kind = "label", "black-box"

        def __init__(self, net, name):
            self.net, self.name = net, name

        def answer(self, images):
            probs = model_outputs(self.net, images, locked.inference_transform(), "classification")["probs"]
            self.queries += len(images)
            return label_answers(probs.argmax(1), probs.shape[1])

    called = {}
    for draw in range(a.draws):
        evidence = build_evidence(locked, key, source, None, independent=a.independent, independent_epochs=6,
                                  n_wrong=40, n_cutmix=40, n_key=30, alpha=0.05, work_dir=a.out / "independent",
                                  log=lambda _: None)
        for queries in a.queries:
            for name, net in suspects.items():
                r = verify(evidence, LabelsOnly(net, name), max_queries=queries)
                called.setdefault((name, queries), []).append(r["verdict"] == "derived")
                print(json.dumps({"draw": draw, "queries": queries, "suspect": name, "verdict": r["verdict"],
                                  "p": {m: round(x["p_value"], 4) for m, x in r["methods"].items()}}), flush=True)
    print(f"\n| suspect | queries | called derived ({a.independent} independent models) |\n| --- | --- | --- |")
    for (name, queries), verdicts in called.items():
        print(f"| {name} | {queries} | {sum(verdicts)}/{len(verdicts)} |")


if __name__ == "__main__":
    main()
