"""The attack suite's HTML report, in the demo report's style.

From the top: the summary line (the CLI's), how to read it, the folder at rest and what the report covers
(model, data, date); a colour key; one chart of every attack's best score, coloured by kind (trained on
the thief's data, or not) and hatched where the attack breaks the lock; the table; the trained attacks
against training from scratch per fraction (a curve when there are two fractions or more, a table always);
one chart per attack; a grid of the best guessed edits. Every legend sits outside its axes.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from ..evaluation.report import ROLE_COLOURS, _png_data_uri, covers_text, sealing_text
from ..utils.atomic import write_bytes_atomic
from . import ATTACKS, attack_spec
from .suite import READING, UNDONE_LIMIT, is_trained, noise_level, table_rows, undone

MAX_BARS = 25
# one colour per kind of bar, everywhere in this report
KIND_COLOURS = {"trained": "#8172b2", "untrained": "#dd8452", "tolerance": "#b0b0b0", "scratch": "#4c72b0"}
KIND_LABELS = {"trained": "trained on the thief's data (judged by gain over scratch)",
               "untrained": "trains nothing (judged by share undone)",
               "tolerance": "key tolerance (a variant of the key itself; not an attack)",
               "scratch": "training from scratch on the thief's data (the yardstick)"}
BREAKS_HATCH = "//"
_REF_STYLE = {"locked_clean_without_locked_class": ("#937860", "locked, locked output ignored"),
              "unlocked": (ROLE_COLOURS["unlocked"], "unlocked"),
              "original_clean": (ROLE_COLOURS["reference"], "original"), "chance": ("black", "chance")}


def _plt():
    # lazy: matplotlib, only for charts
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib, only for charts
    import matplotlib.pyplot as plt

    return plt


def _reference_lines(ax, reference: dict, vertical: bool = True) -> None:
    for name, (colour, label) in _REF_STYLE.items():
        if name == "locked_clean_without_locked_class" and name not in reference:
            name, label = "locked_clean", "locked"
        if reference.get(name) is not None:
            line = ax.axvline if vertical else ax.axhline
            line(reference[name], color=colour, linestyle="--", linewidth=1, label=f"{label} {reference[name]:.3f}")


def _legend(ax, kinds: list[str], breaks: bool) -> None:
    """The kinds shown, the hatch of a bar that breaks the lock, and the reference lines: outside the axes, on
    the right, so no bar is covered."""
    # lazy: matplotlib, only for charts
    from matplotlib.patches import Patch

    handles = [Patch(color=KIND_COLOURS[k], label=KIND_LABELS[k]) for k in kinds]
    if breaks:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch=BREAKS_HATCH, label="breaks the lock "
                             f"(gain > 0, or more than {UNDONE_LIMIT:.0%} undone)"))
    lines, labels = ax.get_legend_handles_labels()
    ax.legend(handles=handles + lines, labels=[h.get_label() for h in handles] + labels, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)


def _bars(ax, bars: list[tuple[str, float, str, bool]]) -> None:
    """Horizontal bars ``(label, score, kind, breaks)``, the first on top; hatched where the bar breaks the lock."""
    bars = bars[::-1]
    y = np.arange(len(bars))
    patches = ax.barh(y, [b[1] for b in bars], color=[KIND_COLOURS[b[2]] for b in bars],
                      edgecolor=["black" if b[3] else KIND_COLOURS[b[2]] for b in bars])
    for patch, b in zip(patches, bars):
        if b[3]:
            patch.set_hatch(BREAKS_HATCH)
    for i, b in enumerate(bars):
        ax.text(b[1] + 0.01, i, f"{b[1]:.3f}", va="center", fontsize=7)
    ax.set_yticks(y, [b[0] for b in bars])


def _breaks(attack: dict, score: float, reference: dict, gain: float | None = None) -> bool:
    if is_trained(attack):
        return gain is not None and gain > 0
    share = undone(score, reference)
    return attack.get("measure", "undone") == "undone" and share is not None and share > UNDONE_LIMIT


def overview_figure(result: dict):
    """Every attack's best score (a trained attack: also its from-scratch yardstick at the fraction of its worst
    gain), coloured by kind, hatched where it breaks the lock; the reference scores as lines."""
    reference, bars = result["reference"], []
    for name, r in result["attacks"].items():
        if r.get("best") is None:
            continue
        kind = "trained" if is_trained(r) else ("tolerance" if r.get("measure") == "tolerance" else "untrained")
        if kind == "trained" and r.get("gain") is not None:
            score = r["scratch"] + r["gain"]  # the attack's score where its gain is largest
            bars.append((f"{name} ({r.get('gain_fraction', 0) * 100:g}%)", score, kind, r["gain"] > 0))
            bars.append((f"scratch ({r.get('gain_fraction', 0) * 100:g}%)", r["scratch"], "scratch", False))
        else:
            bars.append((name, r["best"], kind, _breaks(r, r["best"], reference)))
        if r.get("tolerance", {}).get("best") is not None:
            bars.append((f"{name}: key tolerance", r["tolerance"]["best"], "tolerance", False))
    if not bars:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(bars) + 1.6))
    _bars(ax, bars)
    _reference_lines(ax, reference)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel(f"{result['metric']} on the test split")
    ax.set_title("every attack: best score", fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    _legend(ax, [k for k in KIND_COLOURS if any(b[2] == k for b in bars)], any(b[3] for b in bars))
    return fig


def attack_figure(name: str, attack: dict, reference: dict, metric: str):
    """Bars of one attack's settings (the best ``MAX_BARS``); a trained attack: its score and the from-scratch
    yardstick per fraction (or per student); reference scores as lines."""
    trained = is_trained(attack)
    if trained and attack.get("curve") and "gain" in attack["curve"][0]:
        bars = []
        for c in attack["curve"]:
            pct = f"{c['fraction'] * 100:g}%"
            bars += [(f"{name} {pct}", c.get("attack", c.get("score")), "trained", c["gain"] > 0),
                     (f"scratch {pct}", c["scratch"], "scratch", False)]
    elif trained and attack.get("students"):
        bars = [(f"{s['queries']} queries, {s['targets']}", s["score"], "trained", s["gain"] > 0)
                for s in attack["students"]] + [("scratch", attack["scratch"], "scratch", False)]
    else:
        kind = "tolerance" if attack.get("measure") == "tolerance" else "untrained"
        items = sorted((attack.get("scores") or {}).items(), key=lambda kv: -kv[1])
        bars = [(k, v, kind, _breaks(attack, v, reference)) for k, v in items]
    if not bars:
        return None
    total = len(bars)
    bars = bars[:MAX_BARS]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(bars) + 1.6))
    _bars(ax, bars)
    _reference_lines(ax, reference)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel(metric + (" (screening subset)" if "screen_size" in attack else ""))
    ax.set_title(name if total <= MAX_BARS else f"{name}: best {MAX_BARS} of {total}", fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    _legend(ax, [k for k in KIND_COLOURS if any(b[2] == k for b in bars)], any(b[3] for b in bars))
    return fig


def _save(fig, path: Path) -> Path | None:
    if fig is None:
        return None
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def attack_chart(name: str, attack: dict, reference: dict, metric: str, path: Path) -> Path | None:
    return _save(attack_figure(name, attack, reference, metric), path)


def trained_series(result: dict) -> list[tuple[str, list[tuple[float, float]], str, str]]:
    """``(label, [(fraction, score)], colour, line style)`` of the trained attacks and of training from scratch."""
    attacks, series, scratch = result["attacks"], [], {}
    for name, r in attacks.items():
        if not is_trained(r) or not r.get("curve") or "gain" not in r["curve"][0]:
            continue
        series.append((name, [(c["fraction"], c.get("attack", c.get("score"))) for c in r["curve"]],
                       KIND_COLOURS["trained"], attack_spec(name).chart_style if name in ATTACKS else ":"))
        scratch.update({c["fraction"]: c["scratch"] for c in r["curve"]})
        pre = [(c["fraction"], c["pretrained"]) for c in r["curve"] if "pretrained" in c]
        if pre:
            series.append(("from the pretrained start", pre, "#55a868", "-"))
    if scratch:
        series.append(("train from scratch", sorted(scratch.items()), KIND_COLOURS["scratch"], "-"))
    return series


def fine_tune_curve(result: dict, path: Path) -> Path | None:
    """Score vs. the attacker's clean fraction: every trained attack and training from scratch; None when no
    series has two fractions (a single point is shown in the table instead)."""
    series = trained_series(result)
    if not any(len({f for f, _ in points}) >= 2 for _, points, _, _ in series):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    markers = "osD^v<>ph"
    for i, (label, points, colour, style) in enumerate(series):
        points = sorted(points)
        ax.plot([100 * p[0] for p in points], [p[1] for p in points], style, marker=markers[i % len(markers)],
                color=colour, label=label)
    _reference_lines(ax, result["reference"], vertical=False)
    ax.set_xlabel("attacker's clean labelled data (% of the training split)")
    ax.set_ylabel(result["metric"] + " on the test split")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)


def _trained_table(result: dict) -> str:
    """Per fraction: each trained attack's score, the from-scratch score and the gain."""
    noise = noise_level(result.get("n_test") or 0)
    rows = ""
    for name, r in result["attacks"].items():
        if not is_trained(r) or r.get("best") is None:
            continue
        points = r["curve"] if r.get("curve") and "gain" in r["curve"][0] else [
            {"fraction": r.get("gain_fraction"), "score": r["best"], "scratch": r.get("scratch"),
             "gain": r.get("gain")}]
        for c in points:
            if c.get("gain") is None:
                continue
            mark = " (noise)" if abs(c["gain"]) <= noise else ""
            colour = " style='color:#c44e52;font-weight:bold'" if c["gain"] > 0 else ""
            rows += (f"<tr><td class='l'>{html.escape(name)}</td><td>{c['fraction'] * 100:g}%</td>"
                     f"<td>{c.get('attack', c.get('score')):.4f}</td><td>{c['scratch']:.4f}</td>"
                     f"<td{colour}>{c['gain']:+.4f}{mark}</td></tr>")
    if not rows:
        return ""
    return ("<h2>Trained attacks against training from scratch</h2><table class='trained'><tr><th>attack</th>"
            f"<th>thief's clean data</th><th>attack</th><th>from scratch</th><th>gain over scratch</th></tr>{rows}"
            "</table>")


