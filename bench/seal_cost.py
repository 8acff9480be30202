"""What sealing costs: writing and opening a sealed model folder against a plain one, side by side in one run.

    OMP_NUM_THREADS=1 python bench/seal_cost.py [--models small-cnn,torchvision:resnet18] [--repeats 5]

For each model (random weights: sealing does not care what they are), the median over ``--repeats`` of:
``save``: ``save_pretrained`` plain (``model.safetensors``); ``seal``: ``save_pretrained(seal_key=...)``
(``model.sealed``); ``load``: ``from_pretrained`` of the plain folder; ``open``: ``from_pretrained`` of the sealed
folder then ``open(key)`` (the fingerprint check, the seal's scrypt, AES-256-GCM, the safetensors parse); and
``scrypt``: one key derivation alone (N=2^15, r=8, p=1), of which ``open`` does two (fingerprint and seal key)
and ``seal`` one; ``open-2kdf`` is ``open`` without them (the cipher and parsing).
Ratios are to the plain ``load`` and ``save`` of the same model.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import torch

from modellock.keys.fingerprint import SCRYPT_N, SCRYPT_P, SCRYPT_R
from modellock.keys import Key
from modellock.model_folder import FORMAT, LockedModel
from modellock.tasks import task_type
from modellock.utils.images import IMAGENET_MEAN, IMAGENET_STD

from lock_levers import PROMPT  # noqa: E402  (bench/ is on the path when run as a script: the same key prompt)


def _locked(name: str, key: Key) -> LockedModel:
    torch.manual_seed(0)
    size = 32 if "cnn" in name else 224
    net = task_type("classification").create_model(name, 11, size)
    config = {"format": FORMAT, "task": "classification", "architecture": net.backbone_spec,
              "classes": [f"c{i}" for i in range(10)] + ["locked"], "num_classes": 10, "locked_class": 10,
              "preprocessing": {"image_size": size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
              "lock": {"editor": key.editor, "editor_version": 1, "fingerprint": key.fingerprint(), "recipe": {}}}
    return LockedModel(net.eval(), config)


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="small-cnn,torchvision:resnet18")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    key = Key.create("keyed-filter", PROMPT)
    scrypt = _median(lambda: hashlib.scrypt(key.canonical(), salt=b"0" * 16, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                                            dklen=32, maxmem=256 << 20), args.repeats)
    print(f"scrypt (N=2^15, r=8, p=1), one derivation: {scrypt * 1000:.0f} ms")
    print(f"{'model':24s} {'MB':>7s} {'save':>8s} {'seal':>8s} {'ratio':>6s} {'load':>8s} {'open':>8s} {'ratio':>6s}"
          f" {'open-2kdf':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            plain, sealed = Path(tmp) / f"{name}-plain".replace(":", "_"), Path(tmp) / f"{name}-sealed".replace(":", "_")
            to_save, to_seal = _locked(name, key), _locked(name, key)
            t_save = _median(lambda: to_save.save_pretrained(plain), args.repeats)
            t_seal = _median(lambda: to_seal.save_pretrained(sealed, seal_key=key), args.repeats)
            t_load = _median(lambda: LockedModel.from_pretrained(plain, device="cpu"), args.repeats)
            t_open = _median(lambda: LockedModel.from_pretrained(sealed, device="cpu").open(key), args.repeats)
            a = LockedModel.from_pretrained(plain, device="cpu").model.state_dict()
            b = LockedModel.from_pretrained(sealed, device="cpu", key=key).model.state_dict()
            assert all(torch.equal(a[k], b[k]) for k in a)  # the same weights come back
            mb = (sealed / "model.sealed").stat().st_size / 1e6
            print(f"{name:24s} {mb:7.1f} {t_save * 1000:7.0f}ms {t_seal * 1000:7.0f}ms {t_seal / t_save:5.2f}x "
                  f"{t_load * 1000:7.0f}ms {t_open * 1000:7.0f}ms {t_open / t_load:5.2f}x "
                  f"{(t_open - 2 * scrypt) * 1000:8.0f}ms")


if __name__ == "__main__":
    main()
