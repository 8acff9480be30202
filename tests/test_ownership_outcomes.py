"""Proof of ownership, the outcomes on a small real case: a locked shapes classifier (small-cnn, 16x16 images), its
evidence calibrated on independent models trained like it, then a fine-tuned copy of its opened weights (the
thief's), a pruned copy, an independently trained model, and a pruned copy served over HTTP with labels only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modellock.keys import Key

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
SIZE = 16
LOCK_EPOCHS = 12  # 6 left the lock too weak for the key-response test to see it (S 0.47, as independent)


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    """(root, source, key, locked model, evidence): the lock and the evidence, built once."""
    from modellock.data import make_shapes_dataset, open_source
    from modellock.lock import lock_model
    from modellock.ownership import build_evidence
    from modellock.train import TrainConfig

    import torch

    torch.manual_seed(0)  # the same models whatever ran before in this process (pytest-xdist shares workers)
    root = tmp_path_factory.mktemp("ownership")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELLOCK_CACHE", str(root / "cache"))
        source = open_source(make_shapes_dataset(root / "data", 400, 120, size=SIZE))
        key = Key.create("keyed-filter", "with oil pastel and a quiet harbour")
        key.save(root / "key.toml")
        locked = lock_model(key, source, "small-cnn", root / "locked", image_size=SIZE, progress=False,
                            train=TrainConfig(epochs=LOCK_EPOCHS, batch_size=32, lr=3e-3, num_workers=0))
        # 8 independent models: with 4, the null's t distribution (3 degrees of freedom) asks a label-only suspect
        # to lie 4.2 spreads out, and the labels-only pruned copy below was found in 10 of 12 draws of the samples
        # (150 or 250 queries); with 8, in 16 of 16, and the independent model in none (the draws are the owner's
        # secret, so they change from run to run; bench/ownership_draws.py, docs/benchmarks.md)
        # 60 key-feature images: with 30 the head-only transfer below was found in 5 of 5 draws of the samples at p
        # 0.0009-0.0073 and missed once in a test run (level 0.01); with 60, p 3e-5-0.0037 over 5 draws
        evidence = build_evidence(locked, key, source, root / "owner.evidence", independent=8, independent_epochs=6,
                                  n_wrong=40, n_cutmix=40, n_key=60, alpha=0.05, work_dir=root / "independent",
                                  log=lambda _: None)
    return root, source, key, locked, evidence


def _fine_tuned(locked, key, source, fraction=0.1, lr=3e-3, part="head"):
    """The thief's copy: the opened weights, a fresh head, trained on a little clean data (the attack suite's cell)."""
    from modellock.attacks.context import _Repeat
    from modellock.nets.heads import PartlyFrozen, set_trainable, with_fresh_head
    from modellock.tasks import task_type
    from modellock.train import TrainConfig, fit

    opened = locked.open(key)
    task = task_type("classification")
    split = source.split("train").subset(round(fraction * len(source.split("train"))), 0)
    pairs = task.training_pairs([split.load(s) for s in split.samples], task.targets(split),
                                opened.transform(train=True))
    torch.manual_seed(0)
    model = with_fresh_head(opened.model, len(opened.config["classes"]), 10)
    frozen = set_trainable(model, part, 10)
    config = TrainConfig(epochs=1, batch_size=32, lr=lr, num_workers=0, warmup_epochs=0.05)
    return fit(PartlyFrozen(model, frozen), _Repeat(pairs, 2000), config, progress=False).model


def _pruned(net, amount):
    """The thief's pruned copy: the smallest ``amount`` of the weights zeroed (global L1, as bench/ does)."""
    import copy

    import torch.nn.utils.prune as prune

    model = copy.deepcopy(net)
    params = [(m, "weight") for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for m, name in params:
        prune.remove(m, name)
    return model


def _suspect(net, locked, name):
    from modellock.ownership import ModelSuspect

    return ModelSuspect(net, locked.inference_transform(), "classification", name=name)


def test_a_fine_tuned_copy_is_derived_and_an_independent_model_is_not(owner, tmp_path):
    from modellock.ownership import verify
    from modellock.ownership.calibration import train_independent

    root, source, key, locked, evidence = owner
    copy = verify(evidence, _suspect(_fine_tuned(locked, key, source, part="whole"), locked, "fine-tuned copy"))
    assert copy["verdict"] == "derived", copy
    weights = copy["methods"]["weights"]  # its filters still point the owner's way; independent ones do not
    assert weights["verdict"] == "derived" and weights["value"] > 0.5 > weights["independent_mean"]
    pruned = verify(evidence, _suspect(_pruned(locked.open(key).model, 0.5), locked, "pruned copy"))
    assert pruned["verdict"] == "derived", pruned  # half the opened weights zeroed: still the owner's
    other = train_independent(source, "small-cnn", 77, 6, tmp_path / "other", SIZE, lr=3e-3)
    # a test at level alpha calls an independent model derived in about alpha of the draws, and the draws are the
    # owner's secret, new each run (the SAC-m null called one derived in 3 of 32 draws at 0.05, docs/benchmarks.md):
    # judged at 0.005, this assertion fails by chance about once in 200 runs, not once in 20
    independent = verify(evidence, _suspect(other.model, locked, "independent"), alpha=0.005)
    assert independent["verdict"] == "independent", independent
    assert all(r["p_value"] >= independent["level"] for r in independent["methods"].values())
    assert set(independent["methods"]) == {"sac-w", "sac-m", "key-feature", "key-response", "weights"}


def _transferred(locked, key, source, part="whole"):
    """The thief's transfer: the opened weights under a fresh head for two classes of its own (the shapes split in
    two groups), trained on 10 % of the clean data as the benchmark's transfer (bench/ownership_positives.py)."""
    from modellock.attacks.context import _Repeat
    from modellock.nets.heads import PartlyFrozen, set_trainable, with_fresh_head
    from modellock.tasks import Pairs, task_type
    from modellock.train import TrainConfig, fit

    opened = locked.open(key)
    split = source.split("train").subset(round(0.1 * len(source.split("train"))), 0)
    half = len(source.classes) // 2
    labels = task_type("classification").targets(split)
    pairs = Pairs([split.load(s) for s in split.samples], [int(y >= half) for y in labels],
                  opened.transform(train=True))
    torch.manual_seed(0)
    model = with_fresh_head(opened.model, len(opened.config["classes"]), 2)
    frozen = set_trainable(model, part, 2)
    config = TrainConfig(epochs=1, batch_size=32, lr=3e-3, num_workers=0, warmup_epochs=0.05)
    return fit(PartlyFrozen(model, frozen), _Repeat(pairs, 2000), config, progress=False).model


def test_a_transfer_to_other_classes_is_found_by_the_key_response(owner):
    """A new head for two classes of the thief's own on the frozen trunk (a linear probe) leaves the key-feature test
    nothing to compare; the key's edit still moves the transferred copy's answers where a wrong key's does not."""
    from modellock.ownership import verify

    root, source, key, locked, evidence = owner
    net = _transferred(locked, key, source, "head")
    result = verify(evidence, _suspect(net, locked, "transfer (head)"))
    assert "key-feature" in result["not_applicable"], result
    response = result["methods"]["key-response"]
    # its share over 5 secret draws of the samples: 0.60-0.73, the independent models' mean 0.45-0.51
    assert response["verdict"] == "derived" and response["value"] > response["threshold"], response
    assert response["p_value"] < result["level"], response
    assert set(result["methods"]) == {"sac-w", "sac-m", "key-response", "weights"}


class RealClasses(torch.nn.Module):
    """A network's outputs over the real classes (the locked output dropped)."""

    def __init__(self, net, k):
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x):
        return self.net(x)[:, : self.k]


