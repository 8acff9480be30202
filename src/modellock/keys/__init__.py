"""Keys: the key file (everything that reproduces an edit), composed prompts, the salted fingerprint, sealing bytes
with a key, and ranking candidate prompts on the user's images."""

from .key import PAPER_DEFAULTS, Key

__all__ = ["Key", "PAPER_DEFAULTS"]
