"""The evaluation report a new user reads: how to read it, a header row, both scores everywhere, one colour
per role, where the files are; JSON figures rounded; one labelled progress bar per stage."""

import json
import re
from html.parser import HTMLParser

import numpy as np
import torch

from modellock.evaluation.report import COUNTED, IGNORED, ROLE_COLOURS, format_table, markdown_table, matrix_rows
from modellock.utils.results_json import rounded, write_json

RESULT = {"task": "classification", "metric": "accuracy", "chance": 0.1, "n_test": 100, "original_clean": 0.99,
          "locked_clean": 0.0, "locked_clean_without_locked_class": 0.132, "locked_class_rate_clean": 0.95,
          "unlocked": 0.98, "unlocked_without_locked_class": 0.985, "wrong_keys": {"seed 1025": 0.007},
          "wrong_keys_without_locked_class": {"seed 1025": 0.433}}


def test_table_has_a_header_and_both_scores():
    lines = format_table(RESULT).splitlines()
    assert lines[1].split()[:2] == ["setting", "accuracy"] and IGNORED in lines[1]
    wrong = next(line for line in lines if line.startswith("wrong key: seed 1025"))
    assert wrong.split()[-2:] == ["0.0070", "0.4330"]  # the same figures as the grid and the JSON
    assert [r.role for r in matrix_rows(RESULT)] == ["reference", "no key", "unlocked", "wrong key"]
    md = markdown_table(RESULT)
    assert f"accuracy, {IGNORED}" in md.splitlines()[0] and "| wrong key: seed 1025 | 0.0070 | 0.4330 |" in md


def test_rounded_json(tmp_path):
    value = {"a": float(np.float32(0.99)), "b": [torch.tensor(0.12345678).item(), np.float64(2 / 3)],
             "c": {"d": float("nan"), "e": 3, "f": True, "g": "x"}}
    assert rounded(value) == {"a": 0.99, "b": [0.1235, 0.6667], "c": {"d": None, "e": 3, "f": True, "g": "x"}}
    write_json(tmp_path / "r.json", value)
    assert "0.9900000095367432" not in (tmp_path / "r.json").read_text()
    assert json.loads((tmp_path / "r.json").read_text())["a"] == 0.99


def test_demo_report_page(tiny_locked, tmp_path, one_thread):
    from modellock.workflows.demo import _report
    from modellock.evaluation.matrix import default_wrong_keys, evaluate

    root, source, key, locked, original = tiny_locked
    wrong = default_wrong_keys(key)
    result = evaluate(locked, key, source, "test", original, wrong, progress=False)
    assert {"unlocked_without_locked_class", "wrong_keys_without_locked_class"} <= set(result)
    page = _report(tmp_path, locked, key, wrong, source, result).read_text()
    assert "How to read this" in page and "<th>setting</th>" in page
    for word in ("locked output ignored", "wrong keys", "chance", "unlocked"):
        assert f"<b>{word}</b>" in page
    # every grid column is scored both ways, and the table shows both columns
    summaries = re.findall(r"right: (\d+)/(\d+) \(" + COUNTED + r"\); (\d+)/(\d+) \(" + IGNORED + r"\)", page)
    assert len(summaries) == 3, summaries
    assert page.count("<td>") > 0 and f"<small>{IGNORED}</small>" in page
    # one colour per role: the unlocked row and column are green, no-key red
    assert f"background:{ROLE_COLOURS['unlocked']}'></span>unlocked: images edited with the key" in page
    assert f"background:{ROLE_COLOURS['no key']}'></span>clean image: locked model, no key" in page
    # where the key and the model folders are, and the commands that use them
    assert str(tmp_path / "key.toml") in page and str(tmp_path / "locked-model") in page
    assert f"modellock predict --model {tmp_path / 'locked-model'} --key {tmp_path / 'key.toml'}" in page
    assert f"modellock eval --model {tmp_path / 'locked-model'}" in page
    assert (tmp_path / "matrix.png").stat().st_size > 1000


