"""`rrsgan-geo` keeps freed memory in the process for reuse (`host_memory` says why):
a large block freed and asked for again costs no new page faults."""

import platform
import subprocess
import sys

import pytest

# Prints the page faults of allocating and filling 64 MiB a second time, after the
# first such block was freed: about 16 thousand 4 KB pages when the block went back to
# the kernel, next to none when it was kept. Through the C library itself, as torch's
# CPU allocator does (numpy would ask for huge pages and hide the difference).
SECOND_ALLOCATION_FAULTS = """
import ctypes
import resource
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
size = 64 << 20
libc.free(ctypes.memset(libc.malloc(size), 1, size))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
libc.free(ctypes.memset(libc.malloc(size), 1, size))
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(setup: str) -> int:
    code = setup + SECOND_ALLOCATION_FAULTS
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the C library is not glibc")
def test_the_command_keeps_freed_memory_for_reuse():
    plain = _faults("")
    # Any command: the group's own callback runs before the command's own (here --help).
    command = (
        "from rrsgan_geo.cli.main import main\n"
        "try:\n    main(['weights', '--help'])\n"
        "except SystemExit:\n    pass\n"
    )
    assert plain > 10_000
    assert _faults(command) < plain / 20
    library = "from rrsgan_geo.host_memory import keep_freed_memory\nkeep_freed_memory()\n"
    assert _faults(library) < plain / 20
