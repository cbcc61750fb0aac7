"""Keeping freed memory in the process for reuse (glibc's malloc), which halves the
model's time on the CPU.

The generator allocates and frees gigabytes per tile. glibc returns every freed block
above its mmap threshold (at most 32 MB, grown on demand) to the kernel at once, and
shrinks its heap whenever 128 KB lie free at the top, so the next tile's tensors are
fresh pages that the kernel faults in and zeroes again: measured on the 2-core CPU,
compact model, one tile of 160^2 LR, 6.1 s with 1.1 million page faults and 4.4 s of
it in the kernel; with freed memory kept, 2.8-3.3 s, a few thousand faults, 0.1 s in
the kernel, at about the same peak (2.3-2.5 GB: the peak is what a tile needs, and
it is reached on every tile either way).

This changes the whole process's allocator, so the library never does it on import:
the `rrsgan-geo` command calls `keep_freed_memory` as it starts (and each Dask task
of `batch` on its worker); a program that uses the library may call it too.
"""

import ctypes

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1
"""mallopt takes a C int: blocks up to 2 GiB come from the heap, and the heap is
trimmed only when 2 GiB lie free at its top."""


def keep_freed_memory() -> bool:
    """Ask the C library to keep freed memory for reuse rather than give it back to the
    kernel. True where it did (glibc); False where the C library has no such setting
    (macOS, Windows, musl), which changes nothing else."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST)) and bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST))
