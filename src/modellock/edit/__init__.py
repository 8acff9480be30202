"""The edit stage: a key-edited copy of a dataset, written resumably, served as the edit cache (``cache.py``);
the read -> edit -> write hot path (``pipeline.py``)."""

from .cache import FORMAT, EditFolder, EditReport, cache_dir, edit_dataset, edit_split, write_skip_list
from .pipeline import MAX_READ_BATCH, default_workers

__all__ = ["FORMAT", "EditFolder", "EditReport", "edit_dataset", "edit_split", "cache_dir", "write_skip_list",
           "default_workers", "MAX_READ_BATCH"]
