"""Classification: one label per image, accuracy, backbones from ``modellock.nets.backbones``."""

from __future__ import annotations

import numpy as np
import torch

from ...data.image_list import ImageListDataset
from ...nets.backbones import backbone_from_spec, create_backbone, resolve_backbone
from ...train import predict_logits_shared
from ...utils.images import IMAGENET_MEAN, IMAGENET_STD
from .. import Pairs, TaskType, register_task
from ..base import LockDataset
from . import ownership
from .loss import LockLoss
from .transforms import classification_transforms, eval_short_side


def accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> float:
    """Top-1 accuracy; with ``num_classes`` the argmax runs over the first ``num_classes`` outputs only."""
    if num_classes is not None:
        logits = logits[:, :num_classes]
    return float((logits.argmax(dim=1) == labels).float().mean()) if len(labels) else float("nan")


@register_task
class Classification(TaskType):
    name = "classification"
    metric = "accuracy"
    metric_label = "accuracy"
    clean_targets = ("wrong-label", "locked-class", "locked-spread")
    tiny_model = "tiny-cnn"
    head_probe = True
    published_classifiers = True
    default_model = "small-cnn"

    def resolve_model(self, name: str):
        return resolve_backbone(name)

    def create_model(self, name: str, num_outputs: int, image_size: int, pretrained=None):
        return create_backbone(name, num_outputs, image_size, pretrained)

    def model_from_spec(self, spec: dict, pretrained=None):
        return backbone_from_spec(spec, pretrained)

    def default_image_size(self, name: str) -> int:
        """The backbone's native input size: 32 for ours, the timm pretrained config's, else 224."""
        source, arch = self.resolve_model(name)
        if source == "modellock":
            return 32
        if source == "timm":
            # lazy: timm, only for timm backbones
            import timm

            try:
                return int(timm.get_pretrained_cfg(arch).input_size[-1])
            except (AttributeError, RuntimeError, TypeError):
                return 224
        return 224

    def transform(self, image_size: int, train: bool, augment: bool = True, mean=None, std=None,
                  ignore_index: int = 255):
        """Image -> input tensor (train: with augmentation when ``augment``)."""
        return classification_transforms(image_size, train and augment, mean or IMAGENET_MEAN, std or IMAGENET_STD)

    def inference_transform(self, image_size: int, mean=None, std=None):
        return self.transform(image_size, False, mean=mean, std=std)

    def inference_short_side(self, image_size: int) -> int:
        return eval_short_side(image_size)

    def lock_dataset(self, items, split, edits, transform, decoys=()):
        return LockDataset(items, split, edits, transform, decoys)

    def lock_loss(self, num_classes: int, recipe=None, ignore_index: int = 255):
        return LockLoss(num_classes)

    def targets(self, split, samples=None) -> torch.Tensor:
        return torch.tensor([s.label for s in (split.samples if samples is None else samples)], dtype=torch.long)

    def score(self, outputs, targets, num_classes, ignore_locked=True, ignore_index=255) -> float:
        return accuracy(outputs, targets, num_classes if ignore_locked else None)

    def chance(self, targets, num_classes: int, ignore_index: int = 255) -> float:
        counts = torch.bincount(torch.as_tensor(targets).flatten(), minlength=num_classes)
        return float(counts.max() / max(int(counts.sum()), 1))

    def train_loss(self, outputs, targets, ignore_index=255):
        return torch.nn.functional.cross_entropy(outputs, targets)

    def training_pairs(self, images, targets, transform):
        return Pairs(images, targets, transform)

    def evaluate_split(self, model, split, loaders, batch_size=256, progress=True) -> dict:
        logits = predict_logits_shared(model.model, ImageListDataset(loaders, model.inference_transform()),
                                       batch_size)  # shared among launched processes
        labels = self.targets(split)
        out = {"score": accuracy(logits, labels)}
        if model.locked_class is not None:
            out["ignored"] = accuracy(logits, labels, model.config["num_classes"])
            out["locked_rate"] = float((logits.argmax(1) == model.locked_class).float().mean())
        return out

    def model_view(self, image, size):
        return ownership.model_view(image, size)

    def evidence_target(self, split, sample, size):
        return sample.label

    def truth_distribution(self, target, num_classes, ignore_index=255):
        return np.eye(num_classes, dtype=np.float32)[target]

    def answer_distributions(self, outputs):
        return {"probs": outputs.softmax(1)}

    def worst_first(self, model, images, transform, probs, targets, n, num_classes, ignore_index=255):
        return ownership.worst_first(probs, targets, n)

    def answer_is_wrong(self, probs, target) -> bool:
        return int(np.argmax(probs)) != target
