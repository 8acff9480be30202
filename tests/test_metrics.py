"""Segmentation metrics on hand-computed cases: IoU, mIoU, pixel accuracy, ignored and locked pixels."""

from __future__ import annotations

import json
import math

import pytest
import torch

from modellock.errors import ModelLockError
from modellock.tasks.segmentation.metrics import ConfusionMatrix, majority_class_miou, update_from_logits


def t(rows):
    return torch.tensor(rows, dtype=torch.long)


def test_hand_computed_iou_accuracy_and_ignore():
    cm = ConfusionMatrix(3)
    # Counted pixels (target, pred): (0,0) (0,1) (1,1) (1,1) (2,0); the 255 pixel is ignored.
    cm.update(t([[0, 1, 1], [1, 0, 2]]), t([[0, 0, 1], [1, 2, 255]]))
    assert cm.matrix.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0]]
    assert cm.iou() == pytest.approx([1 / 3, 2 / 3, 0 / 1])  # class 0: 1 / (2 + 2 - 1); class 1: 2 / (2 + 3 - 2)
    assert cm.miou() == pytest.approx(1 / 3)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5)
    cm.update(t([2]), t([2]))  # a second batch adds up: class 2 now 1 / (2 + 1 - 1)
    assert cm.iou() == pytest.approx([1 / 3, 2 / 3, 1 / 2]) and cm.pixel_accuracy() == pytest.approx(4 / 6)
    report = cm.to_dict(["sky", "road", "car"])
    assert json.loads(json.dumps(report)) == report
    assert report["per_class_iou"]["car"] == pytest.approx(1 / 2) and report["miou"] == pytest.approx(1 / 2)


def test_locked_predictions_count_wrong_without_false_positives():
    cm = ConfusionMatrix(2)
    cm.update(t([0, 2, 1, 2, -1]), t([0, 0, 1, 1, 1]))  # 2 (the locked output) and -1 are outside 0..1
    assert cm.matrix.tolist() == [[1, 0, 1], [0, 1, 2]]
    assert cm.iou() == pytest.approx([1 / 2, 1 / 3])  # no class gains a false positive from "other"
    assert cm.pixel_accuracy() == pytest.approx(2 / 5)


def test_absent_classes_are_left_out_of_the_mean():
    cm = ConfusionMatrix(4)
    cm.update(t([0, 1, 1]), t([0, 0, 1]))
    assert cm.iou() == pytest.approx([1 / 2, 1 / 2, None, None])
    assert cm.miou() == pytest.approx(1 / 2)
    assert cm.to_dict("abcd")["per_class_iou"] == {"a": 0.5, "b": 0.5, "c": None, "d": None}
    cm = ConfusionMatrix(4)
    cm.update(t([0, 3]), t([0, 0]))  # class 3 only predicted: it counts, with IoU 0
    assert cm.iou() == pytest.approx([1 / 2, None, None, 0.0]) and cm.miou() == pytest.approx(1 / 4)


def test_empty_and_bad_input():
    cm = ConfusionMatrix(3, ignore_index=-1)
    cm.update(t([1, 2]), t([-1, -1]))
    assert math.isnan(cm.miou()) and math.isnan(cm.pixel_accuracy())
    assert cm.to_dict(["a", "b", "c"]) == {"miou": None, "pixel_accuracy": None,
                                           "per_class_iou": {"a": None, "b": None, "c": None}}
    with pytest.raises(ModelLockError, match="target class 7"):
        cm.update(t([0]), t([7]))
    with pytest.raises(ModelLockError, match="shape"):
        cm.update(t([0, 1]), t([0]))
    with pytest.raises(ModelLockError, match="2 class names"):
        cm.to_dict(["a", "b"])


def test_majority_class_miou_hand_computed():
    assert majority_class_miou([6, 3, 0, 1]) == pytest.approx((6 / 10) / 3)  # 3 classes present
    assert majority_class_miou(torch.tensor([0, 5])) == pytest.approx(1.0)
    assert math.isnan(majority_class_miou([0, 0]))
    # The same number as a confusion matrix of "class 0 everywhere".
    target = torch.cat([torch.full((6,), 0), torch.full((3,), 1), torch.full((1,), 3)])
    cm = ConfusionMatrix(4)
    cm.update(torch.zeros_like(target), target)
    assert cm.miou() == pytest.approx(majority_class_miou([6, 3, 0, 1]))


def test_update_from_logits_resizes_to_each_mask():
    logits = torch.zeros(2, 3, 1, 2)
    logits[0, 0, 0, 0], logits[0, 1, 0, 1] = 1.0, 1.0  # item 0: class 0 on the left, class 1 on the right
    logits[1, 1] = 1.0  # item 1: class 1 everywhere
    first = t([[0, 0, 1, 1], [0, 1, 1, 1]])  # 2 x 4: the upsampled prediction is [0, 0, 1, 1] per row
    second = torch.ones(3, 5, dtype=torch.long)
    cm = ConfusionMatrix(2)
    update_from_logits(cm, logits, [first, second])
    assert cm.matrix.tolist() == [[3, 0, 0], [1, 19, 0]]
    assert cm.iou() == pytest.approx([3 / 4, 19 / 20])

    logits[:, 2] = 5.0  # a locked output wins the argmax over all outputs ...
    everywhere = ConfusionMatrix(2)
    update_from_logits(everywhere, logits, [first, second])
    assert everywhere.pixel_accuracy() == 0.0 and everywhere.matrix[:, 2].sum() == 23
    dropped = ConfusionMatrix(2)  # ... and is left out with num_classes
    update_from_logits(dropped, logits, [first, second], num_classes=2)
    assert torch.equal(dropped.matrix, cm.matrix)

    batched, listed = ConfusionMatrix(2), ConfusionMatrix(2)  # a stacked N x H x W tensor gives the same counts
    masks = torch.stack([first, 1 - first])
    update_from_logits(batched, logits, masks, num_classes=2)
    update_from_logits(listed, logits, list(masks), num_classes=2)
    assert torch.equal(batched.matrix, listed.matrix)
    with pytest.raises(ModelLockError, match="2 logit maps but 1 target"):
        update_from_logits(cm, logits, [first])
