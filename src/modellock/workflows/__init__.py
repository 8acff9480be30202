"""Workflows on top of the stages: the demo (``demo.py``) and the side-by-side comparison of locks
(``compare.py``, whose locks are the registered baselines in ``baselines/``)."""
