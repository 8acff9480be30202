"""``--watermark DIR``: answer a small keyed share of queries with a wrong class, and record them.

After DAWN (Szyller et al., ACM MM 2021): a student that fits the service's answers learns some of the wrong
ones; an independent model agrees with them at chance only (``ownership/watermark.py`` tests that).

For each decoded image, ``HMAC-SHA256(secret, image_digest(image))`` (``utils/watermark_record.py``: the
image's RGB pixels as decoded, so the same picture sent again in any lossless encoding is the same query): when
its first 8 bytes, as an integer, are below ``rate * 2**64`` the query is watermarked, and the class answered is
one of the other ``K - 1`` classes, picked uniformly by the next 8 bytes. Labels answer that class; top-k and
probabilities swap the probabilities of the model's class and that class, so the answer stays a plausible
distribution. The same image gets the same answer every time. Each watermarked query is recorded (up to
``max_records``; then answers stay watermarked and new ones are not recorded, said once in the log).

The cost: ``rate`` of the owner's users' answers are wrong on purpose (1 % by default).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading

import numpy as np

from ..errors import ModelLockError
from ..utils.watermark_record import WatermarkFolder, image_digest

log = logging.getLogger("modellock.serve")
MAX_RATE = 0.5


class Watermark:
    """The service's watermark: ``select`` says which answer an image gets, ``apply`` changes a batch's results
    and records the watermarked ones."""

    def __init__(self, path: str | os.PathLike, task: str, classes: list[str], rate: float = 0.01,
                 max_records: int = 100_000):
        self.check(rate, max_records)
        if len(classes) < 3:
            raise ModelLockError(f"--watermark: needs a model of at least 3 classes (this one has {len(classes)}: "
                                 "a wrong answer of 2 classes is no secret)")
        self.folder = WatermarkFolder.create(path, task, classes)
        self._secret = self.folder.secret()
        self.rate, self.max_records, self.classes = float(rate), int(max_records), list(classes)
        self.num_classes = len(self.classes)
        self._bound = int(self.rate * 2 ** 64)
        self._lock = threading.Lock()
        self.recorded = self.folder.count()
        self._full_said = False

    @staticmethod
    def check(rate: float, max_records: int) -> None:
        """ModelLockError for a rate outside (0, 0.5] or a negative record cap."""
        if not 0 < rate <= MAX_RATE:
            raise ModelLockError(f"--watermark-rate {rate!r}: must be in (0, {MAX_RATE}]")
        if max_records < 0:
            raise ModelLockError(f"--watermark-max {max_records!r}: must be >= 0")

    def __repr__(self) -> str:  # never the secret
        return f"Watermark({str(self.folder.path)!r}, rate={self.rate:g})"

    def select(self, image: np.ndarray, model_class: int) -> int | None:
        """The wrong class answered for ``image`` when the model says ``model_class``, or None (not watermarked)."""
        mac = hmac.new(self._secret, image_digest(image), hashlib.sha256).digest()
        if int.from_bytes(mac[:8], "big") >= self._bound:
            return None
        j = int.from_bytes(mac[8:16], "big") % (self.num_classes - 1)
        return j if j < model_class else j + 1

    def apply(self, images: list[np.ndarray], results: list[dict]) -> list[dict]:
        """``results`` (``Predictor.predict`` with every class in ``top``) with the watermarked ones changed;
        runs on a worker thread (it writes the record)."""
        out = []
        for image, result in zip(images, results):
            wrong = self.select(image, int(result["label"]))
            if wrong is None:
                out.append(result)
                continue
            out.append(_answer(result, wrong, self.classes))
            self._record(image, wrong, int(result["label"]))
        return out

    def _record(self, image: np.ndarray, wrong: int, model_class: int) -> None:
        with self._lock:
            if self.recorded >= self.max_records:
                if not self._full_said:
                    log.warning("watermark record full (%d queries): answers stay watermarked, new ones are not "
                                "recorded", self.max_records)
                    self._full_said = True
                return
            try:
                self.recorded += self.folder.add(image, wrong, model_class)
            except OSError as e:
                log.error("watermark record: cannot write (%s)", e.strerror or type(e).__name__)


def _answer(result: dict, wrong: int, classes: list[str]) -> dict:
    """The result answering class index ``wrong``: its probability swapped with the model's class's."""
    top = [dict(t) for t in result["top"]]
    names = [t["class"] for t in top]
    wrong_name = classes[wrong]
    if wrong_name not in names or result["class"] not in names:
        raise ModelLockError("watermark: the result does not list every class")
    i, j = names.index(result["class"]), names.index(wrong_name)
    top[i]["probability"], top[j]["probability"] = top[j]["probability"], top[i]["probability"]
    top.sort(key=lambda t: -t["probability"])
    return {**result, "class": wrong_name, "label": wrong, "probability": top[0]["probability"], "top": top}
