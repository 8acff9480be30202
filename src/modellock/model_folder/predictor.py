"""The predictor of a model folder: edits inputs with a key (when given), preprocesses, runs the model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..editors import get_editor, resolve_key
from ..tasks import task_type
from ..utils.images import ImageInput, as_image_list, is_single_image, read_input_image

if TYPE_CHECKING:  # the folder module imports this one
    from .folder import LockedModel


class Predictor:
    """Edits inputs with a key (when given), preprocesses, and runs the model.

    Inputs may be file paths (``str`` or ``pathlib.Path``), PIL images or HxWxC arrays, one alone or a
    list; ``predict`` and ``segment`` answer a single input with one result and a list with a list. A
    large input is shrunk to the model's working size before it is edited (see ``images.read_input_image``).
    """

    def __init__(self, locked: LockedModel, key=None, device: str | None = None, batch_size: int | None = None):
        self.locked, self.key = locked.with_key(key), key
        model = self.locked.model  # a sealed model without its key stops here: the weights need the key
        if key is not None:
            key = resolve_key(key, model, locked.image_size)
        self.editor = get_editor(key, device=device, batch_size=batch_size) if key is not None else None
        self._transform = locked.inference_transform()
        self.short_side = task_type(locked.task).inference_short_side(locked.image_size)

    def read(self, images: ImageInput | Sequence[ImageInput]) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
        """The inputs as uint8 RGB arrays shrunk to the working size, and each input's own (height, width)."""
        pairs = [read_input_image(im, self.short_side) for im in as_image_list(images)]
        return [a for a, _ in pairs], [size for _, size in pairs]

    def edit(self, images: ImageInput | Sequence[ImageInput]) -> list[np.ndarray]:
        """The inputs as the model sees them before preprocessing: edited with the key (if any)."""
        arrays, _ = self.read(images)
        return self.editor.edit(arrays) if self.editor is not None else arrays

    @torch.inference_mode()
    def logits(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 256,
               edited: bool = False) -> torch.Tensor:
        """Model outputs for ``images`` (edited with the key first, unless ``edited``)."""
        arrays = self.read(images)[0] if edited else self.edit(images)
        device = next(self.locked.model.parameters()).device
        out = []
        for i in range(0, len(arrays), batch_size):
            x = torch.stack([self._transform(a) for a in arrays[i:i + batch_size]])
            out.append(self.locked.model(x.to(device)).float().cpu())
        return torch.cat(out) if out else torch.empty(0, len(self.locked.output_names))

    def predict(self, images: ImageInput | Sequence[ImageInput], top_k: int = 3) -> list[dict] | dict:
        """Per image: classification: class, probability and the top-k; segmentation: see ``segment``.

        With a key the locked output is dropped.
        """
        if task_type(self.locked.task).per_pixel:
            return self.segment(images)
        logits = self.logits(images)
        names = self.locked.output_names
        if self.key is not None and self.locked.locked_class is not None:
            logits, names = logits[:, : self.locked.config["num_classes"]], names[: self.locked.config["num_classes"]]
        probs = logits.softmax(dim=1)
        results = []
        for p in probs:
            top = torch.topk(p, min(top_k, len(names)))
            results.append({
                "class": names[int(top.indices[0])], "label": int(top.indices[0]), "probability": float(top.values[0]),
                "top": [{"class": names[int(i)], "probability": float(v)} for v, i in zip(top.values, top.indices)],
            })
        return _like_input(images, results)

    def segment(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 64) -> list[dict] | dict:
        """Per image: ``mask`` (HxW int64 class indices at the image's own size) and ``class_areas``
        (share of the image per predicted class, largest first). With a key the locked output is dropped."""
        arrays, sizes = self.read(images)
        edited = self.editor.edit(arrays) if self.editor is not None else arrays
        c = self.locked.config["num_classes"]
        names = self.locked.output_names
        keep = c if self.key is not None else len(names)
        results = []
        for i in range(0, len(edited), batch_size):
            logits = self.logits(edited[i:i + batch_size], edited=True)[:, :keep]
            for size, out in zip(sizes[i:i + batch_size], logits):
                up = torch.nn.functional.interpolate(out[None], size=size, mode="bilinear", align_corners=False)
                mask = up[0].argmax(0).numpy().astype(np.int64)
                counts = np.bincount(mask.ravel(), minlength=keep)
                areas = {names[j]: float(counts[j] / mask.size) for j in np.argsort(-counts) if counts[j]}
                results.append({"mask": mask, "class_areas": areas})
        return _like_input(images, results)


def _like_input(images, results: list):
    """One result for one image given alone, the list for a list."""
    return results[0] if is_single_image(images) else results
