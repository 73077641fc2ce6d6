"""The batched kernels of the TPS slab-solid model (:mod:`lattice.geometry.surface`): the
stacking of per-slice in-plane distances into slab-solid distances at voxel centres, and the
in-plane distance and inside-ness of a few points per slice against every segment at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .outline import SliceOutline, _crossing_parity, _point_segment_distance

if TYPE_CHECKING:
    from .surface import SlabSolid

#: Point-segment pairs per block of :func:`inplane_few` (as many as the few-point
#: path of SliceOutline.boundary_distance: the temporaries stay a few MB).
_FEW_BLOCK = 60_000


def inplane_few(
    solid: SlabSolid,
    outlines: Sequence[SliceOutline],
    counts: Sequence[int],
    ks: NDArray[np.int64],
    q_uv: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """:meth:`SlabSolid._inplane` for points grouped by slice (``counts[g]`` points on the slice of
    ``outlines[g]``, in order), every segment of the slice at once.

    The outlines' segments are stacked in a table padded with copies of a real segment
    (they change no minimum and are left out of the crossing count).
    """
    width = max(len(o.segments) for o in outlines)
    table = np.empty((len(outlines), width, 4))
    valid = np.zeros((len(outlines), width), dtype=bool)
    for g, o in enumerate(outlines):
        n = len(o.segments)
        table[g, :n] = o.segments
        table[g, n:] = o.segments[0]
        valid[g, :n] = True
    which = np.repeat(np.arange(len(outlines)), counts)
    dist = np.empty(len(ks))
    step = max(1, _FEW_BLOCK // width)
    for a in range(0, len(ks), step):
        sl = slice(a, a + step)
        seg = table[which[sl]]
        dist[sl] = _point_segment_distance(q_uv[sl, None, :], seg).min(axis=1)
    # Inside-ness as in SlabSolid._inside: the nearest voxel centre where it provably decides.
    sure, bit = solid.voxel_decides(q_uv, ks, dist)
    inside = np.where(sure, bit, False)
    rest = np.flatnonzero(~sure)
    for a in range(0, len(rest), step):
        r = rest[a : a + step]
        seg, ok = table[which[r]], valid[which[r]]
        inside[r] = _crossing_parity(q_uv[r], seg, ok)
    return dist, inside


def stack_slabs(
    e: NDArray[np.float32], dz: float, exact_to_mm: float, *, inside_metric: bool
) -> NDArray[np.float32]:
    """Combine per-slice in-plane distances into slab-solid distances at voxel centres.

    A voxel centre lies on its slice plane, so its own slab contributes ``e`` itself and slab
    k +- m contributes ``sqrt(e_{k+-m}^2 + ((m - 1/2) dz)^2)``. Slices beyond the array are
    empty: 0 in-plane depth (inside_metric) or nothing (distance). Offsets stop once no value
    left can be improved (every term of offset m is at least ``(m - 1/2) dz``) or beyond
    ``exact_to_mm``.

    The minimum is taken over squared terms and rooted once at the end: float32 ``sqrt`` is
    correctly rounded and monotone, so this equals the minimum of the rooted terms.
    """
    # Slices first, so a shift by m slices is a contiguous block.
    first = np.ascontiguousarray(np.moveaxis(e, 2, 0), dtype=np.float32)
    e2 = np.square(first)
    out2 = e2.copy()
    nk = out2.shape[0]
    # Inside metric: the empty slabs beyond the array give the z distance alone, per slice.
    z_cap = np.full(nk, np.inf, dtype=np.float32)
    reach = int(np.ceil(exact_to_mm / dz + 0.5)) + 1

    def unfinished() -> tuple[float, bool]:
        """The largest finite squared value, and whether a distance is still unreached
        (inf). Values only fall, so figures a few offsets old only make the loop stop later."""
        finite = np.isfinite(out2)
        return (
            float(np.max(out2, initial=0.0, where=finite)),
            not inside_metric and not bool(finite.all()),
        )

    # Rounds of four offsets, with the stopping figures renewed before each, as one loop over
    # m would; within a round every in-plane block takes all its offsets while it is in cache
    # (the minimum is exact and order-free, so the result is the same).
    m = 1
    while m <= reach:
        limit2, open_inf = unfinished()
        offsets = []
        for mm in range(m, min(m + 4, reach + 1)):
            zc = (mm - 0.5) * dz
            if zc * zc >= limit2 and not open_inf:
                break
            offsets.append(mm)
        _shift_minimum(out2, e2, offsets, dz)
        if inside_metric:
            for mm in offsets:
                if mm <= nk:
                    zc32 = np.float32((mm - 0.5) * dz)
                    z_cap[nk - mm] = min(z_cap[nk - mm], zc32)
                    z_cap[mm - 1] = min(z_cap[mm - 1], zc32)
        if len(offsets) < min(4, reach + 1 - m):
            break
        m += 4
    # Where no other slab won, keep the in-plane value itself (not the root of its square);
    # in place, to hold no more full-size temporaries than needed.
    kept = np.less(out2, e2)
    np.logical_not(kept, out=kept)
    del e2
    out = np.sqrt(out2, out=out2)
    np.copyto(out, first, where=kept)
    del kept
    if inside_metric:
        np.minimum(out, z_cap[:, None, None], out=out)
    result = np.moveaxis(out, 0, 2)
    if inside_metric:
        result[e == 0] = 0.0
    return result


#: Voxels per block of :func:`_shift_minimum` (three float32 blocks stay in the cache).
_STACK_BLOCK = 1 << 18


def _shift_minimum(
    out2: NDArray[np.float32], e2: NDArray[np.float32], offsets: Sequence[int], dz: float
) -> None:
    """``out2[k] = min(out2[k], e2[k +- m] + ((m - 1/2) dz)^2)`` for every offset m, in place
    (slices first), block of in-plane rows by block."""
    nk = out2.shape[0]
    offsets = [m for m in offsets if m < nk]
    if not offsets:
        return
    rows = max(1, _STACK_BLOCK // max(1, nk * out2.shape[2]))
    buf = np.empty((nk, rows, out2.shape[2]), dtype=np.float32)
    for a in range(0, out2.shape[1], rows):
        o, e = out2[:, a : a + rows], e2[:, a : a + rows]
        t = buf[:, : o.shape[1]]
        for m in offsets:
            zc = (m - 0.5) * dz
            z2 = np.float32(zc * zc)
            np.add(e[m:], z2, out=t[:-m])
            np.minimum(o[:-m], t[:-m], out=o[:-m])
            np.add(e[:-m], z2, out=t[m:])
            np.minimum(o[m:], t[m:], out=o[m:])
