"""What every task type provides (``TaskType``), and the lock-set items and dataset the tasks build on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.source import Sample, Split


class TaskType(ABC):
    """What a task provides to the shared stages (see the module docstring)."""

    name: str = ""
    metric: str = ""
    metric_label: str = ""  # the metric in words (model cards, demo lines)
    default_model: str = ""
    per_pixel: bool = False  # answers are masks (predictors segment, scores per pixel)
    predict_cli_extra: str = ""  # what the model card's ``modellock predict`` line adds for this task
    clean_targets: tuple[str, ...] = ()  # what a lock recipe may train the clean images toward
    tiny_model: str = ""  # the smallest registered model (tests, ``modellock.testing``)
    soft_distillation: bool = True  # a student may learn the teacher's probabilities (else its top-1 answers)
    head_probe: bool = False  # the head alone can be re-fitted on fixed features (a linear probe)
    published_classifiers: bool = False  # timm:NAME / torchvision:NAME classifiers (ImageNet weights) are its models

    # ------------------------------------------------------------------ models
    @abstractmethod
    def resolve_model(self, name: str) -> tuple[str, str]:
        """``(source, arch)`` of a model name; ModelLockError when unknown."""

    @abstractmethod
    def create_model(self, name: str, num_outputs: int, image_size: int, pretrained=None) -> torch.nn.Module:
        """A fresh (or pretrained) model carrying ``model.backbone_spec``."""

    @abstractmethod
    def model_from_spec(self, spec: dict, pretrained=None) -> torch.nn.Module:
        """The model a ``backbone_spec`` describes (with ``spec['num_classes']`` outputs)."""

    @abstractmethod
    def default_image_size(self, name: str) -> int:
        """The model's native input size."""

    # ------------------------------------------------------------------ data and training
    @abstractmethod
    def transform(self, image_size: int, train: bool, augment: bool = True, mean=None, std=None,
                  ignore_index: int = 255):
        """Training/evaluation transform of one item (classification: image; segmentation: image and mask)."""

    @abstractmethod
    def inference_transform(self, image_size: int, mean=None, std=None):
        """Image alone -> input tensor, for predictors."""

    @abstractmethod
    def inference_short_side(self, image_size: int) -> int:
        """The short side the inference transform shrinks an image to: predictors shrink large inputs to it
        before editing, so that no stage works on a full-size photo."""

    @abstractmethod
    def lock_dataset(self, items, split, edits, transform, decoys=()) -> Dataset:
        """The lock set as ``(input, target)`` items (see lockset.py)."""

    @abstractmethod
    def lock_loss(self, num_classes: int, recipe=None, ignore_index: int = 255) -> torch.nn.Module:
        """The loss the lock trains with (``tasks/<name>/loss.py``)."""

    # ------------------------------------------------------------------ scores (evaluation, attacks, compare)
    @abstractmethod
    def targets(self, split, samples=None) -> list:
        """The targets of ``samples`` (default: the whole split), in order: labels or masks."""

    @abstractmethod
    def score(self, outputs: torch.Tensor, targets, num_classes: int, ignore_locked: bool = True,
              ignore_index: int = 255) -> float:
        """The task's metric over ``num_classes`` real classes. ``ignore_locked``: the argmax runs over the real
        classes only (the thief drops the locked output); else a locked-output answer counts as wrong."""

    @abstractmethod
    def chance(self, targets, num_classes: int, ignore_index: int = 255) -> float:
        """The score of always answering the most frequent class."""

    @abstractmethod
    def train_loss(self, outputs: torch.Tensor, targets, ignore_index: int = 255) -> torch.Tensor:
        """The plain training loss of an attacker's model (outputs already restricted to the real classes)."""

    @abstractmethod
    def training_pairs(self, images: list[np.ndarray], targets, transform) -> Dataset:
        """``(input, target)`` pairs for training, ``transform`` applied to each image (and its target)."""

    @abstractmethod
    def evaluate_split(self, model, split, loaders: list, batch_size: int = 256, progress: bool = True) -> dict:
        """Scores of a model folder's model on ``split`` whose images come from ``loaders`` (clean or edited):
        ``score`` (locked output counts as wrong) and, for a model with a locked output, ``ignored`` (the
        score with it dropped) and ``locked_rate``; tasks add their own fields."""

    # ------------------------------------------------------------------ ownership evidence (``modellock.ownership``)
    @abstractmethod
    def model_view(self, image: np.ndarray, size: int) -> np.ndarray:
        """``image`` as the ``size x size`` uint8 input the model sees, before normalisation."""

    @abstractmethod
    def evidence_target(self, split, sample, size: int):
        """The target of ``sample`` for the image ``model_view`` gives: its label, or its mask at that size."""

    @abstractmethod
    def truth_distribution(self, target, num_classes: int, ignore_index: int = 255) -> np.ndarray:
        """A target as a distribution over the classes: one-hot, or a mask's share of pixels per class."""

    @abstractmethod
    def answer_distributions(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image class distributions of ``N x K x ...`` outputs, by kind of answer: ``probs`` (softmax;
        per pixel: its mean over the pixels) and any the task adds (segmentation: ``areas``)."""

    @abstractmethod
    def worst_first(self, model, images, transform, probs: np.ndarray, targets, n: int, num_classes: int,
                    ignore_index: int = 255) -> np.ndarray:
        """Indices of the ``n`` of ``images`` (with ``targets``) that ``model`` gets most wrong; ``probs``: its
        ``probs`` answers on them over ``num_classes`` classes."""

    @abstractmethod
    def answer_is_wrong(self, probs: np.ndarray, target) -> bool:
        """Whether the answer ``probs`` to one image is a mistake on ``target`` (False where one answer cannot be)."""

    # ------------------------------------------------------------------ distillation (model stealing)
    def distillation_target(self, outputs: torch.Tensor, num_classes: int, soft: bool) -> torch.Tensor:
        """What a student learns from the teacher's ``outputs`` over the real classes: probabilities
        (``soft``) or the top-1 class, per item (classification) or per pixel (segmentation)."""
        real = outputs[:, :num_classes].float()
        return real.softmax(1) if soft else real.argmax(1)

    def distillation_loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the student's outputs to a soft (N x K x ...) or hard (N x ...) teacher target."""
        logp = torch.nn.functional.log_softmax(outputs.float(), 1)
        if target.dtype.is_floating_point:
            return -(target * logp).sum(1).mean()
        return torch.nn.functional.nll_loss(logp, target.long())


class Pairs(Dataset):
    """``(transform(image), target)``; with ``joint`` the transform takes and returns (image, target)."""

    def __init__(self, images, targets, transform, joint: bool = False):
        self.images, self.targets, self.transform, self.joint = images, targets, transform, joint

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        if self.joint:
            return self.transform(self.images[i], self.targets[i])
        return self.transform(self.images[i]), self.targets[i]


@dataclass(frozen=True)
class LockItem:
    """One training image of the lock set.

    ``answer`` is what it is trained toward: ``true`` or the recipe's clean target. Classification:
    ``target`` is that answer as a distribution over the model's outputs. Segmentation: ``target`` is
    empty, or the class permutation of ``wrong-label``; ``other`` indexes the image whose mask
    ``wrong-mask`` uses.
    """

    sample: Sample
    edited: bool
    target: tuple = ()
    decoy: int = -1  # index of the decoy key this image is edited with; -1 for none
    answer: str = "true"
    other: int = -1


class LockDataset(Dataset):
    """(transformed image, target distribution) for each lock item, read lazily from disk."""

    def __init__(self, items: list[LockItem], split: Split, edits, transform, decoys=()):
        self.items, self.split, self.edits, self.transform, self.decoys = items, split, edits, transform, decoys

    def __len__(self) -> int:
        return len(self.items)

    def image(self, item: LockItem):
        """The image the model sees: edited with the key, with a decoy key, or clean."""
        if item.edited:
            return self.edits.load(self.split.name, item.sample)
        if item.decoy >= 0:
            return self.decoys[item.decoy].load(self.split.name, item.sample)
        return self.split.load(item.sample)

    def handled(self, handling, image, item: LockItem):
        """``(image, mask)`` after ``handling`` (random crops, resizes, JPEG); no mask here (see segmentation)."""
        return handling(image), None

    def finish(self, image, item: LockItem):
        """``(input, target)`` of ``item`` from the image the model sees."""
        return self.transform(image), torch.tensor(item.target, dtype=torch.float32)

    def __getitem__(self, i):
        item = self.items[i]
        return self.finish(self.image(item), item)
