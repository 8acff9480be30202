"""Suspects: what ``verify`` asks. A model it can run (white box) or a prediction service (black box).

``load_suspect(spec, evidence)`` takes
- a model folder of this toolkit (``config.json`` + ``model.safetensors``; plain or opened weights);
- a ``.safetensors`` file with ``arch`` (a backbone or segmenter name: ``small-cnn``, ``timm:resnet18``, ...);
  the number of outputs is read from the weights of its output layer;
- ``timm:NAME`` (its published weights, or ``weights``: a .safetensors file) or ``torchvision:NAME`` with
  ``weights``;
- the ``http(s)://`` URL of a prediction service speaking ``modellock serve``'s API (``POST /v1/predict``).

Every suspect answers a list of ``S x S`` uint8 images with per-image class distributions (``N x K'``, the
suspect's own classes) and says what kind of answer it gave (``mode``): ``probs`` (full distributions;
segmentation: the mean over pixels), ``areas`` (segmentation: the share of pixels per predicted class),
``top-k`` or ``label``. A service is asked through a budget of queries (one image, one query), with retries on
429/503 and connection errors that respect ``Retry-After``.
"""

from __future__ import annotations

import abc
import base64
import io
import os
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import ModelLockError
from ..model_folder import LockedModel
from ..nets.backbones import create_backbone, resolve_backbone
from ..nets.heads import head_names
from ..tasks import task_type
from .correlation import label_answers, top_answers

RETRIES = 6
MAX_WAIT_S = 60.0  # a Retry-After longer than this (a quota reset, say) ends the run with a message


class Suspect(abc.ABC):
    """A suspect model: ``answer(images) -> N x K'`` and the ``mode`` of its answers."""

    name: str = "suspect"
    kind: str = "white-box"
    mode: str = "probs"
    queries: int = 0  # images answered so far

    @abc.abstractmethod
    def answer(self, images: list[np.ndarray]) -> np.ndarray:
        """The suspect's answers to ``images``, one row per image (white box: its outputs; black box: its replies)."""


# ----------------------------------------------------------------------------------------------- white box
@torch.inference_mode()
def model_outputs(model: torch.nn.Module, images: list[np.ndarray], transform, task: str, keep: int | None = None,
                  batch_size: int = 128) -> dict[str, np.ndarray]:
    """Per-image class distributions of ``model`` over its first ``keep`` outputs (all when None), by kind of answer
    (the task type's ``answer_distributions``): ``probs`` (softmax; segmentation: its mean over pixels) and, for
    segmentation, ``areas`` (pixels per argmax class)."""
    device = next(model.parameters()).device
    model.eval()
    tt = task_type(task)
    answers: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), batch_size):
        x = torch.stack([transform(a) for a in images[i:i + batch_size]]).to(device)
        out = model(x).float().cpu()
        for mode, a in tt.answer_distributions(out[:, :keep] if keep else out).items():
            answers.setdefault(mode, []).append(a.numpy())
    return {mode: np.concatenate(a).astype(np.float32) for mode, a in answers.items()}


class ModelSuspect(Suspect):
    """A network run here; ``keep`` drops outputs beyond the real classes (a locked output)."""

    kind = "white-box"

    def __init__(self, model: torch.nn.Module, transform, task: str, keep: int | None = None, name: str = "model",
                 mode: str = "probs"):
        self.model, self.transform, self.task, self.keep, self.name, self.mode = model, transform, task, keep, name, mode

    def answer(self, images: list[np.ndarray]) -> np.ndarray:
        out = model_outputs(self.model, images, self.transform, self.task, self.keep)[self.mode]
        self.queries += len(images)
        return out


