"""Segmentation data: the folder layout, mask checks, torchvision adapters, joint transforms, synthetic scenes."""

import tarfile

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

from modellock.data import make_shapes_segmentation_dataset, open_source
from modellock.data import mask_folders as segmentation
from modellock.data.mask_folders import VOC_CLASSES
from modellock.errors import DataError
from modellock.data.handling import HANDLING, RandomHandling, handled_mask
from modellock.utils.paths import cache_root
from modellock.tasks.segmentation.transforms import (
    fixed_size_transform, image_transform, segmentation_collate, segmentation_transforms,
)
from modellock.utils.images import IMAGENET_MEAN, IMAGENET_STD
from seg_cases import COLOURS, IGNORE_COLOUR, colour_coded, decode, near_boundary


def _mask(h, w, n_classes, seed):
    rng = np.random.default_rng(seed)
    m = rng.integers(0, n_classes, size=(h, w)).astype(np.uint8)
    m[0, 0] = n_classes - 1  # every mask reaches the top class
    m[-1, :] = 255  # some ignored pixels
    return m


def _seg_folder(root, items, n_classes=4, classes=None):
    """Write ``items``: {"<split>/<rel image path>": (h, w)} as images (their own format) + PNG masks."""
    masks = {}
    for i, (rel, (h, w)) in enumerate(items.items()):
        split, name = rel.split("/", 1)
        image = root / split / "images" / name
        mask = (root / split / "masks" / name).with_suffix(".png")
        for p in (image, mask):
            p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(image)
        masks[rel] = _mask(h, w, n_classes, i)
        Image.fromarray(masks[rel]).save(mask)
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n\n\n")
    return masks


ITEMS = {"train/a.jpg": (20, 30), "train/b.jpeg": (25, 17), "train/sub/dir/c.png": (12, 12), "test/d.JPG": (31, 22)}


def test_folder_layout_infers_classes_and_reads_masks(tmp_path, monkeypatch):
    masks = _seg_folder(tmp_path / "seg", ITEMS)
    (tmp_path / "seg" / "train" / "masks" / "orphan.png").write_bytes(b"")  # a mask without image: ignored
    src = open_source(tmp_path / "seg")
    assert src.task == "segmentation" and src.ignore_index == 255
    assert src.classes == ["class_0", "class_1", "class_2", "class_3"]
    train = src.split("train")
    assert train.task == "segmentation" and [s.id for s in train.samples] == ["a.jpg", "b.jpeg", "sub/dir/c.png"]
    assert all(s.label == -1 for s in train.samples)
    for s in train.samples:
        image, mask = train.load(s), train.load_mask(s)
        assert image.shape == ITEMS[f"train/{s.id}"] + (3,)
        assert mask.dtype == np.int64 and np.array_equal(mask, masks[f"train/{s.id}"])
    test = src.split("test")
    assert test.load_mask(test.samples[0]).shape == (31, 22)
    assert len(train.source_hash(train.samples[0])) == 64

    def no_scan(path):
        raise AssertionError("reopening must not rescan the masks")
    monkeypatch.setattr(segmentation, "read_mask", no_scan)
    assert open_source(tmp_path / "seg").classes == src.classes  # the scan is cached
    assert list(cache_root().joinpath("sources").glob("mask-classes-*.json"))


def test_classes_file_and_out_of_range_values(tmp_path):
    masks = _seg_folder(tmp_path / "seg", {"train/a.png": (8, 9), "train/b.png": (8, 8)}, n_classes=3,
                        classes=["sky", "road", "car"])
    src = open_source(tmp_path / "seg")
    assert src.classes == ["sky", "road", "car"]
    split = src.split("train")
    bad = masks["train/b.png"].copy()
    bad[2, 3] = 7
    Image.fromarray(bad).save(split.samples[1].mask)
    assert split.load_mask(split.samples[0]).max() == 255  # ignore pixels kept
    with pytest.raises(DataError, match=r"b\.png: mask value 7 is not a class index"):
        split.load_mask(split.samples[1])
    (tmp_path / "seg" / "classes.txt").write_text("sky\n\nroad\n")
    with pytest.raises(DataError, match="classes.txt: line 2 is empty"):
        open_source(tmp_path / "seg")


