"""``modellock serve``: predictions of a locked model over HTTP, with the key kept on the server.

- ``app.py``: the FastAPI routes (predict, model, health, readiness, metrics, OpenAPI) and error handling;
- ``batcher.py``: dynamic batching of concurrent requests into one editor call;
- ``auth.py``: the tokens file (hashes and quotas) and the constant-time bearer token check;
- ``limits.py``: body size, images and bytes per request, pixels per image, per request and held in all (read
  from headers, before decoding), timeout, queue; ``quotas.py``: images per minute and per day per token;
- ``hosts.py``: the Host-header allow-list (DNS rebinding); ``answers.py``: how rich answers are (``--output``);
- ``metrics.py``: Prometheus metrics; ``server.py``: loading the model and running uvicorn.

Needs the ``serve`` extra: ``pip install 'modellock[serve]'``.
"""

from .answers import Output
from .app import create_app
from .auth import Quota, TokenFile
from .batcher import Batcher
from .limits import Limits

__all__ = ["create_app", "TokenFile", "Quota", "Output", "Batcher", "Limits"]
