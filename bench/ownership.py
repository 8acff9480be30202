"""Ownership evidence benchmark (issue 18): build the evidence, verify every positive and negative, one table.

    python bench/ownership_models.py --task classification --out bench-output/ownership-cifar   # the models
    python bench/ownership.py --task classification --out bench-output/ownership-cifar           # this

Every model is verified three ways: white box (its outputs), black box over HTTP with probabilities (the
toolkit's ``create_app`` serving it, every answer with all classes) and black box with labels only (segmentation:
white box and the service's class areas). The table gives, per positive family and method, the AUC against the
held-out negatives and the true-positive rate at zero false positives (both on the method's statistic), the
verdicts (calibrated on the evidence's own independent models, not on the negatives) and the queries used. The
evidence's independent models are negatives too (``calibration/<i>``): their statistics do not depend on the
calibration, and each one's verdict is decided against the evidence without it (left out).
Results: ``<out>/verify.json`` and a markdown table on stdout.

``--wrong-keys W`` (default 4, the images split among them) builds the evidence with ``W`` wrong keys; with
``--every-wrong-key`` each key-feature image is edited with every one, and ``--layouts`` then rescores the same
answers (no new query) as if the evidence had kept fewer: ``first:K`` (each image's first ``K`` wrong keys;
``first:1`` is the one-wrong-key evidence of the same draw), ``split`` (image ``i`` under wrong key ``i mod W`` only:
what the default builds, at the query count of one wrong key), ``all``; one ``<json stem>-<layout>.json`` each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ownership_models import key_for, log, open_data  # noqa: E402
from ownership_positives import load_positive  # noqa: E402

METHODS = ("sac-w", "sac-m", "key-feature", "key-response", "weights")


class LabelsOnly:
    """A predictor whose service answers the top class alone."""

    def __init__(self, predictor):
        self.p, self.locked = predictor, predictor.locked

    def predict(self, images, top_k: int = 3):
        return [{"class": r["class"], "label": r["label"]} for r in self.p.predict(images, top_k)]


def suspects(out: Path, key, evidence) -> dict[str, tuple[str, torch.nn.Module, dict]]:
    """name -> (group, network, config): negatives (the held-out ones and the evidence's own independent models,
    ``calibration/<i>``), the original, every positive (group = its family). Unfinished folders are skipped."""
    from modellock.model_folder import LockedModel

    found = {}
    for folder in sorted((out / "negatives").iterdir()):
        if not (folder / "model.safetensors").exists():
            continue
        m = LockedModel.from_pretrained(folder, device="cpu")
        found[f"negative/{folder.name}"] = ("negative", m.model, m.config)
    given = {c["name"] for c in evidence.meta["calibration"] if c["source"] == "given"}
    found = {n: f for n, f in found.items() if n.split("/")[1] not in given}  # those are calibration/<i> below
    for i, folder in enumerate(_calibration_folders(out, evidence)):
        m = LockedModel.from_pretrained(folder, device="cpu")
        found[f"calibration/{i}"] = ("negative", m.model, m.config)
    m = LockedModel.from_pretrained(out / "original", device="cpu")
    found["original"] = ("original", m.model, m.config)
    for family in sorted((out / "positives").iterdir()):
        if not family.is_dir():
            continue
        for folder in sorted(p for p in family.iterdir() if p.is_dir()):
            net, config = load_positive(folder, out / "locked", key)
            found[f"{family.name}/{folder.name}"] = (family.name, net, config)
    return found


def _calibration_folders(out: Path, evidence) -> list[Path]:
    """The model folders of the evidence's independent models, in its order."""
    folders = []
    for c in evidence.meta["calibration"]:
        if c["source"] == "trained":
            folders.append(out / "evidence-work" / f"independent-{c['seed'] - 1000}")
        else:  # a held-out negative given to the evidence, or a model of an earlier evidence run
            folders.append(next(f for f in (out / "negatives" / c["name"], out / "evidence-work" / c["name"])
                                if f.exists()))
    return folders


def leave_out(evidence, i: int):
    """The evidence without its independent model ``i`` (that model's verdict is then an honest held-out one)."""
    import copy

    ev = copy.copy(evidence)
    ev.independent = evidence.independent[:i] + evidence.independent[i + 1:]
    ev.meta = copy.deepcopy(evidence.meta)
    w = ev.meta["weights"]["independent"]
    if len(w) == len(evidence.independent):
        ev.meta["weights"]["independent"] = w[:i] + w[i + 1:]
    return ev