def test_flat_root_is_one_split_and_archive_works(tmp_path):
    _seg_folder(tmp_path / "flat", {"x/a.png": (6, 7), "x/b.png": (5, 5)})
    src = open_source(tmp_path / "flat" / "x")
    assert list(src.splits) == ["all"] and len(src.split("all")) == 2

    _seg_folder(tmp_path / "src" / "myseg", ITEMS)
    archive = tmp_path / "myseg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "myseg", arcname="myseg")
    s1, s2 = open_source(archive), open_source(archive)
    assert s1.task == "segmentation" and s1.root == s2.root and sorted(s1.splits) == ["test", "train"]
    train = s1.split("train")
    assert train.load_mask(train.samples[2]).shape == (12, 12)


def test_task_detection_and_explicit_task(tmp_path):
    _seg_folder(tmp_path / "seg", ITEMS)
    assert open_source(tmp_path / "seg", task="segmentation").task == "segmentation"
    with pytest.raises(DataError, match="is a segmentation layout"):
        open_source(tmp_path / "seg", task="classification")
    cls_root = tmp_path / "cls" / "train" / "cat"
    cls_root.mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(cls_root / "1.png")
    assert open_source(tmp_path / "cls").task == "classification"
    with pytest.raises(DataError, match="expected a segmentation layout"):
        open_source(tmp_path / "cls", task="segmentation")
    with pytest.raises(DataError, match="task: 'detection'"):
        open_source(tmp_path / "cls", task="detection")
    split = open_source(tmp_path / "cls").split("train")
    with pytest.raises(DataError, match="has no masks"):
        split.load_mask(split.samples[0])


def test_missing_mask_names_image_and_expected_mask(tmp_path):
    _seg_folder(tmp_path / "seg", ITEMS)
    (tmp_path / "seg" / "train" / "masks" / "sub" / "dir" / "c.png").unlink()
    with pytest.raises(DataError, match=r"c\.png: no mask for this image \(expected .*masks/sub/dir/c\.png\)"):
        open_source(tmp_path / "seg")


def test_mask_formats_and_bad_masks(tmp_path):
    masks = _seg_folder(tmp_path / "seg", {"train/a.png": (6, 8), "train/b.png": (6, 8), "train/c.png": (6, 8)},
                        classes=["a", "b", "c", "d"])
    split = open_source(tmp_path / "seg").split("train")
    a, b, c = split.samples
    palette = Image.frombytes("P", (8, 6), masks["train/a.png"].tobytes())
    palette.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    palette.save(a.mask)
    Image.fromarray(masks["train/b.png"].astype(np.uint16)).save(b.mask)  # 16-bit grey
    assert np.array_equal(split.load_mask(a), masks["train/a.png"])
    assert np.array_equal(split.load_mask(b), masks["train/b.png"])
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(c.mask)
    with pytest.raises(DataError, match=r"c\.png: mask is a RGB image with 3 channels; expected single-channel"):
        split.load_mask(c)
    Image.fromarray(np.zeros((6, 7), np.uint8)).save(c.mask)
    with pytest.raises(DataError, match=r"masks/c\.png: mask is 6x7 \(HxW\) but its image .*images/c\.png is 6x8"):
        split.load_mask(c)
    c.mask.write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"c\.png: cannot read mask"):
        split.load_mask(c)


def test_binary_masks_with_255_foreground_fail_clearly(tmp_path):
    root = tmp_path / "seg"
    for p in ("images", "masks"):
        (root / p).mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.array([[0, 255]] * 2, np.uint8).repeat(2, 0).repeat(2, 1)).save(root / "masks" / "a.png")
    with pytest.raises(DataError, match="only class 0 besides ignore_index 255"):
        open_source(root)
    assert open_source(root, ignore_index=254).classes == [f"class_{i}" for i in range(256)]


def test_subset_keeps_task_and_is_stable(tmp_path):
    _seg_folder(tmp_path / "seg", {f"train/{i:02d}.png": (4, 4) for i in range(12)})
    src = open_source(tmp_path / "seg", limits={"train": 5}, seed=3, ignore_index=250)
    sub = src.split("train")
    assert len(sub) == 5 and sub.task == "segmentation" and sub.ignore_index == 250
    again = open_source(tmp_path / "seg", limits={"train": 5}, seed=3, ignore_index=250).split("train")
    assert [s.id for s in sub.samples] == [s.id for s in again.samples]
    assert sub.load_mask(sub.samples[0]).shape == (4, 4)


