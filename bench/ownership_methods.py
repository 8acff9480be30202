"""What one method adds to the ownership verdicts: derived models called ``derived`` per family with every method,
and without ``--without METHOD`` (its p-value dropped, the others judged at ``alpha / (methods - 1)``), from the
results JSON files of ``bench/ownership.py`` (no model loaded, no query).

    python bench/ownership_methods.py --without key-response \\
        "CIFAR-10, draw 1=bench-output/ownership-cifar/verify.json" "segmentation=bench-output/ownership-seg/verify.json"

Each argument is ``LABEL=PATH`` (or a path alone). Prints a markdown table: per run and access, per family
``called/n``, bold with the count without the method in brackets where they differ. ``--values METHOD`` prints
instead every model's statistic and p-value of that method, per access.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

FAMILIES = ("fine-tune", "adapter", "pruned", "int8", "transfer", "distilled", "negative")


def counts(results: dict, access: str, without: str) -> dict[str, list[int]]:
    """family -> [models, called derived, called derived without the method]."""
    out: dict[str, list[int]] = {}
    for r in results.values():
        res = r[access]
        rest = {m: v for m, v in res["methods"].items() if m != without}
        level = res["alpha"] / max(len(rest), 1)
        c = out.setdefault(r["group"], [0, 0, 0])
        c[0] += 1
        c[1] += res["verdict"] == "derived"
        c[2] += any(v["p_value"] < level for v in rest.values())
    return out


def table(runs: list[tuple[str, dict]], without: str) -> str:
    lines = ["| run | access | " + " | ".join(FAMILIES) + " |", "| --- | --- | " + " | ".join("---" for _ in FAMILIES)
             + " |"]
    for label, results in runs:
        for access in [a for a in next(iter(results.values())) if a != "group"]:
            c = counts(results, access, without)
            cells = []
            for f in FAMILIES:
                n, called, rest = c.get(f, [0, 0, 0])
                cells.append("-" if n == 0 else f"{called}/{n}" if called == rest else f"**{called}/{n}** ({rest})")
            lines.append(f"| {label} | {access} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def values(runs: list[tuple[str, dict]], method: str) -> str:
    """Per run, model and access: ``method``'s statistic and p-value (``-``: not applied)."""
    lines = []
    for label, results in runs:
        accesses = [a for a in next(iter(results.values())) if a != "group"]
        lines += [f"\n{label}", "| model | group | " + " | ".join(accesses) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in accesses) + " |"]
        for name, r in sorted(results.items()):
            cells = []
            for access in accesses:
                m = r[access]["methods"].get(method)
                cells.append("-" if m is None else f"{m['value']:.3f} (p {m['p_value']:.2g})")
            lines.append(f"| {name} | {r['group']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="LABEL=PATH of a bench/ownership.py results JSON (or PATH)")
    p.add_argument("--without", default="key-response", help="the method left out (default: key-response)")
    p.add_argument("--values", metavar="METHOD", default=None, help="print every model's statistic of METHOD instead")
    a = p.parse_args()
    runs = []
    for spec in a.runs:
        label, _, path = spec.rpartition("=")
        runs.append((label or Path(path).stem, json.loads(Path(path).read_text())))
    print(values(runs, a.values) if a.values else table(runs, a.without))


if __name__ == "__main__":
    main()
