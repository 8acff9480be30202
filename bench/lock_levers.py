"""What each lock lever buys and costs: lock CIFAR-10 with each variant, evaluate it, attack it, one table.

Every variant shares the data, the backbone, the epochs and the original model; a variant is a key editor
plus lock-recipe settings (the YAML names of ``modellock lock --config``). For each variant the script runs
the real commands (``lock``, ``eval``, ``attack``) and records their times, then prints a markdown table:
unlocked / locked / ignored / worst wrong key, the attack summary (worst gain over scratch and worst case
undone, each with its attack; whether the lock holds; fine-tune gain), the adapters' and distillation's scores,
and the lock's wall time. Every figure is measured on the opened weights (sealing is reported apart). Reruns skip finished steps.

    python bench/lock_levers.py --variants keyed-filter,keyed-net,keyed-net+adversary --out bench-output/levers
    python bench/lock_levers.py --list

The attack here is a screening thief (``--attack-budget quick``, one clean fraction) unless told otherwise;
the final recipe is measured with the full thief by ``modellock attack --budget full`` (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# name -> (editor, recipe settings)
VARIANTS: dict[str, tuple[str, dict]] = {
    "keyed-filter (cache)": ("keyed-filter", {"online": False, "seal": False}),
    "keyed-filter": ("keyed-filter", {"seal": False}),
    "keyed-net": ("keyed-net", {"seal": False}),
    "keyed-net, no handling": ("keyed-net", {"handling": False, "seal": False}),
    "keyed-net+adversary": ("keyed-net", {"adversary": 0.25, "seal": False}),
    "keyed-net+thief": ("keyed-net", {"simulated_thief": 1.0, "seal": False}),
    "keyed-net+separation": ("keyed-net", {"separation": 0.1, "seal": False}),
    "keyed-net+all": ("keyed-net", {"adversary": 0.25, "simulated_thief": 1.0, "separation": 0.1, "seal": False}),
    "keyed-net+distractor": ("keyed-net", {"distractor": 0.5, "seal": False}),
    "keyed-net+distractor+adversary": ("keyed-net", {"distractor": 0.5, "adversary": 0.25, "seal": False}),
    "keyed-net+seal": ("keyed-net", {"seal": True}),
    "keyed-filter+seal": ("keyed-filter", {"seal": True}),  # the default recipe
    "keyed-filter+adversary": ("keyed-filter", {"adversary": 0.25, "seal": False}),
    "keyed-filter+all": ("keyed-filter", {"adversary": 0.25, "simulated_thief": 1.0, "separation": 0.1,
                                          "seal": False}),
}
ATTACKS = ("ignore-locked-class,refit-head,guessed-prompts,wrong-machinery,fine-tune,distillation,input-adapter,"
           "unet-adapter,editor-family-adapter,generic-transforms")
PROMPT = "with oil pastel and a quiet marmalade haze"


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def run(cmd: list[str], log: Path) -> float:
    start = time.time()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return time.time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="keyed-filter,keyed-net")
    p.add_argument("--list", action="store_true")
    p.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    p.add_argument("--out", default="bench-output/levers")
    p.add_argument("--original", help="original model folder (default: trained into OUT/original)")
    p.add_argument("--model", default="small-cnn")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--train-limit", type=int, default=10000)
    p.add_argument("--test-limit", type=int, default=None)
    p.add_argument("--attack-budget", default="quick")
    p.add_argument("--fractions", default="0.1")
    p.add_argument("--limit-prompts", type=int, default=40)
    p.add_argument("--attacks", default=ATTACKS)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.list:
        for name, (editor, settings) in VARIANTS.items():
            print(f"{name:28s} {editor:14s} {settings}")
        return
    ml = [sys.executable, "-m", "modellock"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--data", args.data, "--model", args.model, "--epochs", str(args.epochs), "--train-limit",
              str(args.train_limit), "--num-workers", "0", "--seed", str(args.seed)]
    original = Path(args.original) if args.original else out / "original"
    if not (original / "model.safetensors").exists():
        run(ml + ["train", "--out", str(original), *common], out / "original.log")
    limit = ["--test-limit", str(args.test_limit)] if args.test_limit else []
    rows = []
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; --list shows them")
        editor, settings = VARIANTS[name]
        d = out / slug(name)
        d.mkdir(exist_ok=True)
        log = d / "log.txt"
        key = d / "key.toml"
        if not key.exists():
            run(ml + ["keygen", "--out", str(key), "--editor", editor, "--prompt", PROMPT], log)
        (d / "recipe.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()) or "{}\n")
        times = json.loads((d / "times.json").read_text()) if (d / "times.json").exists() else {}
        if not (d / "locked" / "model.safetensors").exists():
            times["lock_s"] = round(run(ml + ["lock", "--key", str(key), "--out", str(d / "locked"), *common,
                                              "--config", str(d / "recipe.yaml")], log))
        if not (d / "eval.json").exists():
            times["eval_s"] = round(run(ml + ["eval", "--model", str(d / "locked"), "--key", str(key), "--data",
                                              args.data, "--baseline", str(original), "--json", str(d / "eval.json"),
                                              *limit], log))
        if not (d / "attacks.json").exists():
            times["attack_s"] = round(run(ml + [
                "attack", "--model", str(d / "locked"), "--key", str(key), "--data", args.data, "--attack",
                args.attacks, "--budget", args.attack_budget, "--fractions", args.fractions, "--limit-prompts",
                str(args.limit_prompts), "--train-limit", str(args.train_limit), "--json", str(d / "attacks.json"),
                "--work-dir", str(d / "attack-work"), *limit], log))
        (d / "times.json").write_text(json.dumps(times, indent=1))
        rows.append((name, json.loads((d / "eval.json").read_text()), json.loads((d / "attacks.json").read_text()),
                     times))
    print(table(rows))


def _score(attacks: dict, name: str):
    r = attacks["attacks"].get(name) or {}
    return r.get("best")


def table(rows) -> str:
    head = ("| variant | original | unlocked | locked | ignored | worst wrong key | worst gain over scratch | "
            "worst case undone | holds | fine-tune gain | distillation gain | input-adapter | unet-adapter | "
            "editor-family | guessed | lock time |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for name, ev, at, times in rows:
        s = at.get("summary", {})
        wrong = list(ev["wrong_keys"].values()) + list((ev.get("wrong_keys_without_locked_class") or {}).values())
        cells = [name, ev.get("original_clean"), ev["unlocked"], ev["locked_clean"],
                 ev.get("locked_clean_without_locked_class"), max(wrong) if wrong else None]
        gain, undone = s.get("worst_gain_over_scratch"), s.get("worst_case_undone")
        cells.append(f"{gain:+.4f} ({s.get('worst_gain_attack')})" if gain is not None else None)
        cells.append(f"{undone:.0%} ({s.get('worst_case_attack')})" if undone is not None else None)
        cells.append({True: "yes", False: "no"}.get(s.get("holds")))
        cells += [s.get("fine_tune_gain"), s.get("distillation_gain"), _score(at, "input-adapter"),
                  _score(at, "unet-adapter"), _score(at, "editor-family-adapter"), _score(at, "guessed-prompts"),
                  f"{times.get('lock_s', 0)} s"]
        lines.append("| " + " | ".join(f"{c:.4f}" if isinstance(c, float) else ("-" if c is None else str(c))
                                       for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
