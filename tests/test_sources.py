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


def _symlink_chain_archive(path, folder_length: int):
    """The long-symlink-chain pattern (CVE-2025-4517 family): a chain of links whose real path passes PATH_MAX,
    so ``os.path.realpath`` stops resolving and ``filter="data"`` (before Python 3.11.13) misjudges where a
    link points; a last link leads to the extraction folder's parent, and a file is written through it. The
    chain's folders are sized so that they fit under PATH_MAX below a folder of ``folder_length`` characters."""
    import io
    import os

    steps, inner = "abcdefghijklmnop", ""
    comp = "d" * min(247, (4096 - 128 - folder_length) // len(steps) - 1)
    with tarfile.open(path, "w:gz") as tar:
        for step in steps:
            d = tarfile.TarInfo(os.path.join(inner, comp))
            d.type = tarfile.DIRTYPE
            tar.addfile(d)
            link = tarfile.TarInfo(os.path.join(inner, step))
            link.type, link.linkname = tarfile.SYMTYPE, comp
            tar.addfile(link)
            inner = os.path.join(inner, comp)
        long_link = os.path.join("/".join(steps), "l" * 254)
        up = tarfile.TarInfo(long_link)
        up.type, up.linkname = tarfile.SYMTYPE, "../" * len(steps)
        tar.addfile(up)
        escape = tarfile.TarInfo("escape")
        escape.type, escape.linkname = tarfile.SYMTYPE, long_link + "/.."
        tar.addfile(escape)
        data = b"written outside the extraction folder\n"
        member = tarfile.TarInfo("escape/pwned.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return path


def test_archive_with_a_symlink_chain_is_refused_and_writes_nothing(tmp_path, monkeypatch):
    """Issue 17: on this Python (3.11.7) ``filter="data"`` let the chain above write a file outside the folder,
    with no error. Now every member that is not a regular file or a folder refuses the archive, before any
    extraction, with one line naming it."""
    monkeypatch.setenv("MODELLOCK_CACHE", str(tmp_path / "cache"))
    extraction_folder = len(str(tmp_path / "cache" / "sources")) + len("/.evil-") + 16 + 1 + 32 + len(".tmp")
    archive = _symlink_chain_archive(tmp_path / "evil.tar.gz", extraction_folder)
    with pytest.raises(DataError) as e:
        open_source(archive)
    assert not [p for p in (tmp_path / "cache").rglob("pwned.txt")]  # nothing written, inside or out
    assert str(e.value) == f"{archive}: member 'a' is a symbolic link; only regular files and folders are extracted"
    assert not [p for p in (tmp_path / "cache" / "sources").iterdir()]  # no half-extracted folder left


@pytest.mark.parametrize("kind", ["hardlink", "fifo", "absolute", "dotdot"])
def test_archive_members_other_than_files_and_folders_are_refused(tmp_path, monkeypatch, kind):
    import io

    monkeypatch.setenv("MODELLOCK_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / f"{kind}.tar.gz"
    png = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(png, format="PNG")
    with tarfile.open(archive, "w:gz") as tar:
        good = tarfile.TarInfo("pets/cat/a.png")
        good.size = len(png.getvalue())
        tar.addfile(good, io.BytesIO(png.getvalue()))
        bad = tarfile.TarInfo({"absolute": "/tmp/x.png", "dotdot": "pets/../../x.png"}.get(kind, "pets/cat/b.png"))
        if kind == "hardlink":
            bad.type, bad.linkname = tarfile.LNKTYPE, "pets/cat/a.png"
        elif kind == "fifo":
            bad.type = tarfile.FIFOTYPE
        else:
            bad.size = len(png.getvalue())
        tar.addfile(bad, io.BytesIO(png.getvalue()) if bad.isreg() else None)
    with pytest.raises(DataError, match="hard link|device|outside the archive's folder"):
        open_source(archive)
