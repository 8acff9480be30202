"""keyed-net: a key editor whose weights come from the key; exact, batch-independent, content-keeping."""

from __future__ import annotations

import numpy as np
import torch

from modellock.editors import editor_class, get_editor
from modellock.editors.keyed_net import draw_weights, key_seed
from modellock.keys import Key


def _images(n=12, size=(24, 20)):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a = np.zeros((*size, 3), dtype=np.uint8)
        a[:] = rng.integers(0, 90, 3)
        a[size[0] // 4: size[0] // 2, size[1] // 4:] = rng.integers(160, 256, 3)  # a bright block: edges to keep
        out.append(np.clip(a + rng.integers(-10, 10, a.shape), 0, 255).astype(np.uint8))
    return out


def test_same_key_same_edit_and_batch_independent():
    key = Key.create("keyed-net", "a quiet marmalade haze")
    images = _images(11) + [np.random.default_rng(1).integers(0, 256, (17, 31, 3), dtype=np.uint8)]
    batched = get_editor(key).edit(images)
    alone = [get_editor(key).edit([im])[0] for im in images]
    assert all(np.array_equal(a, b) for a, b in zip(batched, alone))
    assert all(e.shape == im.shape for e, im in zip(batched, images))  # edited at the image's own size
    again = get_editor(Key(**key.to_dict())).edit(images[:3])
    assert all(np.array_equal(a, b) for a, b in zip(batched, again))


def test_prompt_and_seed_change_every_weight():
    key = Key.create("keyed-net", "a quiet marmalade haze")
    other, seed = key.replace(prompt="a quiet marmalade haze."), key.replace(seed=key.seed + 1)
    seeds = {key_seed(key), key_seed(other), key_seed(seed)}
    assert len(seeds) == 3
    w, w2 = draw_weights(key_seed(key)), draw_weights(key_seed(other))
    assert all(not np.allclose(w[k], w2[k]) for k in w)
    images = _images()
    e1, e2 = get_editor(key).edit(images), get_editor(other).edit(images)
    assert np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(e1, e2)]) > 5


def test_edit_keeps_the_content():
    """Blended edits keep the image's edges (what the unlocked model must still see)."""
    images = _images()
    edited = get_editor(Key.create("keyed-net", "a quiet marmalade haze")).edit(images)
    for a, e in zip(images, edited):
        ga = np.abs(np.diff(a.astype(float).mean(2), axis=0))
        ge = np.abs(np.diff(e.astype(float).mean(2), axis=0))
        assert np.corrcoef(ga.ravel(), ge.ravel())[0, 1] > 0.3
        assert np.abs(a.astype(int) - e.astype(int)).mean() > 3  # and it is an edit


def test_attack_family_is_the_editor():
    key = Key.create("keyed-net", "a quiet marmalade haze")
    images = _images(6)
    edited = np.stack(get_editor(key).edit(images)).astype(np.float32)
    family = editor_class("keyed-net").attack_family(key)
    x = torch.tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2) / 255
    with torch.no_grad():
        out = family(x).permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(out - edited).max() <= 1.01  # the editor rounds its edit to uint8 before blending
    assert 1000 < sum(p.numel() for p in family.parameters()) < 20000
