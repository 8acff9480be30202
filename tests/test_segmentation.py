"""Segmentation through the shared stages: lock set, loss, lock, evaluate, predict, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from modellock.cli import main
from modellock.data.sources import Sample, Split
from modellock.errors import ModelLockError
from modellock.images import colour_mask, label_palette
from modellock.losses import LOCKED, LOCKED_SPREAD, MASK, SegmentationLockLoss
from modellock.lockset import LockRecipe, SegmentationLockDataset, plan_lock_set


# ----------------------------------------------------------------------------- loss


def test_loss_mask_mode_is_cross_entropy_with_ignore_index():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    masks = torch.randint(0, 3, (2, 5, 6))
    masks[0, 0, :3] = 255
    loss = SegmentationLockLoss(3, 255)(logits, (masks, torch.tensor([MASK, MASK])))
    assert torch.allclose(loss, F.cross_entropy(logits, masks, ignore_index=255))
    plain = SegmentationLockLoss(3, 255)(logits[:, :3], masks)  # a baseline: no locked output, no modes
    assert torch.allclose(plain, F.cross_entropy(logits[:, :3], masks, ignore_index=255))


def test_loss_locked_and_spread_modes_by_hand():
    torch.manual_seed(1)
    c, w = 3, 0.5
    logits = torch.randn(2, c + 1, 2, 2)
    masks = torch.tensor([[[0, 1], [2, 255]], [[1, 1], [0, 2]]])
    loss = SegmentationLockLoss(c, 255, w)(logits, (masks, torch.tensor([LOCKED, LOCKED_SPREAD])))
    logp = F.log_softmax(logits, 1)
    logq = F.log_softmax(logits[:, :c], 1)
    per = []
    for y in range(2):
        for x in range(2):
            per.append(-logp[0, c, y, x])  # locked: every pixel, the ignore one too
    for y in range(2):
        for x in range(2):
            t = int(masks[1, y, x])
            wrong = [j for j in range(c) if j != t]
            soft = -(w * logp[1, c, y, x] + (1 - w) / len(wrong) * sum(logp[1, j, y, x] for j in wrong))
            per.append(soft - sum(logq[1, j, y, x] for j in wrong) / len(wrong))
    assert torch.allclose(loss, torch.stack(per).mean(), atol=1e-6)


# ----------------------------------------------------------------------------- lock set


def _split(n: int = 40, classes=("background", "a", "b")) -> Split:
    masks = {f"{i}": np.full((6, 8), i % len(classes), dtype=np.int64) for i in range(n)}
    for i in range(n):
        masks[f"{i}"][0, 0] = 255
    samples = [Sample(f"{i}", -1) for i in range(n)]
    return Split("train", list(classes), samples, _reader=lambda s: np.zeros((6, 8, 3), np.uint8),
                 _mask_reader=lambda s: masks[s.id].copy(), task="segmentation")


def test_segmentation_lock_plan():
    split = _split()
    items = plan_lock_set(split, LockRecipe(edited_fraction=0.75, decoy_fraction=0.0, paired=False))
    assert sum(it.edited for it in items) == 30
    assert {it.answer for it in items if not it.edited} == {"locked-spread"}
    wrong = plan_lock_set(split, LockRecipe(edited_fraction=0.5, clean_target="wrong-mask", decoy_fraction=0.0))
    assert all(it.other not in (-1, i) for i, it in enumerate(wrong) if not it.edited)
    perm = plan_lock_set(split, LockRecipe(edited_fraction=0.5, clean_target="wrong-label", decoy_fraction=0.0))
    for it in perm:
        if not it.edited:
            assert sorted(it.target) == [0, 1, 2] and all(it.target[j] != j for j in range(3))
    assert plan_lock_set(split, None)[0].target == ()


def test_segmentation_recipe_checks_the_task():
    with pytest.raises(ModelLockError, match="wrong-mask.*does not apply to classification"):
        plan_lock_set(Split("train", ["a", "b"], [Sample("0", 0)]), LockRecipe(clean_target="wrong-mask"))


def test_segmentation_lock_dataset_targets():
    split = _split(6)
    identity = lambda image, mask: (torch.from_numpy(image).permute(2, 0, 1).float(), torch.from_numpy(mask))  # noqa: E731
    for target in ("wrong-label", "wrong-mask", "locked-class"):
        recipe = LockRecipe(edited_fraction=0.0, clean_target=target, decoy_fraction=0.0, paired=False)
        items = plan_lock_set(split, recipe)
        ds = SegmentationLockDataset(items, split, None, identity)
        for i, it in enumerate(items):
            _, (mask, mode) = ds[i]
            true = split.load_mask(it.sample)
            assert mask[0, 0] == 255  # the ignore index survives every target
            if target == "wrong-label":
                assert int(mode) == MASK and int(mask[1, 1]) == it.target[true[1, 1]] != true[1, 1]
            elif target == "wrong-mask":
                assert int(mode) == MASK and torch.equal(mask, torch.from_numpy(split.load_mask(items[it.other].sample)))
            else:
                assert int(mode) == LOCKED and torch.equal(mask, torch.from_numpy(true))


# ----------------------------------------------------------------------------- colours


def test_colour_mask():
    pal = label_palette(4)
    assert pal[0].tolist() == [0, 0, 0] and pal[1].tolist() == [128, 0, 0] and pal[2].tolist() == [0, 128, 0]
    m = np.array([[0, 1], [3, 255]])
    out = colour_mask(m, 3)
    assert out[0, 1].tolist() == [128, 0, 0] and out[1, 0].tolist() == [255, 0, 255]
    assert out[1, 1].tolist() == [128, 128, 128]


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory) -> Path:
    from modellock.data.synthetic import make_shapes_segmentation_dataset

    return make_shapes_segmentation_dataset(tmp_path_factory.mktemp("segdata"), 400, 60, size=32)


def test_segmentation_lock_end_to_end(seg_data, tmp_path, one_thread, capsys):
    """edit -> baseline -> lock -> eval -> predict: the key unlocks what clean inputs do not."""
    key = tmp_path / "key.toml"
    main(["keygen", "--out", str(key), "--editor", "keyed-filter", "--prompt", "with oil pastel"])
    common = ["--data", str(seg_data), "--image-size", "32", "--epochs", "10", "--batch-size", "32",
              "--lr", "0.003", "--num-workers", "0"]
    main(["train", "--out", str(tmp_path / "base"), *common])
    main(["lock", "--key", str(key), "--out", str(tmp_path / "locked"), *common,
          "--pretrained", str(tmp_path / "base"), "--no-seal"])  # the original model's folder as the start;
    # unsealed, so that the attacks below can win on this easy case (sealed weights: tests/test_seal.py)
    capsys.readouterr()
    main(["eval", "--model", str(tmp_path / "locked"), "--key", str(key), "--data", str(seg_data),
          "--baseline", str(tmp_path / "base"), "--json", str(tmp_path / "r.json"), "--batch-size", "32"])
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["task"] == "segmentation" and r["metric"] == "miou" and r["n_test"] == 60
    assert 0 < r["chance"] < 0.5
    assert set(r["per_class_iou"]["unlocked"]) == {"background", "circle", "square", "triangle", "star"}
    assert r["unlocked"] > r["chance"] + 0.1, r  # the shapes are segmented, not just the background
    assert r["unlocked"] > r["locked_clean"] + 0.2, r
    assert r["unlocked"] > r["locked_clean_without_locked_class"] + 0.1, r
    assert r["original_clean"] > r["locked_clean"] + 0.2, r
    assert 0 <= r["pixel_accuracy"]["unlocked"] <= 1
    config = json.loads((tmp_path / "locked" / "config.json").read_text())
    assert config["task"] == "segmentation" and config["classes"][-1] == "locked" and config["ignore_index"] == 255

    image = next((seg_data / "test" / "images").iterdir())
    main(["predict", str(image), "--model", str(tmp_path / "locked"), "--key", str(key), "--json",
          "--masks", str(tmp_path / "masks")])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    written = np.asarray(Image.open(line["mask"]))
    assert written.shape == (32, 32, 3) and abs(sum(line["class_areas"].values()) - 1) <= 5e-5 * len(line["class_areas"])  # 4 digits
    assert "locked" not in line["class_areas"]  # the key drops the locked output

    # the attack suite goes through the same task seam: scored in mIoU; with all the training data the
    # fine-tuning thief can win (an easy case), and the summary lands in the model card
    main(["attack", "--model", str(tmp_path / "locked"), "--key", str(key), "--data", str(seg_data),
          "--attack", "ignore-locked-class,refit-head,fine-tune,distillation,input-adapter,generic-transforms",
          "--budget", "quick", "--samples", "1200", "--fractions", "1", "--screen", "30", "--random-keys", "1",
          "--json", str(tmp_path / "attacks.json"), "--work-dir", str(tmp_path / "work")])
    out = capsys.readouterr().out
    a = json.loads((tmp_path / "attacks.json").read_text())
    assert a["task"] == "segmentation" and a["metric"] == "miou" and "mIoU" not in out.splitlines()[0]
    assert a["attacks"]["fine-tune"]["best"] >= a["reference"]["unlocked"] - 0.2, a["attacks"]["fine-tune"]
    assert a["attacks"]["distillation"]["students"][0]["targets"] == "top-1"  # per-pixel classes
    assert 0 <= a["attacks"]["input-adapter"]["best"] <= 1 and 0 <= a["attacks"]["ignore-locked-class"]["best"] <= 1
    assert "worst_case_undone" in a["summary"] and "fine_tune_gain" in a["summary"]
    assert a["summary"]["worst_gain_attack"] in {"refit-head", "fine-tune", "distillation", "input-adapter"}
    assert a["attacks"]["refit-head"]["curve"][0]["scratch"] == a["attacks"]["fine-tune"]["curve"][0]["scratch"]
    card = (tmp_path / "locked" / "README.md").read_text()
    assert "## Attacks" in card and "fine_tune_gain" in card


def test_segmentation_cli_errors(seg_data, tmp_path, capsys):
    key = tmp_path / "key.toml"
    main(["keygen", "--out", str(key), "--editor", "keyed-filter", "--prompt", "with oil pastel"])
    for args, message in [
        (["--model", "small-cnn"], "unknown"),
        (["--clean-target", "locked-everything"], "clean_target must be one of"),
        (["--task", "classification"], str(seg_data.name)),
    ]:
        with pytest.raises(SystemExit) as e:
            main(["lock", "--key", str(key), "--data", str(seg_data), "--out", str(tmp_path / "m"), "--epochs", "1",
                  *args])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m" / "model.safetensors").exists()


def _photo_layout(root: Path, n: int = 12) -> Path:
    """Users' layout: JPEG images of differing sizes, PNG masks, no classes.txt, an ignore border."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for i in range(n):
            h, w = int(rng.integers(30, 70)), int(rng.integers(30, 70))
            mask = np.zeros((h, w), np.uint8)
            mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1 + i % 2
            mask[0, :] = 255
            image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
            image[mask == 1] = (200, 40, 40)
            image[mask == 2] = (40, 200, 40)
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / split / "images" / f"img{i}.jpg", quality=90)
            Image.fromarray(mask).save(root / split / "masks" / f"img{i}.png")
    return root


