"""Reports: the evaluation matrix as a text table, a bar chart, an image grid and one HTML page.

Every row of the matrix has a *role*, and a role has one colour everywhere (table, chart, grid, attack
report): the original model is the reference (blue), the unlocked model is the outcome the owner wants
(green), the locked model without the key is what a thief gets (red), and wrong keys are a thief's near
guesses (orange). Each row has two scores: with the locked output counted as a wrong answer, and with it
ignored (the thief's first move: drop that output and take the best real class).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..model_folder.card import (COUNTED, IGNORED, MatrixRow, _has_locked_output, markdown_table,  # noqa: F401
                                 matrix_rows)
from ..utils.atomic import write_bytes_atomic

ROLE_COLOURS = {"reference": "#4c72b0", "unlocked": "#55a868", "no key": "#c44e52", "wrong key": "#dd8452",
                "chance": "#000000"}

READING_GUIDE = [
    ("original", "reference", "the same network trained normally, without a lock: the score to match."),
    ("locked", "no key", "the locked model on clean images: what anyone holding the weights without the key "
     "gets. The lock works when this is low."),
    ("unlocked", "unlocked", "the locked model on images edited with the key first: the owner's use. The lock "
     "costs little when this is close to the original."),
    ("wrong keys", "wrong key", "images edited with keys that are not the key (the next seed, other prompts): "
     "a thief's near guesses. The lock holds when these stay low."),
    ("locked output ignored", None, "a locked model has one extra output, \"locked\". The first column counts "
     "that answer as wrong; the second drops that output and takes the best real class, as a thief would."),
    ("chance", "chance", "always answering the most frequent class. Near or below chance means useless."),
]


def sealing_text(result: dict) -> str:
    """One line on how the folder stores its weights (``sealed``, ``folder_alone``), apart from the lock."""
    if "sealed" not in result:
        return ""
    state = "sealed" if result["sealed"] else "not sealed"
    return (f"folder at rest: {state}; a thief with the folder alone gets: {result['folder_alone']}. Every figure "
            "here measures the lock itself, on the opened weights.")


def covers_text(covers: dict | None) -> str:
    """Which model, data and date a result covers, in one line."""
    if not covers:
        return ""
    sha = f" (weights sha256 {covers['weights_sha256']}...)" if covers.get("weights_sha256") else ""
    return (f"covers: model {covers.get('model') or '(in memory)'}{sha}; data '{covers['data']}' (source id "
            f"{covers['source_id']}), split {covers['split']}, {covers['n']} images; {covers['date']}")


def format_table(result: dict) -> str:
    """A fixed-width text table of an evaluation result, with a header row."""
    rows = matrix_rows(result)
    two = _has_locked_output(result)
    width = max(len(r.label) for r in rows + [MatrixRow("chance", "chance", 0.0)])
    metric = result["metric"]
    header = f"{'setting':<{width}}  {metric:>9}" + (f"  {IGNORED}" if two else "")
    lines = [f"{result.get('task', '')} · {metric} · n_test={result['n_test']}"]
    lines += [t for t in (sealing_text(result), covers_text(result.get("covers"))) if t] + [header]
    for r in rows + [MatrixRow("chance", "chance", result["chance"])]:
        extra = f"  {r.ignored:>{len(IGNORED)}.4f}" if two and r.ignored is not None else ""
        lines.append(f"{r.label:<{width}}  {r.score:9.4f}{extra}")
    if result.get("locked_class_rate_clean") is not None:
        lines.append(f"{'share of clean images answered locked':<{width}}  {result['locked_class_rate_clean']:9.4f}")
    return "\n".join(lines)


def bar_chart(result: dict, path: Path) -> Path:
    """Horizontal bars per setting in its role's colour (hatched: locked output ignored), chance dashed."""
    # lazy: matplotlib, only for charts
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib, only for charts
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = matrix_rows(result)[::-1]
    two = _has_locked_output(result)
    h = 0.38 if two else 0.7
    fig, ax = plt.subplots(figsize=(9.5, 0.55 * len(rows) + 1.4))
    y = np.arange(len(rows))
    colours = [ROLE_COLOURS[r.role] for r in rows]
    ax.barh(y + (h / 2 if two else 0), [r.score for r in rows], height=h, color=colours)
    for i, r in enumerate(rows):
        ax.text(r.score + 0.01, i + (h / 2 if two else 0), f"{r.score:.3f}", va="center", fontsize=8)
    if two:
        ignored = [r.ignored if r.ignored is not None else 0.0 for r in rows]
        ax.barh(y - h / 2, ignored, height=h, color=colours, alpha=0.45, hatch="//", edgecolor="white")
        for i, r in enumerate(rows):
            if r.ignored is not None:
                ax.text(r.ignored + 0.01, i - h / 2, f"{r.ignored:.3f}", va="center", fontsize=7, color="#444")
    ax.set_yticks(y, [r.label for r in rows], fontsize=8)
    ax.axvline(result["chance"], color="black", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel(result["metric"])
    handles = [Patch(color=ROLE_COLOURS[role], label=role) for role in ("reference", "unlocked", "no key", "wrong key")
               if any(r.role == role for r in rows)]
    if two:
        handles += [Patch(facecolor="#999", label=COUNTED), Patch(facecolor="#999", alpha=0.45, hatch="//",
                                                                  edgecolor="white", label=IGNORED)]
    handles.append(plt.Line2D([0], [0], color="black", linestyle="--", label=f"chance {result['chance']:.3f}"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _png_data_uri(image: np.ndarray, scale: int = 1) -> str:
    im = Image.fromarray(image)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@dataclass
class GridColumn:
    """A column of the example grid: its title, role (colour) and a summary line under the title."""

    title: str
    role: str | None = None
    summary: str = ""


def _swatch(role: str | None) -> str:
    if role is None:
        return ""
    return f"<span class='sw' style='background:{ROLE_COLOURS[role]}'></span>"


def _matrix_html(result: dict) -> str:
    two = _has_locked_output(result)
    metric = html.escape(result["metric"])
    head = f"<tr><th>setting</th><th>{metric}<br><small>{COUNTED}</small></th>" + \
        (f"<th>{metric}<br><small>{IGNORED}</small></th>" if two else "") + "</tr>"
    body = ""
    for r in matrix_rows(result) + [MatrixRow("chance (most frequent class)", "chance", result["chance"])]:
        ignored = (f"<td>{r.ignored:.4f}</td>" if r.ignored is not None else "<td>&ndash;</td>") if two else ""
        body += f"<tr><td class='l'>{_swatch(r.role)}{html.escape(r.label)}</td><td>{r.score:.4f}</td>{ignored}</tr>"
    return f"<table>{head}{body}</table>"


def _guide_html(result: dict) -> str:
    items = [(w, role, text) for w, role, text in READING_GUIDE
             if w != "locked output ignored" or _has_locked_output(result)]
    return "<ul>" + "".join(f"<li>{_swatch(role)}<b>{html.escape(w)}</b>: {html.escape(text)}</li>"
                            for w, role, text in items) + "</ul>"


def _files_html(files: dict[str, str], commands: list[str]) -> str:
    rows = "".join(f"<li>{html.escape(name)}: <code>{html.escape(path)}</code></li>" for name, path in files.items())
    cmds = "".join(f"<pre>{html.escape(c)}</pre>" for c in commands)
    return f"<ul>{rows}</ul>{cmds}"


def write_html_report(out: Path, title: str, result: dict, columns: list[GridColumn | str], rows: list[list[tuple]],
                      notes: list[str] | None = None, files: dict[str, str] | None = None,
                      commands: list[str] | None = None, grid_note: str = "", attacks: dict | None = None,
                      attacks_html: str = "") -> Path:
    """``report.html``: how to read it, the table, the bar chart (``matrix.png``), the files and the
    commands that use them, and an image grid.

    ``rows`` is a list of grid rows; each cell is ``(image array, caption)``; a caption's lines are kept.
    ``attacks``: an attack suite's result (its summary line goes on top); ``attacks_html``: its section
    (``modellock.attacks.report.attacks_html``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bar_chart(result, out / "matrix.png")
    columns = [c if isinstance(c, GridColumn) else GridColumn(c) for c in columns]
    scale = max(1, 96 // max(rows[0][0][0].shape[:2])) if rows else 1
    head = "".join(f"<th>{_swatch(c.role)}{html.escape(c.title)}"
                   + (f"<br><small>{html.escape(c.summary)}</small>" if c.summary else "") + "</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td><img src='{_png_data_uri(im, scale)}'><br><small>"
                         f"{'<br>'.join(html.escape(line) for line in cap.splitlines())}</small></td>"
                         for im, cap in row) + "</tr>" for row in rows)
    facts = [t for t in (sealing_text(result), covers_text(result.get("covers"))) if t]
    notes_html = (f"<p class='summary'><b>Attacks: {html.escape(attacks['summary']['line'])}</b></p>"
                  if attacks and attacks.get("summary") else "")
    notes_html += "".join(f"<p class='facts'>{html.escape(t)}</p>" for t in facts)
    notes_html += "".join(f"<p>{html.escape(n)}</p>" for n in notes or [])
    files_html = f"<h2>Files and how to use them</h2>{_files_html(files, commands or [])}" if files else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:center}}td.l{{text-align:left}}
img{{image-rendering:pixelated}}pre{{background:#f4f4f4;padding:6px;white-space:pre-wrap}}
.sw{{display:inline-block;width:.8em;height:.8em;margin-right:.4em;border-radius:2px;vertical-align:middle}}</style>
</head><body><h1>{html.escape(title)}</h1>{notes_html}
<h2>How to read this</h2>{_guide_html(result)}
<h2>Evaluation ({html.escape(result['metric'])}, {result['n_test']} test images)</h2>{_matrix_html(result)}
<p><img src="matrix.png" alt="evaluation bar chart"></p>{attacks_html}{files_html}
<h2>Examples</h2><p>{html.escape(grid_note)}</p><table><tr>{head}</tr>{body}</table></body></html>"""
    path = out / "report.html"
    write_bytes_atomic(page.encode(), path)
    return path
