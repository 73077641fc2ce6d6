"""Brute-force distances to the TPS solids of masks, for the independent verifier.

The GTV and each OAR are the solids a TPS rebuilds from slice outlines (the RTSTRUCT's
polygons when the mask came from DICOM, marching squares at 0.5 of each slice otherwise),
each extruded half a slice gap above and below its plane (README "Definitions"). The
outlines are traced here from each slice's boundary edges (the same segments as
scikit-image's ``find_contours``, tested against it), not with the planner's tables. Every
segment of every slab in reach is measured and inside-ness is the crossing number: this
shares nothing with the planner's voxel tables, trees or bounds (:mod:`lattice.geometry.surface`,
:mod:`lattice.planning.rules`), so a bug there cannot hide itself here. Only
:class:`~lattice.geometry.surface.ContourVolume` is recognised, to use a mask's own polygons.
"""

from __future__ import annotations

import numpy as np
from nibabel.affines import apply_affine
from numpy.typing import NDArray

from ..volume import Volume


def _contour_rings(mask: Volume, k: int) -> list[NDArray[np.float64]]:
    """The polygons (voxel indices i, j) of slice k of a mask rasterised from an RTSTRUCT."""
    from ..geometry.surface import ContourVolume

    assert isinstance(mask, ContourVolume)
    return [ring for kk, ring in mask.rings_ijk if kk == k]


def _outline_segments(images: NDArray[np.bool_]) -> list[NDArray[np.float64]]:
    """Per image of a stack ``(n, R, C)``, the directed segments ``(m, 4)`` ``(r0, c0, r1,
    c1)`` (array indices) of its level-0.5 outline: those scikit-image's
    ``find_contours(image, 0.5)`` joins into rings, for images framed with background.

    Derived from the boundary edges (the edges between an inside and an outside pixel, the
    outline crossing each at its midpoint), not from a case table: in a cell (2 x 2 pixels)
    with two boundary edges the outline joins their midpoints; in a saddle cell (two inside
    pixels diagonally opposite, four boundary edges) it cuts off each inside corner on its
    own (the outside is the connected phase, find_contours' default). Each segment is
    directed with its cell's inside corners on the same side as find_contours' rings run,
    so every coordinate and direction is the rings' (the distances are bit for bit theirs).
    """
    a = images
    ul, ur, ll, lr = a[:, :-1, :-1], a[:, :-1, 1:], a[:, 1:, :-1], a[:, 1:, 1:]
    kk, r, c = np.nonzero((ul ^ ur) | (ul ^ ll) | (ul ^ lr))  # the cells the outline crosses
    corners = [m[kk, r, c] for m in (ul, ur, ll, lr)]
    # Boundary edges of each cell: top, bottom, left, right; midpoints as (dr, dc).
    edges = (
        corners[0] ^ corners[1],
        corners[2] ^ corners[3],
        corners[0] ^ corners[2],
        corners[1] ^ corners[3],
    )
    mid = np.array([(0.0, 0.5), (1.0, 0.5), (0.5, 0.0), (0.5, 1.0)])
    corner = np.array([(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)])
    saddle_ad = corners[0] & corners[3] & ~corners[1] & ~corners[2]
    saddle_bc = corners[1] & corners[2] & ~corners[0] & ~corners[3]
    two = ~(saddle_ad | saddle_bc)
    first_inside = np.argmax(np.column_stack(corners), axis=1)
    # (first edge, second edge, the inside corner that fixes the direction, cells)
    jobs = [
        (e0, e1, first_inside, two & edges[e0] & edges[e1])
        for e0 in range(4)
        for e1 in range(e0 + 1, 4)
    ]
    jobs += [
        (0, 2, np.zeros_like(first_inside), saddle_ad),
        (1, 3, np.full_like(first_inside, 3), saddle_ad),
        (0, 3, np.ones_like(first_inside), saddle_bc),
        (1, 2, np.full_like(first_inside, 2), saddle_bc),
    ]
    base = np.column_stack([r, c]).astype(np.float64)
    parts, owner = [], []
    for e0, e1, inside, cells in jobs:
        at = np.flatnonzero(cells)
        p, q, w = base[at] + mid[e0], base[at] + mid[e1], base[at] + corner[inside[at]]
        d, v = q - p, w - p
        flip = d[:, 0] * v[:, 1] - d[:, 1] * v[:, 0] > 0  # the other way round
        p[flip], q[flip] = q[flip], p[flip].copy()
        parts.append(np.column_stack([p, q]))
        owner.append(kk[at])
    segs, owner_k = np.concatenate(parts), np.concatenate(owner)
    order = np.argsort(owner_k, kind="stable")
    bounds = np.searchsorted(owner_k[order], np.arange(len(a) + 1))
    return [segs[order[bounds[i] : bounds[i + 1]]] for i in range(len(a))]


