"""The watermark folder of ``modellock serve --watermark DIR``: its secret and the record of watermarked queries.

Written by the service (``serve/watermark.py``), read by verification (``ownership/watermark.py``); both use
this module, so neither imports the other. The folder (mode 0700) holds:

- ``watermark.key``: the secret, 32 random bytes (``secrets.token_bytes``), mode 0600, made on first use and
  reused after; it never leaves the folder (no log, response or report);
- ``watermark.json``: the format, task and classes of the model the records were answered by;
- ``records/<sha256 of the image>.png``: one file per watermarked query, mode 0600, written atomically: the
  image as the model got it (decoded RGB), and in its PNG text chunk ``modellock-watermark`` the class answered
  (``answer``, the watermark) and the class the model gave (``model``). A query sent again is one record.

The record is private like a key: it holds the questions that prove a student learnt from the service.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from ..errors import ModelLockError
from .atomic import write_bytes_atomic

FORMAT = "modellock-watermark/1"
KEY_FILE, META_FILE, RECORDS = "watermark.key", "watermark.json", "records"
SECRET_BYTES = 32
CHUNK = "modellock-watermark"


def image_digest(image: np.ndarray) -> bytes:
    """The canonical digest of a decoded image: sha256 of its shape and RGB uint8 pixels. Any lossless encoding of
    the same picture (PNG, BMP, WebP lossless; multipart or base64) gives the same digest; a resize or a lossy
    re-encoding gives another."""
    a = np.ascontiguousarray(image, dtype=np.uint8)
    return hashlib.sha256(f"{FORMAT} {a.shape}".encode() + a.tobytes()).digest()


@dataclass
class Entry:
    """One watermarked query: the image, the class answered (the watermark) and the class the model gave."""

    image: np.ndarray
    answer: int
    model: int


class WatermarkFolder:
    """A watermark folder: ``create`` (the service: made 0700 with a new secret when missing) or ``open``
    (verification: must exist and hold records)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def records(self) -> Path:
        return self.path / RECORDS

    # ------------------------------------------------------------------ the service's side
    @classmethod
    def create(cls, path: str | os.PathLike, task: str, classes: list[str]) -> "WatermarkFolder":
        """The folder for a service of ``task`` answering ``classes``: made (0700) when missing, its secret made
        when missing; refused when it records another model's classes or cannot be written."""
        folder = cls(Path(path).expanduser())
        p = folder.path
        if p.exists() and not p.is_dir():
            raise ModelLockError(f"--watermark {p}: not a folder")
        try:
            p.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(p, 0o700)
            folder.records.mkdir(mode=0o700, exist_ok=True)
            os.chmod(folder.records, 0o700)
        except OSError as e:
            raise ModelLockError(f"--watermark {p}: cannot be made or written ({e.strerror or type(e).__name__})") \
                from None
        meta = {"format": FORMAT, "task": task, "classes": list(classes)}
        meta_path = p / META_FILE
        if meta_path.exists():
            old = folder.meta()
            if old.get("classes") != meta["classes"] or old.get("task") != task:
                raise ModelLockError(f"--watermark {p}: records queries of a model with other classes "
                                     f"({len(old.get('classes') or [])}); give another folder")
        else:
            write_bytes_atomic(json.dumps(meta, indent=1).encode(), meta_path, mode=0o600)
        folder._make_secret()
        return folder

    def _make_secret(self) -> None:
        path = self.path / KEY_FILE
        if path.exists():
            self.secret()  # checked now, not at the first query
            return
        fd, name = tempfile.mkstemp(prefix=".watermark.key.", dir=self.path)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(SECRET_BYTES))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(name, path)  # never replaces a secret another process made meanwhile
            except FileExistsError:
                pass
        finally:
            os.unlink(name)

    def count(self) -> int:
        """Records held."""
        return sum(1 for _ in self.records.glob("*.png")) if self.records.is_dir() else 0

    def add(self, image: np.ndarray, answer: int, model: int) -> bool:
        """Record one watermarked query (atomically, mode 0600); False when it is recorded already."""
        path = self.records / f"{image_digest(image).hex()[:40]}.png"
        if path.exists():
            return False
        info = PngImagePlugin.PngInfo()
        info.add_text(CHUNK, json.dumps({"answer": int(answer), "model": int(model)}))
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG", pnginfo=info)
        write_bytes_atomic(buffer.getvalue(), path, mode=0o600)
        return True

    # ------------------------------------------------------------------ both sides
    def secret(self) -> bytes:
        path = self.path / KEY_FILE
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelLockError(f"watermark folder {self.path}: cannot read {KEY_FILE} "
                                 f"({e.strerror or type(e).__name__})") from None
        if len(data) != SECRET_BYTES:
            raise ModelLockError(f"watermark folder {self.path}: {KEY_FILE} is not a watermark secret "
                                 f"({SECRET_BYTES} bytes)")
        return data

    def meta(self) -> dict:
        path = self.path / META_FILE
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelLockError(f"watermark folder {self.path}: no {META_FILE} (not made by "
                                 "`modellock serve --watermark`)") from None
        except (OSError, ValueError) as e:
            raise ModelLockError(f"watermark folder {self.path}: {META_FILE} is not readable JSON "
                                 f"({type(e).__name__})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("classes"), list):
            raise ModelLockError(f"watermark folder {self.path}: {META_FILE} is not a {FORMAT} description")
        return meta

    # ------------------------------------------------------------------ verification's side
    @classmethod
    def open(cls, path: str | os.PathLike) -> "WatermarkFolder":
        folder = cls(Path(path).expanduser())
        if not folder.path.is_dir():
            raise ModelLockError(f"watermark folder {folder.path}: not found (give the --watermark folder of "
                                 "`modellock serve`)")
        folder.meta()
        return folder

    def entries(self) -> list[Entry]:
        """Every record, in file-name order (the images' digests: an order nobody chose); ModelLockError naming
        the file for one that is not a record."""
        try:
            paths = sorted(self.records.glob("*.png"))
        except OSError as e:
            raise ModelLockError(f"watermark folder {self.path}: cannot list {RECORDS}/ "
                                 f"({e.strerror or type(e).__name__})") from None
        k = len(self.meta()["classes"])
        out = []
        for path in paths:
            try:
                with Image.open(path) as im:
                    fields = json.loads(im.text[CHUNK])
                    image = np.asarray(im.convert("RGB"))
                entry = Entry(image, int(fields["answer"]), int(fields["model"]))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                raise ModelLockError(f"watermark record {path}: not a watermark record (a PNG written by "
                                     "`modellock serve --watermark`)") from None
            if not (0 <= entry.answer < k and 0 <= entry.model < k) or entry.answer == entry.model:
                raise ModelLockError(f"watermark record {path}: classes {entry.answer}/{entry.model} do not fit "
                                     f"the {k} classes of {META_FILE}")
            out.append(entry)
        return out
