"""Shipped weight files (data only): located with importlib.resources, see README.md."""
