"""The command line: one clear error line and exit 2 for bad input; the happy paths print results."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from modellock.key import Key


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "modellock", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def _assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_keygen_and_refuse_overwrite(tmp_path):
    p = run("keygen", "--out", tmp_path / "k.toml", "--editor", "keyed-filter", "--prompt", "with oil pastel")
    assert p.returncode == 0 and "oil pastel" not in p.stdout + p.stderr
    assert Key.load(tmp_path / "k.toml").prompt == "with oil pastel"
    _assert_one_line_error(run("keygen", "--out", tmp_path / "k.toml"), "already exists")


def test_bad_key_file_errors(tmp_path):
    (tmp_path / "k.toml").write_text('editor = "keyed-filter"\nprompt = "x"\n')
    _assert_one_line_error(run("edit", "--key", tmp_path / "k.toml", "--data", tmp_path, "--out", tmp_path / "o"),
                           "missing field", "k.toml")
    _assert_one_line_error(run("edit", "--key", tmp_path / "nope.toml", "--data", tmp_path, "--out", tmp_path / "o"),
                           "nope.toml", "not found")


def test_bad_data_and_model_errors(tmp_path):
    Key.create("keyed-filter", "with oil pastel").save(tmp_path / "k.toml")
    _assert_one_line_error(run("edit", "--key", tmp_path / "k.toml", "--data", tmp_path / "missing",
                               "--out", tmp_path / "o"), "missing", "no such file")
    _assert_one_line_error(run("predict", "--model", tmp_path, "--key", tmp_path / "k.toml", tmp_path / "k.toml"),
                           "not a model folder")
    (tmp_path / "ds" / "train" / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ds" / "train" / "a" / "1.png")
    _assert_one_line_error(run("lock", "--key", tmp_path / "k.toml", "--data", tmp_path / "ds",
                               "--out", tmp_path / "m", "--model", "no-such-net"), "no-such-net")
    (tmp_path / "c.yaml").write_text("epochz: 3\n")
    _assert_one_line_error(run("lock", "--key", tmp_path / "k.toml", "--data", tmp_path / "ds",
                               "--out", tmp_path / "m", "--config", tmp_path / "c.yaml"), "epochz")
    _assert_one_line_error(run("lock", "--key", tmp_path / "k.toml", "--data", tmp_path / "ds",
                               "--out", tmp_path / "m", "--clean-target", "nothing"), "clean_target")


def test_train_lock_predict_eval_commands(tmp_path):
    from modellock.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", 200, 50)
    key = tmp_path / "k.toml"
    Key.create("keyed-filter", "with oil pastel").save(key)
    (tmp_path / "lock.yaml").write_text("model: tiny-cnn\nepochs: 1\nbatch_size: 64\nnum_workers: 0\n")
    assert run("train", "--data", data, "--out", tmp_path / "base", "--config", tmp_path / "lock.yaml").returncode == 0
    p = run("lock", "--key", key, "--data", data, "--out", tmp_path / "locked", "--config", tmp_path / "lock.yaml",
            "--clean-target", "locked-class")
    assert p.returncode == 0, p.stderr
    cfg = json.loads((tmp_path / "locked" / "config.json").read_text())
    assert cfg["training"]["epochs"] == 1 and cfg["lock"]["recipe"]["clean_target"] == "locked-class"
    img = next((data / "test").rglob("*.png"))
    p = run("predict", "--model", tmp_path / "locked", "--key", key, img, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[0])
    assert out["image"] == str(img) and out["class"] != "locked"
    p = run("predict", "--model", tmp_path / "locked", img)
    assert p.returncode == 0 and "locked model's behaviour" in p.stderr
    wrong = tmp_path / "w.toml"
    Key.create("keyed-filter", "with oil pastel", seed=5).save(wrong)
    _assert_one_line_error(run("predict", "--model", tmp_path / "locked", "--key", wrong, img),
                           "this key does not unlock this model")
    p = run("eval", "--model", tmp_path / "locked", "--key", key, "--data", data, "--baseline", tmp_path / "base",
            "--wrong-key", wrong, "--json", tmp_path / "r.json")
    assert p.returncode == 0, p.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["n_test"] == 50 and set(r["wrong_keys"]) == {"key w.toml"} and "original_clean" in r
    assert "locked_clean_without_locked_class" in r
    assert "Evaluation" in (tmp_path / "locked" / "README.md").read_text()
