"""Pratai: a self-hostable, event-driven compute platform."""

__version__ = "0.1.0"
__all__ = ["__version__"]
