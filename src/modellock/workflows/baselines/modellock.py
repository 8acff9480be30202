"""``modellock``: a ModelLock key (keyed-filter, the CPU stand-in for the diffusion editor, unless another editor
is given, e.g. instruct-pix2pix with a diffusion model) and the package's default lock recipe."""

from ...lock.lock_set import LockRecipe
from . import LockBaseline, register_baseline


def setup(seed: int, block_size=4, modellock_editor: str = "keyed-filter", diffusion_model: str | None = None,
          seal: bool = False):
    fields = {"seed": seed}
    if diffusion_model:
        fields["model"] = diffusion_model
    return modellock_editor, fields, LockRecipe(seed=seed, seal=seal)


register_baseline(LockBaseline("modellock", setup, order=0))