def _colour_key() -> str:
    items = "".join(f"<li><span class='sw' style='background:{c}'></span>{html.escape(KIND_LABELS[k])}</li>"
                    for k, c in KIND_COLOURS.items())
    items += (f"<li><span class='sw hatch'></span>hatched, black edge: breaks the lock (gain over scratch above 0, "
              f"or more than {UNDONE_LIMIT:.0%} undone)</li>")
    items += "".join(f"<li><span class='sw' style='background:{c}'></span>dashed line: {html.escape(label)}</li>"
                     for c, label in _REF_STYLE.values())
    return f"<ul class='key'>{items}</ul>"


def _how_to_read(result: dict) -> str:
    noise = noise_level(result.get("n_test") or 0)
    text = [
        READING,
        "Gain over scratch: a trained attack's best score minus the best score of the same architecture trained from "
        "random initialisation on the same images, with the same optimizers, learning rates and samples.",
        "Undone: (attack - locked clean) / (unlocked - locked clean), the locked output ignored in both (a thief sees "
        "it named in config.json), clamped to 0-100 %.",
        f"(noise): within +-{noise:.3f} of zero, two standard errors of a difference of two scores on "
        f"{result['n_test']} test images; such a figure is not told apart from no effect.",
        f"Sweeps screen every setting on a {result['screen_size']}-image subset and score their best "
        f"{result['settings']['top_k']} on the whole test split. Key tolerance rows vary the key's own settings: a "
        "thief without the key cannot make them; they are not counted.",
    ]
    return "<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in text) + "</ul>"


