"""Reports: the evaluation matrix as a text table, a bar chart, an image grid and one HTML page."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from .images import write_bytes_atomic

_ROWS = [
    ("original_clean", "original model, clean"),
    ("locked_clean", "locked model, clean"),
    ("locked_clean_without_locked_class", "locked, clean, locked output ignored"),
    ("unlocked", "locked model + key (unlocked)"),
]


def matrix_rows(result: dict) -> list[tuple[str, float]]:
    rows = [(label, result[name]) for name, label in _ROWS if result.get(name) is not None]
    rows += [(f"wrong key: {n}", v) for n, v in (result.get("wrong_keys") or {}).items()]
    return rows


def format_table(result: dict) -> str:
    """A fixed-width text table of an evaluation result."""
    rows = matrix_rows(result) + [("chance", result["chance"])]
    width = max(len(r[0]) for r in rows)
    lines = [f"{result.get('task', '')} · {result['metric']} · n_test={result['n_test']}"]
    lines += [f"{label:<{width}}  {value:7.4f}" for label, value in rows]
    if result.get("locked_class_rate_clean") is not None:
        lines.append(f"{'locked output rate, clean':<{width}}  {result['locked_class_rate_clean']:7.4f}")
    return "\n".join(lines)


def bar_chart(result: dict, path: Path) -> Path:
    """A horizontal bar chart of the matrix with the chance level marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = matrix_rows(result)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    colours = ["#4c72b0" if "original" in r[0] else "#c44e52" if "unlocked" in r[0]
               else "#8c8c8c" if "wrong" in r[0] else "#dd8452" for r in rows]
    ax.barh([r[0] for r in rows][::-1], [r[1] for r in rows][::-1], color=colours[::-1])
    ax.axvline(result["chance"], color="black", linestyle="--", linewidth=1, label="chance")
    for i, (_, v) in enumerate(rows[::-1]):
        ax.text(v + 0.01, i, f"{v:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel(result["metric"])
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _png_data_uri(image: np.ndarray, scale: int = 1) -> str:
    from PIL import Image

    im = Image.fromarray(image)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def write_html_report(out: Path, title: str, result: dict, columns: list[str], rows: list[list[tuple]],
                      notes: list[str] | None = None) -> Path:
    """``report.html`` with the table, the bar chart (``matrix.png``) and an image grid.

    ``rows`` is a list of grid rows; each cell is ``(image array, caption)``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bar_chart(result, out / "matrix.png")
    scale = max(1, 96 // max(rows[0][0][0].shape[:2])) if rows else 1
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td><img src='{_png_data_uri(im, scale)}'><br><small>{html.escape(cap)}</small></td>"
                         for im, cap in row) + "</tr>" for row in rows)
    table = "".join(f"<tr><td>{html.escape(label)}</td><td>{value:.4f}</td></tr>"
                    for label, value in matrix_rows(result) + [("chance", result["chance"])])
    notes_html = "".join(f"<p>{html.escape(n)}</p>" for n in notes or [])
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:center}}img{{image-rendering:pixelated}}</style></head>
<body><h1>{html.escape(title)}</h1>{notes_html}
<h2>Evaluation ({html.escape(result['metric'])}, n={result['n_test']})</h2><table>{table}</table>
<p><img src="matrix.png" alt="evaluation bar chart"></p>
<h2>Examples</h2><table><tr>{head}</tr>{body}</table></body></html>"""
    path = out / "report.html"
    write_bytes_atomic(page.encode(), path)
    return path
