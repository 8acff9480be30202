"""Editor registry: ``@register_editor(name)`` on a class; ``get_editor(key)`` builds one.

Adding an editor touches one module: decorate the class and import the module below.
"""

from __future__ import annotations

from .base import Editor

_REGISTRY: dict[str, type[Editor]] = {}


def register_editor(name: str):
    """Class decorator adding an Editor subclass to the registry under ``name``."""

    def wrap(cls: type[Editor]) -> type[Editor]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"editor {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def available_editors() -> list[str]:
    return sorted(_REGISTRY)


def editor_class(name: str) -> type[Editor]:
    from ..errors import KeyFileError

    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyFileError(f"unknown editor {name!r} (known: {', '.join(available_editors())})") from None


def resolve_key(key, model, image_size: int = 224):
    """The key as its editor applies it to ``model`` (a backbone name, module or LockedModel)."""
    return editor_class(key.editor).resolve_for_model(key, model, image_size)


def get_editor(key, **options) -> Editor:
    """The editor named by ``key.editor``, configured by the key (options: device, batch_size, ...)."""
    return editor_class(key.editor)(key, **options)


# Registration happens on import; keep heavy imports (diffusers) inside the editors' load methods.
from . import keyed_filter  # noqa: E402,F401
from . import keyed_net  # noqa: E402,F401
from . import instruct_pix2pix  # noqa: E402,F401
from . import block_transforms  # noqa: E402,F401

__all__ = ["Editor", "register_editor", "available_editors", "editor_class", "get_editor", "resolve_key"]
