"""The demo's flow end to end on a tiny built-in dataset: lock, evaluation, attack summary, report."""

from __future__ import annotations

import html
import json

from modellock.workflows.demo import run_demo


def test_tiny_demo_reports_the_attack_summary(tmp_path, one_thread):
    out = tmp_path / "demo"
    lines = []
    result = run_demo(out, n_train=200, n_test=60, epochs=1, log=lines.append,
                      attack={"samples": 200, "limit_prompts": 3, "screen": 30})
    assert [line[:5] for line in lines if line.startswith("[")] == [f"[{i}/7]" for i in range(1, 8)]
    attacks = json.loads((out / "attacks.json").read_text())
    summary = attacks["summary"]
    assert {"worst_gain_over_scratch", "worst_case_undone", "fine_tune_gain", "holds", "fails", "line"} <= set(summary)
    assert result["attack_summary"]["line"] == summary["line"]
    assert json.loads((out / "result.json").read_text())["attack_summary"] == summary
    # the lock on its opened weights (the demo seals its folder), sealing reported apart
    assert result["sealed"] and attacks["sealed"] and result["folder_alone"] == "nothing loads without the key"
    page = (out / "report.html").read_text()
    line = html.escape(summary["line"])
    assert "Attacks without the key (quick budget)" in page and line in page
    assert page.index(line) < page.index("How to read this")  # the page leads with it
    assert "How to read this: &#x27;gain over scratch&#x27;" in page
    assert "folder at rest: sealed" in page and f"covers: model locked-model (weights sha256 " \
        f"{result['covers']['weights_sha256']}...)" in page and result["covers"]["date"] in page
    card = (out / "locked-model" / "README.md").read_text()
    assert "## Attacks" in card and "worst_gain_over_scratch" in card and "fine_tune_gain" in card
    assert card.index("worst_gain_over_scratch") < card.index("How to read this") < card.index("fine_tune_gain")
