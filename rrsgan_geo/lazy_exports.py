"""Package front doors whose names load their modules only when first used.

Each subpackage's `__init__` names its public API; importing the package must stay
cheap (`--help` loads neither torch nor GDAL, `train` nothing geospatial), so a name is
imported from its module on first access (PEP 562), not when the package is."""

import importlib
from collections.abc import Callable


def lazy_exports(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for `package`, whose public `names` live in the
    submodules given (name -> module name inside the package)."""

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
