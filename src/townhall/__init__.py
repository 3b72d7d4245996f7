"""townhall: live audio spaces with a real-time stage and an audience of any size."""

__version__ = "0.1.0"

__all__ = ["__version__"]
