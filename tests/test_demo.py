"""The demo's flow end to end on a tiny built-in dataset: lock, evaluation, attack summary, report."""

from __future__ import annotations

import json

from modellock.demo import run_demo


def test_tiny_demo_reports_the_attack_summary(tmp_path, one_thread):
    out = tmp_path / "demo"
    lines = []
    result = run_demo(out, n_train=200, n_test=60, epochs=1, log=lines.append,
                      attack={"samples": 200, "limit_prompts": 3, "screen": 30})
    assert [line[:5] for line in lines if line.startswith("[")] == [f"[{i}/7]" for i in range(1, 8)]
    summary = json.loads((out / "attacks.json").read_text())["summary"]
    assert {"worst_case_undone", "fine_tune_gain", "line"} <= set(summary)
    assert result["attack_summary"]["line"] == summary["line"]
    assert json.loads((out / "result.json").read_text())["attack_summary"] == summary
    page = (out / "report.html").read_text()
    assert "Attacks without the key (quick budget)" in page and summary["line"].split(";")[0] in page
    card = (out / "locked-model" / "README.md").read_text()
    assert "## Attacks" in card and "fine_tune_gain" in card
