"""Load a locked model for serving, and run the service under uvicorn with a graceful stop."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
from pathlib import Path

import numpy as np

from ..errors import ModelLockError
from ..keys import Key
from ..model_folder import LockedModel
from ..tasks import task_type
from .app import create_app
from .auth import TokenFile
from .hosts import allowed_name
from .limits import Limits
from .watermark import Watermark


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_service(model: str, key_path, tokens_path=None, limits: Limits | None = None, max_batch: int = 32,
                 max_wait_ms: float = 5.0, device: str | None = None, host: str = "127.0.0.1", output=None,
                 quota=None, allowed_hosts=(), watermark: str | os.PathLike | None = None,
                 watermark_rate: float = 0.01, watermark_max: int = 100_000):
    """The app of a model folder unlocked with a key file: refuses a key that does not match the model's
    fingerprint, and a non-loopback ``host`` without tokens. The editor runs once on a small image first,
    so a diffusion pipeline is loaded (or fails to) before the first request. ``output``, ``quota`` and
    ``allowed_hosts``: see ``create_app``; ``watermark``: a folder for ``watermark.Watermark`` (classification
    only), answering ``watermark_rate`` of images with a wrong class and recording up to ``watermark_max``."""
    if max_batch < 1 or max_wait_ms < 0:
        raise ModelLockError("--max-batch must be >= 1 and --max-wait-ms >= 0")
    if watermark is not None:
        Watermark.check(watermark_rate, watermark_max)

    for allowed in allowed_hosts:
        if allowed_name(allowed) is None:
            raise ModelLockError(f"--allowed-host {allowed!r}: expected a host name or address, without a port")
    tokens = TokenFile.load(tokens_path) if tokens_path is not None else None
    if tokens is not None and not len(tokens):
        raise ModelLockError(f"tokens file {tokens_path}: holds no token (add one with `modellock serve-token add`)")
    if tokens is None and not is_loopback(host):
        raise ModelLockError(f"--host {host}: without --tokens the service listens on loopback only "
                             "(127.0.0.1, ::1, localhost); give --tokens FILE to serve other hosts")
    locked = LockedModel.from_pretrained(model, device=device)
    marks = None
    if watermark is not None:
        if task_type(locked.task).per_pixel:
            raise ModelLockError(f"--watermark: {locked.task} answers (a class per pixel) are not watermarked; "
                                 "serve this model without --watermark")
        marks = Watermark(watermark, locked.task, locked.classes, watermark_rate, watermark_max)
    predictor = locked.unlock(Key.load(key_path), device=device, batch_size=max_batch)
    warm = np.full((32, 32, 3), 128, dtype=np.uint8)
    (predictor.segment if task_type(locked.task).per_pixel else predictor.predict)([warm])
    name = Path(str(model)).name or str(model)
    return create_app(predictor, limits, max_batch=max_batch, max_wait_ms=max_wait_ms, tokens=tokens, name=name,
                      output=output, quota=quota, allowed_hosts=allowed_hosts, watermark=marks)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one); ModelLockError when the address cannot be used."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except (OSError, socket.gaierror) as e:
        raise ModelLockError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.set_inheritable(True)
    return sock


def run(app, sock: socket.socket, graceful_s: float, access_log: bool = True, log_level: str = "info") -> None:
    """Serve ``app`` on ``sock`` until SIGTERM or Ctrl-C: then stop accepting, finish the requests in flight
    (``graceful_s`` at most), stop the batcher and return (the command exits 0)."""
    # lazy: uvicorn, only when serving
    import uvicorn

    logger = logging.getLogger("modellock.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    config = uvicorn.Config(app, access_log=access_log, log_level=log_level, timeout_graceful_shutdown=graceful_s,
                            lifespan="on", server_header=False)
    server = uvicorn.Server(config)
    # uvicorn handles SIGTERM/SIGINT itself and, once it has shut down, raises the signal again under the
    # handler that was there before it started. Ignored there, that second signal ends nothing: run
    # returns and the process exits 0 after a graceful stop.
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    logger.info("stopped")
