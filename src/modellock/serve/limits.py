"""What the service accepts: request size, images per request, pixels per image, time; and how it reads images.

Every refusal is a ``RequestError`` with an HTTP status and a message that names the image, never the
key or a token. The body size is enforced while the body streams in (``BodyLimit``), so an oversized
upload is cut off before it is held in memory; an image's size is read from its header before it is
decoded, so a decompression bomb is refused unread.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np

from ..errors import ImageError, ImageTooLargeError
from ..images import decode_image

# Formats a request may carry. Pillow opens more (EPS, for one, runs Ghostscript): those are refused.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request, and all requests waiting together, may cost.

    ``max_queue`` images wait at most, holding at most ``4 * max_pixels`` pixels together; a batch holds at
    most ``max_pixels`` pixels (at least one image), so the editor's memory stays that of one large image.
    """

    max_body_bytes: int = 16 * 1024 * 1024
    max_images: int = 32
    max_pixels: int = 4096 * 4096
    timeout_s: float = 30.0
    max_queue: int = 256
    max_concurrency: int = 128  # open requests; more are answered 503 by the server before their body is read

    @property
    def max_queue_pixels(self) -> int:
        return 4 * self.max_pixels

    def __post_init__(self):
        for name in ("max_body_bytes", "max_images", "max_pixels", "max_queue", "max_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, not {self.timeout_s!r}")


class RequestError(Exception):
    """A request the service refuses: HTTP ``status``, a message for the client, optional headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


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
