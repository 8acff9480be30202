"""modellock: lock fine-tuned vision models with a secret diffusion-edit key (ModelLock, ACM MM 2024)."""

__version__ = "0.1.0"

from .editors import available_editors, get_editor, register_editor
from .errors import ModelLockError, WrongKeyError
from .key import Key

__all__ = ["Key", "get_editor", "register_editor", "available_editors", "ModelLockError", "WrongKeyError",
           "__version__"]
