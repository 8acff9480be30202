import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modellock.data import open_source
from modellock.edit import edit_dataset
from modellock.errors import DataError, WrongKeyError
from modellock.utils.images import load_image
from modellock.keys import Key


def _check_consistent(out: Path, source, key):
    """Exactly one PNG per source image, manifests listing each once, no temp files left."""
    header = json.loads((out / "edit.json").read_text())
    for name, split in source.splits.items():
        lines = [json.loads(x) for x in (out / name / "manifest.jsonl").read_text().splitlines()]
        assert sorted(e["source"] for e in lines) == sorted(s.id for s in split.samples)
        pngs = sorted(p.relative_to(out).as_posix() for p in (out / name).rglob("*.png"))
        assert pngs == sorted(e["file"] for e in lines)
        by_id = {s.id: s for s in split.samples}
        for e in lines:
            assert e["source_sha256"] == split.source_hash(by_id[e["source"]])
            assert e["label"] == by_id[e["source"]].label and e["fingerprint"] == header["fingerprint"]
        assert not (out / name / ".parts").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert key.matches(header["fingerprint"])
    assert key.prompt not in (out / "edit.json").read_text()


def test_edit_writes_imagefolder_and_is_idempotent(tmp_path, cifar_small):
    key = Key.create("keyed-filter", "with oil pastel")
    src = open_source(cifar_small)
    reports = edit_dataset(key, src, tmp_path / "out", progress=False)
    assert [r.edited for r in reports] == [len(src.split(n)) for n in src.splits]
    _check_consistent(tmp_path / "out", src, key)
    again = edit_dataset(key, src, tmp_path / "out", progress=False)
    assert sum(r.edited for r in again) == 0 and sum(r.reused for r in again) == 800
    # the edited file is the editor's output for that source image
    s = src.split("test").samples[3]
    from modellock.editors import get_editor
    expected = get_editor(key).edit([src.split("test").load(s)])[0]
    got = load_image(tmp_path / "out" / "test" / "airplane" / (Path(s.id).stem + ".png"))
    assert np.array_equal(expected, got)
    # another key may not write into the same folder
    with pytest.raises(WrongKeyError):
        edit_dataset(key.replace(seed=1), src, tmp_path / "out", progress=False)
    # nor may another version of the editor: its edits would differ from the ones on disk
    header = json.loads((tmp_path / "out" / "edit.json").read_text())
    (tmp_path / "out" / "edit.json").write_text(json.dumps({**header, "editor_version": header["editor_version"] - 1}))
    with pytest.raises(DataError, match="version"):
        edit_dataset(key, src, tmp_path / "out", progress=False)


def test_edit_cache_folders_are_the_owners_only(tmp_path, monkeypatch):
    """The edit cache (clean/edited pairs: enough to test prompt guesses for the CPU editors) was world-readable;
    its root and every edit folder are 0700 now, an existing one narrowed when next used."""
    from modellock.data.synthetic import make_shapes_dataset
    from modellock.edit import cache_dir, edit_split

    monkeypatch.setenv("MODELLOCK_CACHE", str(tmp_path / "cache"))
    src = open_source(make_shapes_dataset(tmp_path / "shapes", 10, 4))
    key = Key.create("keyed-filter", "with oil pastel")
    folder = cache_dir(key, src)
    (tmp_path / "cache" / "edits").mkdir(parents=True, mode=0o755)  # as an older modellock left it
    (tmp_path / "cache" / "edits").chmod(0o755)
    edit_split(key, src.split("train"), folder, progress=False, source=src)
    for d in (tmp_path / "cache" / "edits", folder):
        assert d.stat().st_mode & 0o777 == 0o700, d
    edit_dataset(key, src, tmp_path / "mine", progress=False)  # an edit folder of the user's own
    assert (tmp_path / "mine").stat().st_mode & 0o777 == 0o700


def test_edit_killed_and_resumed_in_subprocess(tmp_path, cifar_small):
    key = Key.create("keyed-filter", "with oil pastel")
    key.save(tmp_path / "k.toml")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "modellock", "edit", "--key", str(tmp_path / "k.toml"),
           "--data", str(cifar_small), "--out", str(out), "--batch-size", "3"]
    env = dict(os.environ)
    for wanted_parts in (1, 25):  # kill -9 early, then again later in a resumed run
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            parts = list(out.glob("*/.parts/*.jsonl"))
            if len(parts) >= wanted_parts:
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    src = open_source(cifar_small)
    partial = sum(1 for _ in out.rglob("*.png"))
    assert 0 < partial < 800, "the run was not interrupted part-way"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _check_consistent(out, src, key)
    # resumed output equals an uninterrupted run
    fresh = tmp_path / "fresh"
    edit_dataset(key, src, fresh, progress=False)
    for p in sorted((fresh / "train").rglob("*.png"))[::37]:
        assert np.array_equal(load_image(p), load_image(out / p.relative_to(fresh)))


def test_bad_image_errors_or_is_skipped(tmp_path):
    root = tmp_path / "ds"
    for i in range(5):
        p = root / "train" / "a" / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(p)
    (root / "train" / "a" / "3.png").write_bytes(b"corrupt")
    key = Key.create("keyed-filter", "x")
    src = open_source(root)
    with pytest.raises(DataError, match="3.png"):
        edit_dataset(key, src, tmp_path / "out", batch_size=2, progress=False)
    # what was finished before the bad file is kept
    assert (tmp_path / "out" / "train" / "a" / "0.png").exists()
    reports = edit_dataset(key, src, tmp_path / "out", batch_size=2, skip_bad=True, progress=False)
    assert [s["source"] for s in reports[0].skipped] == ["a/3.png"]
    assert len((tmp_path / "out" / "train" / "manifest.jsonl").read_text().splitlines()) == 4
