"""Run attacks against a locked model next to its reference scores; the result as JSON and as a table.

``run_suite`` is the one place that holds the true key: it opens the model's weights with it (every attack
measures the lock on the opened weights; how the folder stores them is reported apart, ``sealed``), scores
the unlocked reference with it, hands it to the attacks that declare they read it (see
``modellock.attacks``), and finally redacts the key's prompt from everything it returns (a guessed
catalogue prompt that *is* the key is shown as ``[the key prompt]``).

The summary judges the lock by two figures (DESIGN.md's threat model): ``worst_gain_over_scratch``, the
largest gain of an attack that trains on the thief's labelled images over training from scratch on them,
and ``worst_case_undone``, the largest share of the lock undone by an attack that trains nothing. It holds
when the first is at most 0 and the second at most ``UNDONE_LIMIT``.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import ModelLockError
from ..evaluation.matrix import covers, sealing, split_logits
from ..evaluation.report import covers_text, sealing_text
from ..model_folder.card import READING, UNDONE_LIMIT  # noqa: F401  (the reading guide the card and reports share)
from . import ATTACKS, attack_spec, available_attacks, run_attack
from .context import AttackContext, Machinery

KEY_PROMPT_LABEL = "[the key prompt]"
GRID_GUESSES = 3
FAILS = {"worst_gain_over_scratch": "a trained attack beats training from scratch",
         "worst_case_undone": f"an untrained attack undoes more than {UNDONE_LIMIT:.0%}"}
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

    ctx = AttackContext(model.open(key), source, machinery, **ctx_options)  # the lock itself, not the seal
    log(f"reference scores on {len(ctx.test)} test images")
    reference = references(ctx, key, baseline)
    results = {}
    for i, spec in enumerate(specs, 1):
        log(f"[{i}/{len(specs)}] {spec.name}: {spec.summary}")
        start = time.perf_counter()
        r = run_attack(spec.name, ctx, key=key, **(attack_options or {}).get(spec.name, {}))
        r["reads_key"] = spec.reads_key
        r["measure"] = spec.measure
        r["trained"] = spec.trained
        r["seconds"] = round(time.perf_counter() - start, 1)
        results[spec.name] = r
    guesses = [name for name in results if attack_spec(name).guesses_prompts]
    for name in guesses:
        _note_exact_guess(results[name], key.prompt)
    result = {
        "task": ctx.task.name, "metric": ctx.task.metric, "n_test": len(ctx.test), "n_train": len(ctx.train_data),
        "screen_size": len(ctx.screen_split), **sealing(model),
        "covers": covers(model, source, ctx.test_split, len(ctx.test)), "reference": reference, "attacks": results,
        "settings": {"attacker_settings": attacker_settings, "editor": machinery.editor,
                     "fractions": list(ctx.fractions), "limit_prompts": ctx.limit_prompts, "top_k": ctx.top_k,
                     "budget": ctx.budget.name, "samples": ctx.samples, "lr": ctx.lr, "seed": ctx.seed,
                     "diffusion_models": len(ctx.diffusion_models)},
    }
    result["summary"] = summarise(result)
    run = SuiteRun(redact(result, key.prompt), ctx)
    if grid_images and guesses:
        _guess_grid(run, key, results[guesses[0]], grid_images)
    return run


def undone(score: float, reference: dict) -> float | None:
    """The share of the lock an attack scoring ``score`` undoes: (score - locked) / (unlocked - locked), with
    ``locked`` the locked model's clean score with its locked output ignored (as attacks are scored)."""
    locked = reference.get("locked_clean_without_locked_class", reference["locked_clean"])
    span = reference["unlocked"] - locked
    return (score - locked) / span if abs(span) > 1e-9 else None


def noise_level(n: int) -> float:
    """Two standard errors of a difference of two scores on ``n`` test images, binomial at its widest (p = 0.5):
    ``sqrt(2 / n)``. A gain, or an attack's distance from the locked score, within it is not told apart from 0."""
    return math.sqrt(2.0 / n) if n else float("inf")


def is_trained(attack: dict) -> bool:
    return bool(attack.get("trained", attack.get("measure") == "gain"))


