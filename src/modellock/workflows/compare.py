"""Compare locks side by side: ModelLock against the block-wise key transforms, on the same data and budget.

``compare_locks`` trains the unlocked baseline once and one model per lock with the same
:class:`~modellock.train.TrainConfig` and seed, evaluates each (original, locked, unlocked, wrong keys),
runs the cheap attacks through the attack registry (``generic-transforms`` and ``fine-tune`` at one
clean fraction; every lock measured on its opened weights) and writes ``compare.json`` and ``report.html``
(one table, one grouped bar chart).

Locks: the registered baselines of ``modellock.workflows.baselines`` (one file each): ``modellock`` (a
keyed-filter key, or ``modellock_editor`` such as ``instruct-pix2pix`` with ``diffusion_model``, and the default
lock recipe); ``pixel-shuffle``, ``negative-positive`` (alias ``np``), ``ffx`` (the block-wise transforms of
AprilPyone & Kiya with ``block_size`` and their papers' recipe: transformed images only, no locked output).

Every lock gets a fresh random key (a random prompt string, the given seed), saved under
``<out>/keys/``: those files are secret. Nothing here logs or reports a prompt. Reruns resume: a model
folder already in ``<out>`` is loaded, not retrained, and attack scores are memoised under it.
"""

from __future__ import annotations

import dataclasses
import html
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..attacks import run_attack
from ..attacks.context import AttackContext, Machinery
from ..errors import ModelLockError
from ..evaluation.matrix import default_wrong_keys, evaluate
from ..keys import Key
from ..lock import lock_model, train_baseline
from ..model_folder import LockedModel, holds_model
from ..tasks import task_type
from ..train import TrainConfig
from ..utils.atomic import write_bytes_atomic
from ..utils.results_json import write_json
from .baselines import BASELINES, canonical, known_text
from .baselines.block_transforms import block_size_of

ATTACKS = ("generic-transforms", "fine-tune")

# (field, label, kind): "score" columns are accuracies in [0, 1]; "delta" columns are differences in [-1, 1]
COLUMNS = (
    ("unlocked", "unlocked", "score"),
    ("unlocked_drop", "unlocked drop vs baseline", "delta"),
    ("locked_clean", "locked", "score"),
    ("locked_ignoring_locked_output", "locked, locked output ignored", "score"),
    ("best_wrong_key", "best wrong key", "score"),
    ("best_generic_transform", "best generic transform", "score"),
    ("fine_tune_attack", "fine-tune attack", "score"),
    ("fine_tune_scratch", "from scratch", "score"),
    ("fine_tune_gain", "fine-tune gain over scratch", "delta"),
)


def parse_locks(locks) -> list[str]:
    """Canonical lock names from a list or a comma-separated string; ModelLockError naming an unknown one."""
    names = [n.strip() for n in (locks.split(",") if isinstance(locks, str) else locks) if n and n.strip()]
    if not names:
        raise ModelLockError(f"compare: no locks given (known: {known_text()})")
    out = []
    for name in names:
        name = canonical(name)
        if name not in out:
            out.append(name)
    return out


def lock_setup(lock: str, seed: int, block_size=4, modellock_editor: str = "keyed-filter",
               diffusion_model: str | None = None, seal: bool = False):
    """``(editor, key fields, recipe)`` of a lock (its registered baseline's ``setup``); the prompt is added by
    :func:`make_key`."""
    return BASELINES.get(lock).setup(seed, block_size, modellock_editor, diffusion_model, seal)


def make_key(editor: str, fields: dict):
    """A fresh key of ``editor`` with a random prompt string (never logged)."""
    return Key.create(editor, secrets.token_hex(16), **fields)


