"""Evaluation: the paper's matrix (``matrix.py``: original, locked, unlocked, wrong keys, handled inputs) and its
reports (``report.py``: text and markdown tables, charts, an image grid, one HTML page)."""

from .matrix import covers, default_wrong_keys, evaluate, sealing

__all__ = ["evaluate", "default_wrong_keys", "covers", "sealing"]
