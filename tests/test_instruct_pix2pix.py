"""InstructPix2PixEditor on a tiny random pipeline built in code and loaded back with from_pretrained.

No download, no GPU: ``modellock.testing.build_tiny_pix2pix`` saves real diffusers / transformers
components (random weights, fixed seed) into a temporary folder once per session.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from modellock.editors import get_editor
from modellock.editors.instruct_pix2pix import InstructPix2PixEditor
from modellock.errors import ModelLockError
from modellock.keys import Key
from modellock.testing import sample_images

PROMPT = "turn it into an oil pastel drawing"
OTHER_PROMPT = "make it a charcoal sketch at night"


def make_key(model, **fields) -> Key:
    fields = {"resolution": 32, "steps": 2, "alpha": 1.0, **fields}
    return Key.create("instruct-pix2pix", fields.pop("prompt", PROMPT), model=str(model), **fields)


def stack(images) -> np.ndarray:
    return np.stack(images).astype(np.int16)


@pytest.fixture(scope="module")
def images():
    return sample_images(4, (32, 32), seed=3)


def test_registry_builds_the_editor_from_the_saved_folder(tiny_model, images):
    editor = get_editor(make_key(tiny_model), device="cpu")
    assert isinstance(editor, InstructPix2PixEditor)
    out = editor.edit(images[:1])
    assert out[0].shape == (32, 32, 3) and out[0].dtype == np.uint8
    assert np.abs(out[0].astype(np.int16) - images[0]).mean() > 1  # it did edit


def test_batched_edit_equals_one_image_at_a_time(tiny_model, images):
    assert len({im.tobytes() for im in images}) == len(images) >= 4
    key = make_key(tiny_model)
    batched = get_editor(key, device="cpu", batch_size=len(images)).edit(images)
    uneven = get_editor(key, device="cpu", batch_size=3).edit(images[::-1])[::-1]  # chunks of 3 and 1, reversed
    alone = [get_editor(key, device="cpu", batch_size=1).edit([im])[0] for im in images]
    assert np.abs(stack(batched) - stack(alone)).max() <= 1
    assert np.abs(stack(uneven) - stack(alone)).max() <= 1


# Thresholds measured on this tiny pipeline (these 4 images, 32x32, 2 steps, guidance 4.5 / 1.5):
# batched vs alone differ by 0 levels; the two prompts below differ by a mean of 6.0-6.5 levels per
# image (other prompt pairs: 4.0-5.7; a random text encoder read by one cross-attention level carries
# the prompt weakly), the two seeds by 47-48 levels (the seed draws all the initial noise).
# The thresholds sit at about a third of the smallest measured value and far above the <= 1 level
# rounding jitter allowed between batch sizes, so they catch an editor that ignores prompt or seed.
PROMPT_MIN_MEAN_DIFF = 2.0
SEED_MIN_MEAN_DIFF = 15.0


def test_edits_depend_on_the_prompt(tiny_model, images):
    a = get_editor(make_key(tiny_model), device="cpu").edit(images)
    b = get_editor(make_key(tiny_model, prompt=OTHER_PROMPT), device="cpu").edit(images)
    for x, y in zip(a, b):  # every image, not only on average
        assert np.abs(x.astype(np.int16) - y).mean() > PROMPT_MIN_MEAN_DIFF


def test_edits_depend_on_the_seed(tiny_model, images):
    a = get_editor(make_key(tiny_model, seed=1024), device="cpu").edit(images)
    b = get_editor(make_key(tiny_model, seed=1025), device="cpu").edit(images)
    for x, y in zip(a, b):
        assert np.abs(x.astype(np.int16) - y).mean() > SEED_MIN_MEAN_DIFF


def test_same_key_same_edit(tiny_model, images):
    key = make_key(tiny_model)
    a = get_editor(key, device="cpu").edit(images[:2])
    b = get_editor(key, device="cpu").edit(images[:2])
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_output_keeps_the_input_size(tiny_model):
    key = make_key(tiny_model, resolution=32)
    inputs = sample_images(1, (40, 56), seed=5) + sample_images(1, (24, 24), seed=6)
    out = get_editor(key, device="cpu").edit(inputs + [Image.fromarray(inputs[0])])
    assert [o.shape for o in out] == [(40, 56, 3), (24, 24, 3), (40, 56, 3)]
    assert all(o.dtype == np.uint8 for o in out)
    assert np.array_equal(out[0], out[2])  # a PIL image and its array give the same edit


def test_alpha_blends_original_and_edit(tiny_model):
    inputs = sample_images(2, (40, 48), seed=7)  # other size than the key's resolution
    raw = get_editor(make_key(tiny_model, alpha=1.0), device="cpu").edit(inputs)
    none = get_editor(make_key(tiny_model, alpha=0.0), device="cpu").edit(inputs)
    half = get_editor(make_key(tiny_model, alpha=0.5), device="cpu").edit(inputs)
    for x, r, n, h in zip(inputs, raw, none, half):
        assert np.array_equal(n, x)
        assert not np.array_equal(r, x)
        expected = np.asarray(Image.blend(Image.fromarray(x), Image.fromarray(r), 0.5))
        assert np.array_equal(h, expected)


def test_missing_model_folder_is_a_clear_error_without_secrets(tmp_path):
    missing = tmp_path / "no-such-pipeline"
    key = make_key(missing)
    editor = get_editor(key, device="cpu")
    with pytest.raises(ModelLockError) as info:
        editor.edit(sample_images(1, (32, 32)))
    message = str(info.value)
    assert "model" in message
    assert str(missing) not in message and missing.name not in message
    assert PROMPT not in message


def test_folder_without_a_pipeline_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    key = make_key(tmp_path / "empty")
    with pytest.raises(ModelLockError) as info:
        get_editor(key, device="cpu").edit(sample_images(1, (32, 32)))
    assert str(tmp_path) not in str(info.value) and PROMPT not in str(info.value)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_a_prompt_longer_than_the_text_encoder_never_reaches_the_logs(tiny_model, images):
    # The tiny tokenizer has one token per character: this prompt runs far past its 77 tokens, and
    # diffusers would log the cut-off words.
    tail = "secretword-beyond-the-context"
    long_prompt = "paint it " + "very " * 20 + tail
    records = _Records()
    root = logging.getLogger("diffusers")
    root.addHandler(records)
    try:
        out = get_editor(make_key(tiny_model, prompt=long_prompt), device="cpu").edit(images[:1])
    finally:
        root.removeHandler(records)
    assert out[0].shape == (32, 32, 3)
    assert any("longer than the text encoder" in m for m in records.messages)
    assert not any("secretword" in m.replace(" ", "") for m in records.messages)
