"""The command line: one clear error line and exit 2 for bad input; the happy paths print results."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modellock.keys import Key


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
                               "--out", tmp_path / "m", "--clean-target", "nothing"), "--clean-target", "locked-spread")


def test_train_lock_predict_eval_commands(tmp_path):
    from modellock.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", 200, 50)
    key = tmp_path / "k.toml"
    Key.create("keyed-filter", "with oil pastel").save(key)
    (tmp_path / "lock.yaml").write_text("model: tiny-cnn\nepochs: 1\nbatch_size: 64\nnum_workers: 0\n")
    assert run("train", "--data", data, "--out", tmp_path / "base", "--config", tmp_path / "lock.yaml").returncode == 0
    p = run("lock", "--key", key, "--data", data, "--out", tmp_path / "locked", "--config", tmp_path / "lock.yaml",
            "--clean-target", "locked-class", "--handling-share", "0.75", "--handling-jpeg", "0")
    assert p.returncode == 0, p.stderr
    cfg = json.loads((tmp_path / "locked" / "config.json").read_text())
    assert cfg["training"]["epochs"] == 1 and cfg["lock"]["recipe"]["clean_target"] == "locked-class"
    assert (cfg["lock"]["recipe"]["handling_share"], cfg["lock"]["recipe"]["handling_jpeg"]) == (0.75, 0.0)
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
    from modellock.keys import Key

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


# ------------------------------------------------------------------------------- first contact, round two
PROGRESS = re.compile(r"\d+%\|")  # a progress bar's line


def _main_error(capsys, *args) -> str:
    """Run the CLI in this process; the one `error:` line it ends with (exit 2)."""
    from modellock.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and not PROGRESS.search(line)]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, lines
    return lines[0]


def test_keygen_refuses_an_empty_prompt(tmp_path, capsys):
    for prompt in ("", "   "):
        line = _main_error(capsys, "keygen", "--out", tmp_path / "k.toml", "--editor", "keyed-filter", "--prompt", prompt)
        assert "--prompt is empty" in line
    assert not (tmp_path / "k.toml").exists()


def test_predict_a_folder_predicts_its_images(tiny_locked, tmp_path, capsys):
    from modellock.cli import main

    root, source, *_ = tiny_locked
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    samples = source.split("test").samples[:3]
    for i, s in enumerate(samples):
        Image.open(s.path).save(folder / ("more" if i == 2 else "") / f"p{i}.png")
    (folder / "notes.txt").write_text("not an image")
    main(["predict", "--model", str(root / "locked"), "--key", str(root / "key.toml"), str(folder), "--json"])
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in results] == [str(folder / "more" / "p2.png"), str(folder / "p0.png"),
                                             str(folder / "p1.png")]
    assert all(r["class"] in source.classes for r in results)
    (tmp_path / "empty").mkdir()
    assert "empty: a folder with no image files" in _main_error(capsys, "predict", "--model", root / "locked",
                                                                 tmp_path / "empty")


def test_train_limit_below_the_class_count_says_so(tmp_path, capsys):
    from modellock.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", 40, 10)
    line = _main_error(capsys, "train", "--data", data, "--out", tmp_path / "m", "--train-limit", "5")
    assert "--train-limit 5: below the 10 classes of split 'train'" in line and "--train-limit 10 or more" in line
    assert not (tmp_path / "m").exists()


def test_edit_error_names_the_file_not_a_buffer(tmp_path, capsys):
    Key.create("keyed-filter", "with oil pastel").save(tmp_path / "k.toml")
    for c in "ab":
        (tmp_path / "ds" / "train" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
                tmp_path / "ds" / "train" / c / f"{i}.jpg")
    bad = tmp_path / "ds" / "train" / "a" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    line = _main_error(capsys, "edit", "--key", tmp_path / "k.toml", "--data", tmp_path / "ds", "--out",
                       tmp_path / "e", "--num-workers", "0")
    assert line.startswith(f"error: {bad}: cannot read image") and "BytesIO" not in line, line
    assert line.count(str(bad)) == 1


def test_eval_refuses_an_unlocked_model_and_the_real_key_as_a_wrong_key(tiny_locked, tmp_path, capsys):
    root, *_ = tiny_locked
    line = _main_error(capsys, "eval", "--model", root / "original", "--key", root / "key.toml", "--data",
                       root / "data")
    assert "original: not a locked model (trained without a key)" in line and "--baseline" in line
    same = tmp_path / "same.toml"
    Key.load(root / "key.toml").save(same)
    line = _main_error(capsys, "eval", "--model", root / "locked", "--key", root / "key.toml", "--data",
                       root / "data", "--wrong-key", same)
    assert f"--wrong-key {same}: this is the model's own key" in line


def test_lock_out_into_an_unrelated_folder_refuses_without_writing(tmp_path, capsys, one_thread):
    from modellock.cli import main
    from modellock.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", 20, 10)
    Key.create("keyed-filter", "with oil pastel").save(tmp_path / "k.toml")
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"jpeg")
    (out / "notes.txt").write_text("mine")
    line = _main_error(capsys, "lock", "--key", tmp_path / "k.toml", "--data", data, "--out", out)
    assert f"{out}: a folder with other files (holiday.jpg, notes.txt)" in line and "--force" in line
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg", "notes.txt"]
    main(["train", "--data", str(data), "--out", str(out), "--model", "tiny-cnn", "--epochs", "1", "--num-workers",
          "0", "--force"])
    assert (out / "model.safetensors").is_file() and (out / "notes.txt").read_text() == "mine"


def test_a_key_file_readable_by_others_gets_a_warning(tiny_locked, tmp_path, capsys):
    from modellock.cli import main

    root, source, *_ = tiny_locked
    key = tmp_path / "k.toml"
    key.write_bytes((root / "key.toml").read_bytes())
    image = source.split("test").samples[0].path
    for mode, warned in ((0o600, False), (0o644, True), (0o640, True)):
        key.chmod(mode)
        main(["predict", "--model", str(root / "locked"), "--key", str(key), str(image)])
        err = capsys.readouterr().err
        assert ("warning: " in err) == warned, err
        if warned:
            assert f"{key}: the key file is readable by others (mode {mode:04o})" in err and f"chmod 600 {key}" in err


def test_accelerate_cpu_launch_of_one_process_when_two_were_asked(tmp_path):
    """`accelerate launch --cpu --num_processes 2` runs one process without MPI: said before any work."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                        "-m", "modellock.cli", "editors"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode != 0, p.stderr  # accelerate adds its own traceback and exit code 1 to ours (2)
    lines = [line for line in p.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "accelerate launch asked for 2 processes but started one" in lines[0], p.stderr
    assert "torchrun --nproc-per-node 2 -m modellock.cli" in lines[0] and "keyed-filter" not in p.stdout


def test_a_launched_process_group_is_not_refused(monkeypatch, capsys):
    from modellock.cli import main

    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    main(["editors"])  # accelerate launch --cpu of one process: no MASTER_ADDR
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    main(["editors"])  # a process group (torchrun, --multi_gpu) has its size
    assert capsys.readouterr().out.count("keyed-filter") == 2
