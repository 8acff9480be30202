"""End-to-end lock → unlock → evaluate on small real data, plus the model folder's error cases."""

import collections
import dataclasses
import json
import shutil

import numpy as np
import pytest

from modellock.data import open_source
from modellock.data.synthetic import make_shapes_dataset
from modellock.errors import ModelLockError, WrongKeyError
from modellock.evaluation.matrix import evaluate
from modellock.keys import Key
from modellock.lock import lock_model, train_baseline
from modellock.lock.lock_set import DecodedOnce, LockRecipe, plan_lock_set
from modellock.model_folder import LockedModel, ModelFolderConfig
from modellock.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = TrainConfig(epochs=6, batch_size=64, lr=3e-3, warmup_epochs=0.5, num_workers=0)


@pytest.fixture(scope="module")
def cifar_lock(tmp_path_factory, cifar_small):
    """A small-cnn locked with the CPU key editor on 600 CIFAR-10 images (60 per class), default recipe."""
    out = tmp_path_factory.mktemp("cifar-lock")
    source = open_source(cifar_small)
    key = Key.create("keyed-filter", "with oil pastel")
    locked = lock_model(key, source, "small-cnn", out / "locked", LockRecipe(), FAST, progress=False)
    return key, source, locked, out


def test_lock_set_plan():
    from modellock.data.source import Sample, Split

    split = Split("train", ["a", "b", "c"], [Sample(f"{i}", i % 3) for i in range(100)])
    items = plan_lock_set(split, LockRecipe(edited_fraction=0.9, clean_target="wrong-label", seed=1, paired=False))
    assert sum(it.edited for it in items) == 90
    for it in items:
        assert len(it.target) == 3 and abs(sum(it.target) - 1) < 1e-6
        assert (np.argmax(it.target) == it.sample.label) == it.edited
    locked = plan_lock_set(split, LockRecipe(clean_target="locked-class"))
    assert all(len(it.target) == 4 and (it.edited or it.target[3] == 1.0) for it in locked)
    spread = plan_lock_set(split, LockRecipe(clean_target="locked-spread", locked_weight=0.5, paired=False))
    clean = [it for it in spread if not it.edited]
    assert all(it.target[it.sample.label] == 0 and it.target[3] == 0.5 for it in clean)
    again = plan_lock_set(split, LockRecipe(edited_fraction=0.9, clean_target="wrong-label", seed=1, paired=False))
    assert again == items
    # paired (the default): the locked items stay, and every image also appears key-edited with its true label
    paired = plan_lock_set(split, LockRecipe(clean_target="locked-spread", locked_weight=0.5, paired=True))
    assert paired[:100] == spread and len(paired) == 100 + sum(not it.edited for it in spread)
    views = {it.sample.id: it for it in paired if it.edited}
    assert len(views) == 100 and all(np.argmax(v.target) == v.sample.label for v in views.values())


def test_cifar_lock_unlocked_beats_locked(cifar_lock):
    key, source, locked, out = cifar_lock
    result = evaluate(locked, key, source, "test", wrong_keys={}, progress=False)
    assert result["n_test"] == 200 and result["chance"] == pytest.approx(0.1)
    # 600 training images, 6 epochs: far from CIFAR accuracy, but the lock must show, also to a
    # thief who ignores the locked output
    assert result["unlocked"] >= result["locked_clean"] + 0.08, result
    assert result["unlocked"] >= result["locked_clean_without_locked_class"] + 0.05, result


def test_model_folder_contents_and_reload(cifar_lock):
    key, source, locked, out = cifar_lock
    folder = out / "locked"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.sealed"]  # sealed
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["lock"]["editor"] == "keyed-filter" and key.matches(cfg["lock"]["fingerprint"])
    assert cfg["classes"] == source.classes + ["locked"] and cfg["locked_class"] == 10  # the default recipe
    assert cfg["lock"]["recipe"]["clean_target"] == "locked-spread" and cfg["lock"]["editor_version"] >= 1
    for f in folder.iterdir():
        assert b"oil pastel" not in f.read_bytes()
    again = LockedModel.from_pretrained(folder, device="cpu")
    images = [source.split("test").load(s) for s in source.split("test").samples[:6]]
    a = locked.unlock(key).logits(images)
    b = again.unlock(key).logits(images)
    assert np.allclose(a.numpy(), b.numpy(), atol=1e-5)
    preds = again.unlock(key).predict(images)
    assert all(p["class"] in source.classes and 0 <= p["probability"] <= 1 for p in preds)


