"""Per-caller quotas: images per minute and per day, each over a moving window (the ``limits`` package).

A caller is a token's name (or ``local`` for the service without tokens). Its quota is the one its line
in the tokens file gives, the service's defaults (``--images-per-minute``, ``--images-per-day``) where it
gives none. A request is admitted, and its images counted against both windows, before any of them is
decoded; one that does not fit is answered 429 with ``Retry-After`` (when the oldest images in the window
leave it: an estimate for a request of several images), and one larger than a whole quota 413. Counts are
kept in memory, per process: a restart starts them afresh.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerDay, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from .auth import Quota
from .limits import RequestError

LOCAL = "local"  # the caller's name when the service has no tokens


class QuotaRefused(RequestError):
    """A request over a caller's quota; ``window`` is "minute" or "day"."""

    def __init__(self, status: int, message: str, window: str, headers: dict | None = None):
        super().__init__(status, message, headers)
        self.window = window


class Quotas:
    """Admits ``images`` for a caller, or raises QuotaRefused (429, or 413 for more than a whole quota)."""

    def __init__(self, default: Quota | None = None, own: dict[str, Quota] | None = None):
        self.default, self.own = default or Quota(), dict(own or {})
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def quota(self, name: str) -> Quota:
        return self.own.get(name, Quota()).over(self.default)

    def _windows(self, name: str) -> list[tuple[str, object]]:
        q = self.quota(name)
        return ([("minute", RateLimitItemPerMinute(q.per_minute, namespace="modellock"))] if q.per_minute else []) + \
               ([("day", RateLimitItemPerDay(q.per_day, namespace="modellock"))] if q.per_day else [])

    def admit(self, name: str, images: int) -> None:
        """Count ``images`` against ``name``'s windows when they fit in both; QuotaRefused (nothing counted) if not.
        Called from the event loop only, so the test and the hits of one request are not interleaved."""
        windows = self._windows(name)
        for word, item in windows:
            if images > item.amount:
                raise QuotaRefused(413, f"{images} images in one request, over {name}'s quota of {item.amount} "
                                        f"images per {word}", word)
        for word, item in windows:
            if not self._limiter.test(item, name, cost=images):
                reset = self._limiter.get_window_stats(item, name).reset_time
                wait = max(1, math.ceil(reset - time.time()))
                raise QuotaRefused(429, f"{name}'s quota of {item.amount} images per {word} is used: try again in "
                                        f"{wait} s", word, {"Retry-After": str(wait)})
        for _, item in windows:
            self._limiter.hit(item, name, cost=images)