# ------------------------------------------------------------------------------------ transforms
def _pixels(x):
    return (x * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) \
        .permute(1, 2, 0).numpy() * 255


def _assert_aligned(x, y):
    """Every pixel away from a mask boundary has its class's colour (ignored ones: the ignore colour)."""
    colour, y = _pixels(x), y.numpy()
    inner = ~near_boundary(y)
    labelled = inner & (y != 255)
    assert np.abs(colour[labelled] - COLOURS[y[labelled]]).max() < 3
    magenta = np.abs(colour - IGNORE_COLOUR).max(axis=2) < 3
    assert (y[inner & magenta] == 255).all()
    return labelled.sum()


@pytest.mark.parametrize("size,shape,block", [(32, (40, 48), 8), (96, (150, 200), 24)])
def test_train_transform_keeps_mask_aligned(size, shape, block):
    image, mask = colour_coded(*shape, block, seed=size)
    t = segmentation_transforms(size, train=True)
    checked = 0
    for seed in range(25):
        torch.manual_seed(seed)
        x, y = t(image if seed % 2 else Image.fromarray(image), mask)
        assert x.shape == (3, size, size) and x.dtype == torch.float32
        assert y.shape == (size, size) and y.dtype == torch.int64
        assert set(y.unique().tolist()) <= set(np.unique(mask).tolist()) | {255}  # never interpolated
        checked += _assert_aligned(x, y)
    assert checked > 25 * size * size // 3