#: Point-segment pairs per block of the in-plane computation (memory ~ 8 bytes each, times
#: the dozen temporaries).
_PAIR_BLOCK = 200_000

#: Pixels per block of slices traced together (memory: a dozen bool arrays of that size).
_OUTLINE_BLOCK = 1_000_000

#: Slab offsets measured per round of :meth:`_Slabs.measure`.
_OFFSETS_PER_ROUND = 4


class _Slabs:
    """Brute-force distances to the TPS solid of a mask (README "Definitions").

    Each slice's outline is extruded half a slice gap each side. In the grid frame
    ``(i dx, j dy, k dz)`` the distance from a point to the outside of the solid (depth) is the
    least ``sqrt(e_j^2 + z_j^2)`` over slabs j (e_j: in-plane distance to slab j's outline
    when inside it, else 0; z_j: distance to the slab's extent), and the distance to the solid
    the same with e_j = 0 inside and the distance to the outline outside. Every segment of a
    slab is measured, and inside-ness is the crossing number: no tables, trees or shortcuts,
    so this shares nothing with the planner's fast path beyond the definition.
    """

    def __init__(self, mask: Volume) -> None:
        self.mask = mask
        self.vox = mask.voxel_size_mm
        self.inv = np.linalg.inv(mask.affine)
        self._segs: dict[int, NDArray[np.float64] | None] = {}
        self._crop: tuple[NDArray[np.int64], NDArray[np.bool_]] | None = None

    def _slices_first(self) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """The mask's bounding box: its first voxel, and the box with slices first (each
        slice contiguous: a slice of the last axis of the whole volume is a slow strided
        view), made once."""
        if self._crop is None:
            arr = np.asarray(self.mask.array, dtype=bool)
            lo = np.zeros(3, dtype=np.int64)
            hi = np.zeros(3, dtype=np.int64)
            footprint: NDArray[np.bool_] = np.asarray(arr.any(axis=2))  # contiguous axis: fast
            for ax, hit in enumerate(
                (np.flatnonzero(footprint.any(axis=1)), np.flatnonzero(footprint.any(axis=0)))
            ):
                if len(hit):
                    lo[ax], hi[ax] = hit[0], hit[-1] + 1
            box = arr[lo[0] : hi[0], lo[1] : hi[1]]
            hit = np.flatnonzero(box.any(axis=(0, 1)))
            if len(hit):
                lo[2], hi[2] = hit[0], hit[-1] + 1
            box = box[:, :, lo[2] : hi[2]]
            self._crop = (lo, np.ascontiguousarray(np.moveaxis(box, 2, 0)))
        return self._crop

    def segments(self, k: int) -> NDArray[np.float64] | None:
        """(n, 4) segments (u0, v0, u1, v1) of slice k in mm, None for an empty slice."""
        from ..geometry.surface import ContourVolume

        if k in self._segs:
            return self._segs[k]
        if isinstance(self.mask, ContourVolume):
            rings = [
                np.asarray(r, dtype=np.float64)[:, :2] * self.vox[:2]
                for r in _contour_rings(self.mask, k)
            ]
            segs = [np.column_stack([r, np.roll(r, -1, axis=0)]) for r in rings if len(r) >= 2]
            self._segs[k] = np.concatenate(segs) if segs else None
        else:
            self._trace(k)
        return self._segs[k]

    def _trace(self, k: int) -> None:
        """The outline segments of the block of slices holding slice k (every slice of the
        mask's bounding box is in one block of about :data:`_OUTLINE_BLOCK` pixels)."""
        lo, first = self._slices_first()
        nk, ni, nj = first.shape
        if not lo[2] <= k < lo[2] + nk:
            self._segs[k] = None
            return
        step = max(1, _OUTLINE_BLOCK // ((ni + 2) * (nj + 2)))
        a = (k - int(lo[2])) // step * step
        block = first[a : a + step]
        framed = np.zeros((len(block), ni + 2, nj + 2), dtype=bool)  # outlines close inside
        framed[:, 1:-1, 1:-1] = block
        # Framed indices back to the mask's (whole half-integers: exact), then to mm.
        shift = np.array([lo[0], lo[1], lo[0], lo[1]], dtype=np.float64) - 1.0
        scale = np.tile(self.vox[:2], 2)
        for t, seg in enumerate(_outline_segments(framed)):
            self._segs[int(lo[2]) + a + t] = (seg + shift) * scale if len(seg) else None

    def _inplane(
        self, ks: NDArray[np.int64], q: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Distance to slice ``ks[i]``'s outline and even-odd inside-ness of point ``q[i]``
        (``q (m, 2)``); inf and outside on empty slices.

        Every segment of the slice is measured: the slices' segments are stacked into one
        table padded with copies of a real segment (they change no minimum and are left out
        of the crossing count), and point i meets every row of its slice at once.
        """
        dist = np.full(len(q), np.inf)
        inside = np.zeros(len(q), dtype=bool)
        uk, inv = np.unique(ks, return_inverse=True)
        segs = [self.segments(int(k)) for k in uk]
        has = np.array([s is not None for s in segs], dtype=bool)
        if not has.any():
            return dist, inside
        width = max(len(s) for s in segs if s is not None)
        table = np.zeros((len(uk), width, 4))
        valid = np.zeros((len(uk), width), dtype=bool)
        for row, s in enumerate(segs):
            if s is not None:
                table[row, : len(s)] = s
                table[row, len(s) :] = s[0]
                valid[row, : len(s)] = True
        todo = np.flatnonzero(has[inv])
        step = max(1, _PAIR_BLOCK // width)
        for a in range(0, len(todo), step):
            rows = todo[a : a + step]
            s, ok = table[inv[rows]], valid[inv[rows]]
            qx, qy = q[rows, 0:1], q[rows, 1:2]
            x0, y0, x1, y1 = s[..., 0], s[..., 1], s[..., 2], s[..., 3]
            abx, aby = x1 - x0, y1 - y0
            rx, ry = qx - x0, qy - y0
            t = np.clip((rx * abx + ry * aby) / np.maximum(abx * abx + aby * aby, 1e-300), 0, 1)
            ex, ey = rx - t * abx, ry - t * aby
            dist[rows] = np.sqrt(np.min(ex * ex + ey * ey, axis=1))
            spans = ok & (np.minimum(y0, y1) <= qy) & (qy < np.maximum(y0, y1))
            with np.errstate(divide="ignore", invalid="ignore"):
                x = x0 + (qy - y0) / (y1 - y0) * abx
            inside[rows] = np.count_nonzero(spans & (x > qx), axis=1) % 2 == 1
        return dist, inside

    def measure(
        self, points_ras_mm: NDArray[np.float64], *, depth: bool, cap_mm: float = np.inf
    ) -> NDArray[np.float64]:
        """Depth below (``depth=True``) or distance to the solid of each point, capped.

        The own slab first, then slabs j0 +- m, a few offsets m per round, for the points
        whose bound still exceeds ``(m - 1) dz`` (no slab farther can come nearer).
        """
        n = len(points_ras_mm)
        if n == 0:
            return np.zeros(0)
        dz = float(self.vox[2])
        uvw = apply_affine(self.inv, points_ras_mm) * self.vox
        j0 = np.rint(uvw[:, 2] / dz).astype(np.int64)
        best = np.full(n, cap_mm, dtype=np.float64)
        e, inside = self._inplane(j0, uvw[:, :2])
        if depth:
            best = np.where(inside, np.minimum(best, e), 0.0)
            live = inside
        else:
            best = np.where(inside, 0.0, np.minimum(best, e))
            live = np.ones(n, dtype=bool)
        nk = self.mask.shape[2]
        m = 1
        while True:
            live &= (m - 1) * dz < best  # slab j0 +- m is at least (m - 1) dz away
            if not live.any() or (j0[live].max() - m < -1 and j0[live].min() + m > nk):
                break
            # Offsets m .. m + R - 1, both signs, for every live point at once: a term that
            # the bound would have skipped is at least the bound, so it changes nothing.
            offs = np.arange(m, m + _OFFSETS_PER_ROUND)
            offs = np.concatenate([-offs, offs])
            live_rows = np.flatnonzero(live)
            rows = np.repeat(live_rows, len(offs))
            k = j0[rows] + np.tile(offs, len(live_rows))
            z = np.maximum(np.abs(uvw[rows, 2] - k * dz) - 0.5 * dz, 0.0)
            e, inside = self._inplane(k, uvw[rows, :2])
            if depth:
                term = np.hypot(np.where(inside, e, 0.0), z)
            else:
                term = np.hypot(np.where(inside, 0.0, e), z)  # inf on empty slabs
            np.minimum.at(best, rows, term)
            m += _OFFSETS_PER_ROUND
        return best


def depth_mm(
    gtv: Volume, points_ras_mm: NDArray[np.float64], *, cap_mm: float | None = None
) -> NDArray[np.float64]:
    """Depth (mm) of each point below the GTV's TPS surface (0 outside), capped."""
    return _Slabs(gtv).measure(
        points_ras_mm, depth=True, cap_mm=np.inf if cap_mm is None else cap_mm
    )


def distance_to_mask_mm(
    mask: Volume, points_ras_mm: NDArray[np.float64], *, cap_mm: float | None = None
) -> NDArray[np.float64]:
    """Distance (mm) from each point to the OAR's TPS solid (0 inside), capped."""
    if len(points_ras_mm) == 0:
        return np.zeros(0)
    return _Slabs(mask).measure(
        points_ras_mm, depth=False, cap_mm=np.inf if cap_mm is None else cap_mm
    )