# ----------------------------------------------------------------------------------------------- black box
class HttpSuspect(Suspect):
    """A prediction service with ``modellock serve``'s API, asked through a query budget.

    ``client`` (an ``httpx.Client``, e.g. FastAPI's ``TestClient``) replaces the network client; ``sleep`` the
    waiting between retries (tests)."""

    kind = "black-box"

    def __init__(self, url: str, token: str | None = None, max_queries: int = 300, timeout_s: float = 60.0,
                 client=None, sleep=time.sleep, classes: list[str] | None = None, task: str = "classification"):
        self.url = url.rstrip("/")
        self.base = self.url[: -len("/v1/predict")] if self.url.endswith("/v1/predict") else self.url
        self.name = self.base
        self.max_queries, self.task, self.sleep = int(max_queries), task, sleep
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = client or httpx.Client(timeout=timeout_s)
        self.classes = list(classes or [])
        self.max_images, self.send_top_k, self.mode, self.waited_s = 32, True, "probs", 0.0
        self._info()

    def _info(self) -> None:
        """The service's classes and per-request image limit, from ``GET /v1/model`` when it answers."""
        try:  # one attempt: a service without this route (or down) is found out by the predictions
            r = self.client.request("GET", self.base + "/v1/model", headers=self.headers)
        except httpx.HTTPError:
            return
        if r.status_code != 200:
            return
        try:
            info = r.json()
        except ValueError:
            return
        if isinstance(info.get("classes"), list) and all(isinstance(c, str) for c in info["classes"]):
            self.classes = list(info["classes"])
        limit = (info.get("limits") or {}).get("max_images")
        if isinstance(limit, int) and limit >= 1:
            self.max_images = min(limit, 64)

    def _request(self, method: str, path: str, **kwargs):
        """One request with retries on 429, 502-504 and connection errors (``Retry-After`` respected)."""
        last = ""
        for attempt in range(RETRIES + 1):
            try:
                r = self.client.request(method, self.base + path, headers=self.headers, **kwargs)
            except httpx.TransportError as e:
                last, wait = f"cannot reach {self.base} ({type(e).__name__})", min(2.0 ** attempt, MAX_WAIT_S)
            else:
                if r.status_code not in (429, 502, 503, 504):
                    return r
                last = f"{self.base}{path}: HTTP {r.status_code} ({_message(r)})"
                wait = _retry_after(r.headers.get("retry-after"), attempt)
                if wait > MAX_WAIT_S:
                    raise ModelLockError(f"{last}: the service asks to wait {wait:.0f} s (a quota?); run verify "
                                         "again later")
            if attempt < RETRIES:
                self.sleep(wait)
                self.waited_s += wait
        raise ModelLockError(f"{last}; gave up after {RETRIES} retries")

    def answer(self, images: list[np.ndarray]) -> np.ndarray:
        if self.queries + len(images) > self.max_queries:
            raise ModelLockError(f"query budget: {self.queries + len(images)} queries needed, --max-queries is "
                                 f"{self.max_queries}")
        results = []
        for i in range(0, len(images), self.max_images):
            results += self._predict(images[i:i + self.max_images])
        return self._distributions(results)

    def _predict(self, images: list[np.ndarray]) -> list[dict]:
        body = {"images": [_png_base64(a) for a in images]}
        if self.send_top_k and self.classes and not task_type(self.task).per_pixel:
            body["top_k"] = len(self.classes)
        r = self._request("POST", "/v1/predict", json=body)
        if r.status_code == 422 and "top_k" in body and "top_k" in _message(r):
            self.send_top_k = False  # a service that fixes what it answers
            body.pop("top_k")
            r = self._request("POST", "/v1/predict", json=body)
        if r.status_code != 200:
            raise ModelLockError(f"{self.base}/v1/predict: HTTP {r.status_code} ({_message(r)})")
        try:
            results = r.json()["results"]
        except (ValueError, KeyError, TypeError):
            raise ModelLockError(f"{self.base}/v1/predict: the answer is not modellock serve's JSON "
                                 "({\"results\": [...]})") from None
        if not isinstance(results, list) or len(results) != len(images):
            raise ModelLockError(f"{self.base}/v1/predict: {len(images)} images sent, "
                                 f"{len(results) if isinstance(results, list) else 'no'} results back")
        self.queries += len(images)
        return results

    # ------------------------------------------------------------------ answers -> distributions
    def _index(self, name) -> int:
        name = str(name)
        if name not in self.classes:
            self.classes.append(name)  # a class the service did not list: its own class set
        return self.classes.index(name)

    def _distributions(self, results: list[dict]) -> np.ndarray:
        parsed = [self._parse(r) for r in results]
        k = len(self.classes)
        kinds = {p[0] for p in parsed}
        if "areas" in kinds:
            self.mode = "areas"
            out = np.zeros((len(parsed), k))
            for row, (_, vec) in zip(out, parsed):
                for j, v in vec.items():
                    row[j] = v
            return out
        if "label" in kinds:
            self.mode = "label"
            return label_answers(np.array([p[1] for p in parsed]), k)
        sizes = [len(p[1]) for p in parsed]
        n_top = min(sizes)
        if n_top >= k:
            self.mode = "probs"
        else:
            self.mode = f"top-{n_top}"
        pairs = [sorted(p[1].items(), key=lambda kv: -kv[1])[:n_top] for p in parsed]
        idx = np.array([[j for j, _ in row] for row in pairs])
        val = np.array([[v for _, v in row] for row in pairs])
        return top_answers(idx, val, k)

    def _parse(self, r: dict) -> tuple[str, object]:
        """``("areas", {j: share})``, ``("dist", {j: p})`` or ``("label", j)`` of one result."""
        if not isinstance(r, dict):
            raise ModelLockError(f"{self.base}/v1/predict: a result is not a JSON object")
        if isinstance(r.get("class_areas"), dict):
            return "areas", {self._index(c): float(v) for c, v in r["class_areas"].items()}
        if isinstance(r.get("mask_png"), str):
            return "areas", _mask_areas(r["mask_png"], self)
        probs = r.get("probabilities")
        if isinstance(probs, dict):
            return "dist", {self._index(c): float(v) for c, v in probs.items()}
        if isinstance(probs, list) and probs and self.classes and len(probs) == len(self.classes):
            return "dist", {j: float(v) for j, v in enumerate(probs)}
        top = r.get("top")
        if isinstance(top, list) and top and all(isinstance(t, dict) and "class" in t and "probability" in t
                                                 for t in top):
            return "dist", {self._index(t["class"]): float(t["probability"]) for t in top}
        if r.get("class") is not None:
            return "label", self._index(r["class"])
        if isinstance(r.get("label"), int) and self.classes:
            return "label", int(r["label"])
        raise ModelLockError(f"{self.base}/v1/predict: a result has no class, probabilities or class areas")