def summarise(result: dict) -> dict:
    """How far the lock is from holding (see the module docstring):

    - ``worst_gain_over_scratch``: the largest gain over training from scratch of any trained attack, with the
      attack (``worst_gain_attack``), the thief's fraction and the setting;
    - ``worst_case_undone``: the largest share of the lock undone (clamped to [0, 1]) by any attack that trains
      nothing and measures ``undone`` (tolerance variants of the true key are not attacks), with its setting;
    - ``fine_tune_gain`` (and ``distillation_gain``): those two attacks' gains;
    - ``holds`` (None when neither figure was measured) and ``fails``: which of the two figures breaks it;
    - ``noise``: ``noise_level`` of the test split."""
    ref, out = result["reference"], {}
    worst = gain = None
    for name, r in result["attacks"].items():
        if is_trained(r):
            if r.get("gain") is not None and (gain is None or r["gain"] > gain[0]):
                gain = (r["gain"], name, r.get("gain_fraction"), r.get("gain_setting"))
            continue
        if r.get("measure", "undone") != "undone" or r.get("best") is None:
            continue
        share = undone(r["best"], ref)
        if share is not None and (worst is None or share > worst[0]):
            worst = (share, name, r.get("best_setting"))
    if gain:
        out.update(worst_gain_over_scratch=gain[0], worst_gain_attack=gain[1], worst_gain_fraction=gain[2],
                   worst_gain_setting=gain[3])
    if worst:
        out.update(worst_case_undone=min(max(worst[0], 0.0), 1.0), worst_case_attack=worst[1],
                   worst_case_setting=worst[2])
    for name, r in result["attacks"].items():  # the fields each attack's spec copies into the summary
        fields = attack_spec(name).summary_fields if name in ATTACKS else {}
        if fields and r.get("gain") is not None:
            out.update({summary_field: r.get(field) for field, summary_field in fields.items()})
    out["fails"] = [f for f, broken in (("worst_gain_over_scratch", gain and gain[0] > 0),
                                        ("worst_case_undone", worst and worst[0] > UNDONE_LIMIT)) if broken]
    out["holds"] = None if not (gain or worst) else not out["fails"]
    out["noise"] = noise_level(result.get("n_test") or 0)
    out["line"] = summary_line(out, result.get("metric", "score"))
    return out


def summary_line(summary: dict, metric: str = "score") -> str:
    """One sentence: whether the lock holds (and which figure breaks it), the two figures, the fine-tune gain."""
    if summary.get("holds") is None:
        return "no attack result to summarise"
    noise = summary.get("noise", 0.0)
    verdict = "the lock holds" if summary["holds"] else \
        f"the lock does not hold: {' and '.join(FAILS[f] for f in summary['fails'])}"
    parts = [verdict]
    if "worst_gain_over_scratch" in summary:
        g, frac = summary["worst_gain_over_scratch"], summary.get("worst_gain_fraction")
        where = f" at {frac * 100:g}% clean data" if frac else ""
        parts.append(f"worst gain over scratch {g:+.4f} {metric}{_within(g, noise)} ({summary['worst_gain_attack']}"
                     f"{where})")
    else:
        parts.append("no trained attack run")
    if "worst_case_undone" in summary:
        parts.append(f"worst case undone {summary['worst_case_undone']:.0%} ({summary['worst_case_attack']}: "
                     f"{summary['worst_case_setting']})")
    else:
        parts.append("no untrained attack run")
    if "fine_tune_gain" in summary:
        frac = summary.get("fine_tune_gain_fraction")
        where = f" at {frac * 100:g}% clean data" if frac else ""
        parts.append(f"fine-tune gain {summary['fine_tune_gain']:+.4f}{where}")
    return "; ".join(parts)


def _within(value: float, noise: float) -> str:
    return f" (within noise, +-{noise:.3f})" if abs(value) <= noise else ""


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
class Row(NamedTuple):
    """A table row: the setting, its score, the share undone and the gain over scratch (as text, empty where they
    do not apply), how it was reached, and its kind: reference, trained, untrained or tolerance."""

    label: str
    score: float
    undone: str
    gain: str
    how: str
    kind: str


def undone_text(score: float, reference: dict, noise: float) -> str:
    """The share undone, clamped to [0, 100] %, marked when the score is within noise of the locked score."""
    share = undone(score, reference)
    if share is None:
        return "n/a"
    locked = reference.get("locked_clean_without_locked_class", reference["locked_clean"])
    mark = " (noise)" if abs(score - locked) <= noise else ""
    return f"{min(max(share, 0.0), 1.0):.0%}{mark}"


def gain_text(gain: float, noise: float) -> str:
    return f"{gain:+.4f}" + (" (noise)" if abs(gain) <= noise else "")


