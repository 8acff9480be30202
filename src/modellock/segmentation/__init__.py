"""Semantic segmentation: models (``models``), joint image-and-mask transforms (``transforms``), the
``images/`` + ``masks/`` data layout and torchvision adapters (``data``), and IoU metrics (``metrics``).

The task type that lock, evaluate, attack and serve go through is ``modellock.tasks.segmentation``.
"""
