"""Task types: the few things classification and segmentation do differently in the shared stages.

Lock, evaluate and the model folder ask ``task_type(name)`` for the model factory, the transforms,
the lock-set dataset and the loss; keys, editors, the edit cache, the training loop and the model
folder are the same for every task. A task type is one class registered here.
"""

from __future__ import annotations

from .errors import ModelLockError
from .train import IMAGENET_MEAN, IMAGENET_STD

_TASKS: dict[str, "TaskType"] = {}
TASK_NAMES = ("classification", "segmentation")


def register_task_type(cls):
    _TASKS[cls.name] = cls()
    return cls


def task_type(name: str | None) -> "TaskType":
    """The task type called ``name`` (``classification`` when None)."""
    name = name or "classification"
    if name not in _TASKS:
        raise ModelLockError(f"unknown task {name!r} (known: {', '.join(sorted(_TASKS))})")
    return _TASKS[name]


class TaskType:
    """Classification: one label per image, accuracy, backbones from backbones.py."""

    name = "classification"
    metric = "accuracy"
    default_model = "small-cnn"

    def resolve_model(self, name: str):
        from .backbones import resolve_backbone

        return resolve_backbone(name)

    def create_model(self, name: str, num_outputs: int, image_size: int, pretrained=None):
        from .backbones import create_backbone

        return create_backbone(name, num_outputs, image_size, pretrained)

    def model_from_spec(self, spec: dict):
        from .backbones import backbone_from_spec

        return backbone_from_spec(spec)

    def default_image_size(self, name: str) -> int:
        """The backbone's native input size: 32 for ours, the timm pretrained config's, else 224."""
        source, arch = self.resolve_model(name)
        if source == "modellock":
            return 32
        if source == "timm":
            import timm

            try:
                return int(timm.get_pretrained_cfg(arch).input_size[-1])
            except (AttributeError, RuntimeError, TypeError):
                return 224
        return 224

    def transform(self, image_size: int, train: bool, augment: bool = True, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                  ignore_index: int = 255):
        """Image -> input tensor (train: with augmentation when ``augment``)."""
        from .train import classification_transforms

        return classification_transforms(image_size, train and augment, mean, std)

    def inference_transform(self, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        """Image alone -> input tensor, for predictors."""
        return self.transform(image_size, False, mean=mean, std=std)

    def lock_dataset(self, items, split, edits, transform, decoys=()):
        from .lockset import LockDataset

        return LockDataset(items, split, edits, transform, decoys)

    def loss(self, num_classes: int, recipe=None, ignore_index: int = 255):
        from .losses import LockLoss

        return LockLoss(num_classes)


register_task_type(TaskType)


@register_task_type
class SegmentationTaskType(TaskType):
    """Segmentation: a class per pixel, mean IoU, models from seg_models.py, image and mask move together."""

    name = "segmentation"
    metric = "miou"
    default_model = "small-segnet"

    def resolve_model(self, name: str):
        from .seg_models import resolve_segmenter

        return resolve_segmenter(name)

    def create_model(self, name: str, num_outputs: int, image_size: int, pretrained=None):
        from .seg_models import create_segmenter

        return create_segmenter(name, num_outputs, image_size, pretrained)

    def model_from_spec(self, spec: dict):
        from .seg_models import segmenter_from_spec

        return segmenter_from_spec(spec)

    def default_image_size(self, name: str) -> int:
        """64 for ours, 512 for SegFormer, 520 for torchvision's models (their training crop)."""
        source, _ = self.resolve_model(name)
        return {"modellock": 64, "segformer": 512}.get(source, 520)

    def transform(self, image_size: int, train: bool, augment: bool = True, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                  ignore_index: int = 255):
        """(image, mask) -> (input, mask); training without ``augment`` resizes both to the input size."""
        from .seg_transforms import fixed_size_transform, segmentation_transforms

        if train and not augment:
            return fixed_size_transform(image_size, mean, std)
        return segmentation_transforms(image_size, train, mean, std, ignore_index)

    def inference_transform(self, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        from .seg_transforms import image_transform

        return image_transform(image_size, mean, std)

    def lock_dataset(self, items, split, edits, transform, decoys=()):
        from .lockset import SegmentationLockDataset

        return SegmentationLockDataset(items, split, edits, transform, decoys)

    def loss(self, num_classes: int, recipe=None, ignore_index: int = 255):
        from .losses import SegmentationLockLoss

        return SegmentationLockLoss(num_classes, ignore_index, recipe.locked_weight if recipe else 0.5)