@pytest.mark.parametrize("size,shape", [(32, (40, 48)), (96, (150, 200))])
def test_train_transform_flips_both_ways(size, shape):
    mask = np.zeros(shape, np.int64)
    mask[:, shape[1] // 2:] = 1
    image = COLOURS[mask]
    t = segmentation_transforms(size, train=True)
    orientations = set()
    for seed in range(30):
        torch.manual_seed(seed)
        x, y = t(image, mask)
        _assert_aligned(x, y)
        cols = np.arange(size)[None, :].repeat(size, 0)
        y = y.numpy()
        if (y == 0).any() and (y == 1).any():
            orientations.add(bool(cols[y == 1].mean() > cols[y == 0].mean()))
    assert orientations == {True, False}


def test_small_train_transform_pads_mask_with_ignore():
    image, mask = COLOURS[np.ones((32, 36), np.int64)], np.ones((32, 36), np.int64)
    t = segmentation_transforms(32, train=True, ignore_index=200)
    padded = 0
    for seed in range(20):
        torch.manual_seed(seed)
        y = t(image, mask)[1].numpy()
        ignored = y == 200
        rows, cols = ignored.all(1), ignored.all(0)
        assert np.array_equal(ignored, rows[:, None] | cols[None, :])  # whole edge rows/columns only
        assert not rows[4:28].any() and not cols[4:28].any()  # at most S/8 = 4 from each edge
        assert set(np.unique(y)) <= {1, 200}
        padded += ignored.any()
    assert padded > 5


def test_eval_transform_keeps_original_mask_and_collate():
    image, mask = colour_coded(50, 70, 10, seed=0)
    t = segmentation_transforms(32, train=False)
    x, y = t(image, mask)
    assert x.shape == (3, 32, 32) and np.array_equal(y.numpy(), mask) and y.dtype == torch.int64
    assert torch.allclose(x, image_transform(32)(Image.fromarray(image)))
    x2, y2 = t(image[:40, :60], mask[:40, :60])
    xs, ys = segmentation_collate([(x, y), (x2, y2)])
    assert xs.shape == (2, 3, 32, 32) and isinstance(ys, list) and ys[1].shape == (40, 60)
    xs, ys = segmentation_collate([(x, y), (x, y)])
    assert ys.shape == (2, 50, 70)
    with pytest.raises(DataError, match="must match"):
        t(image, mask[:10])


@pytest.mark.parametrize("shape", [(50, 70), (20, 24)])
def test_fixed_size_transform_resizes_both(shape):
    image, mask = colour_coded(*shape, 10, seed=1)
    x, y = fixed_size_transform(32)(image, mask)
    assert x.shape == (3, 32, 32) and y.shape == (32, 32) and y.dtype == torch.int64
    assert set(y.unique().tolist()) <= set(np.unique(mask).tolist())
    assert _assert_aligned(x, y) > 32 * 32 // 3


# ------------------------------------------------------------------------------------- handling
@pytest.mark.parametrize("jpeg", [0.0, 1.0])
def test_random_handling_moves_the_mask_with_the_image(jpeg):
    """Crops and resizes move image and mask together (JPEG too): the colours still paint the mask."""
    image, mask = colour_coded(48, 64, 8, seed=3)
    handle = RandomHandling(jpeg_probability=jpeg, probability=1.0)
    sizes = set()
    for seed in range(30):
        torch.manual_seed(seed)
        a, m = handle(image, mask)
        assert a.shape[:2] == m.shape and m.dtype == np.int64
        assert set(np.unique(m)) <= set(np.unique(mask))  # nearest neighbour: never a new value
        inner = ~near_boundary(m)
        assert inner.sum() > m.size // 2 and np.array_equal(decode(a)[inner], m[inner])
        sizes.add(m.shape)
    assert len(sizes) > 10  # the geometry was drawn afresh each time
    torch.manual_seed(0)
    a, m = RandomHandling(probability=0.0)(image, mask)
    assert a is image and m is mask  # the common case: as it is


@pytest.mark.parametrize("name", list(HANDLING))
def test_each_handled_image_shows_its_handled_mask(name):
    """The evaluation's masks: the handled image, mapped back onto ``handled_mask``'s grid, paints it."""
    image, mask = colour_coded(48, 64, 8, seed=4)
    a, m = HANDLING[name](image), handled_mask(name, mask)
    back = np.asarray(Image.fromarray(a).resize(m.shape[::-1], Image.BILINEAR))
    inner = ~near_boundary(m)
    assert np.array_equal(decode(back)[inner], m[inner])
    if name.startswith("crop"):  # scored against the whole mask, a crop would be shifted off its labels
        whole = np.asarray(Image.fromarray(a).resize(mask.shape[::-1], Image.BILINEAR))
        inner = ~near_boundary(mask)
        assert (decode(whole)[inner] != mask[inner]).mean() > 0.05


def test_handling_then_train_transform_keeps_alignment_and_voids_only_borders():
    """Handling, then the training transform: aligned, and void (ignore_index) only in padded edge rows/columns."""
    image, mask = colour_coded(40, 48, 8, seed=5)
    mask = np.where(mask == 255, 0, mask)
    image = COLOURS[mask]
    handle, t = RandomHandling(jpeg_probability=0.0, probability=1.0), segmentation_transforms(32, train=True)
    padded = 0
    for seed in range(25):
        torch.manual_seed(seed)
        x, y = t(*handle(image, mask))
        y = y.numpy()
        inner = ~near_boundary(y) & (y != 255)  # two resamplings blur colours: read each pixel's nearest
        assert inner.sum() > 32 * 32 // 3 and np.array_equal(decode(_pixels(x))[inner], y[inner])
        ignored = y == 255
        rows, cols = ignored.all(1), ignored.all(0)
        assert np.array_equal(ignored, rows[:, None] | cols[None, :])
        assert not rows[4:28].any() and not cols[4:28].any()
        padded += ignored.any()
    assert padded > 5


# ------------------------------------------------------------------------------------- synthetic
def test_synthetic_scenes_masks_follow_shapes(tmp_path):
    root = make_shapes_segmentation_dataset(tmp_path / "syn", n_train=30, n_test=6, size=32, seed=1)
    assert (root / "classes.txt").read_text().split() == ["background", "circle", "square", "triangle", "star"]
    src = open_source(root)
    assert src.task == "segmentation" and src.classes[0] == "background"
    assert len(src.split("train")) == 30 and len(src.split("test")) == 6
    train = src.split("train")
    edge, flat = [], []
    for s in train.samples:
        image, mask = train.load(s).astype(float), train.load_mask(s)
        assert image.shape == (32, 32, 3) and mask.shape == (32, 32)
        assert 0 < (mask > 0).mean() < 0.9  # shapes of a learnable size
        step = np.abs(np.diff(image, axis=1)).sum(axis=2)
        changes = np.diff(mask, axis=1) != 0
        edge.append(step[changes].mean())
        flat.append(step[~changes].mean())
    assert np.mean(edge) > 3 * np.mean(flat)  # the image changes where the mask does
    stamp = (root / "train" / "images" / "00000.png").stat().st_mtime_ns
    make_shapes_segmentation_dataset(root, n_train=30, n_test=6, size=32, seed=1)
    assert (root / "train" / "images" / "00000.png").stat().st_mtime_ns == stamp  # reused
    with pytest.raises(DataError, match="unknown shape 'blob'"):
        make_shapes_segmentation_dataset(tmp_path / "x", shapes=("circle", "blob"))


# ----------------------------------------------------------------------------------- torchvision
class _FakeSegDataset:
    calls = []

    def __init__(self, root, download=False, **kwargs):
        self.calls.append((root, download, kwargs))
        self.n = 3 if kwargs.get("image_set", kwargs.get("split")) in ("train", "trainval") else 2

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        h, w = 10 + i, 12
        target = Image.frombytes("P", (w, h), self.values[np.arange(h * w) % len(self.values)].tobytes())
        return Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)), target


