"""Segmentation: a class per pixel, mean IoU, models in ``models.py`` (lock set, loss, transforms, metrics beside
it); image and mask move together through the transforms. Scores are computed at each mask's own resolution."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ...data.handling import handled_mask
from ...utils.images import IMAGENET_MEAN, IMAGENET_STD
from .. import Pairs, TaskType, register_task
from . import ownership
from .lock_dataset import SegmentationLockDataset
from .loss import SegmentationLockLoss
from .metrics import ConfusionMatrix, majority_class_miou, update_from_logits
from .models import create_segmenter, resolve_segmenter, segmenter_from_spec
from .transforms import fixed_size_transform, image_transform, segmentation_transforms


@register_task
class Segmentation(TaskType):
    name = "segmentation"
    metric = "miou"
    metric_label = "mean IoU"
    clean_targets = ("locked-spread", "locked-class", "wrong-mask", "wrong-label")
    tiny_model = "tiny-segnet"
    soft_distillation = False
    per_pixel = True
    predict_cli_extra = " --masks masks/   # writes masks/image.png"
    default_model = "small-segnet"

    def resolve_model(self, name: str):
        return resolve_segmenter(name)

    def create_model(self, name: str, num_outputs: int, image_size: int, pretrained=None):
        return create_segmenter(name, num_outputs, image_size, pretrained)

    def model_from_spec(self, spec: dict, pretrained=None):
        return segmenter_from_spec(spec, pretrained)

    def default_image_size(self, name: str) -> int:
        """64 for ours, 512 for SegFormer, 520 for torchvision's models (their training crop)."""
        source, _ = self.resolve_model(name)
        return {"modellock": 64, "segformer": 512}.get(source, 520)

    def transform(self, image_size: int, train: bool, augment: bool = True, mean=None, std=None,
                  ignore_index: int = 255):
        """(image, mask) -> (input, mask); training without ``augment`` resizes both to the input size."""
        mean, std = mean or IMAGENET_MEAN, std or IMAGENET_STD
        if train and not augment:
            return fixed_size_transform(image_size, mean, std)
        return segmentation_transforms(image_size, train, mean, std, ignore_index)

    def inference_transform(self, image_size: int, mean=None, std=None):
        return image_transform(image_size, mean or IMAGENET_MEAN, std or IMAGENET_STD)

    def inference_short_side(self, image_size: int) -> int:
        return image_size  # the whole image is resized to SxS

    def lock_dataset(self, items, split, edits, transform, decoys=()):
        return SegmentationLockDataset(items, split, edits, transform, decoys)

    def lock_loss(self, num_classes: int, recipe=None, ignore_index: int = 255):
        return SegmentationLockLoss(num_classes, ignore_index, recipe.locked_weight if recipe else 0.5)

    def targets(self, split, samples=None) -> list[torch.Tensor]:
        """The masks (H_i x W_i int64 tensors, each at its image's own size)."""
        return [torch.from_numpy(split.load_mask(s)) for s in (split.samples if samples is None else samples)]

    def score(self, outputs, targets, num_classes, ignore_locked=True, ignore_index=255) -> float:
        """mIoU over the real classes; without ``ignore_locked`` a pixel won by the locked output is a miss."""
        cm = ConfusionMatrix(int(num_classes), ignore_index)
        update_from_logits(cm, outputs, targets, num_classes if ignore_locked else None)
        return cm.miou()

    def chance(self, targets, num_classes: int, ignore_index: int = 255) -> float:
        counts = torch.zeros(num_classes, dtype=torch.long)
        for m in targets:
            m = torch.as_tensor(m).flatten()
            m = m[(m != ignore_index) & (m >= 0) & (m < num_classes)]
            counts += torch.bincount(m, minlength=num_classes)
        return majority_class_miou(counts)

    def train_loss(self, outputs, targets, ignore_index=255):
        return torch.nn.functional.cross_entropy(outputs, targets.long(), ignore_index=ignore_index)

    def training_pairs(self, images, targets, transform):
        return Pairs(images, [t.numpy() if torch.is_tensor(t) else t for t in targets], transform, joint=True)

    def distillation_target(self, outputs, num_classes, soft):
        """Per-pixel top-1 classes (uint8 when they fit); soft targets per pixel would cost K floats a pixel."""
        top = outputs[:, :num_classes].argmax(1)
        return top.to(torch.uint8) if num_classes <= 255 else top

    @torch.inference_mode()
    def evaluate_split(self, model, split, loaders, batch_size=256, progress=True, handling: str | None = None) -> dict:
        """mIoU over all outputs and over the real classes only, pixel accuracy, per-class IoU, locked rate.

        ``handling`` (a ``modellock.data.handling.HANDLING`` name): the loaders' images went through it, and each is
        scored against the labels it shows (``handling.handled_mask``: a crop's window of the original mask),
        the prediction upsampled onto them: mapped back to the original pixel grid, no label resampled."""
        data = DataLoader(_MaskedImages(loaders, split, model.inference_transform(), handling), batch_size=batch_size,
                          collate_fn=lambda b: (torch.stack([x for x, _ in b]), [m for _, m in b]))
        c, ignore = model.config["num_classes"], model.ignore_index
        full, real = ConfusionMatrix(c, ignore), ConfusionMatrix(c, ignore)
        locked = 0
        device = next(model.model.parameters()).device
        for x, masks in tqdm(data, desc="predict", leave=False, disable=None if progress else True):
            logits = model.model(x.to(device)).float().cpu()
            for out, mask in zip(logits, masks):
                up = torch.nn.functional.interpolate(out[None], size=tuple(mask.shape), mode="bilinear",
                                                     align_corners=False)[0]
                pred = up.argmax(0)
                full.update(pred, mask)
                if model.locked_class is not None:
                    real.update(up[:c].argmax(0), mask)
                    locked += int(((pred == model.locked_class) & (mask != ignore)).sum())
        out = {"score": full.miou(), "pixel_accuracy": full.pixel_accuracy(),
               "per_class_iou": full.to_dict(model.classes)["per_class_iou"],
               "pixel_counts": full.matrix.sum(1).tolist()}
        if model.locked_class is not None:
            out["ignored"] = real.miou()
            out["locked_rate"] = locked / max(int(full.matrix.sum()), 1)
        return out

    def model_view(self, image, size):
        return ownership.model_view(image, size)

    def evidence_target(self, split, sample, size):
        return ownership.square_mask(split.load_mask(sample), size)

    def truth_distribution(self, target, num_classes, ignore_index=255):
        return ownership.areas(target, num_classes, ignore_index)

    def answer_distributions(self, outputs):
        return ownership.answer_distributions(outputs)

    def worst_first(self, model, images, transform, probs, targets, n, num_classes, ignore_index=255):
        predictions = ownership.predicted_masks(model, images, transform, num_classes)
        return ownership.worst_first(predictions, targets, n, num_classes, ignore_index)

    def answer_is_wrong(self, probs, target) -> bool:
        return False  # a pixel, not the image, is right or wrong


class _MaskedImages(torch.utils.data.Dataset):
    def __init__(self, loaders, split, transform, handling: str | None = None):
        self.loaders, self.split, self.transform, self.handling = loaders, split, transform, handling

    def __len__(self) -> int:
        return len(self.loaders)

    def __getitem__(self, i):
        mask = self.split.load_mask(self.split.samples[i])
        if self.handling is not None:
            mask = np.ascontiguousarray(handled_mask(self.handling, mask))
        return self.transform(self.loaders[i]()), torch.from_numpy(mask)
