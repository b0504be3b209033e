"""Keep freed host memory in the process when XLA runs on the CPU.

XLA:CPU allocates each step's large temporaries afresh. glibc serves allocations
above its mmap threshold (at most 32 MiB by its own adjustment) with fresh mmaps and
returns freed heap tops to the OS, so every step page-faults its buffers in again:
copying a 38 MB kernel took 45 ms instead of 9 ms on this project's CPU machine, and
the 512p train step at 256x128 7.1 s instead of 6.1 s (experiments/benchmarks.md).
Raising both thresholds keeps the pages mapped; the cost is that the process's RSS
stays at its peak. PyTorch users get the same effect from jemalloc or tcmalloc.
Set PIX2PIXHD_KEEP_HOST_MEMORY=0 to leave glibc's defaults.
"""

import ctypes
import ctypes.util
import logging
import os
import sys

import jax

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # 1 GiB: above every buffer of the CPU-sized runs

_applied = False


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds if JAX runs on the CPU; True when they are set.

    Call it once JAX's backend is up (after jax.distributed.initialize). No-op on
    accelerators, outside Linux, with a C library other than glibc, and when the
    environment says PIX2PIXHD_KEEP_HOST_MEMORY=0.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get("PIX2PIXHD_KEEP_HOST_MEMORY", "1") == "0":
        return False
    if jax.default_backend() != "cpu" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(_M_TRIM_THRESHOLD, _THRESHOLD) != 1 or mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) != 1:
        logging.getLogger(__name__).info("glibc refused mallopt; host memory is returned to the OS as usual")
        return False
    _applied = True
    return True
