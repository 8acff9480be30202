"""Key files: everything that reproduces an edit, a canonical form, and a slow salted fingerprint.

A key is secret. It is written as a small TOML file; its ``repr`` never shows the prompt, and
only its fingerprint (scrypt, salted) is ever stored next to a locked model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import tomli_w

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ..editors import available_editors, editor_class
from ..errors import KeyFileError
from ..utils.atomic import write_bytes_atomic
from .fingerprint import cache_id_of, fingerprint_matches, fingerprint_of
from .prompts import compose_prompt

# The paper's public evaluation settings.
PAPER_DEFAULTS: dict[str, Any] = {
    "editor": "instruct-pix2pix",
    "model": "timbrooks/instruct-pix2pix",
    "revision": "",
    "seed": 1024,
    "steps": 5,
    "image_guidance": 1.5,
    "guidance": 4.5,
    "resolution": 256,
    "alpha": 0.5,
}

_FIELD_TYPES: dict[str, type] = {
    "editor": str,
    "model": str,
    "revision": str,
    "prompt": str,
    "seed": int,
    "steps": int,
    "image_guidance": float,
    "guidance": float,
    "resolution": int,
    "alpha": float,
}
_OPTIONAL = {"revision"}

_HEADER = (
    "# modellock key. SECRET: anyone holding this file can unlock every model locked with it.\n"
    "# Every field is needed to reproduce the edit; change nothing after locking a model.\n"
)


@dataclasses.dataclass(frozen=True, repr=False)
class Key:
    """The secret that reproduces an edit: editor, diffusion model, prompt and settings."""

    editor: str
    prompt: str
    model: str = PAPER_DEFAULTS["model"]
    revision: str = ""
    seed: int = PAPER_DEFAULTS["seed"]
    steps: int = PAPER_DEFAULTS["steps"]
    image_guidance: float = PAPER_DEFAULTS["image_guidance"]
    guidance: float = PAPER_DEFAULTS["guidance"]
    resolution: int = PAPER_DEFAULTS["resolution"]  # 0 = edit at the image's own size
    alpha: float = PAPER_DEFAULTS["alpha"]
    params: dict = dataclasses.field(default_factory=dict)  # editor-specific settings

    def __post_init__(self):
        _validate(self.to_dict(), source="key")

    def __repr__(self) -> str:  # never leak the prompt into logs or tracebacks
        return f"Key(editor={self.editor!r}, fingerprint=<secret>)"

    __str__ = __repr__

    def __hash__(self):
        return hash(self.canonical())

    # ---------------------------------------------------------------- construction
    @classmethod
    def create(cls, editor: str = "instruct-pix2pix", prompt: str | None = None, **fields) -> "Key":
        """A key with the editor's defaults; a composed prompt of 64+ bits (``prompts.compose_prompt``) when
        none is given."""
        defaults = dict(PAPER_DEFAULTS)
        defaults.update(editor_class(editor).key_defaults)
        defaults.update({k: v for k, v in fields.items() if v is not None})
        defaults["editor"] = editor
        if prompt is None:
            prompt = compose_prompt()[0]
        defaults["prompt"] = prompt
        return cls(**defaults)

    def replace(self, **changes) -> "Key":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["params"] = dict(self.params)
        return d

    # ---------------------------------------------------------------- files
    @classmethod
    def load(cls, path: str | os.PathLike) -> "Key":
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeyFileError(f"key file {path}: not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise KeyFileError(f"key file {path}: cannot be read ({type(e).__name__})") from None
        except tomllib.TOMLDecodeError as e:
            raise KeyFileError(f"key file {path}: not valid TOML ({e})") from None
        raw = raw.get("key", raw) if isinstance(raw.get("key"), dict) else raw
        _validate(raw, source=f"key file {path}", strict=True)
        fields = {k: (float(v) if _FIELD_TYPES.get(k) is float else v) for k, v in raw.items()}
        return cls(**fields)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the key as TOML, readable by its owner only."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        d = self.to_dict()
        params = d.pop("params")
        text = _HEADER + tomli_w.dumps(d) + (("\n[params]\n" + tomli_w.dumps(params)) if params else "")
        write_bytes_atomic(text.encode("utf-8"), path, mode=0o600)  # a new temporary file (O_EXCL, O_NOFOLLOW)
        return path

    # ---------------------------------------------------------------- identity
    def canonical(self) -> bytes:
        """Stable bytes of every field that changes the edit."""
        d = self.to_dict()
        for name, typ in _FIELD_TYPES.items():
            if typ is float:
                d[name] = repr(float(d[name]))
        return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    def fingerprint(self, salt: bytes | None = None) -> str:
        """A salted scrypt hash of the canonical key: ``scrypt$N$r$p$salt$hash``."""
        return fingerprint_of(self.canonical(), salt)

    def matches(self, fingerprint: str) -> bool:
        """True when this key produced ``fingerprint``; ModelLockError when its scrypt parameters are out of
        ``SCRYPT_BOUNDS`` (a crafted fingerprint that would take hours)."""
        return fingerprint_matches(self.canonical(), fingerprint)

    @cached_property
    def cache_id(self) -> str:
        """A stable, slow-hashed id naming this key's edit cache (not the fingerprint)."""
        return cache_id_of(self.canonical())


