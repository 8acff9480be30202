"""Run attacks against a locked model next to its reference scores; the result as JSON and as a table.

``run_suite`` is the one place that holds the true key: it scores the unlocked reference with it,
hands it to the attacks that declare they read it (see ``modellock.attacks``), and finally
redacts the key's prompt from everything it returns (a guessed catalogue prompt that *is* the key is
shown as ``[the key prompt]``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from ..errors import ModelLockError
from . import attack_spec, available_attacks, run_attack
from .context import AttackContext, Machinery

KEY_PROMPT_LABEL = "[the key prompt]"
GRID_GUESSES = 3

_REFERENCE_ROWS = [
    ("original_clean", "original model, clean"),
    ("locked_clean", "locked model, clean"),
    ("locked_clean_without_locked_class", "locked model, clean, locked output ignored"),
    ("unlocked", "locked model + key (unlocked)"),
    ("chance", "chance"),
]


@dataclass
class SuiteRun:
    """The (redacted) result, the context the attacks ran in, and the report's image grid."""

    result: dict
    ctx: AttackContext
    grid_columns: list[str] = field(default_factory=list)
    grid_rows: list[list[tuple]] = field(default_factory=list)


def redact(obj, secret: str):
    """A copy of ``obj`` (JSON-like) with every occurrence of ``secret`` replaced, case-insensitively."""
    pattern = re.compile(re.escape(secret), re.IGNORECASE)

    def walk(x):
        if isinstance(x, str):
            return pattern.sub(KEY_PROMPT_LABEL, x)
        if isinstance(x, dict):
            return {walk(k): walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        return x

    return walk(obj)


def references(ctx: AttackContext, key, baseline=None) -> dict:
    """original_clean (with a baseline), locked_clean (locked output counts as wrong, as in ``modellock eval``),
    locked_clean_without_locked_class, unlocked (with the key; locked output dropped, as the unlocked predictor
    does) and chance."""
    from ..evaluate import split_logits

    targets = ctx.targets(ctx.test)
    ref = {}
    if baseline is not None:
        out = split_logits(baseline, ctx.test, source=ctx.source, batch_size=ctx.batch_size, progress=False)
        ref["original_clean"] = ctx.task.score(out, targets, int(baseline.config["num_classes"]), True,
                                               ctx.model.ignore_index)
    clean = ctx.clean_outputs()
    ref["locked_clean"] = ctx.score(clean, ignore_locked=False)
    if ctx.model.locked_class is not None:
        ref["locked_clean_without_locked_class"] = ctx.score(clean)
    ref["unlocked"] = ctx.score(ctx.outputs(ctx.test, key=key))
    ref["chance"] = ctx.task.chance(targets, ctx.num_classes, ctx.model.ignore_index)
    return ref


def run_suite(model, key, source, attacks=None, baseline=None, attacker_settings: str = "known", log=None,
              grid_images: int = 0, attack_options: dict | None = None, **ctx_options) -> SuiteRun:
    """Run ``attacks`` (names, default all) on ``model``; see the module docstring.

    ``attacker_settings``: ``known`` (the guessing attacks use the key's editor settings: the strongest
    guesser) or ``defaults`` (the editor's published defaults). ``grid_images`` > 0 also renders that many
    test images edited with the best guessed prompts for the report. ``ctx_options`` go to AttackContext.
    """
    log = log or (lambda message: None)
    names = available_attacks() if attacks in (None, "all", ["all"]) else list(attacks)
    specs = [attack_spec(n) for n in names]
    if attacker_settings == "known":
        machinery = Machinery.of(key)
    elif attacker_settings == "defaults":
        machinery = Machinery.defaults(key.editor)
    else:
        raise ModelLockError(f"attacker settings must be 'known' or 'defaults', not {attacker_settings!r}")
    ctx = AttackContext(model, source, machinery, **ctx_options)
    log(f"reference scores on {len(ctx.test)} test images")
    reference = references(ctx, key, baseline)
    results = {}
    for i, spec in enumerate(specs, 1):
        log(f"[{i}/{len(specs)}] {spec.name}: {spec.summary}")
        start = time.perf_counter()
        r = run_attack(spec.name, ctx, key=key, **(attack_options or {}).get(spec.name, {}))
        r["reads_key"] = spec.reads_key
        r["measure"] = spec.measure
        r["seconds"] = round(time.perf_counter() - start, 1)
        results[spec.name] = r
    if "guessed-prompts" in results:
        _note_exact_guess(results["guessed-prompts"], key.prompt)
    result = {
        "task": ctx.task.name, "metric": ctx.task.metric, "n_test": len(ctx.test), "n_train": len(ctx.train_data),
        "screen_size": len(ctx.screen_split), "reference": reference, "attacks": results,
        "settings": {"attacker_settings": attacker_settings, "editor": machinery.editor,
                     "fractions": list(ctx.fractions), "limit_prompts": ctx.limit_prompts, "top_k": ctx.top_k,
                     "budget": ctx.budget.name, "samples": ctx.samples, "lr": ctx.lr, "seed": ctx.seed,
                     "diffusion_models": len(ctx.diffusion_models)},
    }
    result["summary"] = summarise(result)
    run = SuiteRun(redact(result, key.prompt), ctx)
    if grid_images and "guessed-prompts" in results:
        _guess_grid(run, key, results["guessed-prompts"], grid_images)
    return run


def undone(score: float, reference: dict) -> float | None:
    """The share of the lock an attack scoring ``score`` undoes: (score - locked) / (unlocked - locked), with
    ``locked`` the locked model's clean score with its locked output ignored (as attacks are scored)."""
    locked = reference.get("locked_clean_without_locked_class", reference["locked_clean"])
    span = reference["unlocked"] - locked
    return (score - locked) / span if abs(span) > 1e-9 else None


def summarise(result: dict) -> dict:
    """The two figures that say how far a lock is from holding (see the threat model in DESIGN.md):

    - ``worst_case_undone``: the largest share of the lock undone by any attack that measures ``undone``
      (tolerance variants of the true key are not attacks), with the attack and its setting;
    - ``fine_tune_gain``: what fine-tuning the stolen weights gains over training from scratch, the largest
      over the thief's fractions (and ``distillation_gain`` for the distilled student)."""
    ref, out = result["reference"], {}
    worst = None
    for name, r in result["attacks"].items():
        if r.get("measure", "undone") != "undone" or r.get("best") is None:
            continue
        share = undone(r["best"], ref)
        if share is not None and (worst is None or share > worst[0]):
            worst = (share, name, r.get("best_setting"))
    if worst:
        out.update(worst_case_undone=worst[0], worst_case_attack=worst[1], worst_case_setting=worst[2])
    for name, key_name in (("fine-tune", "fine_tune_gain"), ("distillation", "distillation_gain")):
        r = result["attacks"].get(name)
        if r and r.get("gain") is not None:
            out[key_name] = r["gain"]
            if name == "fine-tune":
                out["fine_tune_gain_fraction"] = r.get("gain_fraction")
    out["line"] = summary_line(out, result.get("metric", "score"))
    return out


def summary_line(summary: dict, metric: str = "score") -> str:
    """One sentence: the worst attack and the fine-tuning gain."""
    parts = []
    if "worst_case_undone" in summary:
        parts.append(f"worst case: {summary['worst_case_attack']} undoes {summary['worst_case_undone']:.0%} of the lock")
    if "fine_tune_gain" in summary:
        frac = summary.get("fine_tune_gain_fraction")
        where = f" (at {frac * 100:g}% clean data)" if frac else ""
        parts.append(f"fine-tuning the stolen weights gains {summary['fine_tune_gain']:+.4f} {metric} over "
                     f"training from scratch{where}")
    if "distillation_gain" in summary:
        parts.append(f"distillation gains {summary['distillation_gain']:+.4f}")
    return "; ".join(parts) if parts else "no attack result to summarise"


def _note_exact_guess(guessed: dict, prompt: str) -> None:
    """When the catalogue holds the key prompt itself, also report the best *other* guess: what the attack
    reaches against a key prompt that is not in the catalogue."""
    rows = guessed["candidates"]
    guessed["key_prompt_in_catalogue"] = any(r["name"] == prompt for r in rows)
    others = [r for r in rows if r["name"] != prompt]
    if guessed["key_prompt_in_catalogue"] and others:
        top = others[0]  # rows are sorted by screening score
        guessed["best_without_key_prompt"] = top.get("score", top["screen_score"])
        guessed["best_without_key_prompt_setting"] = f"prompt {top['name']!r}" + (
            "" if "score" in top else " (screening subset only)")


def _guess_grid(run: SuiteRun, key, guessed: dict, n: int) -> None:
    """Columns: clean, edited with the key, and the best guessed prompts; rows: test images."""
    ctx = run.ctx
    split = ctx.screen_split
    samples = split.samples[:: max(1, len(split.samples) // n)][:n]
    clean = [split.load(s) for s in samples]
    guesses = [row for row in guessed["candidates"]][:GRID_GUESSES]
    columns = [("clean (locked model)", None), ("edited with the key (unlocked)", key)]
    columns += [(f"guess: {row['name']!r} ({row['screen_score']:.3f})", ctx.machinery.key(row["name"]))
                for row in guesses]
    cells = []
    for _, k in columns:
        predictor = ctx.model.predictor(k, device=ctx.device)
        images = predictor.edit(clean)
        logits = predictor.logits(images, edited=True)[:, : ctx.num_classes]
        cells.append([(im, int(p)) for im, p in zip(images, logits.argmax(1))])
    rows = []
    for i, s in enumerate(samples):
        truth = split.classes[s.label]
        rows.append([(cells[c][i][0], f"{split.classes[cells[c][i][1]]} {'✓' if cells[c][i][1] == s.label else '✗'}"
                                      f" (true: {truth})") for c in range(len(columns))])
    run.grid_columns = [redact(c, key.prompt) for c, _ in columns]
    run.grid_rows = [[(im, redact(cap, key.prompt)) for im, cap in row] for row in rows]


# ---------------------------------------------------------------------------------------------- tables
def table_rows(result: dict) -> list[tuple[str, float, str, str]]:
    """``(setting, score, share of the lock undone, how)`` for the reference rows and each attack.

    The share undone is ``(attack - locked) / (unlocked - locked)`` with ``locked`` the locked model's clean
    score as attacks are scored: with its locked output ignored, when it has one."""
    ref = result["reference"]
    rows = [(label, ref[name], "", "") for name, label in _REFERENCE_ROWS if ref.get(name) is not None]
    locked = ref.get("locked_clean_without_locked_class", ref["locked_clean"])
    span = ref["unlocked"] - locked

    def row(label: str, score: float, how: str) -> tuple[str, float, str, str]:
        return label, score, f"{(score - locked) / span:.0%}" if abs(span) > 1e-9 else "", how

    for name, r in result["attacks"].items():
        if r.get("best") is None:
            rows.append((f"attack: {name}", float("nan"), "", "no setting could be evaluated"))
        elif name == "fine-tune":
            for c in r["curve"]:
                extra = (f", pretrained start {c['pretrained']:.4f} (gain {c['gain_over_pretrained']:+.4f})"
                         if "pretrained" in c else "")
                how = (f"{c['n_images']} images, best cell {c['attack_cell']}; from scratch {c['scratch']:.4f} "
                       f"(gain {c['gain']:+.4f}){extra}")
                rows.append(row(f"attack: fine-tune {c['fraction'] * 100:g}%", c["attack"], how))
        else:
            kind = "key tolerance" if r.get("measure") == "tolerance" else "attack"
            rows.append(row(f"{kind}: {name}", r["best"], r.get("best_setting") or ""))
        if r.get("tolerance", {}).get("best") is not None:
            t = r["tolerance"]
            rows.append(row(f"key tolerance: {name}", t["best"], f"{t['best_setting']} (a variant of the key's "
                            "own settings; not an attack)"))
        if r.get("best_without_key_prompt") is not None:
            rows.append(row(f"attack: {name}, key prompt left out", r["best_without_key_prompt"],
                            r["best_without_key_prompt_setting"]))
    return rows


def format_table(result: dict) -> str:
    """A fixed-width text table of a suite result."""
    rows = table_rows(result)
    width = max(len(r[0]) for r in rows)
    head = (f"attack suite · {result['task']} · {result['metric']} · n_test={result['n_test']} · "
            f"screening subset {result['screen_size']}")
    lines = [head]
    if result.get("summary"):
        lines.append(result["summary"]["line"])
    lines.append(f"{'setting':<{width}}  {result['metric']:>8}  {'undone':>6}  how")
    lines += [f"{label:<{width}}  {score:8.4f}  {undone:>6}  {how}".rstrip() for label, score, undone, how in rows]
    lines.append("undone: (attack - locked clean) / (unlocked - locked clean), the locked output ignored in both")
    return "\n".join(lines)


def format_markdown(result: dict) -> str:
    """The same table in markdown."""
    metric = result["metric"]
    lines = [f"| setting | {metric} | lock undone | best setting |", "| --- | --- | --- | --- |"]
    for label, score, undone, how in table_rows(result):
        lines.append(f"| {label} | {score:.4f} | {undone} | {how.replace('|', '/')} |")
    return "\n".join(lines)
