"""Faults: `lock` killed with SIGKILL and resumed, a full disk while the edit cache is written, a damaged
cache entry found by its hash and edited again. (`edit` killed with SIGKILL: tests/test_edit.py.)"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modellock.data import open_source
from modellock.data.synthetic import make_shapes_dataset
from modellock.edit import EditFolder, edit_dataset
from modellock.errors import DataError
from modellock.keys import Key

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(argv):
    """``modellock ARGV`` in process: (exit code, stdout, stderr)."""
    from modellock.cli import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def _check_edit_folder(out: Path, complete: bool) -> int:
    """Every image the manifest and its parts list exists with its recorded sha256; no temporary file is
    left; a complete folder has one manifest and no parts. Returns the number of listed images."""
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    listed = 0
    for split in (d for d in out.iterdir() if d.is_dir()):
        files = [split / "manifest.jsonl"] + sorted((split / ".parts").glob("*.jsonl"))
        for f in (f for f in files if f.exists()):
            for line in f.read_text().splitlines():
                e = json.loads(line)
                assert hashlib.sha256((out / e["file"]).read_bytes()).hexdigest() == e["sha256"]
                listed += 1
        if complete:
            assert (split / "manifest.jsonl").exists() and not (split / ".parts").exists()
    return listed


# ------------------------------------------------------------------------------------------- kill -9
def test_lock_killed_with_sigkill_resumes_to_the_same_model(tmp_path):
    from modellock.model_folder import LockedModel

    data = make_shapes_dataset(tmp_path / "shapes", 200, 10)
    Key.create("keyed-filter", "with oil pastel").save(tmp_path / "k.toml")
    (tmp_path / "lock.yaml").write_text("model: tiny-cnn\nepochs: 6\nbatch_size: 32\nnum_workers: 0\n"
                                        "decoy_fraction: 0\npaired: false\n")
    args = ["lock", "--key", tmp_path / "k.toml", "--data", data, "--config", tmp_path / "lock.yaml"]
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "modellock", *map(str, args), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (out / ".work/checkpoints/epoch-0002").exists():
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model.sealed").exists(), "the lock finished before it was killed"
    assert (out / ".work/checkpoints/epoch-0002").exists()
    assert (out / ".work").stat().st_mode & 0o777 == 0o700
    left = [p for p in (out / ".work").rglob("*") if p.is_file()]  # what the kill left: sealed, or not secret
    assert left and all(p.name.endswith(".sealed") or ".sealed." in p.name and p.name.endswith(".tmp")
                        or p.name in ("trainer_state.json", "run.sha256") for p in left), left
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after epoch" in resumed.stdout + resumed.stderr
    code, _, err = _cli([*args, "--out", tmp_path / "straight"])  # the same lock, never interrupted
    assert code in (0, None), err
    key = Key.load(tmp_path / "k.toml")
    a, b = (LockedModel.from_pretrained(f, device="cpu", key=key).model.state_dict() for f in (out, tmp_path / "straight"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert not (out / ".work").exists()


# ------------------------------------------------------------------------------------------- full disk
def _mount_small_file_system(mnt: Path, tmp_path: Path) -> str | None:
    """Mount a 2 MiB file system at ``mnt``: a tmpfs, else an ext4 image on a loop device. None when mounted,
    else why not."""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode == 0:
        return None
    why = [f"tmpfs: {done.stderr.strip()}"]
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(2 * 1024 * 1024)
    done = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
    if done.returncode == 0:
        done = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True)
    if done.returncode == 0:
        return None
    return "; ".join(why + [f"loop device: {done.stderr.strip()}"])


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB file system with a filler file taking all but about 160 KiB (deleting it frees the space);
    skipped where none can be mounted (mounting needs root: CI here runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs or loop-mounted image; mounting needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    why = _mount_small_file_system(mnt, tmp_path)
    if why:
        pytest.skip(f"cannot mount a small file system here ({why})")
    try:
        with open(mnt / "filler", "wb") as f:
            f.write(b"\0" * max(shutil.disk_usage(mnt).free - 160 * 1024, 0))
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_while_writing_the_edit_cache_is_one_error_and_a_consistent_cache(tmp_path, small_disk):
    data = make_shapes_dataset(tmp_path / "shapes", 300, 30)
    key = Key.create("keyed-filter", "with oil pastel")
    key.save(tmp_path / "k.toml")
    out = small_disk / "edits"
    argv = ["edit", "--key", tmp_path / "k.toml", "--data", data, "--out", out, "--batch-size", "16"]
    code, _, err = _cli(argv)
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]  # the progress bar ended its line
    assert errors == [f"error: {out}: no space left on the device; the images written so far are kept: free some "
                      "space and rerun to resume"] and "Traceback" not in err
    written = _check_edit_folder(out, complete=False)
    assert 0 < written < 330
    (small_disk / "filler").unlink()  # free the space, then resume
    code, stdout, err = _cli(argv)
    assert code in (0, None), err
    assert sum(int(n) for n in re.findall(r"(\d+) already done", stdout)) == written  # nothing listed is redone
    assert _check_edit_folder(out, complete=True) == 330
    fresh = tmp_path / "fresh"
    edit_dataset(key, open_source(data), fresh, progress=False)
    for p in sorted((fresh / "train").rglob("*.png"))[::29]:
        assert p.read_bytes() == (out / p.relative_to(fresh)).read_bytes()


# ------------------------------------------------------------------------------------------- damaged cache
def test_a_damaged_edit_is_found_by_its_hash_and_edited_again(tmp_path):
    data = make_shapes_dataset(tmp_path / "shapes", 24, 6)
    key = Key.create("keyed-filter", "with oil pastel")
    key.save(tmp_path / "k.toml")
    source = open_source(data)
    out = tmp_path / "edits"
    edit_dataset(key, source, out, progress=False)
    split = source.split("train")
    victims = split.samples[:2]
    folder = EditFolder(out, key)
    originals = [folder.path_of("train", s).read_bytes() for s in victims]
    # one replaced by another valid picture of the same size (only the hash can tell), one cut short
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder.path_of("train", victims[0]))
    folder.path_of("train", victims[1]).write_bytes(originals[1][:40])
    for s in victims:
        with pytest.raises(DataError, match="does not match the sha256"):
            EditFolder(out, key).load("train", s)
    code, stdout, err = _cli(["edit", "--key", tmp_path / "k.toml", "--data", data, "--out", out])
    assert code in (0, None), err
    assert "train: 24 images, 2 edited (2 of them damaged on disk: edited again), 22 already done" in stdout
    folder = EditFolder(out, key)
    assert [folder.path_of("train", s).read_bytes() for s in victims] == originals
    assert np.array_equal(folder.load("train", victims[0]), np.asarray(Image.open(io.BytesIO(originals[0]))))
    assert _check_edit_folder(out, complete=True) == 30