def collect(task: str, evidence, found: dict, max_queries: int, folder: Path) -> dict:
    """name -> access -> (answers per set, mode, indices per set, queries), each suspect's cached in
    ``folder/<name>.npz``."""
    from fastapi.testclient import TestClient

    from modellock.model_folder import LockedModel
    from modellock.ownership import HttpSuspect, ModelSuspect
    from modellock.ownership.verify import ask, weight_similarity
    from modellock.serve.app import create_app

    collected = {}
    for name, (group, net, config) in found.items():
        path = folder / f"{name.replace('/', '--')}.npz"
        if path.exists():
            collected[name] = _load_answers(path)
            continue
        t = time.time()
        model = LockedModel(net.eval(), config)
        keep = config["num_classes"] if len(config["classes"]) > config["num_classes"] else None
        asked = {}
        suspect = ModelSuspect(net, model.inference_transform(), task, keep, name=name)
        asked["white-box"] = (*ask(evidence, suspect), suspect.mode, suspect.queries,
                              weight_similarity(evidence, suspect))
        accesses = {"black-box probs": model.predictor()} if task == "classification" else \
            {"black-box areas": model.predictor()}
        if task == "classification":
            accesses["black-box labels"] = LabelsOnly(model.predictor())
        for access, predictor in accesses.items():
            with TestClient(create_app(predictor)) as client:
                suspect = HttpSuspect("http://localhost", max_queries=max_queries, client=client, task=task)
                per_set, take = ask(evidence, suspect)
                asked[access] = (per_set, take, suspect.mode, suspect.queries, None)
        _save_answers(path, asked)
        collected[name] = asked
        log(f"asked {name} ({time.time() - t:.0f} s)")
    return collected


def _save_answers(path: Path, asked: dict) -> None:
    arrays, meta = {}, {}
    for access, (per_set, take, mode, queries, weights) in asked.items():
        meta[access] = {"mode": mode, "queries": queries, "weights": weights}
        for s, a in per_set.items():
            arrays[f"{access}|answers|{s}"] = a
            arrays[f"{access}|take|{s}"] = np.asarray(take[s])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def _load_answers(path: Path) -> dict:
    data = np.load(path)
    meta = json.loads(str(data["meta"]))
    out = {}
    for access, m in meta.items():
        per_set = {k.split("|")[2]: data[k] for k in data.files if k.startswith(f"{access}|answers|")}
        take = {k.split("|")[2]: data[k] for k in data.files if k.startswith(f"{access}|take|")}
        out[access] = (per_set, take, m["mode"], m["queries"], m.get("weights"))
    return out


def relayout(evidence, collected: dict, layout: str):
    """The evidence and every suspect's answers as if the evidence had kept only ``layout``'s wrong-key rows
    (``first:K``, ``split`` or ``all``; see the module's docstring). Needs each suspect asked every row."""
    import copy

    w, n = evidence.wrong_per_image, len(evidence.images["key_clean"])
    if layout == "all":
        return evidence, collected
    if layout == "split":
        rows = np.arange(n) * w + np.arange(n) % w
    elif layout.startswith("first:") and 1 <= int(layout[6:]) <= w:
        rows = (np.arange(n)[:, None] * w + np.arange(int(layout[6:]))).reshape(-1)
    else:
        raise SystemExit(f"--layouts {layout!r}: all, split or first:K with K from 1 to {w}")
    ev = copy.copy(evidence)
    ev.images = {**evidence.images, "key_wrong": evidence.images["key_wrong"][rows]}
    ev.owner = {m: {**sets, "key_wrong": sets["key_wrong"][rows]} for m, sets in evidence.owner.items()}
    ev.independent = [{m: {**sets, "key_wrong": sets["key_wrong"][rows]} for m, sets in ind.items()}
                      for ind in evidence.independent]
    ev.meta = copy.deepcopy(evidence.meta)
    ev.meta["settings"]["wrong_per_image"] = len(rows) // n
    out = {}
    for name, asked in collected.items():
        out[name] = {}
        for access, (per_set, take, mode, queries, weights) in asked.items():
            if len(take["key_wrong"]) != n * w:
                raise SystemExit(f"{name} ({access}): not asked every wrong-key row (raise --max-queries)")
            per = {**per_set, "key_wrong": per_set["key_wrong"][rows]}
            tk = {**take, "key_wrong": np.arange(len(rows))}
            out[name][access] = (per, tk, mode, sum(len(t) for t in tk.values()), weights)
    return ev, out


def decide_all(evidence, found: dict, collected: dict, key_statistic: str = "advantage") -> dict:
    from modellock.ownership.verify import decide

    results = {}
    for name, asked in collected.items():
        results[name] = {"group": found[name][0]}
        ev = leave_out(evidence, int(name.split("/")[1])) if name.startswith("calibration/") else evidence
        for access, (per_set, take, mode, queries, weights) in asked.items():
            results[name][access] = decide(ev, per_set, mode, take,
                                           about={"suspect": name, "kind": access, "queries": int(queries)},
                                           weights=weights, key_statistic=key_statistic)
    return results