def _validate(raw: dict, source: str, strict: bool = False) -> None:
    """Raise KeyFileError naming the first bad field."""
    if not isinstance(raw, dict):
        raise KeyFileError(f"{source}: expected a table of fields")
    unknown = sorted(set(raw) - set(_FIELD_TYPES) - {"params"})
    if unknown:
        raise KeyFileError(f"{source}: unknown field '{unknown[0]}'")
    if strict:
        for name in _FIELD_TYPES:
            if name not in raw and name not in _OPTIONAL:
                raise KeyFileError(f"{source}: missing field '{name}'")
    for name, typ in _FIELD_TYPES.items():
        if name not in raw:
            continue
        value = raw[name]
        ok = isinstance(value, typ) and not isinstance(value, bool)
        if typ is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            raise KeyFileError(f"{source}: field '{name}' must be {typ.__name__}, got {type(value).__name__}")
    if "params" in raw and not isinstance(raw["params"], dict):
        raise KeyFileError(f"{source}: field 'params' must be a table")
    checks = [
        ("prompt", lambda v: v.strip() != "", "must not be empty"),
        ("editor", lambda v: v.strip() != "", "must not be empty"),
        ("steps", lambda v: v >= 1, "must be >= 1"),
        ("resolution", lambda v: v == 0 or v >= 8, "must be 0 (native size) or >= 8"),
        ("alpha", lambda v: 0.0 <= v <= 1.0, "must be between 0 and 1"),
        ("seed", lambda v: 0 <= v < 2**63, "must be between 0 and 2**63-1"),
    ]
    for name, ok, msg in checks:
        if name in raw and not ok(raw[name]):
            raise KeyFileError(f"{source}: field '{name}' {msg}, got {raw[name]!r}" if name != "prompt"
                               else f"{source}: field 'prompt' {msg}")
    if "editor" in raw:
        if raw["editor"] not in available_editors():
            raise KeyFileError(
                f"{source}: field 'editor': unknown editor {raw['editor']!r} "
                f"(known: {', '.join(available_editors())})"
            )
        allowed = editor_class(raw["editor"]).param_types
        for name, value in (raw.get("params") or {}).items():
            if name not in allowed:
                raise KeyFileError(f"{source}: field 'params.{name}' is not a setting of editor {raw['editor']!r}"
                                   f" (settings: {', '.join(sorted(allowed)) or 'none'})")
            typ = allowed[name]
            ok = isinstance(value, (int, float)) if typ is float else isinstance(value, typ)
            if isinstance(value, bool) and typ is not bool or not ok:
                raise KeyFileError(f"{source}: field 'params.{name}' must be {typ.__name__}, "
                                   f"got {type(value).__name__}")
