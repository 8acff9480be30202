"""The locked model folder and its predictors.

A folder holds the weights, ``config.json`` (architecture, classes, preprocessing, editor name, key fingerprint,
recipe, weights hash, library versions) and a ``README.md`` model card. Never the key, nor anything that names or
narrows it. The weights are either

- ``model.safetensors``: plain (no pickle), for unlocked models and locks made with ``--no-seal``; or
- ``model.sealed``: **sealed** (the default for a lock): the safetensors bytes encrypted with AES-256-GCM under a
  key derived from the key file (scrypt, a random salt per write; see ``modellock.keys.seal``), bound to the config
  fields that describe the model (``SEALED_FIELDS``). It is not a safetensors file: nothing loads without the key.

``LockedModel.from_pretrained`` reads a local folder or a Hugging Face hub repo; on a sealed folder it gives the
config and classes, and ``open(key)`` (or ``unlock(key)``, or ``from_pretrained(folder, key=key)``) the weights.
``.unlock(key)`` checks the key against the fingerprint and returns a predictor that edits every input with the
key before the model sees it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import torch
from safetensors.torch import load, load_file, save

from ..editors import editor_class
from ..errors import ModelLockError, WrongKeyError
from ..keys.seal import SCHEME, Sealer, read_sealed, write_sealed
from ..tasks import task_type
from ..utils.atomic import write_bytes_atomic
from ..utils.results_json import rounded
from .card import render_card
from .config import (CARD, CONFIG, SEALED, WEIGHTS, WRONG_KEY, library_versions, read_config, sealed_context,
                     write_config)
from .predictor import Predictor
from .stored import stored_attack_summary, stored_evaluation


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def holds_model(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a model's weights, plain or sealed."""
    return any((Path(folder) / name).is_file() for name in (WEIGHTS, SEALED))


