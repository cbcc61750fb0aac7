"""Finishing files atomically with the permissions the user expects.

Outputs are written to a hidden temporary file beside the destination (mkstemp, so
two runs never collide) and renamed into place when complete. mkstemp creates files
with mode 0600 whatever the umask; a finished file gets what a plain `open()` would
have given it: 0666 less the umask.
"""

import os
from pathlib import Path


def current_umask() -> int:
    """Read without changing it where Linux shows it (setting it, even briefly, would
    race with other threads creating files); elsewhere, set and restore."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(temp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give `temp` the umask's permissions and rename it onto `path` (atomic)."""
    os.chmod(temp, 0o666 & ~current_umask())
    os.replace(temp, Path(path))
