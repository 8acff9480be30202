"""bench/device_check.py at toy sizes (--tiny): the GPU check runs every step on a CPU, so the one GPU run works."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_device_check_tiny_runs_every_step(tmp_path, monkeypatch, one_thread):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.delenv("OUT", raising=False)
    import device_check

    device_check.main(["--tiny", "--skip", "folder", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "device_check.json").read_text())
    pix = result["pix2pix"]
    assert pix["paper_loop"]["images"] == 4 and pix["paper_loop"]["images_per_s"] > 0
    assert [row["batch"] for row in pix["batched"]] == [2, 4]
    for row in pix["batched"]:
        assert row["images_per_s"] > 0 and row["max_abs_diff_uint8"] <= 1  # batched edits = one-image edits
        assert row["unet_alone_ms"] > 0 and row["unet_mfu"] is None  # no GPU peak to compare with on a CPU
    assert pix["unet_gflops_per_call_batch1"] > 0
    assert result["training"]["model"] == "tiny-cnn" and result["training"]["images_per_s"] > 0
    assert "edit_folder" not in result and result["goals"] is None
    sys.modules.pop("device_check", None)
