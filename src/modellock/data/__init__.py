"""Data: image sources (folders, archives, torchvision datasets) and the edit cache."""

from .sources import ImageSource, Sample, Split, open_source

__all__ = ["ImageSource", "Sample", "Split", "open_source"]