def _load_or_create_key(path: Path, editor: str, fields: dict, model_exists: bool):
    if path.is_file():
        key = Key.load(path)
        if key.editor != editor:
            raise ModelLockError(f"{path}: a key of editor {key.editor!r}, but this lock uses {editor!r}; "
                                 "use another --out or remove that lock's folder and key")
        return key
    if model_exists:
        raise ModelLockError(f"{path}: missing, but the model it locked is there; remove the model folder "
                             "to train that lock again")
    key = make_key(editor, fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    key.save(path)
    return key


def _model(folder: Path, train_fn: Callable, device=None):
    if holds_model(folder):
        return LockedModel.from_pretrained(folder, device=device), True
    return train_fn(), False


def summarise(name: str, evaluation: dict, attacks: dict, baseline_clean: float) -> dict:
    """The comparison row of one lock from its evaluation and attack results."""
    has_locked = evaluation.get("locked_clean_without_locked_class") is not None
    wrong = evaluation.get("wrong_keys_without_locked_class") if has_locked else evaluation.get("wrong_keys")
    wrong = wrong or {}
    best_wrong = max(wrong.items(), key=lambda kv: kv[1]) if wrong else (None, float("nan"))
    generic = attacks["generic-transforms"]
    curve = attacks["fine-tune"]["curve"][0]
    return {
        "lock": name,
        "has_locked_output": has_locked,
        "baseline": baseline_clean,
        "unlocked": evaluation["unlocked"],
        "unlocked_drop": baseline_clean - evaluation["unlocked"],
        "locked_clean": evaluation["locked_clean"],
        "locked_ignoring_locked_output": evaluation.get("locked_clean_without_locked_class",
                                                        evaluation["locked_clean"]),
        "best_wrong_key": best_wrong[1],
        "best_wrong_key_name": best_wrong[0],
        "best_generic_transform": generic["best"] if generic["best"] is not None else float("nan"),
        "best_generic_transform_setting": generic.get("best_setting"),
        "fine_tune_fraction": curve["fraction"],
        "fine_tune_images": curve["n_images"],
        "fine_tune_attack": curve["attack"],
        "fine_tune_scratch": curve["scratch"],
        "fine_tune_gain": curve["gain"],
    }


@dataclass
class CompareJob:
    """One comparison: the data, the model, the locks (registered baselines), the folder and the shared budget;
    ``run()`` trains, evaluates and attacks each lock (see :func:`compare_locks`)."""

    source: object
    model_name: str
    locks: object
    out: object
    train: TrainConfig | None = None
    seed: int = 0
    block_size: object = 4
    modellock_editor: str = "keyed-filter"
    diffusion_model: str | None = None
    fine_tune_fraction: float = 0.05
    image_size: int | None = None
    pretrained: object = None
    budget: str = "quick"
    samples: int | None = None
    screen: int = 500
    random_keys: int = 3
    device: str | None = None
    progress: bool = True
    log: Callable[[str], None] | None = None
    seal: bool = False

    def run(self) -> dict:
        source, model_name, locks, out = self.source, self.model_name, self.locks, self.out
        train, seed, block_size, modellock_editor = self.train, self.seed, self.block_size, self.modellock_editor
        diffusion_model, fine_tune_fraction = self.diffusion_model, self.fine_tune_fraction
        image_size, pretrained = self.image_size, self.pretrained
        budget, samples, screen, random_keys = self.budget, self.samples, self.screen, self.random_keys
        device, progress, log, seal = self.device, self.progress, self.log, self.seal
        log = log or (lambda message: None)

        metric = task_type(source.task).metric
        names = parse_locks(locks)
        if not 0.0 < float(fine_tune_fraction) <= 1.0:
            raise ModelLockError(f"compare: fine-tune fraction must be in (0, 1], not {fine_tune_fraction!r}")
        train = train or TrainConfig(seed=seed)
        if train.seed != seed:
            train = dataclasses.replace(train, seed=seed)
        setups = {n: lock_setup(n, seed, block_size, modellock_editor, diffusion_model, seal) for n in names}
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)

        log("baseline: training on clean data" if not holds_model(out / "baseline")
            else "baseline: already trained, loading")
        baseline, _ = _model(out / "baseline", lambda: train_baseline(source, model_name, out / "baseline", train,
                                                                      image_size, pretrained), device)
        rows, details = [], {}
        for i, name in enumerate(names, 1):
            editor, fields, recipe = setups[name]
            folder = out / name
            exists = holds_model(folder)
            key = _load_or_create_key(out / "keys" / f"{name}.toml", editor, fields, exists)
            log(f"[{i}/{len(names)}] {name} ({editor}): " + ("already trained, loading" if exists else "locking"))
            model, _ = _model(folder, lambda: lock_model(key, source, model_name, folder, recipe, train, image_size,
                                                         pretrained, device=device, progress=progress), device)
            model = model.open(key)  # sealed (--seal): the lock is measured on the opened weights
            log(f"[{i}/{len(names)}] {name}: evaluating")
            evaluation = evaluate(model, key, source, baseline=baseline, wrong_keys=default_wrong_keys(key),
                                  device=device, progress=progress)
            ctx = AttackContext(model.open(key), source, Machinery.of(key), fractions=(float(fine_tune_fraction),),
                                budget=budget, samples=samples, screen=screen, random_keys=random_keys, seed=seed,
                                device=device,
                                progress=progress, work_dir=folder / "attacks")
            attacks = {}
            for attack in ATTACKS:
                log(f"[{i}/{len(names)}] {name}: attack {attack}")
                attacks[attack] = run_attack(attack, ctx)
            rows.append(summarise(name, evaluation, attacks, evaluation["original_clean"]))
            details[name] = {"editor": editor, "recipe": recipe.to_dict(), "evaluation": evaluation,
                             "attacks": {a: {k: v for k, v in r.items() if k != "candidates"}
                                         for a, r in attacks.items()},
                             "key_file": str(Path("keys") / f"{name}.toml")}
        baseline_clean = rows[0]["baseline"]
        result = {
            "model": model_name,
            "task": source.task,
            "metric": metric,
            "n_train": len(source.split("train")),
            "n_test": len(source.split("test")),
            "seed": seed,
            "train": train.to_dict(),
            "block_size": block_size_of(block_size),
            "fine_tune_fraction": float(fine_tune_fraction),
            "sealed": seal,
            "attack_budget": ctx.budget.name,
            "attack_samples": ctx.samples,
            "baseline_clean": baseline_clean,
            "chance": details[names[0]]["evaluation"]["chance"],
            "columns": [c[0] for c in COLUMNS],
            "locks": rows,
            "details": details,
            "note": "keys/ holds the secret key of every lock: anyone with those files can unlock the models",
        }
        write_json(out / "compare.json", result)
        write_compare_report(out, result)
        return result


