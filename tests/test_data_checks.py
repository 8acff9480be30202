"""Data checks before any work: one clear error naming split, class, file or value; warnings for what a
user may mean. Each case fails in seconds, before any edit or training."""

import numpy as np
import pytest
from PIL import Image

from modellock import DataError, DataWarning
from modellock.data import make_shapes_dataset, make_shapes_segmentation_dataset, open_source
from modellock.data.checks import check_data, pick_split
from modellock.key import Key
from modellock.lock import lock_model, train_baseline
from modellock.paths import cache_root
from modellock.train import TrainConfig

TINY = TrainConfig(epochs=1, batch_size=16, num_workers=0)


def _folder(root, spec: dict) -> str:
    """``{"train/circle": 3, ...}``: that many 16x16 PNGs per class folder."""
    for folder, n in spec.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(root / folder / f"{i}.png")
    return str(root)


def test_single_class_refused_before_any_edit(tmp_path, monkeypatch):
    """The issue's case: one class ran a minute and wrote a '1 classes' model answering 'circle' at 1.000."""
    monkeypatch.setenv("MODELLOCK_CACHE", str(tmp_path / "cache"))
    source = open_source(_folder(tmp_path / "d", {"train/circle": 4, "test/circle": 2}))
    key = Key.create("keyed-filter", "with oil pastel")
    with pytest.raises(DataError, match=r"split 'train' has images of 1 class only \('circle'\); a model needs "
                                        "at least two"):
        lock_model(key, source, "tiny-cnn", tmp_path / "m", train=TINY, progress=False)
    assert not (tmp_path / "m").exists() and not (cache_root() / "edits").exists()


def test_class_without_training_images_is_an_error_in_another_split_a_warning(tmp_path):
    source = open_source(_folder(tmp_path / "d", {"train/a": 3, "train/b": 3, "test/a": 2, "test/b": 2, "test/c": 2}))
    with pytest.raises(DataError, match="split 'train' has no images of class 'c' \\(class 'c' has images in "
                                        "split 'test'\\)"):
        train_baseline(source, "tiny-cnn", tmp_path / "m", TINY)
    source = open_source(_folder(tmp_path / "e", {"train/a": 3, "train/b": 3, "train/c": 3, "test/a": 2}))
    with pytest.warns(DataWarning, match="split 'test' has no images of class 'b', 'c'"):
        check_data(source, "train", 16)
    with pytest.warns(DataWarning) as caught:  # evaluating on one class: may be meant
        check_data(source, "test", 16, source.classes, training=False)
    messages = [str(w.message) for w in caught]
    assert any("split 'test' has images of 1 class only ('a'): the score covers that class" in m for m in messages)
    assert any("split 'test' has no images of class 'b', 'c': not scored" in m for m in messages)


def test_files_that_are_not_images_and_tiny_images(tmp_path):
    root = _folder(tmp_path / "d", {"train/a": 2, "train/b": 2})
    (tmp_path / "d" / "train" / "b" / "notes.png").write_text("not a picture")
    with pytest.raises(DataError, match=r"b/notes.png: cannot read image"):
        check_data(open_source(root), "train", 32)
    (tmp_path / "d" / "train" / "b" / "notes.png").unlink()
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "d" / "train" / "a" / "icon.png")
    with pytest.raises(DataError, match=r"a/icon.png: image is 6x4 pixels; images must be at least 8x8"):
        check_data(open_source(root), "train", 32)


def test_images_smaller_than_the_input_warn(tmp_path):
    source = open_source(_folder(tmp_path / "d", {"train/a": 2, "train/b": 2}))
    with pytest.warns(DataWarning, match=r"4 of 4 images are smaller than the model's 224x224 input and are "
                                         r"upscaled \(smallest: .*, 16x16\)"):
        check_data(source, "train", 224)


def test_eval_data_with_other_classes_than_the_model(tiny_locked, tmp_path):
    _, _, key, locked, _ = tiny_locked
    from modellock.evaluate import evaluate

    other = open_source(_folder(tmp_path / "d", {"test/circle": 2, "test/kite": 2}))
    with pytest.raises(DataError, match="classes differ from the model's: the data has no class 'corner'.*; "
                                        "the model has no class 'kite'"):
        evaluate(locked, key, other, "test")


def test_plain_folder_is_split_all(tmp_path):
    source = open_source(_folder(tmp_path / "d", {"a": 2, "b": 2}))
    assert pick_split(source, None, "train") == "all"
    with pytest.raises(DataError, match=r"no split 'test' \(splits: all; choose one with --split\)"):
        pick_split(source, "test")
    two = open_source(_folder(tmp_path / "e", {"train/a": 1, "train/b": 1, "val/a": 1, "val/b": 1}))
    assert pick_split(two, None, "train") == "train" and pick_split(two, "val") == "val"


def test_lock_and_train_choose_the_split_on_the_command_line(tmp_path, one_thread):
    from modellock.cli import main

    data = make_shapes_dataset(tmp_path / "shapes", 40, 10)
    key = tmp_path / "k.toml"
    Key.create("keyed-filter", "with oil pastel").save(key)
    tiny = ["--model", "tiny-cnn", "--epochs", "1", "--num-workers", "0"]
    main(["train", "--data", str(data / "train"), "--out", str(tmp_path / "plain"), *tiny])  # split 'all'
    main(["lock", "--key", str(key), "--data", str(data), "--split", "test", "--out", str(tmp_path / "l"),
          "--clean-fraction", "0", *tiny])  # every image edited: the lock set is the split
    import json

    assert json.loads((tmp_path / "l" / "config.json").read_text())["training"]["n_train"] == 10


def _segmentation(tmp_path):
    return make_shapes_segmentation_dataset(tmp_path / "seg", 6, 2, size=16)


def test_segmentation_masks_checked(tmp_path):
    root = _segmentation(tmp_path)
    mask = next((root / "train" / "masks").iterdir())
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(mask)
    with pytest.raises(DataError, match=f"{mask.name}: mask is 12x16 \\(HxW\\) but its image .* is 16x16"):
        check_data(open_source(root), "train", 16)
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(mask)
    with pytest.raises(DataError, match=f"{mask.name}: mask value 7 is not a class index \\(0..4"):
        check_data(open_source(root), "train", 16)
    for m in (root / "train" / "masks").iterdir():  # background only: one class
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(m)
    with pytest.raises(DataError, match="pixels of 1 class only \\('background'\\)"):
        check_data(open_source(root), "train", 16)


def test_segmentation_class_without_pixels_warns(tmp_path):
    root = _segmentation(tmp_path)
    for m in (root / "train" / "masks").iterdir():
        a = np.asarray(Image.open(m))
        Image.fromarray(np.where(a == 4, 0, a).astype(np.uint8)).save(m)
    with pytest.warns(DataWarning, match="split 'train' has no pixels of class 'star'"):
        check_data(open_source(root), "train", 16)
