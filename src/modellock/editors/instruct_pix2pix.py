"""``instruct-pix2pix``: the paper's editor, any diffusers InstructPix2Pix pipeline (hub id or folder).

Batched: one pipeline call edits a whole batch, with one freshly seeded generator per image, so an
image's edit equals editing it alone (up to kernel rounding, at most 1/255 after uint8 conversion).
GPU runs in bf16 (fp16 where bf16 is unsupported), CPU in fp32; the safety checker is off. Without a
batch size, a GPU edits as many images at once as fit (see ``gpu_batch_size``).
"""

from __future__ import annotations

import logging
import re
import threading
import warnings

import numpy as np

from ..errors import ModelLockError
from . import register_editor
from .base import Editor

_PIPELINES: dict[tuple, object] = {}  # (model, revision, device, dtype) -> loaded pipeline
_LOCK = threading.Lock()

# diffusers logs the truncated tail of a prompt longer than the text encoder's context: that tail is
# part of the secret key. This filter keeps the warning and drops the text.
_PIPELINE_LOGGER = "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix"
_TRUNCATED = re.compile(r"following part of your input was truncated .*?up to (\d+) tokens", re.DOTALL)


class _RedactTruncatedPrompt(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        match = _TRUNCATED.search(str(record.msg))
        if match:
            record.msg = (
                f"the key prompt is longer than the text encoder's {match.group(1)} tokens; "
                "the rest of it is ignored (text not shown)"
            )
            record.args = ()
        return True


_REDACT = _RedactTruncatedPrompt()


def _redact_prompt_in_logs() -> None:
    logger = logging.getLogger(_PIPELINE_LOGGER)
    if _REDACT not in logger.filters:
        logger.addFilter(_REDACT)


def _default_device_dtype(device: str | None, dtype):
    # lazy: torch and diffusers, only when the diffusion editor runs
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        if str(device).startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
    return device, dtype


def load_pipeline(model: str, revision: str = "", device: str | None = None, dtype=None):
    """Load (once per process) a StableDiffusionInstructPix2PixPipeline from a hub id or local folder."""
    device, dtype = _default_device_dtype(device, dtype)
    cache_key = (model, revision or None, str(device), str(dtype))
    with _LOCK:
        if cache_key in _PIPELINES:
            return _PIPELINES[cache_key]
        # lazy: torch and diffusers, only when the diffusion editor runs
        from diffusers import StableDiffusionInstructPix2PixPipeline

        _redact_prompt_in_logs()
        try:
            with warnings.catch_warnings():  # newer diffusers renamed torch_dtype to dtype; older lack dtype
                warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
                pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
                    model, revision=revision or None, torch_dtype=dtype,
                    safety_checker=None, requires_safety_checker=False,
                )
        except (OSError, ValueError, EnvironmentError) as e:
            # The model id is part of the secret key: name the field, not its value.
            raise ModelLockError(
                f"key field 'model': the diffusion model cannot be loaded ({type(e).__name__}); "
                "give a local folder saved with save_pretrained, or a hub id that is cached or reachable"
            ) from None
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        _PIPELINES[cache_key] = pipe
        return pipe


def gpu_batch_size(resolution: int) -> int:
    """The first batch tried on a GPU: 64 images at 256x256, fewer for larger edits (at most 128); the
    editor halves it when the GPU runs out of memory, so it ends as large as fits."""
    if not resolution:
        return InstructPix2PixEditor.default_batch_size  # each image at its own size: sizes unknown
    return max(1, min(128, round(64 * (256 / resolution) ** 2)))


@register_editor("instruct-pix2pix")
class InstructPix2PixEditor(Editor):
    """Text-guided editing with InstructPix2Pix, as in the paper's public evaluation code."""

    default_batch_size = 8  # on a CPU; on a GPU see gpu_batch_size

    def __init__(self, key, device: str | None = None, batch_size: int | None = None, dtype=None):
        super().__init__(key, device, batch_size)
        self.device, self.dtype = _default_device_dtype(device, dtype)
        if batch_size is None and str(self.device).startswith("cuda"):
            self.batch_size = gpu_batch_size(key.resolution)
        self._pipe = None

    @property
    def pipe(self):
        if self._pipe is None:
            self._pipe = load_pipeline(self.key.model, self.key.revision, self.device, self.dtype)
        return self._pipe

    def edit_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Edit ``images`` in one pipeline call; out of GPU memory, in halves (and smaller batches from then on)."""
        # lazy: torch and diffusers, only when the diffusion editor runs
        import torch

        try:
            return self._pipeline_call(images)
        except torch.cuda.OutOfMemoryError:
            if len(images) == 1:
                raise
            torch.cuda.empty_cache()
            self.batch_size = min(self.batch_size, len(images) // 2)
            out: list[np.ndarray] = []
            while len(out) < len(images):  # the batch size may shrink again on the way
                out += self.edit_batch(images[len(out):len(out) + self.batch_size])
            return out

    def _pipeline_call(self, images: list[np.ndarray]) -> list[np.ndarray]:
        # lazy: torch and diffusers, only when the diffusion editor runs
        import torch
        from PIL import Image

        n = len(images)
        # A fresh CPU generator per image, seeded with the key's seed: same noise whatever the batch.
        generators = [torch.Generator(device="cpu").manual_seed(self.key.seed) for _ in range(n)]
        with torch.inference_mode():
            out = self.pipe(
                prompt=[self.key.prompt] * n,
                image=[Image.fromarray(a) for a in images],
                num_inference_steps=self.key.steps,
                image_guidance_scale=self.key.image_guidance,
                guidance_scale=self.key.guidance,
                generator=generators,
                output_type="np",
            ).images
        out = np.clip(np.round(np.asarray(out, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
        return list(out)

    def close(self) -> None:
        self._pipe = None