class LockedModel:
    """A classifier and its config; locked when ``config['lock']`` holds a fingerprint; sealed when its weights
    are stored sealed and not yet opened (``model`` then raises: ``open(key)`` gives the network)."""

    def __init__(self, model: torch.nn.Module | None, config: dict, path: Path | None = None):
        self._model = model.eval() if model is not None else None
        self.config, self.path = config, path
        self._opened: tuple[bytes, LockedModel] | None = None  # (digest of the key, opened model) once opened
        self._skeleton: torch.nn.Module | None = None  # a sealed model: the architecture the weights go into
        self._device: str | None = None

    @property
    def model(self) -> torch.nn.Module:
        """The network; ModelLockError on a sealed model (its weights need the key)."""
        if self._model is None:
            raise ModelLockError(f"{self.path or 'this model'}: the weights are sealed; they need the key "
                                 "(LockedModel.open(key) or unlock(key); on the command line --key)")
        return self._model

    @model.setter
    def model(self, model: torch.nn.Module) -> None:
        self._model = model

    # ------------------------------------------------------------------ properties
    @property
    def classes(self) -> list[str]:
        """The real classes (without the locked output)."""
        return list(self.config["classes"][: self.config["num_classes"]])

    @property
    def output_names(self) -> list[str]:
        return list(self.config["classes"])

    @property
    def locked_class(self) -> int | None:
        return self.config.get("locked_class")

    @property
    def is_locked(self) -> bool:
        return bool(self.config.get("lock"))

    @property
    def image_size(self) -> int:
        return int(self.config["preprocessing"]["image_size"])

    @property
    def task(self) -> str:
        return self.config.get("task", "classification")

    @property
    def ignore_index(self) -> int:
        return int(self.config.get("ignore_index", 255))

    def transform(self, train: bool = False):
        """The model's preprocessing: classification image -> tensor; segmentation (image, mask) -> pair."""
        p = self.config["preprocessing"]
        return task_type(self.task).transform(p["image_size"], train, True, p["mean"], p["std"], self.ignore_index)

    def inference_transform(self):
        """Image alone -> input tensor."""
        p = self.config["preprocessing"]
        return task_type(self.task).inference_transform(p["image_size"], p["mean"], p["std"])

    # ------------------------------------------------------------------ files
    def save_pretrained(self, folder: str | os.PathLike, card: str | None = None, seal_key=None) -> Path:
        """Write weights, config (with the weights' sha256) and the model card, each atomically.

        With ``seal_key`` (a locked model only) the weights are written sealed (``model.sealed``) and this object
        becomes the folder's opened weights (``opened``). Without it they are written plain (``model.safetensors``);
        the config then drops any seal record."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        data = save(state, metadata={"format": "pt"})
        if seal_key is not None:
            if not self.is_locked:
                raise ModelLockError("only a locked model is sealed (its key seals it)")
            self.check_key(seal_key)  # sealed with any other key, the folder would open with none
            self.config["lock"] = {**self.config["lock"], "seal": {"scheme": SCHEME, "file": SEALED}}
            write_sealed(folder / SEALED, data, Sealer(seal_key), sealed_context(self.config))
            written, stale = SEALED, WEIGHTS
        else:
            if (self.config.get("lock") or {}).get("seal"):  # an opened model written plain: a new config
                self.config = {**self.config, "lock": {k: v for k, v in self.config["lock"].items() if k != "seal"}}
            write_bytes_atomic(data, folder / WEIGHTS)
            written, stale = WEIGHTS, SEALED
        self.config["weights_sha256"] = _sha256(folder / written)
        self.config.setdefault("versions", library_versions())
        write_config(self.config, folder)
        write_bytes_atomic((card or render_card(self.config)).encode(), folder / CARD)
        (folder / stale).unlink(missing_ok=True)
        self.path = folder
        return folder

    def save_evaluation(self, result: dict) -> None:
        """Record an evaluation in config.json and the model card (the weights are untouched); wrong keys under
        neutral labels (``stored_evaluation``)."""
        self.config["evaluation"] = rounded(stored_evaluation(result))
        self._write_config()

    def save_attack_summary(self, summary: dict, settings: dict | None = None, attack_names=()) -> None:
        """Record an attack suite's summary (worst case undone, fine-tune gain) in config.json and the card, without
        the settings or prompts that name what was tried (``stored_attack_summary``; ``attack_names``: the
        registered attacks, ``modellock.attacks.available_attacks()``: the only text kept as an attack's name)."""
        self.config["attack_summary"] = rounded(stored_attack_summary(summary, settings, attack_names))
        self._write_config()

    def _write_config(self) -> None:
        write_config(self.config, self.path)
        write_bytes_atomic(render_card(self.config).encode(), self.path / CARD)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | None = None, key=None) -> "LockedModel":
        """Load a model folder (or a hub repo id holding one); verify the weights' hash. A sealed folder gives a
        sealed model (config, classes; ``open(key)`` for the weights), or with ``key`` its opened weights."""
        folder = Path(path)
        if not folder.is_dir():
            folder = _download(str(path))
        config = read_config(folder)
        sealed = bool((config.get("lock") or {}).get("seal"))
        weights = folder / (SEALED if sealed else WEIGHTS)
        if not weights.is_file():
            raise ModelLockError(f"{folder}: not a model folder (missing {weights.name})")
        spec = config["architecture"]
        size, arch_size = config["preprocessing"]["image_size"], spec.get("image_size")
        if size != arch_size:
            raise ModelLockError(f"{folder / CONFIG}: preprocessing image_size {size!r} does not match the "
                                 f"architecture's image_size {arch_size!r}")
        if _sha256(weights) != config.get("weights_sha256"):
            raise ModelLockError(f"{weights}: sha256 does not match config.json (tampered or corrupt)")
        try:
            model = task_type(config.get("task")).model_from_spec(spec)
        except (TypeError, ValueError, KeyError, RuntimeError) as e:
            raise ModelLockError(f"{folder / CONFIG}: the architecture cannot be built ({type(e).__name__}: "
                                 f"{str(e)[:200]})") from None
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if sealed:
            locked = cls(None, config, folder)
            locked._skeleton, locked._device = model, device
            return locked.open(key) if key is not None else locked
        _load_state(model, lambda: load_file(str(weights)), weights)
        return cls(_to_device(model, device), config, folder)

    # ------------------------------------------------------------------ predictors
    @property
    def is_sealed(self) -> bool:
        """Weights stored sealed (``modellock.keys.seal``) and not in memory: only ``open(key)`` gives the network."""
        return bool((self.config.get("lock") or {}).get("seal")) and self._model is None

    @property
    def opened(self) -> bool:
        """True for the opened weights of a sealed model (what ``open(key)`` returns, and ``lock_model``)."""
        return bool((self.config.get("lock") or {}).get("seal")) and self._model is not None

    def check_key(self, key) -> None:
        """WrongKeyError unless ``key`` is the one this model was locked with (its fingerprint)."""
        lock = self.config.get("lock")
        if not lock:
            raise ModelLockError("this model is not locked; predict without a key")
        if key.editor != lock.get("editor") or not key.matches(lock.get("fingerprint", "")):
            raise WrongKeyError(WRONG_KEY)

    def open(self, key) -> "LockedModel":
        """The opened weights: the locked network in plain form, as the key holder runs it. A model stored plain
        (or already opened) is returned as it is. Sealed: WrongKeyError (``the key does not open this model``) for
        any other key, SealError when the file or the config fields bound to it were changed. Evaluation and
        attacks measure the lock on the opened weights; any key (a wrong one included) can then be applied to
        them through ``predictor(key)``."""
        if not self.is_sealed:
            return self
        ident = hashlib.sha256(key.canonical()).digest()
        if self._opened is not None and hmac.compare_digest(self._opened[0], ident):
            return self._opened[1]
        self.check_key(key)
        path = self.path / SEALED  # the scheme was checked with the config (check_config)
        data = read_sealed(path, Sealer(key), sealed_context(self.config))
        _load_state(self._skeleton, lambda: load(data), path)
        opened = LockedModel(_to_device(self._skeleton, self._device or "cpu"), self.config, self.path)
        self._skeleton, self._opened = None, (ident, opened)
        return opened

    def with_key(self, key) -> "LockedModel":
        """The model a predictor with ``key`` runs: a sealed model opened by ``key`` (WrongKeyError for any other
        key); a plain or opened model as it is (so a wrong key applied to opened weights measures the lock)."""
        if key is None or not self.is_sealed:
            return self
        return self.open(key)

    def unlock(self, key, device: str | None = None, batch_size: int | None = None) -> "Predictor":
        """A predictor that edits inputs with ``key``; WrongKeyError (``the key does not open this model``) when
        the key does not match."""
        if self.is_sealed:
            opened = self.open(key)
        else:
            self.check_key(key)
            opened = self
        version, lock = editor_class(key.editor).version, self.config["lock"]
        if lock.get("editor_version", 1) != version:
            raise ModelLockError(f"this model was locked with editor {key.editor!r} version "
                                 f"{lock.get('editor_version', 1)}; this modellock has version {version}")
        return Predictor(opened, key, device=device, batch_size=batch_size)

    def predictor(self, key=None, device: str | None = None, batch_size: int | None = None) -> "Predictor":
        """A predictor with any key (not checked: wrong-key evaluation, attacks) or none (locked behaviour). On a
        sealed model only its own key gives one: open it first to apply other keys."""
        return Predictor(self, key, device=device, batch_size=batch_size)