def test_config_json_is_the_model_folder_config(tiny_locked):
    """A lock's and a baseline's config.json are ``ModelFolderConfig``'s JSON: read into it and written out again
    they are the same text (fields, order); ``ignore_index`` only for per-pixel tasks, ``locked_class`` and ``lock``
    null for the baseline."""
    root = tiny_locked[0]
    for folder in (root / "locked", root / "original"):
        text = (folder / "config.json").read_text()
        cfg = ModelFolderConfig.read(folder)
        assert json.dumps(cfg.to_dict(), indent=2) == text
        assert cfg.ignore_index is None and "ignore_index" not in text and cfg.training["epochs"] == 2
    assert LockRecipe.from_dict(ModelFolderConfig.read(root / "locked").lock["recipe"]) == LockRecipe()  # flat levers
    base = ModelFolderConfig.read(root / "original")
    assert base.lock is None and base.locked_class is None and {"lock", "locked_class"} <= set(base.to_dict())
    seg = dataclasses.replace(base, task="segmentation", ignore_index=255).to_dict()
    assert list(seg)[-2:] == ["ignore_index", "weights_sha256"] and seg["ignore_index"] == 255


def test_wrong_key_refused(cifar_lock):
    key, source, locked, out = cifar_lock
    with pytest.raises(WrongKeyError, match="the key does not open this model"):
        locked.unlock(key.replace(seed=key.seed + 1))
    with pytest.raises(WrongKeyError):
        locked.unlock(key.replace(prompt="with oil pastels"))


def test_folder_errors(cifar_lock, tmp_path):
    key, source, locked, out = cifar_lock
    bad = tmp_path / "bad"
    shutil.copytree(out / "locked", bad)
    (bad / "model.sealed").unlink()
    with pytest.raises(ModelLockError, match="missing model.sealed"):
        LockedModel.from_pretrained(bad)
    shutil.rmtree(bad)
    shutil.copytree(out / "locked", bad)
    data = bytearray((bad / "model.sealed").read_bytes())
    data[-5] ^= 0xFF
    (bad / "model.sealed").write_bytes(bytes(data))
    with pytest.raises(ModelLockError, match="sha256 does not match"):
        LockedModel.from_pretrained(bad)
    cfg = json.loads((out / "locked" / "config.json").read_text())
    shutil.copy(out / "locked" / "model.sealed", bad / "model.sealed")
    (bad / "config.json").write_text(json.dumps({**cfg, "preprocessing": {**cfg["preprocessing"], "image_size": 64}}))
    with pytest.raises(ModelLockError, match="image_size 64 does not match"):
        LockedModel.from_pretrained(bad)
    cfg["architecture"]["name"] = "no-such-net"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLockError, match="no-such-net"):
        LockedModel.from_pretrained(bad)


