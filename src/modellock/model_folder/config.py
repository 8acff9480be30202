"""A model folder's ``config.json``: its fields (``ModelFolderConfig``), the one check that a model can be built
and used from them, reading and writing. A folder of another format (an older modellock's, or not a modellock
folder) is refused with one line naming the field.

Fields: ``format``, ``task``, ``architecture`` (the backbone spec), ``classes`` (real classes, then the locked
output when there is one), ``num_classes`` (the real ones), ``locked_class``, ``preprocessing`` (``image_size``,
``mean``, ``std``), ``lock`` (editor, fingerprint, recipe, seal; null for an unlocked model), ``training`` (the
settings it was trained with), ``versions``, ``ignore_index`` (per-pixel tasks), ``weights_sha256``; after an
evaluation or an attack run also ``evaluation`` and ``attack_summary``.
Never the key, nor anything that names or narrows it.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelLockError
from ..keys.fingerprint import parse_fingerprint
from ..keys.seal import OLD_SCHEMES, SCHEME, old_scheme_message
from ..tasks import task_names
from ..utils.atomic import write_bytes_atomic

FORMAT = "modellock-model/1"
WEIGHTS, SEALED, CONFIG, CARD = "model.safetensors", "model.sealed", "config.json", "README.md"
# the config fields a sealed weights file is bound to (AEAD associated data): swapping any of them is detected
SEALED_FIELDS = ("format", "task", "architecture", "classes", "num_classes", "locked_class", "preprocessing",
                 "ignore_index", "lock")
WRONG_KEY = "the key does not open this model"


# fields left out of config.json while None: ``ignore_index`` (per-pixel tasks only), the weights' hash (until saved)
OMITTED_WHEN_NONE = ("ignore_index", "weights_sha256")


@dataclass(kw_only=True)
class ModelFolderConfig:
    """The typed fields of ``config.json`` (see the module docstring), in the order a lock writes them; ``extra``
    keeps fields added later (``evaluation``, ``attack_summary``, ...)."""

    format: str = FORMAT
    task: str = "classification"
    architecture: dict
    classes: list[str]
    num_classes: int
    locked_class: int | None = None
    preprocessing: dict
    lock: dict | None = None
    training: dict | None = None
    versions: dict | None = None
    ignore_index: int | None = None  # None: absent (read as 255)
    weights_sha256: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, config, where: Path = Path(CONFIG)) -> "ModelFolderConfig":
        """The config of a dict read from ``where``; ModelLockError naming the first field that is wrong."""
        check_config(config, where)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in config.items() if k in names},
                   extra={k: v for k, v in config.items() if k not in names})

    def to_dict(self) -> dict:
        """The JSON object ``config.json`` holds (fields in the order a lock writes them)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"
               and not (f.name in OMITTED_WHEN_NONE and getattr(self, f.name) is None)}
        return {**out, **self.extra}

    @classmethod
    def read(cls, folder: Path) -> "ModelFolderConfig":
        """``folder/config.json``, checked."""
        return cls.from_dict(read_config(folder), folder / CONFIG)

    def write(self, folder: Path) -> Path:
        return write_config(self.to_dict(), folder)


def read_config(folder: Path) -> dict:
    """The checked JSON object of ``folder/config.json``; ModelLockError naming the file otherwise."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise ModelLockError(f"{folder}: not a model folder (missing {CONFIG})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLockError(f"{path}: malformed config ({type(e).__name__}: {e})") from None
    check_config(config, path)
    return config


def write_config(config: dict, folder: Path) -> Path:
    """Write ``folder/config.json`` atomically."""
    path = Path(folder) / CONFIG
    write_bytes_atomic(json.dumps(config, indent=2).encode(), path)
    return path


def sealed_context(config: dict) -> bytes:
    """The bytes a sealed weights file is bound to: the ``SEALED_FIELDS`` of its config, canonical JSON."""
    bound = {k: config.get(k) for k in SEALED_FIELDS}
    return json.dumps(bound, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("modellock", "torch", "torchvision", "timm", "diffusers", "transformers", "accelerate"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def check_config(config, where: Path) -> None:
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
    need(config.get("task") in (None, *task_names()), "task", f"must be {' or '.join(task_names())}")
    need(is_int(config.get("ignore_index", 255)), "ignore_index", "must be an integer")
    lock = config.get("lock")
    need(lock is None or (isinstance(lock, dict) and (not lock or (isinstance(lock.get("editor"), str)
         and isinstance(lock.get("fingerprint"), str)))), "lock", "must be null or hold 'editor' and 'fingerprint'")
    if lock:
        parse_fingerprint(lock["fingerprint"], f"{where}: field 'lock.fingerprint'")  # bounded scrypt parameters
        seal = lock.get("seal")
        need(seal is None or (isinstance(seal, dict) and isinstance(seal.get("scheme"), str)), "lock.seal",
             "must be null or name its scheme")
        if seal:
            if seal["scheme"] in OLD_SCHEMES:
                raise ModelLockError(old_scheme_message(where.parent, seal["scheme"]))
            need(seal["scheme"] == SCHEME, "lock.seal.scheme", f"must be {SCHEME!r}, got {seal['scheme']!r}")
            need(seal.get("file", SEALED) == SEALED, "lock.seal.file", f"must be {SEALED!r}")