def test_a_service_answering_labels_only_is_verified_within_its_budget(owner, tmp_path):
    """A pruned copy of the opened weights (30 % of them zeroed) behind an HTTP service (uvicorn on a free port)
    that answers the top class alone: `modellock verify --suspect URL` asks at most --max-queries images (a share
    of every sample set) and exits 3 (derived)."""
    import socket
    import threading
    import time

    import uvicorn

    from modellock.cli import main
    from modellock.model_folder import LockedModel
    from modellock.serve.app import create_app

    root, source, key, locked, evidence = owner
    k = locked.config["num_classes"]
    net = RealClasses(_pruned(locked.open(key).model, 0.3).eval(), k)
    config = {**locked.config, "lock": None, "classes": locked.classes[:k], "locked_class": None,
              "architecture": {**locked.config["architecture"], "num_classes": 10}}

    class LabelsOnly:
        def __init__(self, predictor):
            self.p, self.locked = predictor, predictor.locked

        def predict(self, images, top_k=3):
            return [{"class": r["class"], "label": r["label"]} for r in self.p.predict(images, top_k)]

    app = create_app(LabelsOnly(LockedModel(net, config).predictor()))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with pytest.raises(SystemExit) as e:
            main(["verify", "--evidence", str(root / "owner.evidence"), "--suspect", f"http://127.0.0.1:{port}",
                  "--max-queries", "200", "--json", str(tmp_path / "r.json")])
    finally:
        server.should_exit = True
        thread.join(10)
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["answers"] == "label" and result["kind"] == "black-box"
    assert result["queries"] <= 200 and sum(result["images_per_set"].values()) == result["queries"]
    assert e.value.code == 3 and result["verdict"] == "derived", result
    assert np.isfinite(result["methods"]["key-feature"]["p_value"])
