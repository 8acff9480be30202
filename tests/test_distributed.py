"""Two processes on the CPU (gloo), launched as a user would: sharded editing and DDP locking.

``torchrun --nproc-per-node 2 -m modellock.cli edit`` must leave the same folder, byte for byte, as one process,
finishing what an interrupted run left; ``accelerate launch --num_processes 2`` of ``lock`` (through
tests/distributed_probe.py, which observes each process) must split the lock set without overlap, end with the
same weights on both processes, write one checkpoint and one model folder, and resume after a crash.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from modellock.data import open_source
from modellock.data.synthetic import make_shapes_dataset
from modellock.edit import edit_dataset, edit_split
from modellock.editors import get_editor
from modellock.keys import Key
from modellock.model_folder import LockedModel

sys.path.insert(0, str(Path(__file__).parent))
from distributed_probe import parameters_sha256  # noqa: E402

PROBE = Path(__file__).with_name("distributed_probe.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launcher: list[str], args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **env}
    return subprocess.run([sys.executable, "-m", *launcher, *args], env=environment, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def torchrun(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return launch(["torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port())],
                  list(args), tmp_path)


def accelerate_launch(*commands: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    launcher = ["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    return launch(launcher, [str(PROBE), *commands], tmp_path, PROBE_DIR=str(tmp_path / "probe"), **env)


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_fingerprint(folder: Path) -> bytes:
    return json.loads((folder / "edit.json").read_text())["fingerprint"].encode()


class StopsAfter:
    """An editor that dies (like Ctrl-C) when asked for its ``n+1``-th batch."""

    def __init__(self, editor, n: int):
        self.editor, self.n, self.batch_size = editor, n, editor.batch_size

    def edit(self, images):
        if self.n == 0:
            raise KeyboardInterrupt
        self.n -= 1
        return self.editor.edit(images)


def test_two_process_edit_equals_one_process_and_resumes(tmp_path):
    data = make_shapes_dataset(tmp_path / "shapes", 61, 20, size=16)
    source = open_source(data)
    key = Key.create("keyed-filter", "with oil pastel")
    key.save(tmp_path / "k.toml")
    one = tmp_path / "one"
    edit_dataset(key, source, one, progress=False)

    two = tmp_path / "two"  # a one-process run interrupted after 2 batches of 8, then finished by two processes
    with pytest.raises(KeyboardInterrupt):
        edit_split(key, source.split("train"), two, editor=StopsAfter(get_editor(key), 2), batch_size=8,
                   num_workers=0, writers=0, progress=False)
    done = torchrun("-m", "modellock.cli", "edit", "--key", "k.toml", "--data", str(data), "--out", str(two),
                    "--batch-size", "4", "--num-workers", "1", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train: 61 images, 45 edited (rank 0: 23, rank 1: 22), 16 already done" in done.stdout
    assert "test: 20 images, 20 edited (rank 0: 10, rank 1: 10), 0 already done" in done.stdout

    header = json.loads((two / "edit.json").read_text())
    assert header["num_processes"] == 2
    assert header["splits"]["train"] == {"images": 61, "num_processes": 2, "processes": [
        {"rank": 0, "edited": 23, "reused": 8}, {"rank": 1, "edited": 22, "reused": 8}]}
    assert header["processes"] == [{"rank": 0, "edited": 33}, {"rank": 1, "edited": 32}]
    a, b = files(one), files(two)
    assert a.keys() == b.keys()  # one PNG per image, the manifests and the header: no parts, no temp files
    assert len([n for n in a if n.endswith(".png")]) == 81
    for name in a:
        if name.endswith(".png"):
            assert a[name] == b[name], name  # byte for byte
        elif name.endswith("manifest.jsonl"):  # the same lines but for the folder's fingerprint (salted per folder)
            assert a[name].replace(one_fingerprint(one), b"") == b[name].replace(one_fingerprint(two), b""), name


def test_two_process_lock_is_ddp_and_resumes(tmp_path):
    data = make_shapes_dataset(tmp_path / "shapes", 48, 16, size=16)
    Key.create("keyed-filter", "with oil pastel").save(tmp_path / "k.toml")
    (tmp_path / "lock.yaml").write_text("decoy_keys: 2\nonline: false\n")  # through the edit cache
    lock = (f"lock --key k.toml --data {shlex.quote(str(data))} --out locked --model tiny-cnn --epochs 2 "
            "--batch-size 8 --num-workers 0 --lr 0.003 --decoy-fraction 0.1 --config lock.yaml --no-seal")
    # unsealed: the folder must hold the trained weights bit for bit (sealing is exact to float32 rounding only)

    crashed = accelerate_launch(lock, tmp_path=tmp_path, PROBE_EXIT_AFTER_EPOCH="1")
    assert crashed.returncode != 0
    checkpoints = tmp_path / "locked" / ".work" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch-0001"]  # one checkpoint for both processes
    assert not (tmp_path / "locked" / "model.safetensors").exists()
    # the edit cache was filled by both processes: every image edited with the key once, half by each
    headers = [json.loads(p.read_text()) for p in Path(os.environ["MODELLOCK_CACHE"]).rglob("edit.json")]
    assert {"images": 48, "num_processes": 2, "processes": [{"rank": 0, "edited": 24, "reused": 0},
                                                             {"rank": 1, "edited": 24, "reused": 0}]} in [
        h.get("splits", {}).get("train") for h in headers]
    first = [json.loads((tmp_path / "probe" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    # lock set: 48 images + 14 paired views = 62 items; global batches of 2 x 8 = 16: 3 per epoch, 14 dropped
    assert [len(r["reads"]) for r in first] == [24, 24]
    assert not set(first[0]["reads"]) & set(first[1]["reads"])  # the two processes' shares do not overlap

    resumed = accelerate_launch(lock, f"eval --model locked --key k.toml --data {shlex.quote(str(data))} "
                                "--json result.json", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed after epoch 1/2" in resumed.stdout + resumed.stderr
    assert (resumed.stdout + resumed.stderr).count("wrote locked classification model locked") == 1
    second = [json.loads((tmp_path / "probe" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [len(r["reads"]) for r in second] == [24, 24]  # epoch 2 only
    assert not set(second[0]["reads"]) & set(second[1]["reads"])
    assert len(second[0]["trained"]) == 1 and second[0]["trained"] == second[1]["trained"]  # same weights

    folder = tmp_path / "locked"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["training"]["num_processes"] == 2
    saved = LockedModel.from_pretrained(folder, device="cpu").model
    assert parameters_sha256(saved) == second[0]["trained"][0]  # the model folder holds those weights
    result = json.loads((tmp_path / "result.json").read_text())  # evaluated by both processes, written once
    assert result["n_test"] == 16 and 0.0 <= result["unlocked"] <= 1.0 and len(result["wrong_keys"]) == 3
