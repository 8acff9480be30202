"""``modellock compare``: a tiny comparison of ModelLock and block-wise locks on synthetic shapes."""

from __future__ import annotations

import json

import pytest

from modellock.workflows.compare import COLUMNS, compare_locks, parse_locks
from modellock.data import open_source
from modellock.data.synthetic import make_shapes_dataset
from modellock.errors import ModelLockError
from modellock.keys import Key
from modellock.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_compare_tiny(tmp_path):
    data = make_shapes_dataset(tmp_path / "shapes", 200, 60)
    source = open_source(data)
    out = tmp_path / "compare"
    train = TrainConfig(epochs=2, batch_size=32, lr=3e-3, num_workers=0, warmup_epochs=0.2)
    result = compare_locks(source, "tiny-cnn", "modellock,pixel-shuffle,np", out, train, seed=3, budget="quick", samples=300,
                           screen=30, random_keys=1, progress=False)

    assert [r["lock"] for r in result["locks"]] == ["modellock", "pixel-shuffle", "negative-positive"]
    for row in result["locks"]:
        for field, _, kind in COLUMNS:
            value = row[field]
            low = 0.0 if kind == "score" else -1.0
            assert low <= value <= 1.0, (row["lock"], field, value)
        assert row["best_wrong_key_name"]
    assert 0.0 <= result["baseline_clean"] <= 1.0
    for name in ("compare.json", "report.html", "compare.png", "baseline/model.safetensors"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "compare.json").read_text())
    assert {r["lock"] for r in on_disk["locks"]} == {"modellock", "pixel-shuffle", "negative-positive"}

    # the papers' recipe for the block-wise locks, the package default for modellock; keys saved, never reported
    assert result["details"]["pixel-shuffle"]["recipe"]["edited_fraction"] == 1.0
    assert result["details"]["pixel-shuffle"]["recipe"]["decoy_fraction"] == 0.0
    assert result["details"]["modellock"]["recipe"]["edited_fraction"] < 1.0
    keys = {n: Key.load(out / "keys" / f"{n}.toml") for n in ("modellock", "pixel-shuffle", "negative-positive")}
    assert keys["modellock"].editor == "keyed-filter" and keys["pixel-shuffle"].params["block_size"] == 4
    assert len({k.prompt for k in keys.values()}) == 3
    report = (out / "report.html").read_text() + (out / "compare.json").read_text()
    for k in keys.values():
        assert k.prompt not in report

    # resumable: a rerun loads every model instead of training it, and gives the same table
    mtime = (out / "pixel-shuffle" / "model.safetensors").stat().st_mtime_ns
    again = compare_locks(source, "tiny-cnn", "modellock,pixel-shuffle,np", out, train, seed=3, budget="quick", samples=300,
                          screen=30, random_keys=1, progress=False)
    assert (out / "pixel-shuffle" / "model.safetensors").stat().st_mtime_ns == mtime
    assert again["locks"] == result["locks"]


def test_unknown_lock_is_named():
    with pytest.raises(ModelLockError, match="passport"):
        parse_locks("modellock,passport")
    assert parse_locks("np, ffx,np") == ["negative-positive", "ffx"]


def test_cli_rejects_unknown_lock_before_work(tmp_path):
    from modellock.cli import main

    with pytest.raises(SystemExit) as e:
        main(["compare", "--data", str(tmp_path / "missing"), "--model", "tiny-cnn", "--locks", "ffx,bogus",
              "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    assert not (tmp_path / "out").exists()
