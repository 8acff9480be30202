"""The block-wise key transforms (pixel shuffling, negative/positive, FFX): exactness, keys, and a tiny lock each."""

import re
import types

import numpy as np
import pytest
import tomli_w
import torch

from modellock.data import open_source
from modellock.data.synthetic import make_shapes_dataset
from modellock.editors import get_editor
from modellock.editors.block_transforms import (FFX_ROUNDS, ffx_decrypt, ffx_encrypt, ffx_round_tables,
                                                resolve_block_size)
from modellock.errors import KeyFileError, ModelLockError
from modellock.evaluation.matrix import evaluate
from modellock.keys import Key
from modellock.lock import lock_model
from modellock.lock.lock_set import LockRecipe, plan_lock_set
from modellock.train import TrainConfig

EDITORS = ["pixel-shuffle", "negative-positive", "ffx"]
PROMPT = "a secret passphrase"
SIZES = [(32, 32), (33, 30), (5, 7), (2, 3), (1, 1)]  # multiples of the block size and not


pytestmark = pytest.mark.usefixtures("one_thread")


def _key(editor, prompt=PROMPT, seed=7, block_size=4, **fields):
    return Key.create(editor, prompt, seed=seed, params={"block_size": block_size}, **fields)


def _images(n, h=32, w=32, seed=0):
    return list(np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8))