class FakeVOC(_FakeSegDataset):
    values = np.array([0, 5, 20, 255], np.uint8)


class FakePets(_FakeSegDataset):
    values = np.array([1, 2, 3], np.uint8)


def test_torchvision_voc_segmentation(monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "VOCSegmentation", FakeVOC)
    FakeVOC.calls = []
    src = open_source("torchvision:VOCSegmentation", limits={"train": 2})
    assert src.task == "segmentation" and src.classes == list(VOC_CLASSES) and len(src.classes) == 21
    assert [c[2] for c in FakeVOC.calls] == [{"year": "2012", "image_set": "train"},
                                             {"year": "2012", "image_set": "val"}]
    assert FakeVOC.calls[0][0] == str(cache_root() / "torchvision" / "VOCSegmentation")
    assert len(src.split("train")) == 2 and len(src.split("test")) == 2
    test = src.split("test")
    assert test.load(test.samples[1]).shape == (11, 12, 3)
    mask = test.load_mask(test.samples[1])
    assert mask.shape == (11, 12) and set(np.unique(mask)) == {0, 5, 20, 255}
    with pytest.raises(DataError, match="segmentation dataset"):
        open_source("torchvision:VOCSegmentation", task="classification")


def test_torchvision_pets_trimaps(monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "OxfordIIITPet", FakePets)
    FakePets.calls = []
    src = open_source("torchvision:OxfordIIITPet", task="segmentation", ignore_index=200)
    assert src.classes == ["pet", "background"] and sorted(src.splits) == ["test", "train"]
    assert FakePets.calls[0][2] == {"split": "trainval", "target_types": "segmentation"}
    split = src.split("train")
    raw = np.asarray(FakePets("unused")[0][1])
    mask = split.load_mask(split.samples[0])
    assert np.array_equal(mask, np.choose(raw - 1, [0, 1, 200]))
    assert split.ignore_index == 200


def test_torchvision_download_error_is_one_line(monkeypatch):
    class Offline:
        def __init__(self, *a, **k):
            raise RuntimeError("Dataset not found or corrupted.\nYou can use download=True to download it")

    monkeypatch.setattr(torchvision.datasets, "VOCSegmentation", Offline)
    with pytest.raises(DataError) as e:
        open_source("torchvision:VOCSegmentation")
    assert "\n" not in str(e.value) and "cannot download or read the train split" in str(e.value)


def test_jpeg_passes_save_options():
    """``jpeg(..., subsampling=0)`` keeps colour at full resolution: one-pixel stripes of two colours survive it and
    are smeared by the default (4:2:0, colour at half resolution)."""
    from modellock.data.handling import jpeg

    stripes = np.zeros((32, 32, 3), np.uint8)
    stripes[:, 0::2] = (200, 60, 60)
    stripes[:, 1::2] = (60, 110, 150)
    full = np.abs(jpeg(stripes, 90, subsampling=0).astype(int) - stripes).mean()
    halved = np.abs(jpeg(stripes, 90).astype(int) - stripes).mean()
    assert full < 8 and halved > 3 * full
