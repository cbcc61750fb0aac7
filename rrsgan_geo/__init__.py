"""rrsgan-geo: reference-based 4x super-resolution (RRSGAN) of georeferenced imagery.

Three products, one subpackage each: `sr` (super-resolve scenes: `sr.load_generator`,
`sr.plan`, `sr.run`, `sr.estimate`), `training` (train and score the generator, cut
training pairs) and `geo` (where rasters live and how they are read), on the generator
in `model`."""

__version__ = "0.1.0"