def table_rows(result: dict) -> list[Row]:
    """The reference rows, then each attack: a trained one per fraction with its gain over scratch, an untrained
    one with the share of the lock it undoes (see ``undone``; the locked output ignored, when there is one)."""
    ref = result["reference"]
    noise = noise_level(result.get("n_test") or 0)
    rows = [Row(label, ref[name], "", "", "", "reference") for name, label in _REFERENCE_ROWS
            if ref.get(name) is not None]

    def untrained(label: str, score: float, how: str, kind: str = "untrained") -> Row:
        return Row(label, score, undone_text(score, ref, noise), "", how, kind)

    for name, r in result["attacks"].items():
        if r.get("best") is None:
            rows.append(Row(f"attack: {name}", float("nan"), "", "", r.get("skipped") or
                            "no setting could be evaluated", "trained" if is_trained(r) else "untrained"))
        elif is_trained(r) and r.get("curve") and "gain" in r["curve"][0]:
            for c in r["curve"]:
                score = c.get("attack", c.get("score"))
                if "attack_cell" in c:  # a grid of settings per fraction (fine-tune)
                    extra = (f", pretrained start {c['pretrained']:.4f} (gain {c['gain_over_pretrained']:+.4f})"
                             if "pretrained" in c else "")
                    how = (f"{c['n_images']} images, best cell {c['attack_cell']}; from scratch {c['scratch']:.4f}"
                           f"{extra}")
                else:
                    how = f"{c['n_images']} images; from scratch {c['scratch']:.4f}"
                rows.append(Row(f"attack: {name} {c['fraction'] * 100:g}%", score, "", gain_text(c["gain"], noise),
                                how, "trained"))
        elif is_trained(r):
            rows.append(Row(f"attack: {name}", r["best"], "", gain_text(r["gain"], noise) if r.get("gain") is not None
                            else "", r.get("best_setting") or "", "trained"))
        elif r.get("measure") == "tolerance":
            rows.append(untrained(f"key tolerance: {name}", r["best"], r.get("best_setting") or "", "tolerance"))
        else:
            rows.append(untrained(f"attack: {name}", r["best"], r.get("best_setting") or ""))
        if r.get("tolerance", {}).get("best") is not None:
            t = r["tolerance"]
            rows.append(untrained(f"key tolerance: {name}", t["best"], f"{t['best_setting']} (a variant of the key's "
                                  "own settings; not an attack)", "tolerance"))
        if r.get("best_without_key_prompt") is not None:
            rows.append(untrained(f"attack: {name}, key prompt left out", r["best_without_key_prompt"],
                                  r["best_without_key_prompt_setting"]))
    return rows


def header_lines(result: dict) -> list[str]:
    """The lines above a suite's table: the summary line, how to read it, the folder at rest, what it covers."""
    lines = [result["summary"]["line"], READING] if result.get("summary") else []
    return lines + [t for t in (sealing_text(result), covers_text(result.get("covers"))) if t]


def format_table(result: dict) -> str:
    """A fixed-width text table of a suite result."""
    rows = table_rows(result)
    width = max(len(r.label) for r in rows)
    head = (f"attack suite · {result['task']} · {result['metric']} · n_test={result['n_test']} · "
            f"screening subset {result['screen_size']}")
    lines = [head, *header_lines(result)]
    lines.append(f"{'setting':<{width}}  {result['metric']:>8}  {'undone':>10}  {'gain':>15}  how")
    lines += [f"{r.label:<{width}}  {r.score:8.4f}  {r.undone:>10}  {r.gain:>15}  {r.how}".rstrip() for r in rows]
    lines.append("undone (attacks that train nothing): (attack - locked clean) / (unlocked - locked clean), the "
                 "locked output ignored in both, clamped to 0-100 %; gain (trained attacks): attack - training from "
                 f"scratch on the same images; (noise): within +-{noise_level(result['n_test']):.3f}, two standard "
                 "errors of a difference of two scores on this test split")
    return "\n".join(lines)


def format_markdown(result: dict) -> str:
    """The same table in markdown."""
    metric = result["metric"]
    lines = [f"| setting | {metric} | lock undone | gain over scratch | best setting |",
             "| --- | --- | --- | --- | --- |"]
    for r in table_rows(result):
        lines.append(f"| {r.label} | {r.score:.4f} | {r.undone} | {r.gain} | {r.how.replace('|', '/')} |")
    return "\n".join(lines)
