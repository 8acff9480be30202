"""The lock stage: the lock recipe and lock set (``lock_set.py``), the hardening levers trained in the loop
(``hardening.py``), the run that trains and saves a locked model folder (``run.py``: ``lock_model``,
``train_baseline``), and the YAML/flag settings of a lock run (``settings.py``). Sealing the folder's weights is
``modellock.keys.seal``; the random handling of inputs is ``modellock.data.handling``."""

from .lock_set import LOCKED_CLASS_NAME, LockRecipe, decoy_keys, plan_lock_set
from .run import LockJob, check_output, default_image_size, lock_model, train_baseline

__all__ = ["LockRecipe", "LockJob", "lock_model", "train_baseline", "default_image_size", "check_output",
           "plan_lock_set", "decoy_keys", "LOCKED_CLASS_NAME"]
