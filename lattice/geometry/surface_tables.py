"""The batched kernels of the TPS slab-solid model (:mod:`lattice.geometry.surface`): the
per-slice distance tables of a mask's outline vertices, the stacking of per-slice in-plane
distances into slab-solid distances at voxel centres, and the in-plane distance and
inside-ness of a few points per slice against every segment at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import edt
import numpy as np
from numpy.typing import NDArray

from ..forking import may_split, on_two_threads, shared_array, split_work
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


#: Half-pixel EDT pixels of a table from which :func:`mask_vertex_bounds` shares its slices
#: with a forked child (a fork costs ~8 ms, 4 M pixels ~0.1 s): the benchmark case's GTV
#: depth table has 8.1 M, its cord's distance table 1.3 M.
_SPLIT_PIXELS = 4_000_000


def mask_vertex_bounds(
    sub: NDArray[np.bool_],
    vox: NDArray[np.float64],
    exact_to_mm: float,
    slack_mm: float,
    *,
    inside_metric: bool,
) -> NDArray[np.float32]:
    """Distance U from each pixel centre of ``sub`` to the nearest vertex of its slice's
    outline, by an EDT on a grid of half-pixel steps whose zeros are the midpoints between
    differing 4-neighbours (the marching-squares vertices, with a background frame around
    ``sub`` so outlines close beyond it). ``vox``: voxel size (mm); ``slack_mm`` (a): the
    table's slack (:attr:`~lattice.geometry.surface.SlabSolid.table_slack_mm`).

    Each slice's EDT runs on the crop that holds every vertex of that slice: its bounding
    box plus the frame, which changes no value inside it. For the distance metric the
    crop grows by a reach R > ``exact_to_mm`` + a; a pixel beyond it is more than R from
    every vertex, and gets U = R: then ``sqrt(U^2 - a^2) > exact_to_mm`` is still a lower
    bound, and values beyond ``exact_to_mm`` are only known to exceed it (as for polygon
    tables). inside_metric: 0 outside the mask (else 0 inside, inf on empty slices).

    On a large table the slices are shared with a forked child
    (:func:`lattice.forking.split_work`): each slice's EDT is the same computation wherever
    it runs, so the table is the same.
    """
    # Slices first: each slice's arrays are contiguous for the per-slice EDT.
    p = np.pad(np.moveaxis(sub, 2, 0), ((0, 0), (1, 1), (1, 1)))
    nk, ni, nj = p.shape
    far_mm = 0.0
    grow = np.zeros(2, dtype=np.int64)
    if not inside_metric:
        far_mm = exact_to_mm + slack_mm + float(vox[:2].max())
        grow = np.ceil(far_mm / vox[:2]).astype(np.int64) + 1
    aniso = (float(vox[0]) / 2, float(vox[1]) / 2)
    rows_any: NDArray[np.bool_] = np.asarray(p.any(axis=2))
    cols_any: NDArray[np.bool_] = np.asarray(p.any(axis=1))
    crops: dict[int, tuple[int, int, int, int]] = {}
    for k in np.flatnonzero(rows_any.any(axis=1)).tolist():
        rows, cols = np.flatnonzero(rows_any[k]), np.flatnonzero(cols_any[k])
        # Crop [a, b] x [c, d] of the padded slice (inclusive), frame included.
        a, b = max(rows[0] - 1 - grow[0], 0), min(rows[-1] + 1 + grow[0], ni - 1)
        c, d = max(cols[0] - 1 - grow[1], 0), min(cols[-1] + 1 + grow[1], nj - 1)
        crops[k] = (int(a), int(b), int(c), int(d))
    costs = [4 * (b - a + 1) * (d - c + 1) for a, b, c, d in crops.values()]
    fill = 0.0 if inside_metric else np.inf
    split = sum(costs) >= _SPLIT_PIXELS and may_split()  # else no shared mapping
    shape = (nk, ni - 2, nj - 2)
    upper = shared_array(shape, np.float32, fill) if split else np.full(shape, fill, np.float32)

    def slices(ks: Sequence[int]) -> None:
        for k in ks:
            a, b, c, d = crops[k]
            q = p[k, a : b + 1, c : d + 1]
            # Boolean features: edt's binary path, faster than its multi-label one on uint8.
            feat = np.ones((2 * q.shape[0] - 1, 2 * q.shape[1] - 1), dtype=bool)
            feat[1::2, ::2] = q[:-1] == q[1:]
            feat[::2, 1::2] = q[:, :-1] == q[:, 1:]
            u = edt.edt(feat, anisotropy=aniso, black_border=False, parallel=1)[::2, ::2]
            # Padded rows a..b are array rows a-1..b-1; keep those inside the array.
            a1, b1, c1, d1 = max(a, 1), min(b, ni - 2), max(c, 1), min(d, nj - 2)
            if not inside_metric:
                upper[k] = np.float32(far_mm)
            upper[k, a1 - 1 : b1, c1 - 1 : d1] = u[a1 - a : b1 - a + 1, c1 - c : d1 - c + 1]

    if split:
        split_work(slices, list(crops), costs, min_cost=_SPLIT_PIXELS)
        upper = np.array(upper)  # out of the shared mapping, before any later fork
    else:
        slices(list(crops))
    inside = p[:, 1:-1, 1:-1]
    if inside_metric:
        upper[~inside] = 0.0
    else:
        upper[inside] = 0.0
    return np.moveaxis(upper, 0, 2)


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
#: Fewest voxels for which :func:`_shift_minimum` splits its blocks between two threads
#: (numpy's loops release the GIL; below this a thread's start costs more than it saves).
_THREADED_VOXELS = 1 << 21


def _shift_minimum(
    out2: NDArray[np.float32], e2: NDArray[np.float32], offsets: Sequence[int], dz: float
) -> None:
    """``out2[k] = min(out2[k], e2[k +- m] + ((m - 1/2) dz)^2)`` for every offset m, in place
    (slices first), block of in-plane rows by block.

    Every block is independent (it reads and writes its own rows only), so on a large table
    the second half of the blocks goes to a second thread
    (:func:`lattice.forking.on_two_threads`): the same operations on the same values, hence
    the same result.
    """
    nk = out2.shape[0]
    offsets = [m for m in offsets if m < nk]
    if not offsets:
        return
    rows = max(1, _STACK_BLOCK // max(1, nk * out2.shape[2]))
    starts = list(range(0, out2.shape[1], rows))
    if out2.size < _THREADED_VOXELS or len(starts) < 2:
        _shift_blocks(out2, e2, offsets, dz, starts, rows)
        return
    half = len(starts) // 2
    on_two_threads(
        lambda: _shift_blocks(out2, e2, offsets, dz, starts[:half], rows),
        lambda: _shift_blocks(out2, e2, offsets, dz, starts[half:], rows),
    )


def _shift_blocks(
    out2: NDArray[np.float32],
    e2: NDArray[np.float32],
    offsets: Sequence[int],
    dz: float,
    starts: Sequence[int],
    rows: int,
) -> None:
    """:func:`_shift_minimum` on the blocks of ``rows`` in-plane rows from each of ``starts``.

    Within a block, offset m only touches the run of slices that it can lower: slab k + m
    (or k - m) can lower slice k only where the block's smallest ``e2`` on slab k + m plus
    ``z2`` is below the block's largest ``out2`` on slice k. The test is made in float32, as
    the sums are (rounding is monotone: no skipped sum is below the largest value it would
    meet), and with the largest values found at the start (values only fall since): the
    minimum, and so the table, is the same bit for bit. Slabs beyond an organ's slices (inf),
    and slices already nearer than the slab gap, are skipped (the benchmark case's OAR table:
    three quarters of the slice-offset pairs; the GTV depth table: a third).
    """
    nk = out2.shape[0]
    buf = np.empty((nk, rows, out2.shape[2]), dtype=np.float32)
    for a in starts:
        o, e = out2[:, a : a + rows], e2[:, a : a + rows]
        t = buf[:, : o.shape[1]]
        largest = o.reshape(nk, -1).max(axis=1)  # views: every slice's block is contiguous
        smallest = e.reshape(nk, -1).min(axis=1)
        for m in offsets:
            zc = (m - 0.5) * dz
            z2 = np.float32(zc * zc)
            for src, (lo, hi) in zip((m, -m), lowered_slices(smallest, largest, z2, m)):
                if lo < hi:
                    np.add(e[lo + src : hi + src], z2, out=t[lo:hi])
                    np.minimum(o[lo:hi], t[lo:hi], out=o[lo:hi])


def lowered_slices(
    smallest: NDArray[np.float32], largest: NDArray[np.float32], z2: np.float32, m: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The runs ``[lo, hi)`` of slices k that slab k + m, then slab k - m, may lower (see
    :func:`_shift_blocks`): ``smallest`` and ``largest`` are per slice (float32), ``z2`` the
    offset's squared gap. An empty run has ``lo == hi``. A slice or slab holding a NaN is
    never left out (``np.minimum`` would spread the NaN, as the plain loop does)."""
    nk = len(smallest)
    runs = []
    for first, src in ((0, m), (m, -m)):
        # Negated: a NaN on either side cannot be proved harmless, and is kept.
        lowers = np.flatnonzero(
            ~(smallest[max(src, 0) : nk + min(src, 0)] + z2 >= largest[first : nk - m + first])
        )
        if len(lowers) == 0:
            runs.append((first, first))
        else:
            runs.append((first + int(lowers[0]), first + int(lowers[-1]) + 1))
    return runs[0], runs[1]
