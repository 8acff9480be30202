"""What the service accepts: request size, images per request, pixels per image, per request and waiting in
all, time; and how it reads images.

Every refusal is a ``RequestError`` with an HTTP status and a message that names the image, never the
key or a token. The body size is enforced while the body streams in (``BodyLimit``), so an oversized
upload is cut off before it is held in memory. A request's images are counted, and each one's encoded
size checked, before any is decoded; then each one's size is read from its header (``read_sizes``), so
that a request is refused (413) or made to wait its turn (503, ``PixelBudget``) before its pixels exist.
Decoding (base64, images) runs on worker threads, never on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import numpy as np

from ..errors import ImageError, ImageTooLargeError
from ..utils.images import decode_image, image_size

# Formats a request may carry. Pillow opens more (EPS, for one, runs Ghostscript): those are refused.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request, and all requests together, may cost.

    Per request: ``max_body_bytes``, ``max_images``, ``max_image_bytes`` per image as sent (default: the body
    limit), ``max_pixels`` per image and ``max_request_pixels`` for all its images (default: ``max_pixels``),
    as decoded. All requests together hold at most ``max_queue_pixels`` decoded pixels (default: 4 x
    ``max_request_pixels``), from the decoding of their images to their answer, and ``max_queue`` images
    wait at most. A batch holds at most ``max_pixels`` pixels (one image at least), so the editor's memory
    stays that of one large image.
    """

    max_body_bytes: int = 16 * 1024 * 1024
    max_images: int = 32
    max_pixels: int = 4096 * 4096
    timeout_s: float = 30.0
    max_queue: int = 256
    max_concurrency: int = 128  # open requests; more are answered 503 by the server before their body is read
    max_image_bytes: int | None = None
    max_request_pixels: int | None = None
    max_queue_pixels: int | None = None

    def __post_init__(self):
        if self.max_image_bytes is None:
            object.__setattr__(self, "max_image_bytes", self.max_body_bytes)
        if self.max_request_pixels is None:
            object.__setattr__(self, "max_request_pixels", self.max_pixels)
        if self.max_queue_pixels is None:
            object.__setattr__(self, "max_queue_pixels", 4 * self.max_request_pixels)
        for name in ("max_body_bytes", "max_images", "max_pixels", "max_queue", "max_concurrency", "max_image_bytes",
                     "max_request_pixels", "max_queue_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, not {self.timeout_s!r}")
        if self.max_request_pixels > self.max_queue_pixels:
            raise ValueError(f"max_request_pixels ({self.max_request_pixels:,}) must not exceed max_queue_pixels "
                             f"({self.max_queue_pixels:,}): such a request could never be admitted")


