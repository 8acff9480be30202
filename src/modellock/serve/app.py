"""The HTTP API: FastAPI routes over a batcher that runs the unlocked predictor.

Routes: ``POST /v1/predict`` (images as multipart files or base64 JSON), ``GET /v1/model``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics`` (Prometheus text) and the OpenAPI schema (``/openapi.json``, ``/docs``).
With a tokens file, ``/v1/*`` needs ``Authorization: Bearer TOKEN``; health, readiness, metrics and the
schema stay open (they hold no data and no secret). Without tokens (loopback only), every route answers
only requests whose Host names the loopback or an allowed name (``hosts.py``). A request goes through:
count and encoded sizes (413), ``top_k`` (422), image headers (400/413 per image and per request), the
pixel budget of all requests (503), the caller's quota (429), then decoding on worker threads and the
batcher. Every error is JSON, ``{"error": {"status": CODE, "message": "..."}}``, and names no secret.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
import traceback
from contextlib import asynccontextmanager
from typing import Any, Optional, Sequence

import anyio
import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from PIL import Image
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ModelLockError
from ..tasks import task_type
from ..utils.images import label_palette
from ..version import __version__
from .answers import Output
from .auth import Quota, TokenFile
from .batcher import Batcher, QueueFull, ShuttingDown
from .hosts import LOOPBACK_NAMES, HostCheck
from .limits import (BodyLimit, BodyTooLarge, Limits, PixelBudget, RequestError, check_count, check_encoded_size,
                     parse_json_images, read_images, read_sizes)
from .metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from .quotas import LOCAL, QuotaRefused, Quotas
from .watermark import Watermark

log = logging.getLogger("modellock.serve")
ROUTES = ("/v1/predict", "/v1/model", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")
_ALWAYS_OPEN = ("/healthz", "/readyz", "/metrics")  # answered even at the concurrency limit
_DECODE_THREADS = 4  # requests decoding their images at once (the pixel budget bounds what they hold)


# ---------------------------------------------------------------------------------------------- schemas
class TopClass(BaseModel):
    class_: str = Field(alias="class")
    probability: float


class Prediction(BaseModel):
    """Classification: the class, its index and probability, the top classes. Segmentation: areas and mask."""

    image: str = Field(description="The file name of a multipart upload, or images[i] for the JSON list. "
                       "With --output label, classification answers class and label only.")
    class_: Optional[str] = Field(None, alias="class")
    label: Optional[int] = None
    probability: Optional[float] = None
    top: Optional[list[TopClass]] = None
    width: Optional[int] = None
    height: Optional[int] = None
    class_areas: Optional[dict[str, float]] = Field(None, description="Share of the image per predicted class.")
    mask_png: Optional[str] = Field(None, description="Base64 PNG, palette mode: each pixel's value is its "
                                    "class index, and the palette colours it.")


class PredictResponse(BaseModel):
    task: str
    results: list[Prediction]


class ErrorBody(BaseModel):
    status: int
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


_ERRORS = {code: {"model": ErrorResponse, "description": text} for code, text in {
    400: "Not a usable image, bad base64, a malformed body or Host header", 401: "No valid bearer token",
    413: "Body, image count, image bytes or pixels over the limits", 415: "Neither multipart/form-data nor JSON",
    421: "The Host header names a host this service does not answer for",
    422: "Missing or invalid fields", 429: "The token's quota of images is used (see Retry-After)",
    503: "Queue or pixel budget full, or shutting down (see Retry-After)",
    504: "No answer within the request timeout"}.items()}

_BODY_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "image": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "One or more image files (PNG, JPEG, WebP, BMP, GIF, TIFF); any field name."},
        "top_k": {"type": "integer", "description": "Classes listed per image (default 3, or every class "
                  "when there are fewer; at most --top-k with --output top-k)."}}}},
    "application/json": {"schema": {"type": "object", "required": ["images"], "properties": {
        "images": {"type": "array", "items": {"type": "string"},
                   "description": "Base64 image files, optionally as data:image/...;base64, URLs."},
        "top_k": {"type": "integer"}}}}}}}


# ---------------------------------------------------------------------------------------------- app
def create_app(predictor, limits: Limits | None = None, max_batch: int = 32, max_wait_ms: float = 5.0,
               tokens: TokenFile | None = None, name: str | None = None, output: Output | None = None,
               quota: Quota | None = None, allowed_hosts: Sequence[str] = (), watermark: Watermark | None = None
               ) -> FastAPI:
    """The service of an unlocked ``predictor`` (``LockedModel.unlock(key)``); run it with any ASGI server.

    ``output`` says how rich answers are; ``quota`` is every token's default quota (the tokens file may
    give a token its own), or the quota of all requests together without tokens. Without ``tokens``
    (loopback only) the Host header must name the loopback or one of ``allowed_hosts``; with tokens it is
    checked only when ``allowed_hosts`` is given. ``watermark`` (``watermark.py``, classification only) answers
    its keyed share of images with a wrong class and records them."""
    limits, output = limits or Limits(), output or Output()
    model = predictor.locked
    if watermark is not None and task_type(model.task).per_pixel:
        raise ModelLockError("--watermark: segmentation answers are not watermarked (classification only)")
    metrics = ServiceMetrics()
    batcher = Batcher(_batch_function(predictor), max_batch=max_batch, max_wait_s=max_wait_ms / 1000.0,
                      max_queue=limits.max_queue, max_queue_pixels=limits.max_queue_pixels,
                      max_batch_pixels=limits.max_pixels, on_batch=metrics.observe_batch)
    budget = PixelBudget(limits.max_queue_pixels)
    quotas = Quotas(quota, tokens.quotas if tokens is not None else None)
    metrics.queue_depth.set_function(lambda: batcher.depth)
    metrics.pixels_held.set_function(lambda: budget.held)

    @asynccontextmanager
    async def lifespan(app):
        app.state.decode_limiter = anyio.CapacityLimiter(_DECODE_THREADS)  # made inside the event loop
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="modellock", version=__version__, lifespan=lifespan,
                  description="Predictions of a locked model, unlocked with a key that stays on the server.")
    app.state.batcher, app.state.metrics, app.state.limits = batcher, metrics, limits
    app.state.budget, app.state.quotas = budget, quotas
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, respond=_send_error)
    if tokens is None or allowed_hosts:
        app.add_middleware(HostCheck, allowed=(*LOOPBACK_NAMES, *allowed_hosts), respond=_send_error)
    app.add_middleware(_Observe, metrics=metrics, max_concurrency=limits.max_concurrency)
    caller = _token_check(tokens) if tokens is not None else _local
    info = app.state.info = model_info(model, name, limits, max_batch, max_wait_ms, tokens is not None, output)
    app.state.tokens, app.state.watermark = tokens, watermark
    num_classes = len(model.classes)

    @app.post("/v1/predict", response_model=PredictResponse, responses=_ERRORS,
              openapi_extra=_BODY_DOC, summary="Predict classes (or masks) of one or more images")
    async def predict(request: Request, who: str = Depends(caller)) -> JSONResponse:  # no per-field validation
        try:
            return await asyncio.wait_for(_predict(request, who), limits.timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(504, f"no answer within the request timeout of {limits.timeout_s:g} s") from None

    async def _predict(request: Request, who: str) -> JSONResponse:
        named, top_k, pixels = await _read_request(request, limits)
        top_k = output.top_k_of(top_k, num_classes)
        if not budget.reserve(pixels):
            wait = batcher.retry_after()
            raise RequestError(503, f"the service is busy ({budget.held:,} decoded pixels held, its limit "
                                    f"{budget.limit:,}): try again in {wait} s", {"Retry-After": str(wait)})
        try:
            try:
                quotas.admit(who, len(named))
            except QuotaRefused as e:
                metrics.quota_refusals.labels(who, e.window).inc()
                raise
            metrics.token_images.labels(who).inc(len(named))
            images = await anyio.to_thread.run_sync(read_images, named, limits,
                                                    limiter=request.app.state.decode_limiter)
            try:
                results = await batcher.submit(images)
            except QueueFull as e:
                raise RequestError(503, str(e), {"Retry-After": str(e.retry_after)}) from None
            except ShuttingDown:
                raise RequestError(503, "the service is shutting down", {"Retry-After": "1"}) from None
            except ModelLockError as e:
                raise RequestError(400, str(e)) from None
            if watermark is not None:
                results = await anyio.to_thread.run_sync(watermark.apply, images, results)
        finally:
            budget.release(pixels)
        metrics.images.inc(len(images))
        out = [{"image": label, **output.shape(r, top_k)} for (label, _), r in zip(named, results)]
        return JSONResponse({"task": model.task, "results": out})

    @app.get("/v1/model", responses={401: _ERRORS[401]}, summary="What the model is")
    async def get_model(who: str = Depends(caller)) -> dict:
        q = quotas.quota(who)
        return {**info, "quota": {"images_per_minute": q.per_minute, "images_per_day": q.per_day}}

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Ready for predictions", responses={503: {"model": ErrorResponse}})
    async def readyz():
        if not batcher.running:
            raise RequestError(503, "not ready: starting or shutting down", {"Retry-After": "1"})
        return {"status": "ready", "queue_depth": batcher.depth}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def get_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def model_info(model, name: str | None, limits: Limits, max_batch: int, max_wait_ms: float, auth: bool,
               output: Output | None = None) -> dict:
    """What a client may know: task, classes, input size, editor name, headline scores, limits. Never the key,
    its fingerprint or the names of the wrong keys tried."""
    lock = model.config.get("lock") or {}
    evaluation = {k: v for k, v in (model.config.get("evaluation") or {}).items()
                  if isinstance(v, (int, float, str)) and not k.startswith("wrong_key")}
    return {
        "name": name or (model.path.name if model.path else "model"),
        "task": model.task,
        "classes": model.classes,
        "num_classes": len(model.classes),
        "architecture": model.config["architecture"].get("name"),
        "image_size": model.image_size,
        "editor": lock.get("editor"),
        "editor_version": lock.get("editor_version"),
        "evaluation": evaluation or None,
        "modellock_version": __version__,
        "batching": {"max_batch": max_batch, "max_wait_ms": max_wait_ms},
        "limits": {"max_body_bytes": limits.max_body_bytes, "max_images": limits.max_images,
                   "max_image_bytes": limits.max_image_bytes, "max_pixels": limits.max_pixels,
                   "max_request_pixels": limits.max_request_pixels, "timeout_s": limits.timeout_s,
                   "max_queue": limits.max_queue},
        "output": (output or Output()).describe(len(model.classes)),
        "auth": "bearer" if auth else "none (loopback only)",
    }


# ---------------------------------------------------------------------------------------------- batches
def _batch_function(predictor):
    """Images -> JSON-ready results, one predictor call (one editor call) for the whole batch."""
    model = predictor.locked
    n = len(model.classes)

    if task_type(model.task).per_pixel:
        def run(images: list[np.ndarray]) -> list[dict]:
            return [{"width": int(r["mask"].shape[1]), "height": int(r["mask"].shape[0]),
                     "class_areas": r["class_areas"], "mask_png": _mask_png(r["mask"], n)}
                    for r in predictor.segment(images)]
    else:
        def run(images: list[np.ndarray]) -> list[dict]:
            return predictor.predict(images, top_k=n)
    return run


def _mask_png(mask: np.ndarray, num_classes: int) -> str:
    """A class-index mask as base64 PNG: palette mode (values are indices, colours from the VOC map)."""
    if num_classes <= 256:
        im = Image.fromarray(mask.astype(np.uint8), mode="P")
        im.putpalette(label_palette(num_classes).tobytes())
    else:
        im = Image.fromarray(mask.astype(np.uint16))
    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# ---------------------------------------------------------------------------------------------- requests
async def _read_request(request: Request, limits: Limits) -> tuple[list[tuple[str, bytes]], Any, int]:
    """``[(label, image bytes)]``, the raw ``top_k`` and the pixels of all images (from their headers) of a
    multipart or JSON body, counted (and each image's size checked) before anything is decoded; RequestError
    otherwise. JSON, base64 and the headers are read on a worker thread."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        named, top_k = await _read_multipart(request, limits)
        return named, top_k, sum(await anyio.to_thread.run_sync(read_sizes, named, limits))
    if ctype == "application/json" or ctype.endswith("+json"):
        body = await request.body()
        return await anyio.to_thread.run_sync(_read_json, body, limits)
    raise RequestError(415, "send images as multipart/form-data files or as JSON {\"images\": [base64, ...]}")


def _read_json(body: bytes, limits: Limits):
    named, top_k = parse_json_images(body, limits)
    return named, top_k, sum(read_sizes(named, limits))


async def _read_multipart(request: Request, limits: Limits):
    try:  # the parser stops at max_images + 1 files: counted as they stream in
        form = await request.form(max_files=limits.max_images + 1, max_fields=16)
    except StarletteHTTPException as e:  # the multipart parser's own refusals
        status = 413 if "Too many files" in str(e.detail) else 400
        raise RequestError(status, f"malformed multipart body ({e.detail})") from None
    try:
        files = [(field, value) for field, value in form.multi_items() if isinstance(value, UploadFile)]
        top_k = next((v for field, v in form.multi_items() if field == "top_k" and isinstance(v, str)), None)
        check_count(len(files), limits)
        labels = [(value.filename or field)[:200] for field, value in files]
        for label, (_, value) in zip(labels, files):
            check_encoded_size(value.size or 0, label, limits)
        named = [(label, await value.read()) for label, (_, value) in zip(labels, files)]
    finally:
        await form.close()
    return named, top_k


# ---------------------------------------------------------------------------------------------- auth
async def _local() -> str:
    """The caller of a service without tokens."""
    return LOCAL


def _token_check(tokens: TokenFile):
    bearer = HTTPBearer(auto_error=False, description="A token made by `modellock serve-token add`.")

    async def check(credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> str:
        name = tokens.verify(credentials.credentials if credentials else None)
        if name is None:
            raise RequestError(401, "a valid bearer token is required (Authorization: Bearer TOKEN)",
                               {"WWW-Authenticate": "Bearer"})
        return name

    return check


# ---------------------------------------------------------------------------------------------- errors
def _error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


async def _send_error(scope, send, status: int, message: str) -> None:
    """An error response sent straight from ASGI middleware (before the app has read the body)."""
    response = _error_response(status, message, {"Connection": "close"})
    await response(scope, None, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(_request, e: RequestError):
        return _error_response(e.status, e.message, e.headers)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(_request, _e):
        limit = app.state.limits.max_body_bytes
        return _error_response(413, f"request body over the limit of {limit:,} bytes", {"Connection": "close"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, e: StarletteHTTPException):
        message = e.detail if isinstance(e.detail, str) else "request refused"
        return _error_response(e.status_code, message, getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, e: RequestValidationError):
        first = (e.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error_response(422, f"invalid request: {where or 'body'}: {first.get('msg', 'invalid')}")


class _Observe:
    """ASGI middleware: count requests by route and status code, time them, track those in flight; answer an
    unexpected exception with a plain 500 and log its type and place only (a message could quote a secret,
    an editor's prompt say, and Starlette's own handler would log the whole traceback)."""

    def __init__(self, app, metrics: ServiceMetrics, max_concurrency: int | None = None):
        self.app, self.metrics, self.max_concurrency = app, metrics, max_concurrency
        self.open = 0  # requests being answered, health and metrics excepted

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        status: dict[str, Any] = {"code": 500}
        started = time.perf_counter()

        async def observed_send(message):
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        counted = route not in _ALWAYS_OPEN
        if counted and self.max_concurrency is not None and self.open >= self.max_concurrency:
            await _error_response(503, f"the service is answering {self.open} requests, its limit: try again",
                                  {"Retry-After": "1", "Connection": "close"})(scope, receive, observed_send)
            self.metrics.observe_request(route, scope.get("method", ""), 503, time.perf_counter() - started)
            return
        self.open += counted
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, observed_send)
        except Exception as e:  # noqa: BLE001 - the last line of defence: no traceback to the client or the log
            frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
            where = f" at {frame.filename}:{frame.lineno}" if frame else ""
            log.error("internal error answering %s %s: %s%s", scope.get("method"), path, type(e).__name__, where)
            if not status.get("started"):
                await _error_response(500, "internal error")(scope, receive, send)
                status["code"] = 500
        finally:
            self.open -= counted
            self.metrics.in_flight.dec()
            self.metrics.observe_request(route, scope.get("method", ""), status["code"],
                                         time.perf_counter() - started)