def _blocks(image, m):
    """(n_blocks, m*m*3): each block flattened in (row, column, channel) order, as the papers do."""
    h, w, c = image.shape
    return image.reshape(h // m, m, w // m, m, c).transpose(0, 2, 1, 3, 4).reshape(-1, m * m * c)


@pytest.mark.parametrize("editor", EDITORS)
def test_key_defaults(editor):
    key = Key.create(editor, PROMPT)
    assert (key.model, key.resolution, key.alpha, key.steps) == ("", 0, 1.0, 1)
    assert key.params == {"block_size": 4}


@pytest.mark.parametrize("editor", EDITORS)
@pytest.mark.parametrize("block_size", [1, 3, 4, 16])
def test_inverse_is_exact_at_every_size(editor, block_size):
    ed = get_editor(_key(editor, block_size=block_size))
    for h, w in SIZES:
        image = _images(1, h, w, seed=h * w)[0]
        edited = ed.edit([image])[0]
        assert edited.shape == image.shape and edited.dtype == np.uint8
        assert np.array_equal(ed.inverse([edited])[0], image)
    big = _images(1, 32, 32)[0]
    assert not np.array_equal(ed.edit([big])[0], big)


def test_pixel_shuffle_is_one_permutation_of_every_block():
    ed = get_editor(_key("pixel-shuffle"))
    image = _images(1, 8, 12)[0]
    before, after = _blocks(image, 4), _blocks(ed.edit([image])[0], 4)
    assert sorted(ed.permutation) == list(range(48))
    assert np.array_equal(after, before[:, ed.permutation])
    assert np.array_equal(np.sort(after, axis=1), np.sort(before, axis=1))  # values move, none change


def test_negative_positive_twice_is_identity():
    ed = get_editor(_key("negative-positive"))
    assert ed.flip_mask.sum() == 24  # half of the 4*4*3 positions
    image = _images(1, 8, 8)[0]
    once = ed.edit([image])[0]
    expected = np.where(ed.flip_mask, 255 - _blocks(image, 4), _blocks(image, 4))
    assert np.array_equal(_blocks(once, 4), expected)
    for h, w in SIZES:
        x = _images(1, h, w, seed=1)[0]
        assert np.array_equal(ed.edit(ed.edit([x]))[0], x)
        assert np.array_equal(ed.inverse([x])[0], ed.edit([x])[0])


def test_ffx_is_a_bijection_per_position_and_decrypts():
    ed = get_editor(_key("ffx"))
    assert ed.encrypt_table.shape == (48, 256)
    every = np.arange(256)
    for p in range(48):
        assert np.array_equal(np.sort(ed.encrypt_table[p]), every)
        assert np.array_equal(ed.decrypt_table[p, ed.encrypt_table[p]], every)
    assert len({ed.encrypt_table[p].tobytes() for p in range(48)}) == 48  # one cipher per position
    assert (ed.encrypt_table == every).mean() < 0.05  # not near the identity
    rounds = ffx_round_tables(b"k" * 32, 5)
    assert rounds.shape == (5, FFX_ROUNDS, 16) and rounds.max() < 16
    values = np.random.default_rng(0).integers(0, 256, size=(5, 1000), dtype=np.uint8)
    assert np.array_equal(ffx_decrypt(ffx_encrypt(values, rounds), rounds), values)
    image = _images(1, 8, 8)[0]
    expected = ed.encrypt_table[np.arange(48)[None, :], _blocks(image, 4)]
    assert np.array_equal(_blocks(ed.edit([image])[0], 4), expected)


@pytest.mark.parametrize("editor", EDITORS)
def test_seeds_prompts_and_block_sizes_give_different_transforms(editor):
    images = _images(4)
    base = np.stack(get_editor(_key(editor)).edit(images))
    for other in (_key(editor, seed=8), _key(editor, prompt=PROMPT + "."), _key(editor, prompt="another one"),
                  _key(editor, block_size=2), _key(editor, block_size=8)):
        out = np.stack(get_editor(other).edit(images))
        assert (out != base).mean() > 0.3
    again = np.stack(get_editor(_key(editor)).edit(images))
    assert np.array_equal(base, again)  # the same key is deterministic, across editor instances


@pytest.mark.parametrize("editor", EDITORS)
def test_batch_equals_one_at_a_time(editor):
    ed = get_editor(_key(editor, block_size=3), batch_size=5)
    images = _images(13) + _images(4, 20, 17, seed=3)
    batched = ed.edit(images)
    reversed_ = get_editor(_key(editor, block_size=3), batch_size=7).edit(images[::-1])[::-1]
    for i, image in enumerate(images):
        single = ed.edit([image])[0]
        assert np.array_equal(batched[i], single) and np.array_equal(reversed_[i], single)
    assert all(np.array_equal(a, b) for a, b in zip(ed.inverse(batched), images))


@pytest.mark.parametrize("editor", EDITORS)
@pytest.mark.parametrize("block_size", [8, "patch"])
def test_key_file_round_trip(editor, block_size, tmp_path):
    key = _key(editor, block_size=block_size)
    path = key.save(tmp_path / "key.toml")
    text = path.read_text()
    assert "[params]" in text and f"block_size = {block_size!r}".replace("'", '"') in text
    loaded = Key.load(path)
    assert loaded == key and loaded.params == {"block_size": block_size}
    if block_size != "patch":
        image = _images(1)[0]
        assert np.array_equal(get_editor(loaded).edit([image])[0], get_editor(key).edit([image])[0])


@pytest.mark.parametrize("bad", [0, -4, 65, 4.5, "big", True, [4]])
def test_bad_block_size_names_the_field(bad, tmp_path):
    with pytest.raises(KeyFileError, match=r"params\.block_size"):
        Key.create("pixel-shuffle", PROMPT, params={"block_size": bad})
    path = _key("ffx").save(tmp_path / "key.toml")
    path.write_text(path.read_text().replace("block_size = 4\n", tomli_w.dumps({"block_size": bad})))
    with pytest.raises(KeyFileError, match=re.escape(str(path)) + r".*params\.block_size"):
        Key.load(path)


def test_editor_checks_resolution_and_alpha():
    with pytest.raises(KeyFileError, match="field 'resolution' must be 0"):
        get_editor(_key("pixel-shuffle", resolution=64))
    blended = get_editor(_key("negative-positive", alpha=0.5))
    image = _images(1)[0]
    assert blended.edit([image])[0].shape == image.shape
    with pytest.raises(ModelLockError, match="alpha = 1"):
        blended.inverse([image])


@pytest.mark.parametrize("editor", EDITORS)
def test_unresolved_patch_block_size_is_refused(editor):
    key = _key(editor, prompt="my very private words", block_size="patch")
    with pytest.raises(ModelLockError, match=r"params\.block_size.*patch.*resolve") as info:
        get_editor(key).edit(_images(1))
    assert "private" not in str(info.value)


def test_resolve_block_size_follows_the_model_patches():
    key = _key("ffx", block_size="patch")
    timm_like = types.SimpleNamespace(patch_embed=types.SimpleNamespace(patch_size=(8, 8)))
    torchvision_like = types.SimpleNamespace(patch_size=16)
    locked_like = types.SimpleNamespace(model=torchvision_like)
    assert resolve_block_size(key, timm_like).params == {"block_size": 8}
    assert resolve_block_size(key, torchvision_like).params == {"block_size": 16}
    assert resolve_block_size(key, locked_like).params == {"block_size": 16}
    assert resolve_block_size(key, "vit_tiny_patch16_224").params == {"block_size": 16}  # a name: no weights
    resolved = resolve_block_size(key, timm_like)
    image = _images(1, 16, 16)[0]
    assert np.array_equal(get_editor(resolved).edit([image])[0], get_editor(_key("ffx", block_size=8)).edit([image])[0])
    # other keys pass through unchanged
    for other in (_key("ffx", block_size=4), Key.create("keyed-filter", PROMPT)):
        assert resolve_block_size(other, timm_like) is other
    with pytest.raises(ModelLockError, match=r"params\.block_size.*tiny-cnn has no patches"):
        resolve_block_size(key, "tiny-cnn")
    with pytest.raises(ModelLockError, match="non-square"):
        resolve_block_size(key, types.SimpleNamespace(patch_size=(8, 16)))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return open_source(make_shapes_dataset(tmp_path_factory.mktemp("shapes"), 500, 150))


@pytest.mark.parametrize("editor", EDITORS)
def test_tiny_lock_on_transformed_images_only(editor, shapes, tmp_path):
    """The papers' recipe: train on transformed images only (edited_fraction 1.0, no clean items)."""
    key = _key(editor, block_size=2)
    recipe = LockRecipe(edited_fraction=1.0)
    assert all(item.edited for item in plan_lock_set(shapes.split("train"), recipe))
    train = TrainConfig(epochs=12, batch_size=64, lr=3e-3, warmup_epochs=0.5, num_workers=0)
    locked = lock_model(key, shapes, "small-cnn", tmp_path / "locked", recipe, train, progress=False)
    assert locked.config["lock"]["editor"] == editor and locked.locked_class is None
    result = evaluate(locked, key, shapes, wrong_keys={}, progress=False)
    assert 0.0 <= result["locked_clean"] <= 1.0 and result["n_test"] == 150
    assert result["unlocked"] >= result["locked_clean"] + 0.05, result
