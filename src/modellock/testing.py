"""Offline stand-ins for tests and benchmarks: randomly initialised InstructPix2Pix pipelines and sample images.

``build_tiny_pix2pix(path)`` and ``build_full_size_pix2pix(path)`` compose a
``StableDiffusionInstructPix2PixPipeline`` from the real diffusers / transformers classes with
random weights (fixed torch seed, so the same folder every time) and ``save_pretrained`` it into
``path``; ``InstructPix2PixEditor`` then loads it back through its normal ``from_pretrained`` path
(``Key(model=str(path))``). Nothing is downloaded: the CLIP tokenizer is built from an in-code
byte-level vocabulary. The edits are meaningless pictures, but they are deterministic, depend on
the prompt, the seed and the input image, and cost what the architecture costs.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from .editors import editor_class
from .model_folder import LockedModel, ModelFolderConfig
from .tasks import task_type
from .utils.images import IMAGENET_MEAN, IMAGENET_STD

# A few byte-pair merges so the tokenizer exercises BPE, not only single characters.
_MERGES = ["t h", "i n", "e r", "a n", "o n", "th e</w>", "i t", "o r", "e n", "a r"]
TINY_SEED = 0


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build_clip_tokenizer(max_length: int = 77):
    """A CLIPTokenizer over every byte (alone and word-final) plus a few merges, built without a download."""
    # lazy: transformers, only for the tiny test pipeline
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    tokens += ["".join(m.split()) for m in _MERGES]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    with tempfile.TemporaryDirectory(prefix="modellock-tokenizer-") as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n", encoding="utf-8")
        tokenizer = CLIPTokenizer.from_pretrained(tmp, model_max_length=max_length)
    return tokenizer


def _save_pipeline(path, unet_kwargs: dict, vae_kwargs: dict, text_kwargs: dict, seed: int) -> Path:
    # lazy: diffusers and transformers, only for the tiny test pipeline
    from diffusers import (AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_clip_tokenizer(text_kwargs.get("max_position_embeddings", 77))
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    text_kwargs = {"vocab_size": max(len(tokenizer), text_kwargs.pop("vocab_size", 0)), **special, **text_kwargs}

    with torch.random.fork_rng():  # leave the caller's global RNG as it was
        torch.manual_seed(seed)  # every component's initial weights come from this seed
        unet = UNet2DConditionModel(**unet_kwargs)
        vae = AutoencoderKL(**vae_kwargs)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_kwargs))
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    )
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(), scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path)
    return path


def build_tiny_pix2pix(path, seed: int = TINY_SEED) -> Path:
    """Save a tiny random InstructPix2Pix pipeline (about 1M parameters) into ``path``; returns ``path``.

    Same component classes as ``timbrooks/instruct-pix2pix``: a UNet with 8 input channels
    (4 noisy latents + 4 image latents), a 2-level VAE (latents at half the image size), a
    2-layer CLIP text encoder and the Euler ancestral scheduler.
    """
    return _save_pipeline(
        path,
        unet_kwargs=dict(
            sample_size=16,
            in_channels=8,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        ),
        vae_kwargs=dict(
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=32,
        ),
        text_kwargs=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
        ),
        seed=seed,
    )


# The UNet and VAE of timbrooks/instruct-pix2pix (Stable Diffusion 1.5 with 8 UNet input channels).
FULL_SIZE_UNET = dict(sample_size=64, in_channels=8, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
                      layers_per_block=2, cross_attention_dim=768, attention_head_dim=8)
FULL_SIZE_VAE = dict(in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512),
                     down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                     layers_per_block=2, latent_channels=4, sample_size=512)


def build_full_size_pix2pix(path, seed: int = TINY_SEED) -> Path:
    """Save a random pipeline with the real InstructPix2Pix (Stable Diffusion 1.5) architecture into ``path``.

    About 1.07B parameters (UNet 860M, VAE 84M, CLIP ViT-L/14 text encoder 123M), 4.3 GB in fp32:
    the same compute per step as ``timbrooks/instruct-pix2pix``, for benchmarks without a download.
    """
    return _save_pipeline(
        path,
        unet_kwargs=dict(FULL_SIZE_UNET),
        vae_kwargs=dict(FULL_SIZE_VAE),
        text_kwargs=dict(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=768,
        ),
        seed=seed,
    )


def sample_images(n: int, size: tuple[int, int] = (64, 64), seed: int = 0) -> list[np.ndarray]:
    """``n`` different HxWx3 uint8 pictures (colour gradients, a disc and a bar, mild noise); deterministic."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / max(h - 1, 1), xx / max(w - 1, 1)
    images = []
    for _ in range(n):
        c0, c1, c2 = rng.uniform(0, 255, size=(3, 3))
        angle = rng.uniform(0, 2 * np.pi)
        t = np.clip(0.5 + (xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle), 0, 1)[..., None]
        img = (1 - t) * c0 + t * c1
        cy, cx, r = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75), rng.uniform(0.1, 0.3)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = c2
        x0 = rng.uniform(0, 0.8)
        img[(xx > x0) & (xx < x0 + 0.1)] = 255 - c2
        img = img + rng.normal(0, 6, size=img.shape)
        images.append(np.clip(np.round(img), 0, 255).astype(np.uint8))
    return images


def build_tiny_locked_model(path, key, classes=("circle", "square", "triangle"), task: str = "classification",
                            image_size: int = 32, seed: int = 0, model: str | None = None, seal: bool = False):
    """Save an untrained locked model folder (``model``: ``tiny-cnn`` by default, ``tiny-segnet`` for
    segmentation) for ``key``; with ``seal``, its weights sealed with ``key`` (the opened weights are returned).

    Random weights, a real config (fingerprint of ``key``, a locked output) and model card: what a service or
    predictor test needs in a second, without training. Returns the ``LockedModel``.
    """
    kind = task_type(task)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = kind.create_model(model or kind.tiny_model,
                                len(classes) + 1, image_size)
    config = ModelFolderConfig(
        task=task, architecture=net.backbone_spec, classes=list(classes) + ["locked"], num_classes=len(classes),
        locked_class=len(classes),
        preprocessing={"image_size": image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        lock={"editor": key.editor, "editor_version": editor_class(key.editor).version,
              "fingerprint": key.fingerprint(), "recipe": {}},
        training={"note": "untrained: modellock.testing.build_tiny_locked_model"},
        ignore_index=255 if kind.per_pixel else None)
    locked = LockedModel(net.eval(), config.to_dict())
    locked.save_pretrained(path, seal_key=key if seal else None)
    return locked
