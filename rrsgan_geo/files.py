"""Finishing files atomically with the permissions the user expects.

Outputs are written to a hidden temporary file beside the destination (mkstemp, so
two runs never collide) and renamed into place when complete. mkstemp creates files
with mode 0600 whatever the umask; a finished file gets what a plain `open()` would
have given it: 0666 less the umask.
"""

import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rrsgan_geo.errors import OutputError

_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


def new_temp_file(path: Path, suffix: str, record: list[Path]) -> Path:
    """A new hidden, empty file beside `path`, named with this process's id (so that a
    later run can tell a dead run's leftovers from a live one's), appended to `record`
    before Ctrl-C or SIGTERM can interrupt: whoever cleans up what `record` lists
    removes it, however early an interrupt lands (between mkstemp and recording it,
    the moment the file appears, it leaked)."""
    with interrupts_deferred():
        handle, name = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent
        )
        os.close(handle)
        record.append(Path(name))
    return record[-1]


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM received in the block are raised again when it ends, to the
    handlers there were before: for steps that must not be cut in two (creating a temp
    file and recording it, renaming a sample's files into place). Python runs signal
    handlers in the main thread only, so swapping them there defers them whatever
    thread the kernel delivered to."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, _frame: received.append(signum))
        for signum in _INTERRUPTS
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])


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


def publish(temp: str | os.PathLike, path: str | os.PathLike, overwrite: bool = True) -> None:
    """Give `temp` the umask's permissions and move it to `path`, atomically. With
    `overwrite` it replaces whatever is there; without, it fails with an OutputError if
    `path` exists by then (another run finished first: the check at planning cannot
    see that), by hard-linking it into place, which refuses an existing name."""
    os.chmod(temp, 0o666 & ~current_umask())
    path = Path(path)
    if overwrite:
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)
    except FileExistsError:
        raise OutputError(
            f"{path} appeared while this run was working (another run?); nothing was "
            "replaced: pass --overwrite to replace it"
        ) from None
    except OSError:  # a file system without hard links: the next best check
        if path.exists():
            raise OutputError(f"{path} exists; pass --overwrite to replace it") from None
        os.replace(temp, path)
        return
    os.unlink(temp)


@contextmanager
def published_when_done(path: Path, suffix: str = ".part") -> Iterator[Path]:
    """A new temp file beside `path` (`new_temp_file`) for the block to write: renamed
    onto `path` (`publish`) when the block ends, removed when it fails or is
    interrupted, so `path` is whole or untouched."""
    temps: list[Path] = []
    try:
        temp = new_temp_file(path, suffix, temps)
        yield temp
        publish(temp, path)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)  # nothing left once renamed


def write_json(path: Path, payload: object) -> None:
    """`payload` as indented JSON in `path`, written whole or not at all."""
    write_text_atomically(path, json.dumps(payload, indent=2) + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    """`text` in `path`, whole or not at all (a report written after a long run must not
    be left half-written by a full disk or an interrupt). OutputError when it cannot."""
    try:
        with published_when_done(path) as temp:
            temp.write_text(text)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
