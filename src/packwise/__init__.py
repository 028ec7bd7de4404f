"""Packwise: chooses how each product is packed."""

__version__ = "0.1.0"
