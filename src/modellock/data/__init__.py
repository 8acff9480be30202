"""Data: image sources (folders, archives, torchvision datasets) for classification and segmentation."""

from .sources import ImageSource, Sample, Split, open_source, read_mask
from ..segmentation.data import read_classes_file
from .synthetic import make_shapes_dataset, make_shapes_segmentation_dataset

__all__ = [
    "ImageSource", "Sample", "Split", "open_source", "read_mask", "read_classes_file",
    "make_shapes_dataset", "make_shapes_segmentation_dataset",
]