class RequestError(Exception):
    """A request the service refuses: HTTP ``status``, a message for the client, optional headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def check_count(count: int, limits: Limits) -> None:
    """422 for no image, 413 for more than ``max_images``: checked before anything is decoded."""
    if not count:
        raise RequestError(422, "no images in the request")
    if count > limits.max_images:
        raise RequestError(413, f"{count} images, over the limit of {limits.max_images} per request")


def check_encoded_size(size: int, name: str, limits: Limits) -> None:
    """413 for an image whose bytes (as decoded from base64, or as uploaded) exceed ``max_image_bytes``."""
    if size > limits.max_image_bytes:
        raise RequestError(413, f"{name}: {size:,} bytes, over the limit of {limits.max_image_bytes:,} bytes "
                                "per image")


def read_sizes(named: list[tuple[str, bytes]], limits: Limits) -> list[int]:
    """Each image's pixels, from its header (nothing decoded): 400 for what is not a usable image, 413 over
    ``max_pixels`` for one image or ``max_request_pixels`` for them all. Runs on a worker thread."""
    pixels = []
    for name, data in named:
        if not data:
            raise RequestError(400, f"{name}: empty")
        try:
            w, h = image_size(data, max_pixels=limits.max_pixels, formats=ACCEPTED_FORMATS, name=name)
        except ImageTooLargeError as e:
            raise RequestError(413, str(e)) from None
        except ImageError as e:
            raise RequestError(400, str(e)) from None
        pixels.append(w * h)
    if sum(pixels) > limits.max_request_pixels:
        raise RequestError(413, f"{len(pixels)} images of {sum(pixels):,} pixels in all, over the limit of "
                                f"{limits.max_request_pixels:,} pixels per request")
    return pixels


def read_image(data: bytes, name: str, limits: Limits) -> np.ndarray:
    """An uploaded image as HxWx3 uint8: 413 over the pixel limit, 400 for anything that is not a usable image."""
    if not data:
        raise RequestError(400, f"{name}: empty")
    try:
        return decode_image(data, max_pixels=limits.max_pixels, formats=ACCEPTED_FORMATS, name=name)
    except ImageTooLargeError as e:
        raise RequestError(413, str(e)) from None
    except ImageError as e:
        raise RequestError(400, str(e)) from None


def read_images(named: list[tuple[str, bytes]], limits: Limits) -> list[np.ndarray]:
    """``read_image`` of each ``(name, bytes)``. Runs on a worker thread."""
    return [read_image(data, name, limits) for name, data in named]


def decode_base64(text, name: str) -> bytes:
    """The bytes of a base64 string, with or without a ``data:image/...;base64,`` prefix; 400 otherwise."""
    if not isinstance(text, str):
        raise RequestError(422, f"{name}: expected a base64 string, got {type(text).__name__}")
    if text.startswith("data:"):
        head, sep, text = text.partition(",")
        if not sep or not head.endswith(";base64"):
            raise RequestError(400, f"{name}: a data URL must be base64 (data:image/png;base64,...)")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{name}: not valid base64") from None


def parse_json_images(body: bytes, limits: Limits) -> tuple[list[tuple[str, bytes]], object]:
    """``[(label, image bytes)]`` and the raw ``top_k`` of a JSON body ``{"images": [base64, ...]}``. The
    entries are counted, and each one's length checked, before any is base64-decoded. Runs on a worker thread."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError(400, "the body is not valid JSON") from None
    except RecursionError:
        raise RequestError(400, "the body is JSON nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise RequestError(422, "expected a JSON object with \"images\": a list of base64 strings")
    images = data["images"]
    check_count(len(images), limits)
    longest = 2 * limits.max_image_bytes + 4096  # base64 (4/3) of the largest image, line breaks and a data: prefix
    for i, text in enumerate(images):
        if isinstance(text, str) and len(text) > longest:
            raise RequestError(413, f"images[{i}]: {len(text):,} base64 characters, over the limit of "
                                    f"{limits.max_image_bytes:,} bytes per image")
    named = []
    for i, text in enumerate(images):
        data_bytes = decode_base64(text, f"images[{i}]")
        check_encoded_size(len(data_bytes), f"images[{i}]", limits)
        named.append((f"images[{i}]", data_bytes))
    return named, data.get("top_k")


class PixelBudget:
    """Decoded pixels that requests hold at once (decoding, waiting and in a batch), at most ``limit``.

    Used from the event loop only: ``reserve`` and ``release`` need no lock."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0

    def reserve(self, pixels: int) -> bool:
        """Hold ``pixels`` when they fit; False otherwise."""
        if self.held + pixels > self.limit:
            return False
        self.held += pixels
        return True

    def release(self, pixels: int) -> None:
        self.held -= pixels


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 when a request body exceeds ``max_bytes`` (by its Content-Length, or as it streams)."""

    def __init__(self, app, max_bytes: int, respond):
        self.app, self.max_bytes, self.respond = app, max_bytes, respond

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request body over the limit of {self.max_bytes:,} bytes"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                return await self.respond(scope, send, 400, "malformed Content-Length header")
            if too_large:
                return await self.respond(scope, send, 413, message)
        seen, started = 0, False

        async def counted_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return msg

        async def tracked_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self.respond(scope, send, 413, message)
