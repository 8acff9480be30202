"""The command line: one clear error line and exit 2 for bad input; the happy paths print results."""

import json
import re
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
    # sealed (the default): without the key nothing loads, not even the locked behaviour
    _assert_one_line_error(run("predict", "--model", tmp_path / "locked", img), "the weights are sealed")
    wrong = tmp_path / "w.toml"
    Key.create("keyed-filter", "with oil pastel", seed=5).save(wrong)
    _assert_one_line_error(run("predict", "--model", tmp_path / "locked", "--key", wrong, img),
                           "the key does not open this model")
    p = run("eval", "--model", tmp_path / "locked", "--key", key, "--data", data, "--baseline", tmp_path / "base",
            "--wrong-key", wrong, "--json", tmp_path / "r.json")
    assert p.returncode == 0, p.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    figures = re.findall(r"\d+\.\d+", (tmp_path / "r.json").read_text())
    assert figures and all(len(f.split(".")[1]) <= 4 for f in figures), figures  # no float32 noise
    assert r["n_test"] == 50 and set(r["wrong_keys"]) == {"key w.toml"} and "original_clean" in r
    assert "locked_clean_without_locked_class" in r
    assert "Evaluation" in (tmp_path / "locked" / "README.md").read_text()


# ------------------------------------------------------------------------------------------ usage errors
USAGE_ERRORS = [
    pytest.param([], ("no command given", "keygen", "modellock --help"), id="no-arguments"),
    pytest.param(["nosuchcmd"], ("No such command 'nosuchcmd'", "modellock --help"), id="unknown-command"),
    pytest.param(["lock", "--bogus"], ("No such option: --bogus", "modellock lock --help"), id="unknown-option"),
    pytest.param(["lock", "--data", "d", "--out", "o"], ("Missing option '--key'", "modellock lock --help"),
                 id="missing-option"),
    pytest.param(["predict", "--model", "m", "--top-k", "abc", "x.png"], ("'--top-k'", "integer",
                                                                          "modellock predict --help"), id="bad-integer"),
    pytest.param(["eval", "--split"], ("Option '--split' requires an argument", "modellock eval --help"),
                 id="option-without-value"),
]


@pytest.mark.parametrize("args,needles", USAGE_ERRORS)
def test_usage_error_subprocess(args, needles):
    """The installed typer raises its bundled click's exceptions: each ends as one line and exit code 2."""
    _assert_one_line_error(run(*args), *needles)


@pytest.mark.parametrize("args,needles", USAGE_ERRORS)
def test_usage_error_main(args, needles, capsys):
    from modellock.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for n in needles:
        assert n in lines[0], lines[0]


def test_help_and_success_exit_zero(capsys):
    from modellock.cli import main

    main(["--help"])  # exit code 0: main returns
    assert "keygen" in capsys.readouterr().out
    main(["editors"])  # a command that succeeds returns
    assert "keyed-filter" in capsys.readouterr().out


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    from modellock.cli import main
    from modellock.key import Key

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Key, "create", interrupted)
    with pytest.raises(SystemExit) as e:
        main(["keygen", "--out", str(tmp_path / "k.toml"), "--editor", "keyed-filter"])
    assert e.value.code == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: rerun") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "k.toml").exists()


def test_data_warning_is_one_line(tmp_path, capsys, one_thread):
    """What a user may mean is a `warning:` line, and the command goes on."""
    from modellock.cli import main
    from modellock.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", 40, 20)
    for f in (data / "test" / "star").iterdir():
        f.unlink()
    (data / "test" / "star").rmdir()
    main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--model", "tiny-cnn", "--epochs", "1",
          "--num-workers", "0"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {data}: split 'test' has no images of class 'star': its score will not cover them"]
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_first_contact_mistakes(tmp_path):
    """Wrong values and paths found by trying the CLI as a new user: one line each, no traceback."""
    Key.create("keyed-filter", "with oil pastel").save(tmp_path / "k.toml")
    (tmp_path / "file.txt").write_text("x")
    _assert_one_line_error(run("train", "--data", tmp_path, "--out", tmp_path / "m", "--image-size", "0"),
                           "--image-size", "greater than or equal to 8")
    _assert_one_line_error(run("predict", "--model", tmp_path, "--top-k", "0", tmp_path / "file.txt"), "--top-k")
    (tmp_path / "ds" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "b").mkdir()
    _assert_one_line_error(run("train", "--data", tmp_path / "ds", "--out", tmp_path / "m"), "no images found")
    for c in "ab":
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "ds" / c / "1.png")
    _assert_one_line_error(run("train", "--data", tmp_path / "ds", "--out", tmp_path / "file.txt"),
                           "file.txt: exists and is not a folder")
    p = run("edit", "--key", tmp_path / "k.toml", "--data", tmp_path / "ds", "--out", tmp_path / "file.txt")
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [f"error: {tmp_path / 'file.txt'}: File exists"]
