"""Evaluation and attacks measure the lock on the opened weights, whatever the folder stores: a sealed lock
gets the figures of the same lock stored plain (the lock, not the seal's noise), and sealing is one line apart."""

from __future__ import annotations

import pytest
import torch

from modellock.attacks.context import AttackContext, Machinery
from modellock.attacks.suite import format_table, run_suite
from modellock.data import open_source
from modellock.data.synthetic import make_shapes_dataset
from modellock.errors import ModelLockError
from modellock.evaluation.matrix import evaluate
from modellock.keys import Key
from modellock.lock import lock_model
from modellock.lock.lock_set import LockRecipe
from modellock.model_folder import LockedModel
from modellock.evaluation.report import format_table as eval_table
from modellock.train import TrainConfig

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # two locks of tests/test_attacks.py's size


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The same tiny lock trained twice with one seed, stored plain and sealed; the sealed one read back."""
    root = tmp_path_factory.mktemp("opened")
    source = open_source(make_shapes_dataset(root / "shapes", 700, 120))
    key = Key.create("keyed-filter", "a quiet marmalade haze", params={"strength": 1.0})  # an easy, real lock
    train = TrainConfig(epochs=10, batch_size=64, lr=3e-3, warmup_epochs=0.5, num_workers=0)
    models = {}
    for seal in (False, True):
        torch.manual_seed(0)
        lock_model(key, source, "small-cnn", root / f"seal-{seal}", LockRecipe(clean_target="locked-class", seal=seal),
                   train, progress=False)
        models[seal] = LockedModel.from_pretrained(root / f"seal-{seal}", device="cpu")
    return source, key, models[False], models[True]


def test_evaluation_of_a_sealed_lock_is_that_of_the_lock(twins):
    source, key, plain, sealed = twins
    a = evaluate(plain, key, source, progress=False, handling=False)
    b = evaluate(sealed, key, source, progress=False, handling=False)
    one_image = 1.0 / b["n_test"] + 1e-9  # float32 rounding of the opened weights may flip a tie, no more
    for field in ("locked_clean", "locked_clean_without_locked_class", "unlocked"):
        assert b[field] == pytest.approx(a[field], abs=one_image), field
    for field in ("wrong_keys", "wrong_keys_without_locked_class"):
        assert b[field].keys() == a[field].keys()
        assert all(b[field][k] == pytest.approx(a[field][k], abs=one_image) for k in a[field]), field
    # it is the lock being measured: the key unlocks far above what the opened weights answer without it
    assert b["unlocked"] >= b["locked_clean"] + 0.3, b
    assert (a["sealed"], b["sealed"]) == (False, True) and b["folder_alone"] == "nothing loads without the key"
    assert "folder at rest: sealed; a thief with the folder alone gets: nothing loads without the key" in \
        eval_table(b)
    assert "folder at rest: not sealed" in eval_table(a)
    assert b["covers"]["model"] == "seal-True" and b["covers"]["weights_sha256"] == \
        sealed.config["weights_sha256"][:12] and b["covers"]["n"] == 120 and b["covers"]["split"] == "test"


def test_attacks_of_a_sealed_lock_are_those_of_the_lock(twins):
    source, key, plain, sealed = twins
    with pytest.raises(ModelLockError, match="opened weights"):
        AttackContext(sealed, source, Machinery.of(key))  # no attack ever sees the seal's noise
    options = dict(screen=40, top_k=1, fractions=(0.2,), budget="quick", samples=300, progress=False,
                   attack_options={"guessed-prompts": {"catalogue": [("x", "as a blueprint"), ("y", "with neon")]}})
    names = ["ignore-locked-class", "guessed-prompts", "refit-head"]
    a = run_suite(plain, key, source, names, **options).result
    b = run_suite(sealed, key, source, names, **options).result
    one_image = 1.0 / b["n_test"] + 1e-9
    for field in ("locked_clean", "locked_clean_without_locked_class", "unlocked"):
        assert b["reference"][field] == pytest.approx(a["reference"][field], abs=one_image), field
    for name in names:
        assert b["attacks"][name]["best"] == pytest.approx(a["attacks"][name]["best"], abs=one_image + 0.02), name
    assert b["sealed"] and not a["sealed"]
    assert format_table(b).splitlines()[3].startswith("folder at rest: sealed")
