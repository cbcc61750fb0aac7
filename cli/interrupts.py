"""SIGTERM handled as Ctrl-C, so that a killed command cleans up as an interrupted one.

Batch schedulers (SLURM, Kubernetes, `timeout`) stop a job with SIGTERM, and only later
with SIGKILL. Python's default for SIGTERM is to die on the spot, skipping every
`finally:`: a half-written output, a training run's last steps without a checkpoint.
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager


def _raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (in the main thread)."""
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
