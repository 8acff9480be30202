"""Data: image sources (folders, archives, torchvision datasets) for classification and segmentation."""

from .segmentation import read_classes_file
from .sources import ImageSource, Sample, Split, open_source, read_mask
from .synthetic import make_shapes_dataset, make_shapes_segmentation_dataset

__all__ = [
    "ImageSource", "Sample", "Split", "open_source", "read_mask", "read_classes_file",
    "make_shapes_dataset", "make_shapes_segmentation_dataset",
]
