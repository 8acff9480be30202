"""Sum up ``bench/ownership.py --wrong-keys W --layouts ...`` over several evidence draws: per wrong-key layout and
access, negatives and derived models called ``derived`` (per draw) and the key-feature AUC / TPR at 0 FP per family
(mean over the draws).

    python bench/ownership_layouts.py bench-output/ownership-seg/draws/d*   # each folder: verify-<layout>.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ownership import _distance  # noqa: E402


def summary(draws: list[Path], layouts: list[str]) -> str:
    from modellock.ownership.calibration import auc, tpr_at_zero_fp

    lines = ["| layout | access | queries | negatives called derived | derived models called derived | "
             "key-feature AUC / TPR@0FP per family (mean over draws) |", "| --- | --- | --- | --- | --- | --- |"]
    for layout in layouts:
        runs = [json.loads((d / f"verify-{layout}.json").read_text()) for d in draws
                if (d / f"verify-{layout}.json").exists()]
        if not runs:
            continue
        accesses = [a for a in next(iter(runs[0].values())) if a != "group"]
        for access in accesses:
            neg, pos, fam, queries = [], [], {}, set()
            for r in runs:
                negs = [x for x in r.values() if x["group"] == "negative"]
                poss = [x for x in r.values() if x["group"] not in ("negative", "original")]
                neg.append(f"{sum(x[access]['verdict'] == 'derived' for x in negs)}/{len(negs)}")
                pos.append(f"{sum(x[access]['verdict'] == 'derived' for x in poss)}/{len(poss)}")
                queries |= {x[access]["queries"] for x in r.values()}
                nd = [v for v in (_distance(x[access], "key-feature") for x in negs) if v is not None]
                for g in sorted({x["group"] for x in poss}):
                    pd = [v for v in (_distance(x[access], "key-feature") for x in poss if x["group"] == g)
                          if v is not None]
                    if pd:
                        fam.setdefault(g, []).append((auc(pd, nd), tpr_at_zero_fp(pd, nd)))
            cells = ", ".join(f"{g} {np.mean([a for a, _ in v]):.3f} / {np.mean([t for _, t in v]):.2f}"
                              for g, v in fam.items())
            lines.append(f"| {layout} | {access} | {max(queries)} | {' '.join(neg)} | {' '.join(pos)} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("draws", type=Path, nargs="+", help="folders holding verify-<layout>.json")
    p.add_argument("--layouts", nargs="+", default=["first1", "split", "first2", "first3", "all"])
    a = p.parse_args()
    print(summary(a.draws, a.layouts))


if __name__ == "__main__":
    main()
