"""Sealed weights: stored masked by the key; the key opens them exactly, anything else gets noise."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from modellock.data import open_source
from modellock.data.synthetic import make_shapes_dataset
from modellock.evaluate import evaluate
from modellock.key import Key
from modellock.lock import lock_model
from modellock.lockset import LockRecipe
from modellock.model_folder import LockedModel
from modellock.seal import seal_state, unseal_state
from modellock.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_seal_round_trip_and_wrong_keys():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                              torch.nn.LazyLinear(4))
    net(torch.zeros(1, 3, 6, 6))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    key = Key.create("keyed-net", "a quiet marmalade haze")
    sealed, record = seal_state(state, key)
    assert set(record["scales"]) == {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"}
    assert torch.equal(sealed["1.running_var"], state["1.running_var"])  # statistics stay as they are
    for name in record["scales"]:  # the stored tensor is mostly noise (mask RMS 4x the tensor's)
        if state[name].numel() >= 64:
            assert (sealed[name] - state[name]).norm() > 3 * state[name].norm()
    opened = unseal_state(sealed, key, record)
    assert all(torch.allclose(opened[n], state[n], atol=1e-5) for n in state)
    wrong = unseal_state(sealed, key.replace(seed=key.seed + 1), record)
    assert all((wrong[n] - state[n]).norm() > 3 * state[n].norm() for n in record["scales"] if state[n].numel() >= 64)


def test_sealed_lock_opens_only_with_its_key(tmp_path):
    source = open_source(make_shapes_dataset(tmp_path / "shapes", 300, 80))
    key = Key.create("keyed-filter", "a quiet marmalade haze")
    train = TrainConfig(epochs=4, batch_size=64, lr=3e-3, warmup_epochs=0.5, num_workers=0)
    plain = lock_model(key, source, "small-cnn", tmp_path / "plain", LockRecipe(seal=False), train, progress=False)
    sealed = lock_model(key, source, "small-cnn", tmp_path / "sealed", LockRecipe(seal=True), train, progress=False)
    stored = load_file(str(tmp_path / "sealed" / "model.safetensors"))
    assert not torch.allclose(stored["head.weight"], plain.model.state_dict()["head.weight"])
    config = json.loads((tmp_path / "sealed" / "config.json").read_text())
    assert config["lock"]["seal"]["scheme"] == "keyed-gaussian/v1" and key.prompt not in json.dumps(config)
    reloaded = LockedModel.from_pretrained(tmp_path / "sealed")
    images = [source.split("test").load(s) for s in source.split("test").samples[:16]]
    assert torch.allclose(reloaded.unlock(key).logits(images), plain.unlock(key).logits(images), atol=1e-3)
    a, b = evaluate(plain, key, source, progress=False, handling=False), \
        evaluate(reloaded, key, source, progress=False, handling=False)
    assert b["unlocked"] == pytest.approx(a["unlocked"], abs=0.02)
    # evaluation measures the lock on the opened weights, not noise: tests/test_opened_weights.py
