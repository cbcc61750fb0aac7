"""The exceptions rrsgan-geo raises.

Library code raises these and never prints or exits; the command line turns any
`RRSGANGeoError` into a one-line message and a non-zero exit code, so each message
must make sense on its own, naming the file or value at fault.
"""


class RRSGANGeoError(Exception):
    """Base class of every error the library raises on purpose."""


class ConfigError(RRSGANGeoError):
    """A model configuration or option value that cannot work."""


class WeightsError(RRSGANGeoError):
    """A weight file that cannot be used."""


class WeightsNotFoundError(WeightsError):
    """The weight file does not exist (no weights are ever downloaded)."""


class WeightsFormatError(WeightsError):
    """The file is not a readable safetensors or plain PyTorch state-dict file."""


class WeightsMismatchError(WeightsError):
    """The file's tensors do not fit the generator they are loaded into."""


class InputError(RRSGANGeoError):
    """An input raster that cannot be used as given (missing georeference, bands...)."""


class ScalingError(InputError):
    """Pixel values whose mapping to the model's [0, 1] is missing or impossible."""


class CoverageError(InputError):
    """The reference does not cover the scene."""


class OutputError(RRSGANGeoError):
    """The output cannot be written where asked (exists, folder missing, not writable)."""


class MemoryBudgetError(ConfigError):
    """A run that would need more memory than the machine (or --max-memory) allows."""