def _mask_areas(text: str, suspect: HttpSuspect) -> dict:
    try:
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))
    except Exception:  # noqa: BLE001 - any decoding failure is the same bad answer
        raise ModelLockError(f"{suspect.base}/v1/predict: a mask_png is not a PNG") from None
    counts = np.bincount(mask.ravel().astype(np.int64))
    for j in range(len(counts)):
        if j >= len(suspect.classes):
            suspect.classes.append(f"class_{j}")
    return {j: float(c / mask.size) for j, c in enumerate(counts) if c}


def _png_base64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _message(r) -> str:
    try:
        body = r.json()
        message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        if isinstance(message, str):
            return message[:200]
        if isinstance(body, dict) and isinstance(body.get("detail"), str):
            return body["detail"][:200]
    except ValueError:
        pass
    return (r.text or r.reason_phrase or "")[:200].strip() or "no message"


def _retry_after(value: str | None, attempt: int) -> float:
    """Seconds to wait: the Retry-After header (seconds or an HTTP date), else 1, 2, 4, ... s."""
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    return min(2.0 ** attempt, MAX_WAIT_S)


# ----------------------------------------------------------------------------------------------- loading
def load_suspect(spec: str, evidence, arch: str | None = None, weights: str | None = None,
                 image_size: int | None = None, token: str | None = None, max_queries: int = 300,
                 device: str | None = None) -> Suspect:
    """The suspect ``spec`` names (see the module docstring), preprocessed like the evidence's model unless it
    carries its own preprocessing (a model folder, a timm model)."""
    spec = str(spec)
    if spec.startswith(("http://", "https://")):
        return HttpSuspect(spec, token=token, max_queries=max_queries, classes=None, task=evidence.task)
    device = device or "cpu"
    task = evidence.task
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folder_suspect(path, evidence, device)
    if spec.startswith(("timm:", "torchvision:")) and not path.exists():
        return _named_suspect(spec, evidence, weights, image_size, device)
    if path.is_file() and path.suffix == ".safetensors":
        if not arch:
            raise ModelLockError(f"{spec}: a .safetensors suspect needs --arch NAME (its architecture, e.g. small-cnn)")
        return _weights_suspect(path, arch, evidence, image_size, device)
    if not path.exists():
        raise ModelLockError(f"{spec}: no such model folder or file (a suspect is a model folder, a .safetensors "
                             "file with --arch, timm:NAME, torchvision:NAME with --weights, or an http(s) URL)")
    raise ModelLockError(f"{spec}: not a model folder, .safetensors file, timm:/torchvision: name or http(s) URL")


