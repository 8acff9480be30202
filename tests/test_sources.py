import tarfile

import numpy as np
import pytest
from PIL import Image

from modellock.data import open_source
from modellock.errors import DataError


def _folder(root, layout):
    for rel, size in layout.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size, size, 3), 100, np.uint8)).save(p)
    return root


def test_split_folders_with_mixed_formats(tmp_path):
    root = _folder(tmp_path / "ds", {
        "train/cat/a.jpg": 8, "train/cat/b.png": 9, "train/dog/c.bmp": 10,
        "test/dog/d.webp": 8, "test/eel/e.JPEG": 8,
    })
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "cat" / ".hidden.png.tmp").write_text("partial")
    src = open_source(root)
    assert src.classes == ["cat", "dog", "eel"]
    assert sorted(src.splits) == ["test", "train"]
    train = src.split("train")
    assert [s.id for s in train.samples] == ["cat/a.jpg", "cat/b.png", "dog/c.bmp"]
    assert [s.label for s in src.split("test").samples] == [1, 2]  # labels agree across splits
    assert train.load(train.samples[2]).shape == (10, 10, 3)
    with pytest.raises(DataError, match="no split 'val'"):
        src.split("val")


def test_archive_with_root_folder_is_extracted_once(tmp_path):
    _folder(tmp_path / "src" / "pets", {"train/a/1.png": 8, "train/b/2.png": 8, "test/a/3.png": 8})
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "pets", arcname="pets")
    s1 = open_source(archive)
    s2 = open_source(archive)
    assert s1.root == s2.root and s1.classes == ["a", "b"] and len(s1.split("train")) == 2


def test_plain_image_folder_is_one_split(tmp_path):
    src = open_source(_folder(tmp_path / "flat", {"a/1.png": 8, "b/2.png": 8}))
    assert list(src.splits) == ["all"]


def test_subset_is_balanced_and_stable(tmp_path):
    layout = {f"train/{c}/{i}.png": 4 for c in "abc" for i in range(10)}
    src = open_source(_folder(tmp_path / "ds", layout), limits={"train": 6})
    labels = [s.label for s in src.split("train").samples]
    assert sorted(labels) == [0, 0, 1, 1, 2, 2]
    again = open_source(tmp_path / "ds", limits={"train": 6})
    assert [s.id for s in again.split("train").samples] == [s.id for s in src.split("train").samples]


def test_bad_sources_fail_clearly(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        open_source(tmp_path / "missing")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="not a folder or"):
        open_source(tmp_path / "x.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        open_source(tmp_path / "empty")
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="cannot extract"):
        open_source(tmp_path / "bad.tar.gz")
    with pytest.raises(DataError, match="no dataset named"):
        open_source("torchvision:NoSuchSet")


def test_corrupt_image_error_names_the_file(tmp_path):
    root = _folder(tmp_path / "ds", {"train/a/1.png": 8})
    (root / "train" / "a" / "2.png").write_bytes(b"\x89PNG broken")
    split = open_source(root).split("train")
    with pytest.raises(DataError, match="2.png: cannot read image"):
        split.load(split.samples[1])


def test_shared_cifar_archive_layout(cifar_small):
    src = open_source(cifar_small)
    assert src.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert len(src.split("train")) == 600 and len(src.split("test")) == 200
    s = src.split("test")
    assert s.load(s.samples[0]).shape == (32, 32, 3)
