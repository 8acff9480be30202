"""The Python API as the README shows it: what ``predict`` accepts, and large images shrunk first."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modellock import DataError, Key, LockedModel, ModelLockError
from modellock.errors import ImageInputError


@pytest.fixture(scope="module")
def predictor(tiny_locked):
    root = tiny_locked[0]
    return LockedModel.from_pretrained(root / "locked").unlock(Key.load(root / "key.toml"))


@pytest.fixture(scope="module")
def test_image(tiny_locked) -> Path:
    return next((tiny_locked[0] / "data" / "test" / "star").glob("*.png"))


def test_top_level_exports():
    import modellock

    assert modellock.LockedModel.__name__ == "LockedModel" and "LockedModel" in dir(modellock)
    assert modellock.Predictor.__name__ == "Predictor"


def test_every_kind_of_input_alone_or_in_a_list(predictor, test_image, one_thread):
    array = np.asarray(Image.open(test_image).convert("RGB"))
    expected = predictor.predict([array])[0]
    assert set(expected) >= {"class", "label", "probability", "top"}
    for form in (str(test_image), test_image, Image.open(test_image), array, array / 255.0):
        alone = predictor.predict(form)
        assert isinstance(alone, dict) and alone["class"] == expected["class"], type(form)
        assert alone["probability"] == pytest.approx(expected["probability"], abs=1e-6)
        listed = predictor.predict([form, form])
        assert [r["class"] for r in listed] == [expected["class"]] * 2
    assert len(predictor.predict(np.stack([array] * 3))) == 3  # an NxHxWxC batch
    assert len(predictor.predict((str(test_image), array))) == 2


@pytest.mark.parametrize("bad", [{"image": 1}, 42, None, np.zeros(5), [Path("a.png"), 3.5]])
def test_anything_else_is_one_clear_error(predictor, bad):
    with pytest.raises(ImageInputError, match="is not an image.*expected a file path") as e:
        predictor.predict(bad)
    assert isinstance(e.value, TypeError) and isinstance(e.value, ModelLockError)


def test_unreadable_and_missing_files_are_named(predictor, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match="notes.png: cannot read image"):
        predictor.predict(tmp_path / "notes.png")
    with pytest.raises(DataError, match="missing.jpg: no such image file"):
        predictor.predict([str(tmp_path / "missing.jpg")])


def test_large_image_shrunk_before_it_is_edited(predictor, test_image, tmp_path, monkeypatch, one_thread):
    """A 3200x2400 photo reaches the editor (and the model) at the model's working size, and is answered
    like the same picture given small."""
    small = Image.open(test_image).convert("RGB")
    big = small.resize((3200, 2400), Image.NEAREST)
    big.save(tmp_path / "big.jpg", quality=95)
    seen = []
    edit = predictor.editor.edit
    monkeypatch.setattr(predictor.editor, "edit", lambda images: seen.extend(a.shape for a in images) or edit(images))
    for form in (tmp_path / "big.jpg", big, np.asarray(big)):
        result = predictor.predict(form)
        assert seen[-1] == (32, 43, 3), seen  # short side to the 32-pixel input, aspect kept
        assert result["class"] == predictor.predict(small.resize((43, 32), Image.BILINEAR))["class"]


def test_segmentation_mask_at_the_input_size(tmp_path, one_thread):
    """Shrunk for the model, the mask still comes back at the photo's own size."""
    from modellock.data import make_shapes_segmentation_dataset, open_source
    from modellock.lock import train_baseline
    from modellock.train import TrainConfig

    source = open_source(make_shapes_segmentation_dataset(tmp_path / "seg", 12, 4, size=32))
    model = train_baseline(source, "tiny-segnet", tmp_path / "m", TrainConfig(epochs=1, batch_size=4, num_workers=0),
                           image_size=32)
    photo = Image.new("RGB", (640, 480), (40, 90, 160))
    out = model.predictor().segment(photo)
    assert out["mask"].shape == (480, 640) and abs(sum(out["class_areas"].values()) - 1) < 1e-6


def test_model_card_snippet_runs(tiny_locked, test_image, tmp_path, monkeypatch, one_thread):
    """The card's Python block (the issue: its import line failed) runs with its placeholders filled in."""
    root = tiny_locked[0]
    card = (root / "locked" / "README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("THIS_FOLDER", str(root / "locked")).replace("KEY.toml", str(root / "key.toml"))
    Image.open(test_image).save(tmp_path / "image.jpg")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "model card", "exec"), namespace)
    assert isinstance(namespace["predictor"].predict("image.jpg")["class"], str)
