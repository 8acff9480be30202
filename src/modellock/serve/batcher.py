"""Dynamic batching: images of concurrent requests edited and predicted together, in one call.

Requests put their images in one bounded queue. A single worker takes the oldest image, waits at most
``max_wait_s`` after that image arrived for more (or none, when a batch is already full), and hands up to
``max_batch`` images to ``run_batch`` in one call on its own thread: for a predictor that is one editor
call and one model forward for the whole batch. While a batch runs, new images queue up and form the
next one, so batches grow with the load (Triton's dynamic batcher and BentoML's adaptive batching work
alike). An image's result does not depend on its batch: the editors edit each image independently and the
model runs in eval mode; ``tests/test_serve.py`` checks it for the CPU and the diffusion editor.

The queue is bounded by images and by pixels: ``submit`` raises ``QueueFull`` (with a retry estimate)
rather than letting memory grow. When a batch fails, its images are run one by one, so a bad image fails
alone. A cancelled request (timed out, disconnected) leaves the queue unrun.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np


class QueueFull(Exception):
    """The queue holds as much as it may; ``retry_after`` is a guess, in whole seconds, of when it has room."""

    def __init__(self, retry_after: int):
        super().__init__(f"the service is busy: try again in {retry_after} s")
        self.retry_after = retry_after


class ShuttingDown(Exception):
    pass


@dataclass(eq=False)
class _Item:
    image: np.ndarray
    future: asyncio.Future
    arrived: float
    pixels: int = field(init=False)

    def __post_init__(self):
        self.pixels = int(self.image.shape[0] * self.image.shape[1])


class Batcher:
    """Collects images from concurrent ``submit`` calls into batches for ``run_batch`` (images -> results)."""

    def __init__(self, run_batch: Callable[[list[np.ndarray]], list], max_batch: int = 32, max_wait_s: float = 0.005,
                 max_queue: int = 256, max_queue_pixels: int | None = None, max_batch_pixels: int | None = None,
                 on_batch: Callable[[int, float], None] | None = None):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_s >= 0")
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, max_batch, max_wait_s
        self.max_queue, self.max_queue_pixels, self.max_batch_pixels = max_queue, max_queue_pixels, max_batch_pixels
        self.on_batch = on_batch  # called with (batch size, seconds) after each batch, e.g. for metrics
        self._queue: deque[_Item] = deque()
        self._queued_pixels = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._seconds_per_image = 0.0  # moving average, for Retry-After

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    @property
    def depth(self) -> int:
        """Images waiting (not yet in a running batch)."""
        return len(self._queue)

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modellock-batch")
        self._task = asyncio.get_running_loop().create_task(self._work(), name="modellock-batcher")

    async def stop(self) -> None:
        """Refuse new images, finish those queued, then stop the worker."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ requests
    async def submit(self, images: Sequence[np.ndarray]) -> list:
        """The results of ``images``, in order, once their batches have run; an image that failed raises."""
        if not self.running:
            raise ShuttingDown("the service is shutting down")
        pixels = sum(int(a.shape[0] * a.shape[1]) for a in images)
        too_many = len(self._queue) + len(images) > self.max_queue
        too_big = (self.max_queue_pixels is not None and bool(self._queue)
                   and self._queued_pixels + pixels > self.max_queue_pixels)
        if too_many or too_big:
            raise QueueFull(self.retry_after())
        loop = asyncio.get_running_loop()
        now = loop.time()
        items = [_Item(a, loop.create_future(), now) for a in images]
        self._queue.extend(items)
        self._queued_pixels += pixels
        self._wakeup.set()
        try:
            return await asyncio.gather(*(it.future for it in items))
        finally:
            for it in items:  # a cancelled request (timed out, disconnected): its waiting images leave the queue
                if it.future.cancel() or it.future.cancelled():
                    self._drop(it)

    def _drop(self, item: _Item) -> None:
        try:
            self._queue.remove(item)
        except ValueError:  # already taken into a batch: its result is dropped
            return
        self._queued_pixels -= item.pixels

    def retry_after(self) -> int:
        """Whole seconds, at least 1, until the images queued now have run (a moving average guess)."""
        backlog = len(self._queue) * max(self._seconds_per_image, 0.001)
        return max(1, math.ceil(backlog))

    # ------------------------------------------------------------------ worker
    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._queue[0].arrived + self.max_wait_s
            while len(self._queue) < self.max_batch and not self._closing and not self._batch_pixels_full():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = self._take()
            if not batch:
                continue
            started = time.perf_counter()
            results = await loop.run_in_executor(self._executor, self._run, [it.image for it in batch])
            seconds = time.perf_counter() - started
            self._seconds_per_image = 0.8 * self._seconds_per_image + 0.2 * seconds / len(batch)
            for it, result in zip(batch, results):
                if it.future.done():
                    continue
                if isinstance(result, BaseException):
                    it.future.set_exception(result)
                else:
                    it.future.set_result(result)
            if self.on_batch is not None:
                self.on_batch(len(batch), seconds)

    def _batch_pixels_full(self) -> bool:
        if self.max_batch_pixels is None:
            return False
        return sum(it.pixels for it in list(self._queue)[: self.max_batch]) >= self.max_batch_pixels

    def _take(self) -> list[_Item]:
        """Up to ``max_batch`` queued images (and ``max_batch_pixels`` pixels, one image at least), oldest first."""
        batch, pixels = [], 0
        while self._queue and len(batch) < self.max_batch:
            it = self._queue[0]
            if batch and self.max_batch_pixels is not None and pixels + it.pixels > self.max_batch_pixels:
                break
            self._queue.popleft()
            self._queued_pixels -= it.pixels
            if it.future.cancelled():
                continue
            batch.append(it)
            pixels += it.pixels
        return batch

    def _run(self, images: list[np.ndarray]) -> list:
        """``run_batch`` on the whole batch; when it fails, on each image alone, so only a bad image fails."""
        try:
            results = list(self.run_batch(images))
            if len(results) == len(images):
                return results
            error: Exception = RuntimeError(f"run_batch returned {len(results)} results for {len(images)} images")
        except Exception as e:  # noqa: BLE001 - handed to the request of the image, or isolated below
            error = e
        if len(images) == 1:
            return [error]
        return [self._run([image])[0] for image in images]
