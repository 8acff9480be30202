"""modellock: lock fine-tuned vision models with a secret diffusion-edit key (ModelLock, ACM MM 2024).

The Python API in one line: ``LockedModel.from_pretrained("locked/").unlock(Key.load("key.toml")).predict(images)``.
"""

import importlib

from .editors import available_editors, get_editor, register_editor
from .errors import DataError, DataWarning, ModelLockError, WrongKeyError
from .keys import Key
from .version import __version__

# imported on first use: they pull in torch, which the command line's help and key commands do not need
_LAZY = {"LockedModel": ".model_folder", "Predictor": ".model_folder"}

__all__ = ["Key", "LockedModel", "Predictor", "get_editor", "register_editor", "available_editors",
           "ModelLockError", "WrongKeyError", "DataError", "DataWarning", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