def compare_locks(source, model_name: str, locks, out, train: TrainConfig | None = None, seed: int = 0,
                  block_size=4, modellock_editor: str = "keyed-filter", diffusion_model: str | None = None,
                  fine_tune_fraction: float = 0.05, image_size: int | None = None, pretrained=None,
                  budget: str = "quick", samples: int | None = None, screen: int = 500, random_keys: int = 3,
                  device: str | None = None,
                  progress: bool = True, log: Callable[[str], None] | None = None, seal: bool = False) -> dict:
    """Train the baseline and every lock on ``source`` with ``train`` and ``seed``; evaluate and attack each.

    ``source``: an :class:`~modellock.data.source.ImageSource` (train and test splits). ``locks``: names or a
    comma-separated string (see the module docstring). ``out``: the comparison folder (models, keys,
    ``compare.json``, ``report.html``). ``budget`` (quick or full: the fine-tune attack's grid),
    ``samples``, ``screen`` and ``random_keys`` go to the attack context. ``seal`` stores every lock's weights
    sealed with its key (off by default here: the comparison is between the locks' methods; sealing applies to
    any of them alike). Classification and segmentation
    (scored in mIoU) alike: every step goes through the data's task type.
    Returns the result written to ``compare.json``.
    """
    return CompareJob(source, model_name, locks, out, train, seed, block_size, modellock_editor, diffusion_model,
                      fine_tune_fraction, image_size, pretrained, budget, samples, screen, random_keys, device,
                      progress, log, seal).run()


# ---------------------------------------------------------------------------------------------- tables
def _fmt(value, kind: str) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:+.4f}" if kind == "delta" else f"{value:.4f}"


def format_markdown(result: dict) -> str:
    """The comparison as a markdown table, one row per lock."""
    head = "| lock | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [head, "|" + " --- |" * (len(COLUMNS) + 1)]
    for row in result["locks"]:
        lines.append(f"| {row['lock']} | " + " | ".join(_fmt(row[f], kind) for f, _, kind in COLUMNS) + " |")
    lines.append("")
    lines.append(f"baseline (unlocked, clean) {result['metric']} {result['baseline_clean']:.4f}; chance "
                 f"{result['chance']:.4f}; fine-tune attack on {result['fine_tune_fraction'] * 100:g}% of the "
                 f"training split; n_test={result['n_test']}")
    return "\n".join(lines)


def grouped_bar_chart(result: dict, path: Path) -> Path:
    """Grouped bars per lock: unlocked, locked (output ignored), best wrong key, best transform, fine-tune."""
    # lazy: matplotlib, only for charts
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib, only for charts
    import matplotlib.pyplot as plt

    series = [("unlocked", "unlocked"), ("locked_ignoring_locked_output", "locked (output ignored)"),
              ("best_wrong_key", "best wrong key"), ("best_generic_transform", "best generic transform"),
              ("fine_tune_attack", "fine-tune attack"), ("fine_tune_scratch", "from scratch")]
    locks = [r["lock"] for r in result["locks"]]
    x = np.arange(len(locks))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(locks) + 2), 4.2))
    for j, (field, label) in enumerate(series):
        values = [r[field] if r[field] == r[field] else 0.0 for r in result["locks"]]
        ax.bar(x + (j - (len(series) - 1) / 2) * width, values, width, label=label)
    ax.axhline(result["baseline_clean"], color="black", linewidth=1, label="baseline")
    ax.axhline(result["chance"], color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x)
    ax.set_xticklabels(locks)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(result["metric"])
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_compare_report(out: Path, result: dict) -> Path:
    """``report.html`` (one table) and ``compare.png`` (the grouped bar chart) in ``out``."""
    out = Path(out)
    grouped_bar_chart(result, out / "compare.png")
    head = "<th>lock</th>" + "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in COLUMNS)
    body = "".join("<tr><td>" + html.escape(r["lock"]) + "</td>" + "".join(
        f"<td>{_fmt(r[f], kind)}</td>" for f, _, kind in COLUMNS) + "</tr>" for r in result["locks"])
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>modellock compare</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:center}}</style></head>
<body><h1>Lock comparison: {html.escape(result['model'])}</h1>
<p>Baseline (unlocked, clean) {html.escape(result['metric'])} {result['baseline_clean']:.4f}; chance {result['chance']:.4f};
n_train={result['n_train']}, n_test={result['n_test']}; fine-tune attack on
{result['fine_tune_fraction'] * 100:g}% of the training split. The key files in <code>keys/</code> are secret.</p>
<table><tr>{head}</tr>{body}</table>
<p><img src="compare.png" alt="grouped bar chart of the comparison"></p></body></html>"""
    path = out / "report.html"
    write_bytes_atomic(page.encode(), path)
    return path
