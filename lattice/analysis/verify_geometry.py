"""Brute-force distances to the TPS solids of masks, for the independent verifier.

The GTV and each OAR are the solids a TPS rebuilds from slice outlines (the RTSTRUCT's
polygons when the mask came from DICOM, marching squares at 0.5 of each slice otherwise),
each extruded half a slice gap above and below its plane (README "Definitions"). Every
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


def _slice_rings(mask: Volume, k: int) -> list[NDArray[np.float64]]:
    """Closed outlines (voxel indices i, j) of slice k: the mask's own polygons when it was
    rasterised from an RTSTRUCT, otherwise marching squares at 0.5 of the padded slice."""
    from skimage.measure import find_contours

    from ..geometry.surface import ContourVolume

    if isinstance(mask, ContourVolume):
        return [ring for kk, ring in mask.rings_ijk if kk == k]
    plane = np.asarray(mask.array[:, :, k], dtype=bool)
    ii = np.flatnonzero(plane.any(axis=1))
    if len(ii) == 0:
        return []
    jj = np.flatnonzero(plane.any(axis=0))
    sub = plane[ii[0] : ii[-1] + 1, jj[0] : jj[-1] + 1]  # same outlines, shifted back below
    off = np.array([ii[0], jj[0]], dtype=np.float64) - 1.0
    return [line[:-1] + off for line in find_contours(np.pad(sub, 1).astype(float), 0.5)]


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

    def segments(self, k: int) -> NDArray[np.float64] | None:
        """(n, 4) segments (u0, v0, u1, v1) of slice k in mm, None for an empty slice."""
        if k not in self._segs:
            rings = (
                [
                    np.asarray(r, dtype=np.float64)[:, :2] * self.vox[:2]
                    for r in _slice_rings(self.mask, k)
                ]
                if 0 <= k < self.mask.shape[2]
                else []
            )
            segs = [np.column_stack([r, np.roll(r, -1, axis=0)]) for r in rings if len(r) >= 2]
            self._segs[k] = np.concatenate(segs) if segs else None
        return self._segs[k]

    def _inplane(
        self, k: int, q: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Distance to slice k's outline and even-odd inside-ness of points ``q (m, 2)``."""
        s = self.segments(k)
        if s is None:
            return np.full(len(q), np.inf), np.zeros(len(q), dtype=bool)
        a, ab = s[None, :, :2], (s[:, 2:] - s[:, :2])[None]
        rel = q[:, None, :] - a
        t = np.clip(
            np.sum(rel * ab, axis=2) / np.maximum(np.sum(ab * ab, axis=2), 1e-300), 0.0, 1.0
        )
        dist = np.sqrt(np.min(np.sum((rel - t[..., None] * ab) ** 2, axis=2), axis=1))
        y0, y1 = s[None, :, 1], s[None, :, 3]
        qy = q[:, 1:2]
        spans = (np.minimum(y0, y1) <= qy) & (qy < np.maximum(y0, y1))
        with np.errstate(divide="ignore", invalid="ignore"):
            x = s[None, :, 0] + (qy - y0) / (y1 - y0) * (s[None, :, 2] - s[None, :, 0])
        inside = np.count_nonzero(spans & (x > q[:, :1]), axis=1) % 2 == 1
        return dist, inside

    def measure(
        self, points_ras_mm: NDArray[np.float64], *, depth: bool, cap_mm: float = np.inf
    ) -> NDArray[np.float64]:
        """Depth below (``depth=True``) or distance to the solid of each point, capped."""
        n = len(points_ras_mm)
        if n == 0:
            return np.zeros(0)
        dz = float(self.vox[2])
        uvw = apply_affine(self.inv, points_ras_mm) * self.vox
        j0 = np.rint(uvw[:, 2] / dz).astype(np.int64)
        best = np.full(n, cap_mm, dtype=np.float64)
        live = np.ones(n, dtype=bool)
        for k in np.unique(j0):  # the own slab
            rows = np.flatnonzero(j0 == k)
            e, inside = self._inplane(int(k), uvw[rows, :2])
            if depth:
                best[rows] = np.where(inside, np.minimum(best[rows], e), 0.0)
                live[rows] = inside
            else:
                best[rows] = np.where(inside, 0.0, np.minimum(best[rows], e))
        nk = self.mask.shape[2]
        m = 0
        while True:
            m += 1
            live &= (m - 1) * dz < best  # slab j0 +- m is at least (m - 1) dz away
            if not live.any() or (j0[live].max() - m < -1 and j0[live].min() + m > nk):
                break
            for sign in (-1, 1):
                j = j0 + sign * m
                for k in np.unique(j[live]):
                    rows = np.flatnonzero(live & (j == k))
                    z = np.maximum(np.abs(uvw[rows, 2] - k * dz) - 0.5 * dz, 0.0)
                    e, inside = self._inplane(int(k), uvw[rows, :2])
                    if depth:
                        term = np.hypot(np.where(inside, e, 0.0), z)
                    else:
                        term = np.hypot(np.where(inside, 0.0, e), z)  # inf on empty slabs
                    best[rows] = np.minimum(best[rows], term)
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
