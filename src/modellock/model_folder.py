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
import json
import math
import os
import platform
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import ModelLockError, WrongKeyError
from .utils.images import ImageInput, as_image_list, is_single_image, read_input_image
from .utils.atomic import write_bytes_atomic

FORMAT = "modellock-model/1"
WEIGHTS, SEALED, CONFIG, CARD = "model.safetensors", "model.sealed", "config.json", "README.md"
# the config fields a sealed weights file is bound to (AEAD associated data): swapping any of them is detected
SEALED_FIELDS = ("format", "task", "architecture", "classes", "num_classes", "locked_class", "preprocessing",
                 "ignore_index", "lock")
WRONG_KEY = "the key does not open this model"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def holds_model(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a model's weights, plain or sealed."""
    return any((Path(folder) / name).is_file() for name in (WEIGHTS, SEALED))


def sealed_context(config: dict) -> bytes:
    """The bytes a sealed weights file is bound to: the ``SEALED_FIELDS`` of its config, canonical JSON."""
    bound = {k: config.get(k) for k in SEALED_FIELDS}
    return json.dumps(bound, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def library_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("modellock", "torch", "torchvision", "timm", "diffusers", "transformers", "accelerate"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


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
        from .tasks import task_type

        p = self.config["preprocessing"]
        return task_type(self.task).transform(p["image_size"], train, True, p["mean"], p["std"], self.ignore_index)

    def inference_transform(self):
        """Image alone -> input tensor."""
        from .tasks import task_type

        p = self.config["preprocessing"]
        return task_type(self.task).inference_transform(p["image_size"], p["mean"], p["std"])

    # ------------------------------------------------------------------ files
    def save_pretrained(self, folder: str | os.PathLike, card: str | None = None, seal_key=None) -> Path:
        """Write weights, config (with the weights' sha256) and the model card, each atomically.

        With ``seal_key`` (a locked model only) the weights are written sealed (``model.sealed``) and this object
        becomes the folder's opened weights (``opened``). Without it they are written plain (``model.safetensors``);
        the config then drops any seal record."""
        from safetensors.torch import save

        from .model_card import render_card

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        data = save(state, metadata={"format": "pt"})
        if seal_key is not None:
            from .keys.seal import SCHEME, Sealer, write_sealed

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
        write_bytes_atomic(json.dumps(self.config, indent=2).encode(), folder / CONFIG)
        write_bytes_atomic((card or render_card(self.config)).encode(), folder / CARD)
        (folder / stale).unlink(missing_ok=True)
        self.path = folder
        return folder

    def save_evaluation(self, result: dict) -> None:
        """Record an evaluation in config.json and the model card (the weights are untouched); wrong keys under
        neutral labels (``stored_evaluation``)."""
        from .utils.results_json import rounded

        self.config["evaluation"] = rounded(stored_evaluation(result))
        self._write_config()

    def save_attack_summary(self, summary: dict, settings: dict | None = None) -> None:
        """Record an attack suite's summary (worst case undone, fine-tune gain) in config.json and the card, without
        the settings or prompts that name what was tried (``stored_attack_summary``)."""
        from .utils.results_json import rounded

        self.config["attack_summary"] = rounded(stored_attack_summary(summary, settings))
        self._write_config()

    def _write_config(self) -> None:
        from .model_card import render_card

        write_bytes_atomic(json.dumps(self.config, indent=2).encode(), self.path / CONFIG)
        write_bytes_atomic(render_card(self.config).encode(), self.path / CARD)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | None = None, key=None) -> "LockedModel":
        """Load a model folder (or a hub repo id holding one); verify the weights' hash. A sealed folder gives a
        sealed model (config, classes; ``open(key)`` for the weights), or with ``key`` its opened weights."""
        from .tasks import task_type

        folder = Path(path)
        if not folder.is_dir():
            folder = _download(str(path))
        if not (folder / CONFIG).is_file():
            raise ModelLockError(f"{folder}: not a model folder (missing {CONFIG})")
        try:
            config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelLockError(f"{folder / CONFIG}: malformed config ({type(e).__name__}: {e})") from None
        _check_config(config, folder / CONFIG)
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
        from safetensors.torch import load_file

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
        from safetensors.torch import load

        from .keys.seal import Sealer, read_sealed

        path = self.path / SEALED  # the scheme was checked with the config (_check_config)
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
        from .editors import editor_class

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


def stored_evaluation(result: dict) -> dict:
    """An evaluation as a model folder keeps it: every wrong key under a neutral label (``wrong key 1``, ...) in
    every field and text, since a wrong key's name (``prompt 'with oil pastel'``: a pool prompt that is not the
    key) narrows the key."""
    names: list[str] = []
    for field, value in result.items():
        if field.startswith("wrong_key") and isinstance(value, dict):
            names += [n for n in value if n not in names]
    labels = {n: f"wrong key {i}" for i, n in enumerate(names, 1)}

    def walk(x):
        if isinstance(x, str):
            for name in sorted(labels, key=len, reverse=True):
                x = x.replace(name, labels[name])
            return x
        if isinstance(x, dict):
            return {walk(k): walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        return x

    return walk(result)


# what an attack summary keeps as text in a model folder: the attack's registry name; attack settings keep numbers
# and these names only (never a prompt tried, nor a diffusion model's id)
_SUMMARY_TEXT = ("worst_case_attack", "worst_gain_attack")  # attack names, checked against the registry
_SUMMARY_FIGURES = ("worst_gain_over_scratch", "worst_case_undone")  # what ``fails`` may name
_SETTINGS_TEXT = ("budget", "attacker_settings", "editor")


def stored_attack_summary(summary: dict, settings: dict | None = None) -> dict:
    """An attack summary as a model folder keeps it: the figures (numbers, lists of numbers, numbers by attack
    name), the worst attack's name and the one-line verdict without the setting it names (a guessed prompt, a
    diffusion model); settings as numbers."""
    from .attacks import available_attacks

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def plain(v) -> bool:
        return v is None or isinstance(v, bool) or number(v) or (isinstance(v, list) and all(map(number, v))) or (
            isinstance(v, dict) and all(k in available_attacks() and (x is None or number(x)) for k, x in v.items()))

    out = {k: v for k, v in summary.items() if plain(v) or (k in _SUMMARY_TEXT and v in available_attacks())}
    if isinstance(summary.get("fails"), list) and all(f in _SUMMARY_FIGURES for f in summary["fails"]):
        out["fails"] = list(summary["fails"])
    line, setting = summary.get("line"), summary.get("worst_case_setting")
    if isinstance(line, str):
        out["line"] = line.replace(setting, "its best setting") if isinstance(setting, str) and setting else line
    kept = {k: v for k, v in (settings or {}).items() if plain(v) or (k in _SETTINGS_TEXT and isinstance(v, str))}
    return {**out, **({"settings": kept} if kept else {})}


def _check_config(config, where: Path) -> None:
    """ModelLockError naming the first field of a config.json that a model cannot be built or used from."""
    def need(ok: bool, field: str, what: str) -> None:
        if not ok:
            raise ModelLockError(f"{where}: field '{field}' {what}")

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def numbers(v, n: int) -> bool:
        return isinstance(v, list) and len(v) == n and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)

    need(isinstance(config, dict), "(top level)", "must be a JSON object")
    need(config.get("format") == FORMAT, "format", f"must be {FORMAT!r} (a modellock model folder)")
    arch = config.get("architecture")
    need(isinstance(arch, dict) and isinstance(arch.get("name"), str), "architecture", "must name the architecture")
    classes = config.get("classes")
    need(isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes), "classes",
         "must be a list of class names")
    n = config.get("num_classes")
    need(is_int(n) and 1 <= n <= len(classes), "num_classes", f"must be an integer from 1 to {len(classes)}")
    need(arch.get("num_classes") == len(classes), "architecture.num_classes",
         f"must equal the number of outputs in 'classes' ({len(classes)})")
    locked = config.get("locked_class")
    need(locked is None or (is_int(locked) and n <= locked < len(classes)), "locked_class",
         f"must be null or an output index from {n} to {len(classes) - 1}")
    p = config.get("preprocessing")
    need(isinstance(p, dict), "preprocessing", "must be an object")
    need(is_int(p.get("image_size")) and 1 <= p["image_size"] <= 8192, "preprocessing.image_size",
         "must be an integer from 1 to 8192")
    need(numbers(p.get("mean"), 3), "preprocessing.mean", "must be a list of 3 numbers")
    need(numbers(p.get("std"), 3) and all(x > 0 for x in p["std"]), "preprocessing.std",
         "must be a list of 3 positive numbers")
    need(config.get("task") in (None, "classification", "segmentation"), "task",
         "must be classification or segmentation")
    need(is_int(config.get("ignore_index", 255)), "ignore_index", "must be an integer")
    lock = config.get("lock")
    need(lock is None or (isinstance(lock, dict) and (not lock or (isinstance(lock.get("editor"), str)
         and isinstance(lock.get("fingerprint"), str)))), "lock", "must be null or hold 'editor' and 'fingerprint'")
    if lock:
        from .keys.fingerprint import parse_fingerprint

        parse_fingerprint(lock["fingerprint"], f"{where}: field 'lock.fingerprint'")  # bounded scrypt parameters
        seal = lock.get("seal")
        need(seal is None or (isinstance(seal, dict) and isinstance(seal.get("scheme"), str)), "lock.seal",
             "must be null or name its scheme")
        if seal:
            from .keys.seal import OLD_SCHEMES, SCHEME, old_scheme_message

            if seal["scheme"] in OLD_SCHEMES:
                raise ModelLockError(old_scheme_message(where.parent, seal["scheme"]))
            need(seal["scheme"] == SCHEME, "lock.seal.scheme", f"must be {SCHEME!r}, got {seal['scheme']!r}")
            need(seal.get("file", SEALED) == SEALED, "lock.seal.file", f"must be {SEALED!r}")


def _download(repo_id: str) -> Path:
    if "/" not in repo_id:  # a mistyped folder, not a hub id (``user/name``): say so without asking the hub
        raise ModelLockError(f"{repo_id}: no such model folder (a hub repo id has the form user/name)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=[CONFIG, WEIGHTS, SEALED, CARD]))
    except Exception as e:  # noqa: BLE001 - hub errors are many; the message is what matters
        raise ModelLockError(f"{repo_id}: not a local folder, and not loadable from the hub "
                             f"({type(e).__name__})") from None


class Predictor:
    """Edits inputs with a key (when given), preprocesses, and runs the model.

    Inputs may be file paths (``str`` or ``pathlib.Path``), PIL images or HxWxC arrays, one alone or a
    list; ``predict`` and ``segment`` answer a single input with one result and a list with a list. A
    large input is shrunk to the model's working size before it is edited (see ``images.read_input_image``).
    """

    def __init__(self, locked: LockedModel, key=None, device: str | None = None, batch_size: int | None = None):
        from .editors import get_editor, resolve_key
        from .tasks import task_type

        self.locked, self.key = locked.with_key(key), key
        model = self.locked.model  # a sealed model without its key stops here: the weights need the key
        if key is not None:
            key = resolve_key(key, model, locked.image_size)
        self.editor = get_editor(key, device=device, batch_size=batch_size) if key is not None else None
        self._transform = locked.inference_transform()
        self.short_side = task_type(locked.task).inference_short_side(locked.image_size)

    def read(self, images: ImageInput | Sequence[ImageInput]) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
        """The inputs as uint8 RGB arrays shrunk to the working size, and each input's own (height, width)."""
        pairs = [read_input_image(im, self.short_side) for im in as_image_list(images)]
        return [a for a, _ in pairs], [size for _, size in pairs]

    def edit(self, images: ImageInput | Sequence[ImageInput]) -> list[np.ndarray]:
        """The inputs as the model sees them before preprocessing: edited with the key (if any)."""
        arrays, _ = self.read(images)
        return self.editor.edit(arrays) if self.editor is not None else arrays

    @torch.inference_mode()
    def logits(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 256,
               edited: bool = False) -> torch.Tensor:
        """Model outputs for ``images`` (edited with the key first, unless ``edited``)."""
        arrays = self.read(images)[0] if edited else self.edit(images)
        device = next(self.locked.model.parameters()).device
        out = []
        for i in range(0, len(arrays), batch_size):
            x = torch.stack([self._transform(a) for a in arrays[i:i + batch_size]])
            out.append(self.locked.model(x.to(device)).float().cpu())
        return torch.cat(out) if out else torch.empty(0, len(self.locked.output_names))

    def predict(self, images: ImageInput | Sequence[ImageInput], top_k: int = 3) -> list[dict] | dict:
        """Per image: classification: class, probability and the top-k; segmentation: see ``segment``.

        With a key the locked output is dropped.
        """
        if self.locked.task == "segmentation":
            return self.segment(images)
        logits = self.logits(images)
        names = self.locked.output_names
        if self.key is not None and self.locked.locked_class is not None:
            logits, names = logits[:, : self.locked.config["num_classes"]], names[: self.locked.config["num_classes"]]
        probs = logits.softmax(dim=1)
        results = []
        for p in probs:
            top = torch.topk(p, min(top_k, len(names)))
            results.append({
                "class": names[int(top.indices[0])], "label": int(top.indices[0]), "probability": float(top.values[0]),
                "top": [{"class": names[int(i)], "probability": float(v)} for v, i in zip(top.values, top.indices)],
            })
        return _like_input(images, results)

    def segment(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 64) -> list[dict] | dict:
        """Per image: ``mask`` (HxW int64 class indices at the image's own size) and ``class_areas``
        (share of the image per predicted class, largest first). With a key the locked output is dropped."""
        arrays, sizes = self.read(images)
        edited = self.editor.edit(arrays) if self.editor is not None else arrays
        c = self.locked.config["num_classes"]
        names = self.locked.output_names
        keep = c if self.key is not None else len(names)
        results = []
        for i in range(0, len(edited), batch_size):
            logits = self.logits(edited[i:i + batch_size], edited=True)[:, :keep]
            for size, out in zip(sizes[i:i + batch_size], logits):
                up = torch.nn.functional.interpolate(out[None], size=size, mode="bilinear", align_corners=False)
                mask = up[0].argmax(0).numpy().astype(np.int64)
                counts = np.bincount(mask.ravel(), minlength=keep)
                areas = {names[j]: float(counts[j] / mask.size) for j in np.argsort(-counts) if counts[j]}
                results.append({"mask": mask, "class_areas": areas})
        return _like_input(images, results)


def _like_input(images, results: list):
    """One result for one image given alone, the list for a list."""
    return results[0] if is_single_image(images) else results
