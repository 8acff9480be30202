"""The attack suite's HTML report, in the demo report's style: the table, one bar chart per attack, the
fine-tune curve (score vs clean fraction: attack vs scratch) and a grid of the best guessed edits."""

from __future__ import annotations

import html
from pathlib import Path

from ..images import write_bytes_atomic
from ..report import ROLE_COLOURS, _png_data_uri
from .suite import table_rows

MAX_BARS = 25
_REF_STYLE = {"locked_clean": (ROLE_COLOURS["no key"], "locked, clean"),  # the demo report's colours
              "locked_clean_without_locked_class": ("#937860", "locked, clean, locked output ignored"),
              "unlocked": (ROLE_COLOURS["unlocked"], "unlocked"), "original_clean": (ROLE_COLOURS["reference"], "original"),
              "chance": ("black", "chance")}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _reference_lines(ax, reference: dict, vertical: bool = True) -> None:
    for name, (colour, label) in _REF_STYLE.items():
        if reference.get(name) is not None:
            line = ax.axvline if vertical else ax.axhline
            line(reference[name], color=colour, linestyle="--", linewidth=1, label=f"{label} {reference[name]:.3f}")


def attack_chart(name: str, attack: dict, reference: dict, metric: str, path: Path) -> Path | None:
    """Bars of the attack's settings (the best ``MAX_BARS``), with the reference scores as lines."""
    scores = attack.get("scores") or {}
    if not scores:
        return None
    plt = _plt()
    items = sorted(scores.items(), key=lambda kv: -kv[1])
    shown = items[:MAX_BARS]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(shown) + 1.6))
    ax.barh([k for k, _ in shown][::-1], [v for _, v in shown][::-1], color="#8172b2")
    _reference_lines(ax, reference)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel(metric + (" (screening subset)" if "screen_size" in attack else ""))
    title = name if len(items) <= MAX_BARS else f"{name}: best {MAX_BARS} of {len(items)}"
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fine_tune_curve(result: dict, path: Path) -> Path | None:
    """Score vs. the attacker's clean fraction: fine-tune attack, scratch, pretrained start, adapter, head re-fit."""
    attacks, reference = result["attacks"], result["reference"]
    series = []
    if "fine-tune" in attacks:
        curve = attacks["fine-tune"]["curve"]
        series.append(("fine-tune the locked model", [(c["fraction"], c["attack"]) for c in curve], "#c44e52", "-"))
        series.append(("train from scratch", [(c["fraction"], c["scratch"]) for c in curve], "#4c72b0", "-"))
        pre = [(c["fraction"], c["pretrained"]) for c in curve if "pretrained" in c]
        if pre:
            series.append(("from the pretrained start", pre, "#55a868", "-"))
    if "input-adapter" in attacks:
        series.append(("input adapter", [(c["fraction"], c["score"]) for c in attacks["input-adapter"]["curve"]],
                       "#8172b2", ":"))
    if "ignore-locked-class" in attacks:
        refit = attacks["ignore-locked-class"]["refit_head"]
        series.append(("linear head re-fit", [(float(f), r["score"]) for f, r in refit.items()], "#937860", ":"))
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, points, colour, style in series:
        points = sorted(points)
        ax.plot([100 * p[0] for p in points], [p[1] for p in points], style, marker="o", color=colour, label=label)
    _reference_lines(ax, reference, vertical=False)
    ax.set_xlabel("attacker's clean labelled data (% of the training split)")
    ax.set_ylabel(result["metric"] + " on the test split")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_attack_report(out, result: dict, grid_columns: list[str] | None = None,
                        grid_rows: list[list[tuple]] | None = None, title: str = "modellock attack suite") -> Path:
    """``report.html`` plus its PNG charts in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metric = result["metric"]
    table = "".join(
        f"<tr><td style='text-align:left'>{html.escape(label)}</td><td>{score:.4f}</td><td>{html.escape(undone)}</td>"
        f"<td style='text-align:left'>{html.escape(how)}</td></tr>" for label, score, undone, how in table_rows(result))
    charts = []
    curve = fine_tune_curve(result, out / "fine-tune-curve.png")
    if curve:
        charts.append(("Fine-tuning and adapter attacks vs. the attacker's clean data", curve.name))
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
    notes = (f"{result['task']} · {metric} on {result['n_test']} test images; sweeps screen on a "
             f"{result['screen_size']}-image subset and score their best {result['settings']['top_k']} on the whole "
             "test split. 'undone' = (attack - locked clean) / (unlocked - locked clean). Attack scores (and 'undone') "
             "ignore a locked output: a thief sees it named in config.json.")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:center}}img.px{{image-rendering:pixelated}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(notes)}</p>
<h2>Results</h2><table><tr><th>setting</th><th>{html.escape(metric)}</th><th>undone</th><th>best setting</th></tr>
{table}</table>
<h2>Charts</h2>{charts_html}{grid_html}</body></html>"""
    path = out / "report.html"
    write_bytes_atomic(page.encode(), path)
    return path
