"""Reading the voxels of a NIfTI file that :mod:`lattice.io.nifti` opened with nibabel: a
``.gz`` file used as stored is decompressed straight into its array (:func:`read_gzip_data`),
or only checked, piece by piece, without keeping an array (:func:`check_gzip_data`)."""

from __future__ import annotations

import sys
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CHECK_CHUNK_BYTES",
    "check_gzip_data",
    "read_as_stored",
    "read_gzip_data",
    "short_switch_interval",
]


def read_as_stored(proxy: Any, *, scaled: bool) -> bool:
    """Whether :func:`read_gzip_data` reads the voxels: a ``.gz`` file used as stored (or
    scaled by 1 and 0). nibabel maps an uncompressed file into memory without a copy."""
    from nibabel.arrayproxy import ArrayProxy

    return (
        isinstance(proxy, ArrayProxy)
        and isinstance(proxy.file_like, str)
        and proxy.file_like.lower().endswith(".gz")
        and (not scaled or (proxy.slope == 1 and proxy.inter == 0))
    )


def read_gzip_data(proxy: Any) -> NDArray:
    """The voxels of a ``.gz`` file as stored (what ``proxy.get_unscaled()`` returns),
    decompressed straight into the array by nibabel's reader of the file.

    nibabel reads into a zero-filled ``bytearray`` first: filling it takes longer than
    decompressing a mask (~0.08 s per 80 MB).
    """
    from nibabel.openers import ImageOpener

    data = np.empty(proxy.shape, dtype=proxy.dtype, order=proxy.order)
    with ImageOpener(proxy.file_like) as fobj:
        fobj.seek(proxy.offset)
        n_read = fobj.readinto(data.reshape(-1, order="A").view(np.uint8).data)
    if n_read != data.nbytes:
        raise EOFError(f"the voxel data ends after {n_read or 0} of {data.nbytes} bytes")
    return data


#: Decompressed bytes handled at a time when voxels are only checked. Each piece's
#: decompression releases the GIL and must take it back: while another thread of the
#: process holds it (the planner's imports, read beside the masks), every return waits up to
#: the interpreter's switch interval (5 ms). With 1 MB pieces that cost ~150 waits on a
#: 512 x 512 x 300 int16 CT: load_case beside a thread busy in Python took 3.4 s instead of
#: 0.6 s; with 16 MB pieces 0.63 s (2026-12-03, this machine). The price: while a CT is
#: checked, ~50 MB of buffers (a read, its unconsumed tail, a piece and, for floats, the
#: finiteness temporaries) instead of ~3 MB.
CHECK_CHUNK_BYTES = 1 << 24


def check_gzip_data(proxy: Any) -> int:
    """Decompress the voxels of a ``.gz`` file as :func:`read_gzip_data` would, without
    keeping them: the number of NaN or infinite values (0 for integers).

    Raises
    ------
    EOFError, zlib.error
        The file ends before its voxel data does; it is corrupt.
    """
    dtype = np.dtype(proxy.dtype)
    start = int(proxy.offset)
    end = start + int(np.prod(proxy.shape)) * dtype.itemsize
    position, bad, carry = 0, 0, b""
    for piece in _gunzipped(proxy.file_like, CHECK_CHUNK_BYTES):
        data: bytes | memoryview = memoryview(piece)[max(start - position, 0) : end - position]
        position += len(piece)
        if dtype.kind == "f" and len(data):
            data = carry + data if carry else data
            whole = len(data) // dtype.itemsize * dtype.itemsize
            values = np.frombuffer(data[:whole], dtype=dtype)
            bad += int(np.count_nonzero(~np.isfinite(values)))
            carry = bytes(data[whole:])
        if position >= end:
            return bad
    raise EOFError(f"the voxel data ends after {max(position - start, 0)} of {end - start} bytes")


def _gunzipped(path: str, size: int) -> Iterator[bytes]:
    """A gzip file decompressed, each member in turn, ``size`` bytes at most at a time."""
    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as fh:
        pending = b""
        while True:
            pending = pending or fh.read(size)
            if not pending:
                return
            out = stream.decompress(pending, size)
            pending = stream.unconsumed_tail
            if out:
                yield out
            if stream.eof:  # the next member, if any, starts in what was left over
                pending = stream.unused_data + pending
                stream = zlib.decompressobj(16 + zlib.MAX_WBITS)


#: The interpreter's switch interval (s) while files are read by threads.
READ_SWITCH_INTERVAL_S = 0.0005
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


@contextmanager
def short_switch_interval(seconds: float = READ_SWITCH_INTERVAL_S) -> Iterator[None]:
    """Within the block, a thread that holds the GIL gives it up after ``seconds`` when
    another asks for it (:func:`sys.setswitchinterval`; restored after the last of nested or
    concurrent blocks).

    zlib releases the GIL while it inflates, and takes it back for each block of output
    (tens per call). With Python's default of 5 ms each return waits that long behind a
    thread busy in Python (the planner imports scipy beside the reading threads): load_case
    of the benchmark case took 0.96 s beside such a thread at 5 ms, 0.36 s at 0.5 ms and
    0.35 s alone, while the busy thread ran as fast (2026-12-03, this machine).
    """
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(seconds, _switch_saved))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)
