"""Where the closed outlines of a slice cross: a ring crossing itself or another ring.

The even-odd rule that fills a slice's contours (RTSTRUCT rasterisation, the TPS surface)
makes a nested ring a hole. For rings that cross, it also makes their overlap a hole (two
overlapping contours drawn for one lesion) and a bow-tie's lobes alternate: what a TPS
rebuilds from such contours depends on its own rule, so the structure's shape is not known.
Only proper crossings count: rings that touch at a point or share a stretch of edge do not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

__all__ = ["crossing_slices", "overlap_slices"]

#: Segment pairs tested at once (memory: a few bytes each per array).
_BLOCK_PAIRS = 2_000_000


def crossing_slices(rings: Iterable[tuple[int, NDArray[np.float64]]]) -> list[int]:
    """The slices (sorted) on which two edges of the rings properly cross.

    Parameters
    ----------
    rings : iterable of (k, (n, 2) ndarray)
        Closed rings (first point not repeated) with their slice index, in any planar
        coordinates (voxel indices, mm: a crossing is affine-invariant).
    """
    by_slice: dict[int, list[NDArray[np.float64]]] = defaultdict(list)
    for k, ring in rings:
        a = np.asarray(ring, dtype=np.float64)
        if len(a) >= 3:
            by_slice[int(k)].append(a)
    return sorted(
        k
        for k, slice_rings in by_slice.items()
        if _any_crossing(
            np.concatenate([np.concatenate([a, np.roll(a, -1, axis=0)], 1) for a in slice_rings])
        )
    )


def overlap_slices(cells: dict[int, list[NDArray[np.int64]]]) -> list[int]:
    """The slices (sorted) on which two filled rings overlap without one holding the other.

    ``cells``: per slice, each ring's filled pixels (flat indices, distinct). Nested rings
    (a hole) and disjoint ones pass; a ring and a copy of it shifted along a row, whose
    staircase edges only meet where they cannot cross properly, do not. An overlap smaller
    than a pixel centre is not seen.
    """
    out = []
    for k, filled in cells.items():
        if any(
            0 < len(np.intersect1d(a, b, assume_unique=True)) < min(len(a), len(b))
            for m, a in enumerate(filled)
            for b in filled[m + 1 :]
        ):
            out.append(k)
    return sorted(out)


def _any_crossing(seg: NDArray[np.float64]) -> bool:
    """Whether two of the segments ``(m, 4)`` (x0, y0, x1, y1) cross at a point inside both
    (adjacent edges share an end, and touching ends never count)."""
    lo = np.minimum(seg[:, :2], seg[:, 2:])
    hi = np.maximum(seg[:, :2], seg[:, 2:])
    order = np.argsort(lo[:, 0], kind="stable")
    seg, lo, hi = seg[order], lo[order], hi[order]
    # Pairs (i, j > i) whose x ranges overlap: j up to the last segment starting before i ends.
    last = np.searchsorted(lo[:, 0], hi[:, 0], side="right")
    counts = np.maximum(last - np.arange(len(seg)) - 1, 0)
    start = 0
    while start < len(seg):
        stop, pairs = start, 0
        while stop < len(seg) and (pairs == 0 or pairs + counts[stop] <= _BLOCK_PAIRS):
            pairs += int(counts[stop])
            stop += 1
        if pairs:
            i = np.repeat(np.arange(start, stop), counts[start:stop])
            j = (
                i
                + 1
                + (
                    np.arange(pairs)
                    - np.repeat(
                        np.cumsum(counts[start:stop]) - counts[start:stop], counts[start:stop]
                    )
                )
            )
            near = (lo[i, 1] <= hi[j, 1]) & (lo[j, 1] <= hi[i, 1])
            if near.any() and _cross(seg[i[near]], seg[j[near]]).any():
                return True
        start = stop
    return False


def _cross(p: NDArray[np.float64], q: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Row-wise: segment p and segment q cross properly (each one's ends strictly on both
    sides of the other's line)."""

    def side(a: NDArray[np.float64], b: NDArray[np.float64], c: NDArray[np.float64]):
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

    p0, p1, q0, q1 = p[:, :2], p[:, 2:], q[:, :2], q[:, 2:]
    return (side(p0, p1, q0) * side(p0, p1, q1) < 0) & (side(q0, q1, p0) * side(q0, q1, p1) < 0)
