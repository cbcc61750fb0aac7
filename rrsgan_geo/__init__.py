"""rrsgan-geo: reference-based 4x super-resolution (RRSGAN) of georeferenced imagery."""

__version__ = "0.1.0"