def table(results: dict) -> str:
    from modellock.ownership.calibration import auc, tpr_at_zero_fp

    accesses = [a for a in next(iter(results.values())) if a != "group"]
    groups = sorted({r["group"] for r in results.values()} - {"negative", "original"})
    neg = [r for r in results.values() if r["group"] == "negative"]
    lines = []
    for access in accesses:
        lines += [f"\n**{access}**\n",
                  "| family | n | " + " | ".join(f"{m} AUC / TPR@0FP" for m in METHODS)
                  + " | called derived | queries |",
                  "| --- | --- | " + " | ".join("---" for _ in METHODS) + " | --- | --- |"]
        for g in groups + ["negative", "original"]:
            rows = [r for r in results.values() if r["group"] == g]
            cells = []
            for m in METHODS:
                pos = [_distance(r[access], m) for r in rows]
                negs = [_distance(r[access], m) for r in neg]
                pos, negs = [x for x in pos if x is not None], [x for x in negs if x is not None]
                if g in ("negative",) or not pos:
                    cells.append("-" if not pos else f"(mean {np.mean(pos):.3f})")
                else:
                    cells.append(f"{auc(pos, negs):.3f} / {tpr_at_zero_fp(pos, negs):.2f}")
            derived = sum(r[access]["verdict"] == "derived" for r in rows)
            queries = max(r[access]["queries"] for r in rows)
            lines.append(f"| {g} | {len(rows)} | " + " | ".join(cells) + f" | {derived}/{len(rows)} | {queries} |")
    return "\n".join(lines)


def _distance(result: dict, method: str):
    x = result["methods"].get(method)
    if x is None:
        return None
    return x["value"] if x["derived_if"] == "below" else -x["value"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=("classification", "segmentation"), default="classification")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--independent", type=int, default=6, help="independent models the evidence trains")
    p.add_argument("--independent-epochs", type=int, default=None)
    p.add_argument("--given", nargs="*", default=[],
                   help="independent model folders for the evidence, by name: <out>/negatives/NAME (then counted "
                        "as calibration models, left out in turn) or <out>/evidence-work/NAME")
    p.add_argument("--independent-limit", type=int, default=None, help="train the evidence's models on N images")
    p.add_argument("--max-queries", type=int, default=300)
    p.add_argument("--stage", choices=("evidence", "all"), default="all")
    p.add_argument("--wrong-keys", type=int, default=4, help="wrong keys of the key-feature test (a new evidence)")
    p.add_argument("--every-wrong-key", action="store_true", help="each key-feature image edited with every wrong key")
    p.add_argument("--layouts", nargs="*", default=None,
                   help="rescore as if the evidence kept fewer wrong keys: first:K, split, all (module docstring)")
    p.add_argument("--key-statistic", choices=("advantage", "adjusted"), default="advantage",
                   help="the key-feature test's statistic (verify.KEY_STATISTICS)")
    p.add_argument("--key-images", type=int, default=None, help="key-feature images of a new evidence (default: "
                   "evidence.DEFAULTS' n_key); each is asked clean, with the key and with a wrong key")
    p.add_argument("--name", default="owner", help="the evidence's name: <out>/NAME.evidence, its suspects' answers "
                   "in <out>/answers (owner) or <out>/answers-NAME")
    p.add_argument("--json", type=Path, default=None, help="the results (default <out>/verify.json)")
    a = p.parse_args()
    torch.set_num_threads(1)
    from modellock.model_folder import LockedModel
    from modellock.ownership import Evidence, build_evidence

    source = open_data(a.task, a.out)
    key = key_for(a.out)
    path = a.out / f"{a.name}.evidence"
    if not path.exists():
        t = time.time()
        build_evidence(LockedModel.from_pretrained(a.out / "locked", device="cpu"), key, source, path,
                       independent=a.independent, independent_epochs=a.independent_epochs,
                       independent_limit=a.independent_limit, wrong_keys=a.wrong_keys,
                       every_wrong_key=a.every_wrong_key,
                       **({"n_key": a.key_images} if a.key_images else {}),
                       independent_models=[next(f for f in (a.out / "negatives" / g, a.out / "evidence-work" / g)
                                                if f.exists()) for g in a.given],
                       work_dir=a.out / "evidence-work", log=log)
        log(f"evidence: {time.time() - t:.0f} s")
    if a.stage == "evidence":
        return
    evidence = Evidence.load(path)
    found = suspects(a.out, key, evidence)
    collected = collect(a.task, evidence, found, a.max_queries,
                        a.out / ("answers" if a.name == "owner" else f"answers-{a.name}"))
    target = a.json or a.out / "verify.json"
    for layout in a.layouts or [None]:
        ev, answers = relayout(evidence, collected, layout) if layout else (evidence, collected)
        results = decide_all(ev, found, answers, a.key_statistic)
        path = target.with_name(f"{target.stem}-{layout.replace(':', '')}.json") if layout else target
        path.write_text(json.dumps(results, indent=1, default=float))
        print(f"\n## wrong-key layout {layout or 'as recorded'} ({ev.wrong_per_image} per image)")
        print(table(results), flush=True)


if __name__ == "__main__":
    main()
