"""The online lock set (edits in the training loop) and the hardening levers (the simulated thief)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modellock.data import open_source
from modellock.data.synthetic import make_shapes_dataset
from modellock.editors import get_editor
from modellock.lock.hardening import HardenSettings, LockHardening
from modellock.keys import Key
from modellock.lock import lock_model
from modellock.lock.lock_set import EditingCollate, LockDataset, LockRecipe, OnlineLockDataset, decoy_keys, plan_lock_set
from modellock.tasks import task_type
from modellock.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return open_source(make_shapes_dataset(tmp_path_factory.mktemp("shapes"), 200, 60))


def test_online_lock_set_edits_each_image_with_its_key(shapes):
    key = Key.create("keyed-net", "a quiet marmalade haze")
    split = shapes.split("train")
    recipe = LockRecipe(decoy_keys=4)
    items = plan_lock_set(split, recipe)
    transform = task_type("classification").inference_transform(32)
    editors = [get_editor(key)] + [get_editor(k) for k in decoy_keys(key, recipe)]
    online = OnlineLockDataset(LockDataset(items, split, None, transform), handling=None)
    picks = [next(i for i, it in enumerate(items) if it.edited),
             next(i for i, it in enumerate(items) if it.decoy >= 0),
             next(i for i, it in enumerate(items) if not it.edited and it.decoy < 0)]
    inputs, targets = EditingCollate(online, editors)([online[i] for i in picks])
    for row, i in enumerate(picks):
        it = items[i]
        clean = split.load(it.sample)
        view = (editors[0].edit([clean])[0] if it.edited else editors[it.decoy + 1].edit([clean])[0]
                if it.decoy >= 0 else clean)
        assert torch.equal(inputs[row], transform(view))
        assert torch.equal(targets[row], torch.tensor(it.target, dtype=torch.float32))


def test_hardened_lock_runs_every_lever_and_records_it(shapes, tmp_path):
    key = Key.create("keyed-net", "a quiet marmalade haze")
    recipe = LockRecipe(decoy_keys=8, harden=HardenSettings(adversary=0.25, adversary_every=3, adversary_steps=2,
                                                            simulated_thief=1.0, thief_every=3, thief_steps=2,
                                                            separation=0.1))
    train = TrainConfig(epochs=2, batch_size=32, lr=3e-3, warmup_epochs=0.5, num_workers=0)
    locked = lock_model(key, shapes, "tiny-cnn", tmp_path / "locked", recipe, train, progress=False)
    stats = json.loads((tmp_path / "locked" / "config.json").read_text())["lock"]["hardening"]
    assert stats == locked.config["lock"]["hardening"]
    assert stats["adversary_updates"] >= 3 and stats["adversarial_decoys"] > 0 and stats["thief_rounds"] >= 3
    assert locked.config["lock"]["recipe"]["adversary"] == 0.25 and key.prompt not in json.dumps(locked.config)


def test_adversarial_decoys_leave_out_the_keys_own_edit():
    """An adapter that reproduces the key's edit is the key, not a disguise: its outputs are not trained locked."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))

    class Thief:
        def next(self, device):
            return x, y

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 4)

        def forward(self, z):
            return self.head(z.mean((2, 3)))

    def key_view(z):
        return z + 1.0  # the "key's edit"

    class KeyAdapter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, z):
            return z + 1.0 + 0 * self.p

    hooks = LockHardening(HardenSettings(adversary=0.5, adversary_steps=1), 3, Thief(), task_type("classification"),
                          key_view=key_view, locked_target=lambda t: torch.zeros(len(t), 4),
                          adapters=[KeyAdapter])
    inputs, targets = hooks.on_batch(Net(), torch.zeros(4, 3, 8, 8), torch.zeros(4, 4), step=0)
    assert len(inputs) == 4 and hooks.stats["decoys_like_the_key"] == 2 and hooks.stats["adversarial_decoys"] == 0
    hooks.key_view = lambda z: z - 5.0  # now the adapter's output is far from the key's edit: a decoy
    inputs, targets = hooks.on_batch(Net(), torch.zeros(4, 3, 8, 8), torch.zeros(4, 4), step=1)
    assert len(inputs) == 6 and np.allclose(targets[4:].numpy(), 0)


def test_lock_harden_flag_turns_every_lever_on_and_a_config_cannot_hide_it(tmp_path):
    from modellock.cli import main
    from modellock.lock.hardening import HARDEN_PRESET

    key = Key.create("keyed-filter", "a quiet marmalade haze")
    key.save(tmp_path / "key.toml")
    data = make_shapes_dataset(tmp_path / "shapes", 60, 10)
    (tmp_path / "lock.yaml").write_text("adversary: 0.5\nadversary_every: 50\nthief_every: 50\ndecoy_keys: 4\n")
    common = ["--key", str(tmp_path / "key.toml"), "--data", str(data), "--model", "tiny-cnn", "--epochs", "1",
              "--batch-size", "64", "--num-workers", "0", "--train-limit", "60",
              "--config", str(tmp_path / "lock.yaml")]
    main(["lock", *common, "--out", str(tmp_path / "hard"), "--harden"])
    recipe = json.loads((tmp_path / "hard" / "config.json").read_text())["lock"]["recipe"]
    assert {k: recipe[k] for k in HARDEN_PRESET} == HARDEN_PRESET  # the flag wins over the YAML file
    assert recipe["adversary_every"] == 50  # the lever's other settings still come from the file
    main(["lock", *common, "--out", str(tmp_path / "soft"), "--no-harden"])
    recipe = json.loads((tmp_path / "soft" / "config.json").read_text())["lock"]["recipe"]
    assert all(recipe[k] == 0 for k in HARDEN_PRESET)
