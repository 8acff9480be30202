"""Attack 6: generic image transforms, and every registered editor with random keys. Never reads the key.

Blur, noise, JPEG, colour jitter, tonal changes, stylisation filters (posterised "cartoon", pencil
sketch, emboss), then ``random_keys`` random keys (a random catalogue prompt and seed, the editor's
default settings) of every editor in the registry. An editor that needs a diffusion model uses the
ones the attacker holds (``--diffusion-model``) and is skipped, with the reason, when there is none.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from ..editors import available_editors, editor_class
from ..keys import PAPER_DEFAULTS, Key
from . import register_attack
from .context import Candidate
from .prompt_catalogue import catalogue_prompts

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _pil(fn) -> Transform:
    return lambda a, rng: np.asarray(fn(Image.fromarray(a)).convert("RGB"))


def _blur(sigma: float) -> Transform:
    return _pil(lambda im: im.filter(ImageFilter.GaussianBlur(sigma)))


def _noise(sigma: float) -> Transform:
    return lambda a, rng: np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).round().astype(np.uint8)


def _jpeg(quality: int) -> Transform:
    def f(a, rng):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=quality)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))

    return f


def _jitter(seed: int) -> Transform:
    """One fixed random colour jitter (brightness, contrast, saturation, hue), the same for every image."""
    r = np.random.default_rng(seed)
    b, c, s = r.uniform(0.6, 1.4, size=3)
    hue = int(r.integers(-25, 26))

    def f(a, rng):
        im = Image.fromarray(a)
        for enhance, factor in ((ImageEnhance.Brightness, b), (ImageEnhance.Contrast, c), (ImageEnhance.Color, s)):
            im = enhance(im).enhance(float(factor))
        h, sat, v = im.convert("HSV").split()
        h = h.point(lambda x: (x + hue) % 256)
        return np.asarray(Image.merge("HSV", (h, sat, v)).convert("RGB"))

    return f


def _cartoon(a, rng):
    """Posterised colours over a smoothed image, with dark edges: a cheap 'cartoon' stylisation."""
    im = Image.fromarray(a).filter(ImageFilter.MedianFilter(3))
    flat = ImageOps.posterize(im, 3)
    edges = np.asarray(im.convert("L").filter(ImageFilter.FIND_EDGES), dtype=np.float32)
    mask = (edges > 40)[:, :, None]
    return np.where(mask, 0.4 * np.asarray(flat), np.asarray(flat)).astype(np.uint8)


def _pencil(a, rng):
    """Colour dodge of the grey image with its blurred negative: a pencil-sketch stylisation."""
    grey = np.asarray(Image.fromarray(a).convert("L"), dtype=np.float32)
    blur = np.asarray(Image.fromarray((255 - grey).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2)),
                      dtype=np.float32)
    sketch = np.clip(grey * 255.0 / np.maximum(255.0 - blur, 1.0), 0, 255).astype(np.uint8)
    return np.repeat(sketch[:, :, None], 3, axis=2)


def _sepia(a, rng):
    m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=np.float32)
    return np.clip(a.astype(np.float32) @ m.T, 0, 255).astype(np.uint8)


TRANSFORMS: dict[str, Transform] = {
    "gaussian blur 0.5": _blur(0.5), "gaussian blur 1": _blur(1.0), "gaussian blur 2": _blur(2.0),
    "noise sigma 4": _noise(4), "noise sigma 8": _noise(8), "noise sigma 16": _noise(16),
    "jpeg q10": _jpeg(10), "jpeg q25": _jpeg(25), "jpeg q50": _jpeg(50), "jpeg q75": _jpeg(75),
    "colour jitter #1": _jitter(1), "colour jitter #2": _jitter(2), "colour jitter #3": _jitter(3),
    "colour jitter #4": _jitter(4),
    "greyscale": _pil(ImageOps.grayscale), "sepia": _sepia, "autocontrast": _pil(ImageOps.autocontrast),
    "equalize": _pil(ImageOps.equalize), "posterize 3 bits": _pil(lambda im: ImageOps.posterize(im, 3)),
    "solarize": _pil(lambda im: ImageOps.solarize(im, 128)), "invert": _pil(ImageOps.invert),
    "sharpen": _pil(lambda im: im.filter(ImageFilter.SHARPEN)),
    "stylise: cartoon": _cartoon, "stylise: pencil sketch": _pencil,
    "stylise: emboss": _pil(lambda im: im.filter(ImageFilter.EMBOSS)),
    "stylise: oil (mode filter)": _pil(lambda im: im.filter(ImageFilter.ModeFilter(3))),
}


def batch(transform: Transform, seed: int = 0) -> Callable[[list], list]:
    """A list-of-images function applying ``transform`` with one seeded generator per call."""

    def apply(images: list[np.ndarray]) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [transform(a, rng) for a in images]

    return apply


def random_editor_keys(ctx, n: int, seed: int) -> tuple[list[tuple[str, Key]], list[dict]]:
    """``n`` random keys per registered editor; editors needing a diffusion model use the attacker's."""
    rng = np.random.default_rng(seed)
    prompts = [p for _, p in catalogue_prompts()]
    keys, skipped = [], []
    for editor in available_editors():
        defaults = {**PAPER_DEFAULTS, **editor_class(editor).key_defaults, "editor": editor}
        models = [str(m) for m in ctx.diffusion_models] if defaults["model"] else [""]
        if not models:
            skipped.append({"name": f"editor {editor}", "reason": "needs a diffusion model; none given "
                            "(--diffusion-model)"})
            continue
        for j, model in enumerate(models):
            for i in range(n):
                fields = {**defaults, "seed": int(rng.integers(2**31)), **({"model": model} if model else {})}
                name = f"{editor} random key #{i + 1}" + (f", diffusion model #{j + 1}" if model else "")
                keys.append((name, Key(prompt=str(rng.choice(prompts)), **fields)))
    return keys, skipped


@register_attack("generic-transforms")
def generic_transforms(ctx, extra: dict | None = None) -> dict:
    """Blur, noise, JPEG, colour jitter, stylisation filters, and every registered editor with random keys.

    ``extra`` (tests) adds ``{name: fn(list of images) -> list}`` candidates.
    """
    candidates = [Candidate(name, fn=batch(t, ctx.seed), info={"kind": "transform"}) for name, t in TRANSFORMS.items()]
    keys, skipped = random_editor_keys(ctx, ctx.random_keys, ctx.seed)
    candidates += [Candidate(name, key=k, info={"kind": "editor"}) for name, k in keys]
    candidates += [Candidate(name, fn=fn, info={"kind": "injected"}) for name, fn in (extra or {}).items()]
    result = ctx.sweep(candidates, "generic transforms")
    result.update(skipped=skipped, scores={row["name"]: row["screen_score"] for row in result["candidates"]})
    return result