def test_locked_class_recipe_and_baseline_on_shapes(tmp_path):
    source = open_source(make_shapes_dataset(tmp_path / "shapes", 400, 100))
    key = Key.create("keyed-filter", "as a linocut")
    tc = TrainConfig(epochs=3, batch_size=64, lr=3e-3, warmup_epochs=0.5, num_workers=0)
    base = train_baseline(source, "tiny-cnn", tmp_path / "base", tc)
    # through the edit cache (online: false), the path of editors too slow to edit in the training loop
    locked = lock_model(key, source, "tiny-cnn", tmp_path / "lk", LockRecipe(clean_target="locked-class", online=False),
                        tc, progress=False)
    assert locked.config["classes"][-1] == "locked" and locked.locked_class == 10
    result = evaluate(locked, key, source, baseline=base, progress=False)
    for name in ("original_clean", "locked_clean", "unlocked", "locked_clean_without_locked_class",
                 "locked_class_rate_clean"):
        assert 0.0 <= result[name] <= 1.0
    assert set(result["wrong_keys"]) == {"next seed", "prompt 'with oil pastel'", "prompt 'as a charcoal sketch'"}
    # a CPU editor: the unlocked model is also scored on inputs handled (JPEG, resized, cropped) before the edit
    assert set(result["unlocked_under_handling"]) == {"jpeg q75", "resize -10%", "resize +10%", "crop 90%"}
    assert result["handling_drop"] == pytest.approx(max(result["unlocked"] - v
                                                        for v in result["unlocked_under_handling"].values()))
    # predictions with the key never name the locked output
    preds = locked.unlock(key).predict([source.split("test").load(source.split("test").samples[0])])
    assert preds[0]["class"] != "locked"
    # a second lock run with the same key edits nothing again (edit cache)
    from modellock.edit import cache_dir
    folder = cache_dir(key, source) / "train"
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")}
    lock_model(key, source, "tiny-cnn", tmp_path / "lk2", LockRecipe(clean_target="locked-class", online=False),
               TrainConfig(epochs=1, batch_size=64, num_workers=0), progress=False)
    after = {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")}
    assert before == after and len(before) == 400  # paired by default: every image also appears key-edited


def test_end_to_end_with_tiny_instruct_pix2pix(tmp_path, tiny_model):
    """edit → lock → unlock → eval with the diffusion editor (tiny random pipeline) on a few dozen images."""
    source = open_source(make_shapes_dataset(tmp_path / "shapes", 40, 20, size=32))
    key = Key.create("instruct-pix2pix", "turn it into an oil pastel drawing", model=str(tiny_model),
                     resolution=32, steps=2)
    tc = TrainConfig(epochs=2, batch_size=16, lr=3e-3, warmup_epochs=0.5, num_workers=0)
    locked = lock_model(key, source, "tiny-cnn", tmp_path / "locked", LockRecipe(edited_fraction=0.75), tc,
                        progress=False)
    cfg = json.loads((tmp_path / "locked" / "config.json").read_text())
    assert cfg["lock"]["editor"] == "instruct-pix2pix" and key.matches(cfg["lock"]["fingerprint"])
    assert str(tiny_model) not in (tmp_path / "locked" / "config.json").read_text()
    reloaded = LockedModel.from_pretrained(tmp_path / "locked", device="cpu")
    predictor = reloaded.unlock(key)
    test = source.split("test")
    preds = predictor.predict([test.load(s) for s in test.samples[:4]])
    assert len(preds) == 4 and all(p["class"] in source.classes for p in preds)
    result = evaluate(reloaded, key, source, wrong_keys={"seed": key.replace(seed=7)}, progress=False)
    assert result["n_test"] == 20 and set(result["wrong_keys"]) == {"seed"}
    assert all(0.0 <= result[k] <= 1.0 for k in ("locked_clean", "unlocked"))
    # the test split was edited through the edit cache with the diffusion editor: one PNG per image
    from modellock.edit import cache_dir
    assert len(list((cache_dir(key, source) / "test").rglob("*.png"))) == 20


def test_lock_is_deterministic_with_a_seed(tmp_path):
    source = open_source(make_shapes_dataset(tmp_path / "shapes", 100, 20))
    key = Key.create("keyed-filter", "as a linocut")
    tc = TrainConfig(epochs=1, batch_size=32, num_workers=0, seed=3)
    for name in ("a", "b"):
        lock_model(key, source, "tiny-cnn", tmp_path / name, LockRecipe(), tc, progress=False)
    a, b = (LockedModel.from_pretrained(tmp_path / n, device="cpu", key=key).model.state_dict() for n in ("a", "b"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    # the same weights, sealed twice: a fresh salt and nonce each time, so the files share nothing
    files = [(tmp_path / n / "model.sealed").read_bytes() for n in ("a", "b")]
    assert files[0] != files[1] and files[0][-4096:] != files[1][-4096:]


def test_training_decodes_each_image_once(tmp_path, monkeypatch):
    """Every epoch reads every image: training decodes each once (DecodedOnce), to the same weights as decoding
    it again every epoch."""
    source = open_source(make_shapes_dataset(tmp_path / "shapes", 48, 10))  # 3 whole batches an epoch
    split_type = type(source.split("train"))
    reads, read = collections.Counter(), split_type.load

    def counted(self, sample):
        reads[sample.id] += 1
        return read(self, sample)

    monkeypatch.setattr(split_type, "load", counted)
    tc = TrainConfig(epochs=3, batch_size=16, num_workers=0, seed=1)
    weights = {}
    for name, limit in (("kept", DecodedOnce.LIMIT), ("every-epoch", 0)):
        monkeypatch.setattr(DecodedOnce, "LIMIT", limit)
        reads.clear()
        weights[name] = train_baseline(source, "tiny-cnn", tmp_path / name, tc).model.state_dict()
        assert len(reads) == 48 and set(reads.values()) == ({1} if limit else {3})
    assert all(np.array_equal(weights["kept"][k].numpy(), weights["every-epoch"][k].numpy()) for k in weights["kept"])
    kept = DecodedOnce(source.split("train"), limit=1 << 20)
    image = kept.load(source.split("train").samples[0])
    assert kept.load(source.split("train").samples[0]) is image and not image.flags.writeable  # writers must copy
    assert kept.classes == source.split("train").classes  # the rest is the split's own


def test_evaluate_edits_with_a_cheap_editor_in_memory_and_scores_as_through_the_edit_cache(tiny_locked):
    """A keyed-filter key's test edits are made in memory, in chunks (no edit-cache files), and score exactly as
    the same edits read back from the edit cache."""
    import torch

    from modellock.edit import cache_dir
    from modellock.editors import get_editor
    from modellock.evaluation.matrix import handled_loaders, split_logits
    from modellock.tasks.classification import accuracy

    _, source, key, locked, _ = tiny_locked
    wrong = key.replace(seed=7)
    result = evaluate(locked, key, source, wrong_keys={"seed": wrong}, progress=False, handling=False)
    assert not cache_dir(key, source).exists() and not cache_dir(wrong, source).exists()
    opened, test = locked.open(key), source.split("test")
    labels = torch.tensor([s.label for s in test.samples])
    for k, score in ((key, result["unlocked"]), (wrong, result["wrong_keys"]["seed"])):
        assert accuracy(split_logits(opened, test, k, source, progress=False), labels) == score
    assert cache_dir(key, source).exists()  # the comparison went through the cache
    # chunks of 7 over 30 images: each image as edited alone
    editor = get_editor(key)
    chunked = [load() for load in handled_loaders(opened, test, key, chunk=7)]
    alone = [editor.edit([test.load(s)])[0] for s in test.samples]
    assert len(chunked) == len(test.samples) and all(np.array_equal(a, b) for a, b in zip(chunked, alone))


@pytest.mark.parametrize("share, jpeg_share", [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)])
def test_recipe_sets_the_lock_handling_shares(tmp_path, monkeypatch, share, jpeg_share):
    """``handling_share`` / ``handling_jpeg`` reach the handling the lock trains with: every image re-encoded as
    JPEG when both are 1, none when either is 0; the shares are written into config.json."""
    from modellock.data import handling

    calls = []
    real = handling.jpeg
    monkeypatch.setattr(handling, "jpeg", lambda image, quality: calls.append(quality) or real(image, quality))
    source = open_source(make_shapes_dataset(tmp_path / "shapes", 40, 10, size=16))
    key = Key.create("keyed-filter", "with oil pastel")
    recipe = LockRecipe(handling_share=share, handling_jpeg=jpeg_share, paired=False)
    tc = TrainConfig(epochs=1, batch_size=20, lr=3e-3, warmup_epochs=0.0, num_workers=0)
    lock_model(key, source, "tiny-cnn", tmp_path / "locked", recipe, tc, image_size=16, progress=False)
    assert len(calls) == (40 if share and jpeg_share else 0)  # one epoch: each training image handled once
    assert all(60 <= q <= 95 for q in calls)
    saved = json.loads((tmp_path / "locked" / "config.json").read_text())["lock"]["recipe"]
    assert (saved["handling_share"], saved["handling_jpeg"]) == (share, jpeg_share)


def test_recipe_handling_shares_are_checked():
    with pytest.raises(ModelLockError, match="handling_jpeg"):
        LockRecipe(handling_jpeg=1.5)
    with pytest.raises(ModelLockError, match="handling_share"):
        LockRecipe(handling_share=-0.1)
