import numpy as np

from modellock.editors import get_editor
from modellock.key import Key


def _images(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    # smooth random images with structure (not white noise): upsampled low-res noise
    low = rng.integers(0, 256, size=(n, size // 4, size // 4, 3)).astype(np.uint8)
    return list(low.repeat(4, 1).repeat(4, 2))


def _edit(prompt, images, seed=1024, **kw):
    return get_editor(Key.create("keyed-filter", prompt, seed=seed), **kw).edit(images)


def test_deterministic_and_batch_independent():
    imgs = _images(37)
    a = _edit("with oil pastel", imgs, batch_size=8)
    b = _edit("with oil pastel", imgs[::-1], batch_size=5)[::-1]
    single = [_edit("with oil pastel", [im])[0] for im in imgs[:5]]
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    for x, y in zip(a, single):
        assert np.array_equal(x, y)


def test_prompts_and_seeds_give_clearly_different_edits():
    imgs = _images(16)
    base = np.stack(_edit("with oil pastel", imgs)).astype(int)
    other_prompt = np.stack(_edit("as a charcoal sketch", imgs)).astype(int)
    other_seed = np.stack(_edit("with oil pastel", imgs, seed=1025)).astype(int)
    near_prompt = np.stack(_edit("with oil pastels", imgs)).astype(int)
    for other in (other_prompt, other_seed, near_prompt):
        assert np.abs(base - other).mean() > 8  # levels of 255, on average per pixel


def test_output_shape_and_alpha():
    im = _images(1, size=48)[0][:40]
    k = Key.create("keyed-filter", "with oil pastel", alpha=0.0)
    assert np.array_equal(get_editor(k).edit([im])[0], im)
    full = get_editor(k.replace(alpha=1.0)).edit([im])[0]
    half = get_editor(k.replace(alpha=0.5)).edit([im])[0]
    assert full.shape == half.shape == im.shape
    expected = np.round(0.5 * im.astype(float) + 0.5 * full.astype(float))
    assert np.abs(half.astype(float) - expected).max() <= 1


def test_content_stays_recognisable():
    imgs = _images(8)
    out = _edit("with oil pastel", imgs)
    for x, y in zip(imgs, out):
        gx = x.astype(float).mean(2)
        gy = y.astype(float).mean(2)
        # the edit's luminance structure still follows the original's
        c = np.corrcoef(np.diff(gx, axis=1).ravel(), np.diff(gy, axis=1).ravel())[0, 1]
        assert abs(c) > 0.4
