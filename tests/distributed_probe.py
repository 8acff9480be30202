"""One process of a launched group (``accelerate launch`` / ``torchrun``) running ``modellock`` commands, observed.

    accelerate launch --multi_gpu --num_processes 2 tests/distributed_probe.py "lock --key k.toml ..." "eval ..."

Each argument is one command line, run in turn in this process through ``modellock.cli``. The probe records, per
process, in ``$PROBE_DIR/rank-<rank>.json``: the lock-set items it read (in order) and a sha256 of the parameters
of every model it trained. With ``$PROBE_EXIT_AFTER_EPOCH=k`` it dies (``os._exit``) right after checkpoint ``k``
is written, as a killed job would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from pathlib import Path

import modellock.lock.run
import modellock.train
from modellock.utils import distributed
from modellock.cli import main
from modellock.lock.lock_set import LockDataset

record = {"reads": [], "trained": []}


def save() -> None:
    path = Path(os.environ["PROBE_DIR"]) / f"rank-{distributed.rank()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def parameters_sha256(model) -> str:
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode() + p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


_getitem = LockDataset.__getitem__


def getitem(self, i):
    record["reads"].append(int(i))
    return _getitem(self, i)


_fit = modellock.train.fit


def fit(*args, **kwargs):
    model = _fit(*args, **kwargs)
    record["trained"].append(parameters_sha256(model))
    return model


_save_checkpoint = modellock.train._save_checkpoint


def save_checkpoint(accelerator, checkpoint_dir, epoch, *args, **kwargs):
    _save_checkpoint(accelerator, checkpoint_dir, epoch, *args, **kwargs)
    if epoch == int(os.environ.get("PROBE_EXIT_AFTER_EPOCH", "0")):
        save()
        os._exit(3)


def install() -> None:
    LockDataset.__getitem__ = getitem
    modellock.lock.run.fit = fit
    modellock.train._save_checkpoint = save_checkpoint


if __name__ == "__main__":
    install()
    for command in sys.argv[1:]:
        try:
            main(shlex.split(command))
        except SystemExit as e:
            if e.code:
                raise
    save()
