"""Giving the memory a stage of the run has freed back to the operating system.

A plan allocates many arrays of a few MB to a few tens of MB (crops of the masks, distance
fields, tables of the pose search, the writers' buffers). glibc's allocator serves arrays
above its mmap threshold with their own mappings, returned when freed, but that threshold
rises to the size of the largest such array freed (up to 32 MB): after the first crops,
most arrays of the plan come from the heap, and a freed heap chunk that is not at its top
stays resident. On the benchmark case (512 x 512 x 300 grid) that was ~100 MB after the
pose search and ~200 MB while the process waited for its picture worker (RSS 666 MB, of
which ~380 MB was alive), counted in the peak of the run's process tree.

:func:`release_freed_memory` asks glibc (``malloc_trim``) to return the free pages of every
arena; a no-op where there is no glibc. It frees nothing alive: a page given back is
faulted in again, zero-filled, only if it is reused. Fixing the mmap threshold instead
(``mallopt``) made every array a fresh mapping: +2.2 s of system time per plan.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the pages malloc holds free to the operating system (glibc ``malloc_trim(0)``).

    Call it where a stage has freed its temporaries and the process goes on with less (a
    few tens of ms on the benchmark case). Returns whether any memory was released (False
    also where there is no ``malloc_trim``).

    Examples
    --------
    >>> release_freed_memory() in (True, False)
    True
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
