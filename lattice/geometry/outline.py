"""Slice outlines: closed polygons on one slice plane, and exact in-plane distances to them.

An outline is a set of segments in the in-plane grid frame ``(i dx, j dy)`` (mm): the
RTSTRUCT's own polygons (split into pieces of at most a pixel) or the marching-squares contour
at level 0.5 of a mask slice. Distances are exact point-to-segment distances; inside-ness is
the crossing number (even-odd rule). :mod:`lattice.geometry.surface` extrudes outlines into the
solid a TPS rebuilds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

#: Segments longer than this many in-plane pixel sizes are split (same polyline, shorter
#: pieces) so that the nearest-midpoint search below has a tight certificate.
MAX_SEGMENT_PX = 1.0

#: Nearest midpoints examined first per query point (the certificate usually holds at once).
_K_FIRST = 8

#: Up to this many point-segment pairs, distances are computed for every pair (no tree).
_BRUTE_FORCE_PAIRS = 60_000

#: Points x segments per block of the vectorised crossing-number test (memory ~ 8 bytes each).
_CROSSING_BLOCK = 500_000


@dataclass(frozen=True, eq=False)
class SliceOutline:
    """Closed polygons of one slice plane, as segments in the in-plane grid frame (mm).

    Attributes
    ----------
    segments : (n, 4) ndarray of float
        ``(u0, v0, u1, v1)`` per segment.
    """

    segments: NDArray[np.float64]
    _half_max: float = 0.0

    @cached_property
    def _tree(self) -> cKDTree | None:
        """Tree of the segment midpoints, built on first use: most slices are only ever
        measured for a few points, every segment at once."""
        if self.empty:
            return None
        s = self.segments
        return cKDTree(0.5 * (s[:, :2] + s[:, 2:]))

    @classmethod
    def from_rings(
        cls, rings_uv: Sequence[NDArray[np.float64]], *, max_len_mm: float
    ) -> SliceOutline:
        """Outline from closed rings ``(m, 2)`` (first point not repeated)."""
        segs = []
        for ring in rings_uv:
            if len(ring) < 2:
                continue
            a = np.asarray(ring, dtype=np.float64)
            b = np.roll(a, -1, axis=0)
            length = np.linalg.norm(b - a, axis=1)
            pieces = np.maximum(np.ceil(length / max_len_mm - 1e-9), 1).astype(int)
            if pieces.max() == 1:
                segs.append(np.column_stack([a, b]))
                continue
            rep = np.repeat(np.arange(len(a)), pieces)
            t0 = np.concatenate([np.arange(p) / p for p in pieces])
            t1 = np.concatenate([np.arange(1, p + 1) / p for p in pieces])
            d = (b - a)[rep]
            segs.append(np.column_stack([a[rep] + t0[:, None] * d, a[rep] + t1[:, None] * d]))
        s = np.concatenate(segs) if segs else np.zeros((0, 4))
        s = s[np.any(s[:, :2] != s[:, 2:], axis=1)]
        if len(s) == 0:
            return cls(s)
        half = 0.5 * float(np.linalg.norm(s[:, 2:] - s[:, :2], axis=1).max())
        return cls(s, half)

    @classmethod
    def from_segments(cls, segments: NDArray[np.float64]) -> SliceOutline:
        """Outline from segments ``(n, 4)`` already at most a pixel long (mask outlines)."""
        s = segments[np.any(segments[:, :2] != segments[:, 2:], axis=1)]
        if len(s) == 0:
            return cls(np.zeros((0, 4)))
        half = 0.5 * float(np.linalg.norm(s[:, 2:] - s[:, :2], axis=1).max())
        return cls(s, half)

    @property
    def empty(self) -> bool:
        return len(self.segments) == 0

    def boundary_distance(self, q: NDArray[np.float64]) -> NDArray[np.float64]:
        """Exact distance (mm) from in-plane points ``(m, 2)`` to the nearest segment.

        The k nearest segment midpoints are tried first; the answer is certified when the
        k-th midpoint is farther than the best segment plus the longest half segment (no
        unseen segment can then be nearer), otherwise k grows, up to every segment.
        """
        q = np.asarray(q, dtype=np.float64).reshape(-1, 2)
        out = np.full(len(q), np.inf)
        if self.empty or len(q) == 0:
            return out
        n = len(self.segments)
        if len(q) * n <= _BRUTE_FORCE_PAIRS:
            # Few points: every segment at once is cheaper than the tree.
            return _point_segment_distance(q[:, None, :], self.segments[None, :, :]).min(axis=1)
        assert self._tree is not None
        todo = np.arange(len(q))
        k = min(_K_FIRST, n)
        while len(todo):
            dmid, idx = self._tree.query(q[todo], k=k)
            dmid = dmid.reshape(len(todo), -1)
            idx = idx.reshape(len(todo), -1)
            best = _point_segment_distance(q[todo][:, None, :], self.segments[idx]).min(axis=1)
            done = (k >= n) | (dmid[:, -1] - self._half_max >= best)
            out[todo[done]] = best[done]
            todo = todo[~done]
            k = min(4 * k, n)
        return out

    def contains(self, q: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Even-odd inside test of in-plane points ``(m, 2)`` (crossing number, ray to +u)."""
        q = np.asarray(q, dtype=np.float64).reshape(-1, 2)
        out = np.zeros(len(q), dtype=bool)
        if self.empty or len(q) == 0:
            return out
        s = self.segments
        step = max(1, _CROSSING_BLOCK // max(len(s), 1))
        for a in range(0, len(q), step):
            out[a : a + step] = _crossing_parity(q[a : a + step], s[None, :, :])
        return out


def _crossing_parity(
    q: NDArray[np.float64], seg: NDArray[np.float64], valid: NDArray[np.bool_] | None = None
) -> NDArray[np.bool_]:
    """Odd crossing number of the ray to +u from each point ``q (m, 2)`` with its segments
    ``seg (m or 1, n, 4)`` (only those where ``valid (m, n)``, when given)."""
    u, v = q[:, :1], q[:, 1:]
    lo_v = np.minimum(seg[..., 1], seg[..., 3])
    hi_v = np.maximum(seg[..., 1], seg[..., 3])
    spans = (lo_v <= v) & (v < hi_v)
    if valid is not None:
        spans &= valid
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (v - seg[..., 1]) / (seg[..., 3] - seg[..., 1])
        u_cross = seg[..., 0] + t * (seg[..., 2] - seg[..., 0])
    return (np.count_nonzero(spans & (u_cross > u), axis=1) % 2) == 1


def _point_segment_distance(
    p: NDArray[np.float64], seg: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Distance from points ``p (..., 2)`` to segments ``seg (..., 4)`` (broadcast)."""
    ax, ay = seg[..., 0], seg[..., 1]
    dx, dy = seg[..., 2] - ax, seg[..., 3] - ay
    px, py = p[..., 0] - ax, p[..., 1] - ay
    len2 = dx * dx + dy * dy
    t = np.clip((px * dx + py * dy) / np.where(len2 > 0, len2, 1.0), 0.0, 1.0)
    ex, ey = px - t * dx, py - t * dy
    return np.sqrt(ex * ex + ey * ey)


# Marching squares at level 0.5 of a boolean image, cell by cell. A cell's corners are bits
# 1 (r, c), 2 (r, c+1), 4 (r+1, c), 8 (r+1, c+1); its edges are named by their midpoints:
# top (r, c+1/2), bottom (r+1, c+1/2), left (r+1/2, c), right (r+1/2, c+1). Each case lists
# its segments as edge pairs. In the two saddle cases the inside corners stay apart (the
# outside is the connected phase), as scikit-image's find_contours does by default
# (fully_connected="low"), so outlines match the contours the RTSTRUCT writer exports.
_EDGE_OFFSET = {"t": (0.0, 0.5), "b": (1.0, 0.5), "l": (0.5, 0.0), "r": (0.5, 1.0)}
_CASES: dict[int, tuple[str, ...]] = {
    1: ("tl",),
    2: ("tr",),
    3: ("lr",),
    4: ("lb",),
    5: ("tb",),
    6: ("tr", "lb"),
    7: ("rb",),
    8: ("rb",),
    9: ("tl", "rb"),
    10: ("tb",),
    11: ("lb",),
    12: ("lr",),
    13: ("tr",),
    14: ("tl",),
}


def _case_table() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per case (0-15): the first and second segment as corner offsets ``(dr0, dc0, dr1, dc1)``
    (NaN where the case has none)."""
    first = np.full((16, 4), np.nan)
    second = np.full((16, 4), np.nan)
    for case, pairs in _CASES.items():
        for table, pair in zip((first, second), pairs):
            table[case] = (*_EDGE_OFFSET[pair[0]], *_EDGE_OFFSET[pair[1]])
    return first, second


_FIRST_SEGMENT, _SECOND_SEGMENT = _case_table()


def marching_squares_segments(image: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Segments ``(n, 4)`` ``(r0, c0, r1, c1)`` (array indices) of the level-0.5 outline of a
    boolean image: the same segments as scikit-image's ``find_contours(image, 0.5)``, not
    joined into rings (distances and the even-odd test need segments only)."""
    a = image.astype(np.uint8)
    code = a[:-1, :-1] | (a[:-1, 1:] << 1) | (a[1:, :-1] << 2) | (a[1:, 1:] << 3)
    flat = code.ravel()
    cells = np.flatnonzero((flat != 0) & (flat != 15))
    cases = flat[cells]
    r, c = np.divmod(cells, code.shape[1])
    corner = np.column_stack([r, c, r, c]).astype(np.float64)
    saddle = np.flatnonzero(np.isin(cases, (6, 9)))
    return np.concatenate(
        [corner + _FIRST_SEGMENT[cases], corner[saddle] + _SECOND_SEGMENT[cases[saddle]]]
    )


def marching_squares_stack(images: NDArray[np.bool_]) -> list[NDArray[np.float64]]:
    """:func:`marching_squares_segments` of each image of a stack ``(n, R, C)``, computed for
    the whole stack at once: per image the same segments in the same order."""
    a = images.astype(np.uint8)
    code = a[:, :-1, :-1] | (a[:, :-1, 1:] << 1) | (a[:, 1:, :-1] << 2) | (a[:, 1:, 1:] << 3)
    flat = code.reshape(len(images), -1)
    kk, cells = np.nonzero((flat != 0) & (flat != 15))
    cases = flat[kk, cells]
    r, c = np.divmod(cells, code.shape[2])
    corner = np.column_stack([r, c, r, c]).astype(np.float64)
    first = corner + _FIRST_SEGMENT[cases]
    saddle = np.flatnonzero(np.isin(cases, (6, 9)))
    second = corner[saddle] + _SECOND_SEGMENT[cases[saddle]]
    bounds = np.arange(len(images) + 1)
    c1 = np.searchsorted(kk, bounds)
    c2 = np.searchsorted(kk[saddle], bounds)
    return [
        np.concatenate([first[c1[i] : c1[i + 1]], second[c2[i] : c2[i + 1]]])
        for i in range(len(images))
    ]
