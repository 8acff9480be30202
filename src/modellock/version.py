"""The package version (one place; ``modellock.__version__`` and the service read it)."""

__version__ = "0.1.0"
