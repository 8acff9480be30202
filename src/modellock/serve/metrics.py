"""Prometheus metrics of the service, in a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 - re-exported for the /metrics route
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """Requests and errors by code, request latency, batch sizes and times, images, queue depth, decoded pixels
    held; per token (by its name, never the token itself): images admitted and requests refused by a quota."""

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("modellock_requests", "HTTP requests by route, method and status code",
                                ["route", "method", "code"], registry=r)
        self.errors = Counter("modellock_request_errors", "Requests answered with a 4xx or 5xx status, by code",
                              ["code"], registry=r)
        self.latency = Histogram("modellock_request_latency_seconds", "Time from request to response, by route",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("modellock_requests_in_flight", "Requests being answered", registry=r)
        self.images = Counter("modellock_images", "Images predicted", registry=r)
        self.batch_size = Histogram("modellock_batch_size", "Images per batch (one editor call each)",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("modellock_batch_seconds", "Time to edit and predict one batch",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("modellock_queue_depth", "Images waiting for a batch", registry=r)
        self.pixels_held = Gauge("modellock_pixels_held", "Decoded pixels held by requests (decoding, waiting, "
                                 "in a batch)", registry=r)
        self.token_images = Counter("modellock_token_images", "Images admitted, by token name (local: no tokens)",
                                    ["token"], registry=r)
        self.quota_refusals = Counter("modellock_token_quota_refusals", "Requests refused by a token's quota, by "
                                      "token name and window", ["token", "window"], registry=r)

    def observe_request(self, route: str, method: str, code: int, seconds: float) -> None:
        self.requests.labels(route, method, str(code)).inc()
        if code >= 400:
            self.errors.labels(str(code)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
