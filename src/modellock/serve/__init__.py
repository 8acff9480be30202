"""``modellock serve``: predictions of a locked model over HTTP, with the key kept on the server.

- ``app.py``: the FastAPI routes (predict, model, health, readiness, metrics, OpenAPI) and error handling;
- ``batcher.py``: dynamic batching of concurrent requests into one editor call;
- ``auth.py``: the tokens file (hashes only) and the constant-time bearer token check;
- ``limits.py``: body size, images per request, pixels per image (checked before decoding), timeout, queue;
- ``metrics.py``: Prometheus metrics; ``server.py``: loading the model and running uvicorn.

Needs the ``serve`` extra: ``pip install 'modellock[serve]'``.
"""

from .app import create_app
from .auth import TokenFile
from .batcher import Batcher
from .limits import Limits

__all__ = ["create_app", "TokenFile", "Batcher", "Limits"]
