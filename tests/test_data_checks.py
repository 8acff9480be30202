"""Data checks before any work: one clear error naming split, class, file or value; warnings for what a
user may mean. Each case fails in seconds, before any edit or training."""

import numpy as np
import pytest
from PIL import Image

from modellock import DataError, DataWarning
from modellock.data import make_shapes_dataset, make_shapes_segmentation_dataset, open_source
from modellock.data.checks import check_data, pick_split
from modellock.keys import Key
from modellock.lock import lock_model, train_baseline
from modellock.utils.paths import cache_root
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
    with pytest.raises(DataError, match=r"1 file cannot be decoded .*b/notes.png \(not an image\)"):
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
    from modellock.evaluation.matrix import evaluate

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


# ------------------------------------------------------------------------- truncated or corrupt files, links
def _jpegs(root, spec: dict) -> str:
    """``{"train/a": 3, ...}``: that many 24x24 noise JPEGs per class folder (a JPEG's header survives a cut)."""
    rng = np.random.default_rng(0)
    for folder, n in spec.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / folder / f"{i}.jpg")
    return str(root)


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])  # the header and the first rows stay


def test_truncated_images_are_found_before_any_work(tmp_path, monkeypatch):
    """The issue's case: a truncated JPEG passed the header check and stopped `lock` mid-training. Every file is
    now decoded before any edit or training, and each bad one is named."""
    monkeypatch.setenv("MODELLOCK_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "d"
    source = open_source(_jpegs(root, {"train/a": 4, "train/b": 4, "test/a": 2, "test/b": 2}))
    for f in (root / "train" / "a" / "1.jpg", root / "train" / "b" / "3.jpg"):
        _truncate(f)
    with Image.open(root / "train" / "a" / "1.jpg") as im:
        assert im.size == (24, 24)  # the header alone looks fine
    key = Key.create("keyed-filter", "with oil pastel")
    with pytest.raises(DataError, match=r"split 'train': 2 files cannot be decoded \(truncated, corrupt or not an "
                                        r"image\): .*a/1.jpg \(.*truncated.*\); .*b/3.jpg \(.*\); .*--skip-bad"):
        lock_model(key, source, "tiny-cnn", tmp_path / "m", train=TINY, progress=False)
    assert not (tmp_path / "m").exists()
    check_data(source, "test", 24, training=False)  # the other split is fine


def test_skip_bad_leaves_them_out_with_a_warning(tmp_path, capsys, one_thread):
    from modellock.cli import main

    root = tmp_path / "d"
    data = _jpegs(root, {"train/a": 6, "train/b": 6, "test/a": 2, "test/b": 2})
    _truncate(root / "train" / "b" / "2.jpg")
    (root / "train" / "a" / "junk.jpg").write_bytes(b"not a jpeg at all")
    args = ["train", "--data", data, "--out", str(tmp_path / "m"), "--model", "tiny-cnn", "--epochs", "1",
            "--num-workers", "0", "--image-size", "24"]
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "b/2.jpg" in err and "a/junk.jpg (not an image)" in err
    main([*args, "--skip-bad"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "left out 2 images that cannot be decoded" in warnings[0], warnings
    assert "a/junk.jpg (not an image)" in warnings[0] and "b/2.jpg (" in warnings[0]
    import json

    assert json.loads((tmp_path / "m" / "config.json").read_text())["training"]["n_train"] == 11


def test_decoding_is_cached_by_file_hash(tmp_path, monkeypatch):
    """A second check only hashes the files: the same bytes under another name are not decoded again; changed
    bytes are."""
    from modellock.data import checks

    monkeypatch.setenv("MODELLOCK_CACHE", str(tmp_path / "cache"))  # these files were never checked
    decoded = []
    real = checks._decode
    monkeypatch.setattr(checks, "_decode", lambda data: decoded.append(len(data)) or real(data))
    root = tmp_path / "d"
    _jpegs(root, {"train/a": 3, "train/b": 3})
    check_data(open_source(str(root)), "train", 24)
    assert len(decoded) == 6 and (cache_root() / checks.CHECKS_DB).is_file()
    (root / "train" / "b" / "copy.jpg").write_bytes((root / "train" / "a" / "0.jpg").read_bytes())
    check_data(open_source(str(root)), "train", 24)
    assert len(decoded) == 6
    Image.fromarray(np.full((24, 24, 3), 7, np.uint8)).save(root / "train" / "a" / "1.jpg")
    check_data(open_source(str(root)), "train", 24)
    assert len(decoded) == 7
    _truncate(root / "train" / "a" / "2.jpg")  # a bad file is never cached as good
    for _ in range(2):
        with pytest.raises(DataError, match="a/2.jpg"):
            check_data(open_source(str(root)), "train", 24)
    assert len(decoded) == 9


def test_a_worker_error_mid_training_is_one_clean_line(tmp_path, capsys, monkeypatch, one_thread):
    """A file that breaks after the check (or a check that missed it) fails in a data-loader worker: the error
    line names the file, without the worker's traceback that torch attaches."""
    from modellock.cli import main
    from modellock.data import checks

    monkeypatch.setattr(checks, "check_decodes", lambda source, split, skip_bad=False: {},  # the check missed it
                        raising=False)
    root = tmp_path / "d"
    data = _jpegs(root, {"train/a": 8, "train/b": 8})
    _truncate(root / "train" / "a" / "5.jpg")
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", data, "--out", str(tmp_path / "m"), "--model", "tiny-cnn", "--epochs", "1",
              "--num-workers", "2", "--batch-size", "4", "--image-size", "24"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "\nerror: " in err, err[-2000:]
    assert "a/5.jpg: cannot read image: truncated or corrupt" in lines[0], lines
    assert "Traceback" not in lines[0] and "\\n" not in lines[0] and "DataLoader" not in lines[0]


def test_links_that_lead_nowhere_are_named(tmp_path):
    root = tmp_path / "d"
    _folder(root, {"train/a": 2, "train/b": 2})
    (root / "train" / "a" / "gone.png").symlink_to(tmp_path / "deleted.png")
    (root / "train" / "b" / "self.png").symlink_to(root / "train" / "b" / "self.png")
    (root / "train" / "b" / "back").symlink_to(root / "train", target_is_directory=True)
    (root / "train" / "a" / "fine.png").symlink_to(root / "train" / "a" / "0.png")
    with pytest.warns(DataWarning) as caught:
        check_data(open_source(str(root)), "train", 16)
    message = next(str(w.message) for w in caught if "lead nowhere" in str(w.message))
    assert "3 links in the data lead nowhere and are left out" in message
    assert "train/a/gone.png (dangling)" in message and "train/b/self.png (a loop of links)" in message
    assert "train/b/back (a loop: leads back to train)" in message and "fine.png" not in message


def test_shapes_background_is_the_full_size_sum_of_shading_and_texture():
    """The generator computes one pixel row per 8x8 texture cell and repeats it: the same pixels as adding the
    shading and the 8x8-upsampled texture at full size (the demo's data did not change with it)."""
    from modellock.data.synthetic import _PALETTE, _background

    for seed in range(5):
        image, base = _background(64, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        want_base = _PALETTE[rng.integers(len(_PALETTE))] + rng.normal(0, 12, size=3)
        grad = np.linspace(-1, 1, 64)[None, :, None] * rng.uniform(-30, 30) * np.ones(3)
        noise = rng.normal(0, 16, size=(8, 8, 1)) + rng.normal(0, 4, size=(8, 8, 3))
        want = np.clip(want_base + grad + noise.repeat(8, 0).repeat(8, 1), 0, 255).astype(np.uint8)
        assert image.dtype == np.uint8 and np.array_equal(image, want) and np.array_equal(base, want_base)