def _load_state(model: torch.nn.Module, read, where: Path) -> None:
    """Load the state ``read()`` gives into ``model``; one ModelLockError naming ``where`` when it does not fit."""
    try:
        model.load_state_dict(read(), strict=True)
    except Exception as e:  # noqa: BLE001 - safetensors' SafetensorError, torch's RuntimeError, OSError
        raise ModelLockError(f"{where}: unreadable, or weights do not fit the architecture in "
                             f"config.json ({(str(e).splitlines() or [type(e).__name__])[0][:200]})") from None


def _to_device(model: torch.nn.Module, device: str) -> torch.nn.Module:
    try:
        return model.to(device)
    except (RuntimeError, AssertionError) as e:  # no such device, no driver, torch built without CUDA
        raise ModelLockError(f"device {device!r}: {str(e).splitlines()[0]}") from None


def _download(repo_id: str) -> Path:
    if "/" not in repo_id:  # a mistyped folder, not a hub id (``user/name``): say so without asking the hub
        raise ModelLockError(f"{repo_id}: no such model folder (a hub repo id has the form user/name)")
    try:
        # lazy: huggingface_hub, only for a hub download
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=[CONFIG, WEIGHTS, SEALED, CARD]))
    except Exception as e:  # noqa: BLE001 - hub errors are many; the message is what matters
        raise ModelLockError(f"{repo_id}: not a local folder, and not loadable from the hub "
                             f"({type(e).__name__})") from None
