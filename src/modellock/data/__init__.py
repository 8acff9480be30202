"""Data: image sources (folders, archives, torchvision datasets) for classification and segmentation."""

from .mask_folders import read_classes_file
from .source import ImageSource, Sample, Split, read_mask
from .sources import open_source
from .synthetic import make_shapes_dataset, make_shapes_segmentation_dataset

__all__ = [
    "ImageSource", "Sample", "Split", "open_source", "read_mask", "read_classes_file",
    "make_shapes_dataset", "make_shapes_segmentation_dataset",
]
