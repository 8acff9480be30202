"""Shared fixtures: an isolated cache, no network, and small slices of the shared CIFAR-10 archive."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = Path(os.environ.get("MODELLOCK_SHARED_DATA", ROOT.parent / "shared" / "data")) / "cifar10-jpeg.tar.gz"


def _go_offline(mp: pytest.MonkeyPatch) -> None:
    """No test reaches the network: the env vars, and huggingface_hub's copy read when it was imported."""
    import huggingface_hub.constants

    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MODELLOCK_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    _go_offline(monkeypatch)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train fastest on one thread, and do not stall when other jobs share the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny random InstructPix2Pix pipeline saved with save_pretrained (built once per session)."""
    from modellock.testing import build_tiny_pix2pix

    with pytest.MonkeyPatch.context() as mp:
        _go_offline(mp)
        return build_tiny_pix2pix(tmp_path_factory.mktemp("tiny-pix2pix"))


def extract_cifar_subset(dest: Path, per_class: dict[str, int]) -> Path:
    """Stream the first N images per class of each split out of the shared archive into ``dest``."""
    if not SHARED_CIFAR.exists():
        pytest.skip(f"shared CIFAR-10 archive not found at {SHARED_CIFAR} (../shared/data is absent)")
    counts: dict[tuple[str, str], int] = {}
    with tarfile.open(SHARED_CIFAR) as tar:
        for m in tar:
            parts = Path(m.name).parts  # cifar10/<split>/<class>/<file>
            if not m.isfile() or len(parts) != 4 or parts[1] not in per_class:
                continue
            k = (parts[1], parts[2])
            if counts.get(k, 0) >= per_class[parts[1]]:
                continue
            counts[k] = counts.get(k, 0) + 1
            out = dest / "cifar10" / parts[1] / parts[2] / parts[3]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(m).read())
    return dest / "cifar10"


@pytest.fixture(scope="session")
def cifar_small(tmp_path_factory) -> Path:
    """CIFAR-10 ImageFolder: 60 train and 20 test images per class."""
    return extract_cifar_subset(tmp_path_factory.mktemp("cifar-small"), {"train": 60, "test": 20})


@pytest.fixture(scope="session")
def tiny_locked(tmp_path_factory):
    """A tiny keyed-filter lock of the shapes dataset: (root, source, key, locked model, original model)."""
    from modellock.data import make_shapes_dataset, open_source
    from modellock.keys import Key
    from modellock.lock import lock_model, train_baseline
    from modellock.train import TrainConfig

    root = tmp_path_factory.mktemp("tiny-locked")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELLOCK_CACHE", str(root / "cache"))
        source = open_source(make_shapes_dataset(root / "data", 100, 30))
        key = Key.create("keyed-filter", "with oil pastel")
        key.save(root / "key.toml")
        tc = TrainConfig(epochs=2, batch_size=32, lr=3e-3, num_workers=0)
        original = train_baseline(source, "tiny-cnn", root / "original", tc)
        locked = lock_model(key, source, "tiny-cnn", root / "locked", train=tc, progress=False)
    return root, source, key, locked, original


@pytest.fixture
def run(capsys):
    """``run(*args)``: the command line in this process; (exit code, stdout, stderr)."""
    from modellock.cli import main

    def call(*args):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return call
