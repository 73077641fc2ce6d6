"""Reading the voxels of a NIfTI file that :mod:`lattice.io.nifti` opened with nibabel: a
``.gz`` file used as stored is decompressed straight into its array (:func:`read_gzip_data`),
or only checked, piece by piece, without keeping an array (:func:`check_gzip_data`)."""

from __future__ import annotations

import os
import struct
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
    "check_gzip_stream",
    "check_whole_stream",
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
        and _is_gzip_path(proxy.file_like)
        and (not scaled or (proxy.slope == 1 and proxy.inter == 0))
    )


def read_gzip_data(proxy: Any) -> NDArray:
    """The voxels of a ``.gz`` file as stored (what ``proxy.get_unscaled()`` returns),
    decompressed straight into the array by nibabel's reader of the file, and checked
    against the file's gzip trailer (:func:`_check_trailer`).

    nibabel reads into a zero-filled ``bytearray`` first: filling it takes longer than
    decompressing a mask (~0.08 s per 80 MB).

    Raises
    ------
    EOFError, OSError, zlib.error
        The file ends before its voxel data does; it is corrupt.
    """
    from nibabel.openers import ImageOpener

    data = np.empty(proxy.shape, dtype=proxy.dtype, order=proxy.order)
    voxels = data.reshape(-1, order="A").view(np.uint8)
    with ImageOpener(proxy.file_like) as fobj:
        fobj.seek(proxy.offset)
        n_read = _fill(fobj, voxels.data)
        if n_read == data.nbytes:
            # The header's bytes are part of the checksum (read apart: few, and a seek
            # keeps the reader's own errors, e.g. indexed_gzip's CrcError, as they are).
            head = _first_bytes(proxy.file_like, int(proxy.offset))
            crc = _crc32(voxels.data, _crc32(head, 0))
            size = len(head) + data.nbytes
            # What follows the voxels, to the end of the stream: nothing in a well-formed
            # file; more where a damaged stream inflates to more bytes than the file held.
            rest = bytearray(1 << 20)
            while n := fobj.readinto(rest):
                crc = _crc32(memoryview(rest)[:n], crc)
                size += n
    if n_read != data.nbytes:
        raise EOFError(f"the voxel data ends after {n_read or 0} of {data.nbytes} bytes")
    _check_trailer(proxy.file_like, crc, size)
    return data


def _fill(fobj: Any, view: memoryview) -> int:
    """Read into ``view`` until it is full or the file ends; the bytes read."""
    filled = 0
    while filled < len(view):
        n = fobj.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def _first_bytes(path: str, n: int) -> bytes:
    """The first ``n`` decompressed bytes of the gzip file ``path``."""
    import gzip

    with gzip.open(path, "rb") as fh:
        return fh.read(n)


def _crc32(data: Any, crc: int) -> int:
    """CRC-32 (zlib's) of ``data`` continued from ``crc``: ISA-L's where python-isal is
    installed (150 MB in ~0.01 s against zlib's ~0.05 s)."""
    try:
        from isal.isal_zlib import crc32
    except ImportError:  # pragma: no cover - isal is a dependency
        return zlib.crc32(data, crc)
    return int(crc32(data, crc))


def _check_trailer(path: str, crc: int, size: int) -> None:
    """Whether the CRC-32 and length (mod 2^32) of what was read match the gzip trailer,
    the file's last 8 bytes; if not, the whole file is decompressed with zlib, which checks
    each member's trailer (:func:`check_whole_stream`) and raises on a corrupt one.

    nibabel's reader (indexed_gzip) checks the trailer only sometimes: a stream damaged so
    that it still inflates (STS_013's CT with 40 bytes garbled mid-file inflates to more
    bytes than the file held) was read without an error. A file of several gzip members, or
    with bytes after its last member, has another trailer at its end: zlib decides.
    """
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() >= 8:
            fh.seek(-8, 2)
            want_crc, want_size = struct.unpack("<II", fh.read(8))
            if (crc & 0xFFFFFFFF, size & 0xFFFFFFFF) == (want_crc, want_size):
                return
    check_whole_stream(path)


def check_whole_stream(path: str) -> None:
    """Decompress the gzip file ``path`` to its end, checking every member's CRC-32 and
    length (zlib.error on a corrupt one, EOFError on a truncated one)."""
    for _ in _gunzipped(path, CHECK_CHUNK_BYTES):
        pass


def check_gzip_stream(file_like: Any) -> None:
    """After nibabel has read an image itself (scaled, say): :func:`check_whole_stream` of
    ``file_like`` when it names a ``.gz`` file (nibabel's reader stops at the voxels and
    checks the trailer only sometimes); nothing for another file."""
    if _is_gzip_path(file_like):
        check_whole_stream(str(file_like))


def _is_gzip_path(file_like: Any) -> bool:
    """Whether ``file_like`` is the path of a ``.gz`` file (nibabel decides by the name)."""
    return isinstance(file_like, (str, os.PathLike)) and str(file_like).lower().endswith(".gz")


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
    try:
        # To the end of the stream, not only of the voxels: its trailers are checked on
        # the way (a damaged stream may inflate to more bytes than the file held).
        for piece in _gunzipped(proxy.file_like, CHECK_CHUNK_BYTES):
            data: bytes | memoryview = memoryview(piece)[max(start - position, 0) : end - position]
            position += len(piece)
            if dtype.kind == "f" and len(data):
                data = carry + data if carry else data
                whole = len(data) // dtype.itemsize * dtype.itemsize
                values = np.frombuffer(data[:whole], dtype=dtype)
                bad += int(np.count_nonzero(~np.isfinite(values)))
                carry = bytes(data[whole:])
    except EOFError:
        if position >= end:  # every voxel is there, the trailer is not
            raise
    if position < end:
        raise EOFError(
            f"the voxel data ends after {max(position - start, 0)} of {end - start} bytes"
        )
    return bad


def _gunzipped(path: str, size: int) -> Iterator[bytes]:
    """A gzip file decompressed, each member in turn, ``size`` bytes at most at a time."""
    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as fh:
        pending = b""
        started = False  # a member begun and not ended
        while True:
            pending = pending or fh.read(size)
            if not pending:
                if started:
                    raise EOFError("the gzip stream ends before its trailer")
                return
            started = True
            out = stream.decompress(pending, size)
            pending = stream.unconsumed_tail
            if out:
                yield out
            if stream.eof:  # the next member, if any, starts in what was left over
                pending = stream.unused_data + pending
                while len(pending) < 2 and (more := fh.read(size)):
                    pending += more
                if pending[:2] != GZIP_MAGIC:
                    return  # bytes after the last member that are no member: ignored, as
                    # nibabel's reader (indexed_gzip) ignores them
                stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
                started = False


#: The first two bytes of a gzip member.
GZIP_MAGIC = b"\x1f\x8b"


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
