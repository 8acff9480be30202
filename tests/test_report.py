"""The evaluation report a new user reads: how to read it, a header row, both scores everywhere, one colour
per role, where the files are; JSON figures rounded; one labelled progress bar per stage."""

import json
import re

import numpy as np
import torch

from modellock.report import COUNTED, IGNORED, ROLE_COLOURS, format_table, markdown_table, matrix_rows
from modellock.results_json import rounded, write_json

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
    from modellock.demo import _report
    from modellock.evaluate import default_wrong_keys, evaluate

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
    from modellock.key import Key
    from modellock.lock import lock_model
    from modellock.lockset import LockRecipe
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