def test_decoy_edits_show_one_bar(tmp_path, capsys, one_thread):
    """Not one `edit train` bar per decoy key: one bar for the stage, saying what it does (the edit cache's path;
    online locks edit in the training loop)."""
    from modellock.data import make_shapes_dataset, open_source
    from modellock.keys import Key
    from modellock.lock import lock_model
    from modellock.lock.lock_set import LockRecipe
    from modellock.train import TrainConfig

    source = open_source(make_shapes_dataset(tmp_path / "d", 60, 10))
    lock_model(Key.create("keyed-filter", "with oil pastel"), source, "tiny-cnn", tmp_path / "m",
               LockRecipe(decoy_keys=16, online=False), TrainConfig(epochs=2, batch_size=32, num_workers=0))
    err = capsys.readouterr().err
    labels = {m.split(":")[0] for m in re.findall(r"(?:editing|training)[^:\r\n]*:", err)}
    assert labels == {"editing 60 training images with the key", "editing 12 decoy images with 12 decoy keys",
                      "training the locked model (2 epochs)"}, labels
    assert "edit train" not in err
    assert re.search(r"decoy keys: 100%\|[^\r\n]*12/12 \[\d\d:\d\d<\d\d:\d\d", err)  # elapsed < time left


# ------------------------------------------------------------------------------------ the attack report (issue 20.8)
def _suite_result(fractions=(0.1,)) -> dict:
    """A suite result as ``run_suite`` returns it (200 test images): untrained attacks whose share undone falls
    outside [0, 1] or within noise, trained ones with and without a gain over scratch."""
    from modellock.attacks.suite import summarise

    curve = [{"fraction": f, "n_images": int(700 * f), "score": 0.45, "scratch": 0.35, "gain": 0.1}
             for f in fractions]
    ft = [{"fraction": f, "n_images": int(700 * f), "attack": 0.3, "attack_cell": "whole, adamw lr 3e-03",
           "scratch": 0.35, "scratch_cell": "whole, adamw lr 3e-03", "gain": -0.05} for f in fractions]
    result = {
        "task": "classification", "metric": "accuracy", "n_test": 200, "n_train": 700, "screen_size": 100,
        "sealed": True, "folder_alone": "nothing loads without the key",
        "covers": {"model": "locked", "weights_sha256": "0123456789ab", "data": "shapes", "source_id": "feedbeef",
                   "split": "test", "n": 200, "date": "2026-12-02 10:00 UTC"},
        "settings": {"top_k": 2, "budget": "quick", "fractions": list(fractions)},
        "reference": {"locked_clean": 0.0, "locked_clean_without_locked_class": 0.2, "unlocked": 0.5, "chance": 0.2},
        "attacks": {
            "guessed-prompts": {"best": 1.0, "measure": "undone", "trained": False, "best_setting": "prompt 'a'",
                                "scores": {"a": 1.0, "b": 0.21, "c": 0.05}, "screen_size": 100},
            "wrong-machinery": {"best": 0.22, "measure": "undone", "trained": False, "best_setting": "seed +1",
                                "scores": {"seed +1": 0.22}},
            "generic-transforms": {"best": 0.05, "measure": "undone", "trained": False, "best_setting": "blur",
                                   "scores": {"blur": 0.05}},
            "fine-tune": {"best": 0.3, "measure": "gain", "trained": True, "gain": -0.05,
                          "gain_fraction": fractions[0], "gain_setting": "x", "scratch": 0.35, "curve": ft},
            "input-adapter": {"best": 0.45, "measure": "gain", "trained": True, "gain": 0.1,
                              "gain_fraction": fractions[0], "gain_setting": "y", "scratch": 0.35, "curve": curve,
                              "scores": {"input-adapter 10%": 0.45, "scratch 10%": 0.35}},
        },
    }
    result["summary"] = summarise(result)
    return result


def test_attack_table_clamps_undone_and_marks_noise():
    from modellock.attacks.suite import format_table, table_rows

    rows = {r.label: r for r in table_rows(_suite_result())}
    assert rows["attack: guessed-prompts"].undone == "100%"  # 267 % unclamped
    assert rows["attack: generic-transforms"].undone == "0%"  # -50 % unclamped
    assert rows["attack: wrong-machinery"].undone == "7% (noise)"  # 0.02 above locked, noise +-0.1
    adapter = rows["attack: input-adapter 10%"]
    assert adapter.gain == "+0.1000 (noise)" and adapter.undone == ""  # trained: judged by its gain
    assert rows["attack: fine-tune 10%"].kind == "trained" and rows["attack: guessed-prompts"].kind == "untrained"
    lines = format_table(_suite_result()).splitlines()
    # the CLI leads with the summary line, then how to read it, the folder at rest and what it covers
    assert lines[1].startswith("the lock does not hold: a trained attack beats training from scratch and an "
                               "untrained attack undoes more than 25%")
    assert lines[2].startswith("How to read this: 'gain over scratch'")
    assert lines[3].startswith("folder at rest: sealed")
    assert lines[4] == ("covers: model locked (weights sha256 0123456789ab...); data 'shapes' (source id feedbeef), "
                        "split test, 200 images; 2026-12-02 10:00 UTC")


