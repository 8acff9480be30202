"""Training loop: learns, is deterministic, checkpoints and resumes to the same weights; logits and transforms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from modellock.nets.backbones import create_backbone
from modellock.errors import ModelLockError
from modellock.tasks.classification.transforms import classification_transforms
from modellock.train import TrainConfig, fit, lr_at, predict_logits

pytestmark = pytest.mark.usefixtures("one_thread")


CONFIG = dict(batch_size=32, lr=1e-2, weight_decay=0.0, warmup_epochs=0.5, num_workers=0)


class Colours(Dataset):
    """16x16 images whose dominant colour (red, green or blue) is the class; noise and a random flip per read."""

    def __init__(self, n: int = 192, seed: int = 0, fail_after: int | None = None):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 3
        self.base = torch.rand(n, 3, 1, 1, generator=g) * 0.5
        self.base[torch.arange(n), self.labels] += 0.5
        self.reads, self.fail_after = 0, fail_after

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise KeyboardInterrupt("killed mid-epoch")
        x = self.base[i].expand(3, 16, 16) + 0.3 * torch.randn(3, 16, 16)  # augmentation draws from torch's RNG
        return (x.flip(-1) if torch.rand(()) < 0.5 else x), self.labels[i]


def new_model(seed: int = 0):
    torch.manual_seed(seed)
    return create_backbone("tiny-cnn", 3, image_size=16)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_learns_colours_and_predicts_in_order():
    model = fit(new_model(), Colours(), TrainConfig(epochs=4, **CONFIG))
    test = Colours(n=90, seed=1)
    logits = predict_logits(model, test, batch_size=16)
    assert logits.shape == (90, 3) and logits.dtype == torch.float32
    accuracy = (logits.argmax(1) == test.labels).float().mean().item()
    assert accuracy > 0.8, accuracy  # chance is 1/3
    inputs = torch.stack([test.base[i].expand(3, 16, 16) for i in range(5)])
    assert torch.allclose(predict_logits(model, inputs, batch_size=2), model(inputs), atol=1e-5)  # bare inputs, in order


def test_same_seed_same_weights():
    a = weights(fit(new_model(), Colours(), TrainConfig(epochs=1, seed=3, **CONFIG)))
    b = weights(fit(new_model(), Colours(), TrainConfig(epochs=1, seed=3, **CONFIG)))
    c = weights(fit(new_model(), Colours(), TrainConfig(epochs=1, seed=4, **CONFIG)))
    assert equal(a, b) and not equal(a, c)
    workers = TrainConfig(epochs=1, seed=3, **{**CONFIG, "num_workers": 2})  # augmentation in worker processes
    assert equal(weights(fit(new_model(), Colours(), workers)), weights(fit(new_model(), Colours(), workers)))


def test_bf16_then_fp32_in_one_process():
    model = fit(new_model(), Colours(), TrainConfig(epochs=3, mixed_precision="bf16", **CONFIG))
    test = Colours(n=90, seed=1)
    assert (predict_logits(model, test).argmax(1) == test.labels).float().mean() > 0.8
    assert next(model.parameters()).dtype == torch.float32 and "autocast" not in repr(model.forward)
    fit(new_model(), Colours(n=64), TrainConfig(epochs=1, **CONFIG))  # accelerate's state switches back


def test_auto_precision_trains_in_bf16_only_where_the_cpu_computes_it(monkeypatch):
    from modellock import train

    monkeypatch.setattr(train.distributed, "use_cpu", lambda: True)
    config = dict(epochs=1, seed=3, **CONFIG)
    fp32, bf16 = (weights(fit(new_model(), Colours(n=64), TrainConfig(mixed_precision=p, **config))) for p in ("no", "bf16"))
    assert not equal(fp32, bf16)
    for native, same_as in ((True, bf16), (False, fp32)):
        monkeypatch.setattr(train, "native_cpu_bf16", lambda native=native: native)
        assert train.resolve_precision("auto") == ("bf16" if native else "no") and train.resolve_precision("fp16") == "fp16"
        assert equal(weights(fit(new_model(), Colours(n=64), TrainConfig(mixed_precision="auto", **config))), same_as)


def test_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    config = TrainConfig(epochs=2, **CONFIG)
    straight = weights(fit(new_model(), Colours(), config, work_dir=tmp_path / "straight"))
    assert sorted(p.name for p in (tmp_path / "straight" / "checkpoints").iterdir()) == ["epoch-0002"]

    work = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):  # dies 10 images into epoch 2
        fit(new_model(), Colours(fail_after=192 + 10), config, work_dir=work)
    saved = work / "checkpoints" / "epoch-0001"
    assert json.loads((saved / "trainer_state.json").read_text())["epoch"] == 1
    assert (saved / "model.safetensors").is_file()

    data = Colours()
    resumed = fit(new_model(seed=1), data, config, work_dir=work)  # the fresh init is replaced by the checkpoint
    assert data.reads == 192  # only epoch 2 ran
    assert equal(weights(resumed), straight)

    data = Colours()
    again = fit(new_model(seed=1), data, config, work_dir=work)  # all done: loads and returns
    assert data.reads == 0 and equal(weights(again), straight)

    data = Colours()
    fresh = fit(new_model(), data, config, work_dir=work, resume=False)
    assert data.reads == 2 * 192 and equal(weights(fresh), straight)


def test_sealed_checkpoints_hold_no_readable_weights_and_resume(tmp_path):
    """A sealed lock's checkpoints (issue 17: unsealed weights and optimizer state stayed in <out>/.work): every
    file of a checkpoint is sealed, none is readable without the key, and a rerun with the key resumes to the
    same weights as a run straight through; another key cannot resume it."""
    import zlib

    from safetensors.torch import load_file

    from modellock.keys import Key
    from modellock.keys.seal import SealError, Sealer

    key = Key.create("keyed-filter", "a quiet marmalade haze")
    config = TrainConfig(epochs=2, **CONFIG)
    straight = weights(fit(new_model(), Colours(), config))
    work = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):  # dies 10 images into epoch 2
        fit(new_model(), Colours(fail_after=192 + 10), config, work_dir=work, sealer=Sealer(key))
    saved = work / "checkpoints" / "epoch-0001"
    names = sorted(p.name for p in saved.iterdir())
    assert names == ["model.safetensors.sealed", "optimizer.pt.sealed", "trainer_state.json"], names
    assert [p.name for p in (work / "checkpoints").iterdir()] == ["epoch-0001"]  # nothing else, no plain copy
    for f in saved.glob("*.sealed"):
        data = f.read_bytes()
        assert len(zlib.compress(data, 9)) >= 0.98 * len(data) - 200, f.name  # ciphertext (but its header)
    with pytest.raises(Exception):  # noqa: B017 - safetensors raises its own error type
        load_file(str(saved / "model.safetensors.sealed"))
    with pytest.raises(SealError, match="does not open"):
        fit(new_model(), Colours(), config, work_dir=work, sealer=Sealer(key.replace(seed=key.seed + 1)))
    data = Colours()
    resumed = fit(new_model(seed=1), data, config, work_dir=work, sealer=Sealer(key))
    assert data.reads == 192 and equal(weights(resumed), straight)  # only epoch 2 ran, to the same weights
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["epoch-0002"]


def test_extending_a_finished_run_is_deterministic(tmp_path):
    """1 epoch, then epochs=2 on the same work_dir: runs epoch 2 only. The schedule now spans 2 epochs, so the
    result differs from a straight 2-epoch run (whose epoch 1 used other learning rates) but is reproducible."""
    results = []
    for run in ("a", "b"):
        fit(new_model(), Colours(), TrainConfig(epochs=1, **CONFIG), work_dir=tmp_path / run)
        data = Colours()
        results.append(weights(fit(new_model(), data, TrainConfig(epochs=2, **CONFIG), work_dir=tmp_path / run)))
        assert data.reads == 192
    assert equal(*results)
    with pytest.raises(ModelLockError, match="already trained 2 epochs"):
        fit(new_model(), Colours(), TrainConfig(epochs=1, **CONFIG), work_dir=tmp_path / "a")


def test_config_errors_and_schedules():
    with pytest.raises(ModelLockError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ModelLockError, match="epochs"):
        TrainConfig(epochs=0)
    cosine = TrainConfig(lr=1.0, warmup_epochs=1)
    assert lr_at(0, 100, 10, cosine) == pytest.approx(0.1) and lr_at(9, 100, 10, cosine) == pytest.approx(1.0)
    assert lr_at(99, 100, 10, cosine) < 0.001
    onecycle = TrainConfig(lr=1.0, schedule="onecycle")
    assert lr_at(0, 100, 30, onecycle) == pytest.approx(1 / 25) and lr_at(30, 100, 30, onecycle) == pytest.approx(1.0)
    assert lr_at(100, 100, 30, onecycle) == pytest.approx(1 / 25e4)
    model = fit(new_model(), Colours(n=64), TrainConfig(epochs=1, optimizer="sgd", schedule="onecycle", grad_clip=1.0,
                                                       label_smoothing=0.1, **{**CONFIG, "lr": 0.05}))
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("size", [32, 96])
def test_classification_transforms(size):
    array = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for train in (True, False):
        t = classification_transforms(size, train, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        for image in (array, Image.fromarray(array)):
            x = t(image)
            assert x.shape == (3, size, size) and x.dtype == torch.float32
    eval_t = classification_transforms(size, False, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert torch.equal(eval_t(array), eval_t(Image.fromarray(array)))  # eval is deterministic and input-agnostic