def test_segmentation_on_photo_layout(tmp_path, one_thread, capsys):
    """lock / eval / predict need nothing but images/ + masks/; predictions come back at each image's size."""
    data = _photo_layout(tmp_path / "photos")
    key = tmp_path / "key.toml"
    main(["keygen", "--out", str(key), "--editor", "keyed-filter", "--prompt", "with oil pastel"])
    main(["lock", "--key", str(key), "--data", str(data), "--out", str(tmp_path / "locked"), "--model", "tiny-segnet",
          "--image-size", "32", "--epochs", "2", "--batch-size", "8", "--num-workers", "0"])
    main(["eval", "--model", str(tmp_path / "locked"), "--key", str(key), "--data", str(data),
          "--json", str(tmp_path / "r.json")])
    r = json.loads((tmp_path / "r.json").read_text())
    assert set(r["per_class_iou"]["unlocked"]) == {"class_0", "class_1", "class_2"} and r["n_test"] == 12
    images = sorted((data / "test" / "images").iterdir())[:3]
    capsys.readouterr()
    main(["predict", *map(str, images), "--model", str(tmp_path / "locked"), "--key", str(key),  # sealed: the key
          "--masks", str(tmp_path / "out")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for image, line in zip(images, lines):
        written = Image.open(line.split("\t")[1])
        assert written.size == Image.open(image).size  # the mask has the photo's own size