class _Page(HTMLParser):
    """The text of every element of a page, in order, with its tag and class."""

    def __init__(self):
        super().__init__()
        self.stack, self.items = [], []

    def handle_starttag(self, tag, attrs):
        self.stack.append((tag, dict(attrs).get("class")))

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if data.strip() and self.stack:
            self.items.append((*self.stack[-1], data.strip()))


def test_attack_report_page(tmp_path):
    from modellock.attacks.report import write_attack_report

    result = _suite_result()
    page = write_attack_report(tmp_path, result).read_text()
    parser = _Page()
    parser.feed(page)
    texts = [t for _, _, t in parser.items]
    # the summary line is the first thing after the title; then the folder at rest and what the report covers
    body = [item for item in parser.items if item[0] not in ("title", "style")]
    assert body[0][0] == "h1" and body[1] == ("b", None, result["summary"]["line"])
    facts = [t for tag, cls, t in parser.items if cls == "facts"]
    assert facts[0].startswith("folder at rest: sealed; a thief with the folder alone gets: nothing loads")
    assert "model locked (weights sha256 0123456789ab...)" in facts[1] and "2026-12-02" in facts[1]
    assert "split test, 200 images" in facts[1] and "data 'shapes'" in facts[1]
    assert texts.index("How to read this") < texts.index("Colour key") < texts.index("Results (accuracy)")
    assert any(t.startswith("How to read this: 'gain over scratch'") for t in texts)
    assert "100%" in texts and "0%" in texts and "267%" not in page and "-50%" not in page
    # a single fraction: no curve, the trained attacks against scratch in a table instead
    assert not (tmp_path / "fine-tune-curve.png").exists() and "fine-tune-curve.png" not in page
    assert "Trained attacks against training from scratch" in texts and "+0.1000 (noise)" in texts
    assert (tmp_path / "attacks.png").is_file() and (tmp_path / "attack-input-adapter.png").is_file()
    two = write_attack_report(tmp_path / "two", _suite_result((0.05, 0.1))).read_text()
    assert "fine-tune-curve.png" in two and (tmp_path / "two" / "fine-tune-curve.png").is_file()


def test_attack_charts_colour_by_kind_and_keep_the_legend_off_the_bars():
    from matplotlib.colors import to_hex

    from modellock.attacks.report import BREAKS_HATCH, KIND_COLOURS, attack_figure, overview_figure

    result = _suite_result()
    for fig in (overview_figure(result),
                attack_figure("guessed-prompts", result["attacks"]["guessed-prompts"], result["reference"], "accuracy"),
                attack_figure("input-adapter", result["attacks"]["input-adapter"], result["reference"], "accuracy")):
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = ax.get_legend().get_window_extent()
        bars = [p.get_window_extent() for p in ax.patches]
        assert bars and not any(legend.overlaps(b) for b in bars)
    ax = overview_figure(result).axes[0]
    bars = {t.get_text(): p for t, p in zip(ax.get_yticklabels(), ax.patches)}
    colour = {name: to_hex(p.get_facecolor()) for name, p in bars.items()}
    assert colour["guessed-prompts"] == colour["generic-transforms"] == KIND_COLOURS["untrained"]
    assert colour["input-adapter (10%)"] == colour["fine-tune (10%)"] == KIND_COLOURS["trained"]
    assert colour["scratch (10%)"] == KIND_COLOURS["scratch"] != KIND_COLOURS["trained"] != KIND_COLOURS["untrained"]
    # hatched where the attack breaks the lock: 100 % undone, a gain over scratch; not where it does not
    assert bars["guessed-prompts"].get_hatch() == bars["input-adapter (10%)"].get_hatch() == BREAKS_HATCH
    assert not bars["generic-transforms"].get_hatch() and not bars["fine-tune (10%)"].get_hatch()
