"""Editor registry: ``@register_editor(name)`` on a class; ``get_editor(key)`` builds one.

Adding an editor is adding one module to this folder (or an installed plugin's module, entry point group
``modellock.editors``): the registry imports every module here but its helpers on first use. Keep heavy imports
(diffusers, torch) inside the editors' methods, so that the key commands stay light.
"""

from __future__ import annotations

from ..errors import KeyFileError
from ..utils.registry import Registry
from .base import Editor

EDITORS = Registry("editor", package=__name__, helpers=("base", "families", "networks"), group="editors",
                   error=KeyFileError)


def register_editor(name: str):
    """Class decorator adding an Editor subclass to the registry under ``name``."""

    def wrap(cls: type[Editor]) -> type[Editor]:
        cls.name = name
        return EDITORS.add(name, cls)

    return wrap


def available_editors() -> list[str]:
    return EDITORS.names()


def editor_class(name: str) -> type[Editor]:
    """The editor class called ``name``; KeyFileError ``unknown editor ...`` otherwise."""
    return EDITORS.get(name)


def resolve_key(key, model, image_size: int = 224):
    """The key as its editor applies it to ``model`` (a backbone name, module or LockedModel)."""
    return editor_class(key.editor).resolve_for_model(key, model, image_size)


def get_editor(key, **options) -> Editor:
    """The editor named by ``key.editor``, configured by the key (options: device, batch_size, ...)."""
    return editor_class(key.editor)(key, **options)


__all__ = ["EDITORS", "Editor", "register_editor", "available_editors", "editor_class", "get_editor", "resolve_key"]
