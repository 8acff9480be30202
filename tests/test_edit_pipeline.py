"""The edit stage's hot path: reader workers and writer processes change nothing in what is written;
the diffusion editor fills a GPU by halving its batch on out-of-memory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from modellock.data import open_source
from modellock.edit import edit_split
from modellock.errors import DataError
from modellock.editors.instruct_pix2pix import InstructPix2PixEditor, gpu_batch_size
from modellock.keys import Key
from modellock.testing import sample_images


def _folder(root, n: int):
    for i, image in enumerate(sample_images(n, (16, 16))):
        path = root / "train" / f"c{i % 3}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    (root / "train" / "c1" / "bad.png").write_bytes(b"not a picture")
    return open_source(root)


def test_pipelined_writes_what_sequential_writes(tmp_path):
    split = _folder(tmp_path / "src", 40).split("train")
    key = Key.create("keyed-filter", "with oil pastel")
    runs = {}
    for name, workers in (("sequential", 0), ("pipelined", 1)):
        report = edit_split(key, split, tmp_path / name, batch_size=8, num_workers=workers, writers=workers,
                            skip_bad=True, progress=False)
        assert (report.edited, report.reused, [s["source"] for s in report.skipped]) == (40, 0, ["c1/bad.png"])
        assert report.processes == [{"rank": 0, "edited": 40, "reused": 0, "skipped": 1}]
        runs[name] = {p.relative_to(tmp_path / name).as_posix(): p.read_bytes()
                      for p in (tmp_path / name / "train").rglob("*.png")}
        header = json.loads((tmp_path / name / "edit.json").read_text())
        assert header["splits"]["train"] == {"images": 40, "num_processes": 1,
                                             "processes": [{"rank": 0, "edited": 40, "reused": 0}]}
    assert len(runs["sequential"]) == 40 and runs["sequential"] == runs["pipelined"]
    with pytest.raises(DataError, match="bad.png"):  # without --skip-bad the bad file stops the run...
        edit_split(key, split, tmp_path / "strict", batch_size=8, num_workers=1, writers=1, progress=False)
    kept = list((tmp_path / "strict").rglob("*.png"))  # ...and what was edited before it is kept
    assert 0 < len(kept) < 40 and not list((tmp_path / "strict").rglob("*.tmp"))
    again = edit_split(key, split, tmp_path / "strict", batch_size=8, num_workers=1, writers=1, skip_bad=True,
                       progress=False)
    assert again.reused == len(kept) and again.edited == 40 - len(kept)


def test_diffusion_editor_halves_its_batch_when_the_gpu_is_full(monkeypatch):
    assert gpu_batch_size(256) == 64 and gpu_batch_size(512) == 16 and gpu_batch_size(64) == 128
    key = Key.create("instruct-pix2pix", "turn it into an oil pastel drawing", model="unused", resolution=16)
    editor = InstructPix2PixEditor(key, device="cpu", batch_size=8)
    calls = []

    def pipeline_call(images):  # a GPU that holds 3 images at a time
        calls.append(len(images))
        if len(images) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return [255 - a for a in images]

    monkeypatch.setattr(editor, "_pipeline_call", pipeline_call)
    images = sample_images(8, (16, 16))
    out = editor.edit_batch(images)
    assert all(np.array_equal(o, 255 - a) for o, a in zip(out, images))
    assert calls == [8, 4, 2, 2, 2, 2] and editor.batch_size == 2
    editor.edit(images)  # later batches start at the size that fitted
    assert calls[-4:] == [2, 2, 2, 2]