def write_attack_report(out, result: dict, grid_columns: list[str] | None = None,
                        grid_rows: list[list[tuple]] | None = None, title: str = "modellock attack suite") -> Path:
    """``report.html`` plus its PNG charts in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metric = result["metric"]
    table = "".join(
        f"<tr class='{r.kind}'><td class='l'>{html.escape(r.label)}</td><td>{r.score:.4f}</td>"
        f"<td>{html.escape(r.undone)}</td><td>{html.escape(r.gain)}</td><td class='l'>{html.escape(r.how)}</td></tr>"
        for r in table_rows(result))
    charts = []
    overview = _save(overview_figure(result), out / "attacks.png")
    if overview:
        charts.append(("Every attack", overview.name))
    curve = fine_tune_curve(result, out / "fine-tune-curve.png")
    if curve:
        charts.append(("Trained attacks and training from scratch vs. the attacker's clean data", curve.name))
    for name, attack in result["attacks"].items():
        path = attack_chart(name, attack, result["reference"], metric, out / f"attack-{name}.png")
        if path:
            charts.append((name, path.name))
    charts_html = "".join(f"<h3>{html.escape(t)}</h3><p><img src='{html.escape(f)}' alt='{html.escape(t)}'></p>"
                          for t, f in charts)
    grid_html = ""
    if grid_rows:
        scale = max(1, 96 // max(grid_rows[0][0][0].shape[:2]))
        head = "".join(f"<th>{html.escape(c)}</th>" for c in grid_columns or [])
        body = "".join("<tr>" + "".join(
            f"<td><img class='px' src='{_png_data_uri(im, scale)}'><br><small>{html.escape(cap)}</small></td>"
            for im, cap in row) + "</tr>" for row in grid_rows)
        grid_html = f"<h2>Best guessed prompts, edited test images</h2><table><tr>{head}</tr>{body}</table>"
    summary = result.get("summary", {}).get("line", "")
    facts = "".join(f"<p class='facts'>{html.escape(t)}</p>" for t in (sealing_text(result),
                                                                       covers_text(result.get("covers"))) if t)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:center}}td.l{{text-align:left}}
img.px{{image-rendering:pixelated}}
.summary{{font-size:1.1em}}ul.key{{list-style:none;padding-left:0}}
.sw{{display:inline-block;width:.9em;height:.9em;margin-right:.4em;border:1px solid #666;vertical-align:middle}}
.hatch{{background:repeating-linear-gradient(45deg,#fff,#fff 2px,#000 2px,#000 3px)}}</style></head>
<body><h1>{html.escape(title)}</h1><p class='summary'><b>{html.escape(summary)}</b></p>{facts}
<h2>How to read this</h2>{_how_to_read(result)}<h3>Colour key</h3>{_colour_key()}
<h2>Results ({html.escape(metric)})</h2><table><tr><th>setting</th><th>{html.escape(metric)}</th><th>undone</th>
<th>gain over scratch</th><th>how</th></tr>
{table}</table>{_trained_table(result)}
<h2>Charts</h2>{charts_html}{grid_html}</body></html>"""
    path = out / "report.html"
    write_bytes_atomic(page.encode(), path)
    return path


def attacks_html(result: dict) -> str:
    """The attack suite's summary (the two figures first, and how to read them) and table
    (``modellock.attacks.suite``), for a report page."""
    settings = result.get("settings", {})
    rows = "".join(f"<tr><td class='l'>{html.escape(r.label)}</td><td>{r.score:.4f}</td><td>{html.escape(r.undone)}"
                   f"</td><td>{html.escape(r.gain)}</td><td class='l'>{html.escape(r.how)}</td></tr>"
                   for r in table_rows(result))
    return (f"<h2>Attacks without the key ({html.escape(str(settings.get('budget')))} budget)</h2>"
            f"<p class='summary'><b>{html.escape(result['summary']['line'])}</b></p>"
            f"<p>{html.escape(READING)}</p>"
            f"<p>A thief who knows the method holds the locked model's opened weights and "
            f"{', '.join(f'{f * 100:g}%' for f in settings.get('fractions', []))} of the training data with labels. "
            "<code>modellock attack --budget full</code> runs the full thief.</p>"
            f"<table><tr><th>setting</th><th>{html.escape(result['metric'])}</th><th>lock undone</th>"
            f"<th>gain over scratch</th><th>how</th></tr>{rows}</table>")