def _folder_suspect(path: Path, evidence, device: str) -> Suspect:
    model = LockedModel.from_pretrained(path, device=device)
    if model.is_sealed:
        raise ModelLockError(f"{path}: sealed weights (they load only with the key); verify the opened weights, "
                             "e.g. a copy saved with --no-seal")
    if model.task != evidence.task:
        raise ModelLockError(f"{path}: a {model.task} model; the evidence is for {evidence.task}")
    return ModelSuspect(model.model, model.inference_transform(), model.task, model.config["num_classes"],
                        name=str(path), mode="probs")


def _weights_suspect(path: Path, arch: str, evidence, image_size: int | None, device: str) -> Suspect:
    task = task_type(evidence.task)
    size = image_size or evidence.image_size
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ModelLockError(f"{path}: not a readable .safetensors file ({str(e).splitlines()[0][:120]})") from None
    try:
        probe = task.create_model(arch, evidence.num_classes, size)
        heads = head_names(probe, evidence.num_classes)
        outputs = int(state[heads[0] + ".weight"].shape[0])
        model = task.create_model(arch, outputs, size) if outputs != evidence.num_classes else probe
        model.load_state_dict(state, strict=True)
    except KeyError:
        raise ModelLockError(f"{path}: no weights of {arch}'s output layer; is --arch right?") from None
    except RuntimeError as e:
        raise ModelLockError(f"{path}: the weights do not fit --arch {arch} "
                             f"({(str(e).splitlines() or ['mismatch'])[0][:160]})") from None
    keep = evidence.num_classes if outputs == evidence.num_classes + 1 else None  # a locked output
    p = evidence.meta["preprocessing"]
    transform = task.inference_transform(size, p["mean"], p["std"])
    return ModelSuspect(model.to(device), transform, evidence.task, keep, name=str(path))


def _named_suspect(spec: str, evidence, weights: str | None, image_size: int | None, device: str) -> Suspect:
    task = task_type(evidence.task)
    if not task.published_classifiers:
        raise ModelLockError(f"{spec}: timm/torchvision names are classifiers; the evidence is for {evidence.task}")
    source, arch = resolve_backbone(spec)
    mean, std, size, classes = evidence.meta["preprocessing"]["mean"], evidence.meta["preprocessing"]["std"], None, 1000
    if source == "timm":
        # lazy: timm, only for timm backbones
        import timm

        cfg = timm.get_pretrained_cfg(arch)
        if cfg is not None:
            mean, std = list(cfg.mean), list(cfg.std)
            size, classes = int(cfg.input_size[-1]), int(cfg.num_classes or 1000)
    size = image_size or size or evidence.image_size
    if weights:
        try:
            state = load_file(weights)
        except Exception as e:  # noqa: BLE001 - unreadable file: one line
            raise ModelLockError(f"{weights}: not a readable .safetensors file ({type(e).__name__})") from None
        heads = [k for k in state if k.endswith(".weight") and state[k].dim() == 2]
        classes = int(state[heads[-1]].shape[0]) if heads else classes
    pretrained = weights if weights else (True if source == "timm" else None)
    if pretrained is None:
        raise ModelLockError(f"{spec}: torchvision's published weights are pickled; save them as .safetensors and "
                             "give --weights FILE")
    model = create_backbone(spec, classes, size, pretrained)
    transform = task.inference_transform(size, mean, std)
    keep = evidence.num_classes if classes == evidence.num_classes + 1 else None
    return ModelSuspect(model.to(device), transform, evidence.task, keep, name=spec)


def read_token(token_file: str | os.PathLike | None) -> str | None:
    """A bearer token from ``token_file`` (its first line) or ``$MODELLOCK_TOKEN``; never printed."""
    if token_file is None:
        return os.environ.get("MODELLOCK_TOKEN") or None
    try:
        lines = Path(token_file).read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelLockError(f"token file {token_file}: cannot be read ({type(e).__name__})") from None
    if not lines:
        raise ModelLockError(f"token file {token_file}: empty")
    return lines[0]
