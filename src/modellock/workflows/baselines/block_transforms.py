"""The block-wise key transforms of AprilPyone & Kiya (``pixel-shuffle``, ``negative-positive`` alias ``np``,
``ffx``) with ``block_size`` (an int or ``"patch"``) and their papers' recipe: training on transformed images
only (``LockRecipe(edited_fraction=1.0)``), no locked output."""

from functools import partial

from ...errors import ModelLockError
from ...lock.lock_set import LockRecipe
from . import LockBaseline, register_baseline


def block_size_of(value):
    """``"patch"`` or an int from 1 to 64; ModelLockError otherwise."""
    if value == "patch":
        return "patch"
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ModelLockError(f"compare: block size must be an integer or 'patch', not {value!r}") from None
    if not 1 <= size <= 64:
        raise ModelLockError(f"compare: block size must be between 1 and 64, not {size}")
    return size


def setup(editor: str, seed: int, block_size=4, modellock_editor: str = "keyed-filter",
          diffusion_model: str | None = None, seal: bool = False):
    fields = {"seed": seed, "params": {"block_size": block_size_of(block_size)}}
    return editor, fields, LockRecipe(edited_fraction=1.0, seed=seed, seal=seal)


register_baseline(LockBaseline("pixel-shuffle", partial(setup, "pixel-shuffle"), order=1))
register_baseline(LockBaseline("negative-positive", partial(setup, "negative-positive"), aliases=("np",), order=2,
                               label="negative-positive (np)"))
register_baseline(LockBaseline("ffx", partial(setup, "ffx"), order=3))
