"""Numbers read from YAML training configs, checked the same way for every config.

PyYAML follows YAML 1.1, which reads `learning_rate: 2e-4` (an exponent without a
dot) as the string "2e-4": passed on, it failed deep inside torch with a traceback.
"""

import dataclasses

from rrsgan_geo.errors import ConfigError


def check_numbers(config: object, prefix: str = "") -> None:
    """Each field of the (frozen) dataclass `config` whose default is a number: a whole
    number where the default is an int, a real number where it is a float (taken from
    a string such as "2e-4" too, and stored as a float); an optional real number
    (`float | None`) likewise when it is set. `prefix` names the config's section in
    messages ("reference.synthetic.")."""
    for item in dataclasses.fields(config):
        value, default = getattr(config, item.name), item.default
        set_optional_real = item.type == float | None and value is not None
        if not set_optional_real and (
            isinstance(default, bool) or not isinstance(default, int | float)
        ):
            continue
        if isinstance(default, int):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{prefix}{item.name} must be a whole number, got {value!r}")
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{prefix}{item.name} must be a number, got {value!r}") from None
        object.__setattr__(config, item.name, number)
