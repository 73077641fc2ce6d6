"""The solid a treatment planning system rebuilds from slice contours, and distances to it.

A TPS does not see voxels: it sees one closed outline per slice plane and rebuilds a structure
by extruding each outline half a slice gap above and below its plane. This module builds that
solid for a mask and measures distances to it exactly.

The model (README "Definitions", plan.json ``surface_model``)
-------------------------------------------------------------
"Slices" are the planes ``k = const`` of the grid's third array axis, whatever the
orientation. Work happens in the grid frame ``(u, v, w) = (i dx, j dy, k dz)`` (mm), which is
isometric to the world for the orthogonal affines the planner accepts (flipped, permuted and
oblique grids included).

* On slice k the outline ``P_k`` is, for a voxel mask, the marching-squares contour at level
  0.5 of that slice (half way between inside and outside voxel centres; scikit-image's
  ``find_contours`` on the slice padded with background, segment for segment, see
  :mod:`lattice.geometry.outline`; the same contours the RTSTRUCT writer exports); for DICOM input,
  the RTSTRUCT's own polygons. Holes follow the even-odd rule.
* The solid is ``S = union_k P_k x [w_k - dz/2, w_k + dz/2]``; slices without an outline, and
  everything beyond the first and last slice, are empty.
* The **depth** of a point p = (q, w) is its distance to the outside of S. The outside of S is
  the union over slabs j of ``(R^2 \\ P_j) x slab_j`` (plus the space beyond the stack), and the
  distance to a product set is the root sum of squares of the distances in each factor, so

      depth(p) = min_j sqrt(e_j(q)^2 + z_j(w)^2),

  with ``e_j(q)`` the in-plane distance from q to the boundary of ``P_j`` when q is inside
  ``P_j`` and 0 otherwise, and ``z_j(w)`` the distance from w to slab j's interval.
* The **distance** of a point to S (used for OARs) is ``min_j sqrt(f_j(q)^2 + z_j(w)^2)`` with
  ``f_j(q)`` = 0 inside ``P_j``, else the in-plane distance to its boundary (inf for an empty
  slice).

In-plane distances are exact point-to-segment distances (float64); inside-ness is the crossing
number of the polygons (even-odd), short-cut by the voxel mask where that is provably the same.

At voxel centres (the table the placement search reads) the in-plane distance is computed
exactly for every pixel that can matter and bounded elsewhere (see
:meth:`SlabSolid.voxel_depth_bounds`), so the resulting depth is exact wherever it is at most
``exact_to_mm``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ..volume import Volume
from .margins import bounding_box
from .outline import _BRUTE_FORCE_PAIRS, MAX_SEGMENT_PX, SliceOutline, marching_squares_stack
from .surface_tables import inplane_few, mask_vertex_bounds, stack_slabs

#: Pixels per block of slices whose outlines are made together.
_OUTLINE_BLOCK = 1 << 20

#: Name of the model recorded in plan.json ``surface_model``.
MODEL_NAME = "tps_slab_extrusion"

#: One-paragraph statement of the model for plan.json and reports.
MODEL_TEXT = (
    "GTV and OARs are the solids a TPS rebuilds from slice contours: on each plane of the grid's "
    "third axis the outline (RTSTRUCT polygons for DICOM input, the marching-squares contour at "
    "0.5 for a mask; holes by the even-odd rule) is extruded half a slice gap above and below "
    "its plane. Depth is the distance to the outside of the GTV solid; OAR distance is the "
    "distance to the OAR solid. Every rule (GTV margin, OAR clearance, shell band, LATTICE "
    "target = voxel centres deeper than the margin) uses these exact distances."
)


@dataclass(frozen=True, eq=False)
class SlabSolid:
    """The TPS solid of one structure on a grid (see the module docstring).

    Parameters
    ----------
    mask : (I, J, K) ndarray of bool
        Which voxel centres are inside (for DICOM input: the polygons rasterised by the
        even-odd rule at voxel centres).
    voxel_size_mm : (3,) float
    rings_ijk : sequence of (k, (m, 2) ndarray), optional
        The structure's own polygons in voxel indices (i, j) on slice k (DICOM input). Without
        them the outlines are the mask's marching-squares contours.
    """

    mask: NDArray[np.bool_]
    voxel_size_mm: NDArray[np.float64]
    rings_ijk: tuple[tuple[int, NDArray[np.float64]], ...] | None = None
    _outlines: dict[int, SliceOutline] = field(default_factory=dict, repr=False)
    #: Per metric (True: depth, False: distance), the last voxel tables' per-slice in-plane
    #: lower bounds and the index of their first voxel, kept to prune exact queries.
    _plane_lo: dict[bool, tuple[NDArray[np.int64], NDArray[np.float32]]] = field(
        default_factory=dict, repr=False
    )
    _cache: dict[str, tuple[NDArray[np.int64], NDArray[np.bool_]]] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", np.asarray(self.mask, dtype=bool))
        object.__setattr__(self, "voxel_size_mm", np.asarray(self.voxel_size_mm, dtype=np.float64))
        if self.rings_ijk is not None:
            vox = self.voxel_size_mm
            per: dict[int, list[NDArray[np.float64]]] = {}
            for k, ring in self.rings_ijk:
                per.setdefault(int(k), []).append(
                    np.asarray(ring, dtype=np.float64)[:, :2] * vox[:2]
                )
            for k, rings in per.items():
                outline = self._outline_of(rings)
                if not outline.empty:
                    self._outlines[k] = outline
            object.__setattr__(self, "_slices", frozenset(self._outlines))
        else:
            ks = (
                np.flatnonzero(self.mask.any(axis=(0, 1)))
                if self.mask.size
                else np.zeros(0, dtype=np.int64)
            )
            object.__setattr__(self, "_slices", frozenset(int(k) for k in ks))

    @property
    def from_mask(self) -> bool:
        """True when the outlines are the mask's own marching-squares contours."""
        return self.rings_ijk is None

    @property
    def slice_gap_mm(self) -> float:
        return float(self.voxel_size_mm[2])

    def has_slice(self, k: int) -> bool:
        return k in self._slices  # type: ignore[attr-defined]

    def outline(self, k: int) -> SliceOutline | None:
        """The outline of slice k (marching squares computed on first use), None if empty."""
        if not self.has_slice(k):
            return None
        got = self._outlines.get(k)
        if got is None:
            self._mask_outlines()
            got = self._outlines[k]
        return got

    def _mask_outlines(self) -> None:
        """The marching-squares outline of every slice of the mask, made on first use for
        the whole bounding box at once (a block of slices at a time), framed with background
        so outlines close beyond it."""
        lo, slices_first = self._slices_first()
        nk, ni, nj = slices_first.shape
        off = lo[:2].astype(np.float64) - 1.0
        vox = self.voxel_size_mm
        step = max(1, _OUTLINE_BLOCK // max(1, (ni + 2) * (nj + 2)))
        for a in range(0, nk, step):
            block = slices_first[a : a + step]
            framed = np.zeros((len(block), ni + 2, nj + 2), dtype=bool)
            framed[:, 1:-1, 1:-1] = block
            for kk, seg in enumerate(marching_squares_stack(framed)):
                k = int(lo[2]) + a + kk
                if not self.has_slice(k):
                    continue
                seg[:, :2] += off
                seg[:, 2:] += off
                seg[:, :2] *= vox[:2]
                seg[:, 2:] *= vox[:2]
                self._outlines[k] = SliceOutline.from_segments(seg)

    def _slices_first(self) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """The mask's bounding box (its first voxel, and the box with slices first, each
        slice contiguous), made once: a slice of the last axis of the whole mask is a
        strided 2-D view, slow to scan slice after slice."""
        got = self._cache.get("slices_first")
        if got is None:
            box = bounding_box(self.mask)
            got = (
                np.array([b.start for b in box], dtype=np.int64),
                np.ascontiguousarray(np.moveaxis(self.mask[box], 2, 0)),
            )
            self._cache["slices_first"] = got
        return got

    def _outline_of(self, rings_uv: Sequence[NDArray[np.float64]]) -> SliceOutline:
        """A slice outline from rings in in-plane mm, split into pieces of at most a pixel."""
        return SliceOutline.from_rings(
            rings_uv, max_len_mm=MAX_SEGMENT_PX * float(self.voxel_size_mm[:2].max())
        )

    # -- in-plane, per slice ------------------------------------------------------------------

    def _inside(
        self, k: int, q_uv: NDArray[np.float64], dist: NDArray[np.float64]
    ) -> NDArray[np.bool_]:
        """Inside-ness on slice k of points whose boundary distance ``dist`` is known.

        Where the nearest voxel centre c of the slice is nearer to q than the boundary is, the
        segment q-c cannot cross the boundary, so q is inside exactly when c is. Elsewhere the
        crossing number decides.
        """
        outline = self.outline(k)
        if outline is None:
            return np.zeros(len(q_uv), dtype=bool)
        sure, bit = self.voxel_decides(q_uv, np.full(len(q_uv), k), dist)
        out = np.where(sure, bit, False)
        rest = ~sure
        if rest.any():
            out[rest] = outline.contains(q_uv[rest])
        return out

    def voxel_decides(
        self, q_uv: NDArray[np.float64], ks: NDArray[np.int64], dist: NDArray[np.float64]
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """``(sure, bit)`` for points ``q_uv`` on slices ``ks`` at in-plane boundary distance
        ``dist``: where the nearest voxel centre provably decides inside-ness (see
        :meth:`_inside`), and that centre's mask bit."""
        vox = self.voxel_size_mm[:2]
        ij = np.rint(q_uv / vox).astype(np.int64)
        gap = np.linalg.norm(q_uv - ij * vox, axis=1)
        in_array = np.all((ij >= 0) & (ij < np.array(self.mask.shape[:2])), axis=1)
        bit = np.zeros(len(q_uv), dtype=bool)
        bit[in_array] = self.mask[ij[in_array, 0], ij[in_array, 1], ks[in_array]]
        return (gap < dist) & (in_array | self.from_mask), bit

    def _inplane(
        self, k: int, q_uv: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        outline = self.outline(k)
        if outline is None:
            return np.full(len(q_uv), np.inf), np.zeros(len(q_uv), dtype=bool)
        dist = outline.boundary_distance(q_uv)
        return dist, self._inside(k, q_uv, dist)

    # -- exact point queries ------------------------------------------------------------------

    def depth(self, uvw: NDArray[np.float64], *, cap_mm: float = np.inf) -> NDArray[np.float64]:
        """Exact depth (mm) of grid-frame points ``(n, 3)``; values >= ``cap_mm`` become it."""
        return self._query(uvw, cap_mm, inside_metric=True)

    def distance(self, uvw: NDArray[np.float64], *, cap_mm: float = np.inf) -> NDArray[np.float64]:
        """Exact distance (mm) from grid-frame points ``(n, 3)`` to the solid, capped."""
        return self._query(uvw, cap_mm, inside_metric=False)

    def _query(
        self, uvw: NDArray[np.float64], cap_mm: float, *, inside_metric: bool
    ) -> NDArray[np.float64]:
        pts = np.atleast_2d(np.asarray(uvw, dtype=np.float64))
        n = len(pts)
        best = np.full(n, cap_mm, dtype=np.float64)
        if n == 0:
            return best
        dz = self.slice_gap_mm
        w = pts[:, 2]
        j0 = np.rint(w / dz).astype(np.int64)
        # The own slab first: for depth it decides inside-ness and bounds the answer, which
        # limits the other slabs worth measuring to those nearer than it.
        e0, in0 = self._inplane_many(j0, pts[:, :2])
        if inside_metric:
            best = np.where(in0, np.minimum(best, e0), 0.0)
            live = np.flatnonzero(in0 & (best > 0))
        else:
            best = np.where(in0, 0.0, np.minimum(best, e0))
            live = np.flatnonzero(best > 0)
        if len(live) == 0:
            return best
        slices = np.array(sorted(self._slices) or [0])  # type: ignore[attr-defined]
        # Slabs j != j0 with z offset below the current bound, every pair at once.
        far = int(max(abs(slices.max() - j0.min()), abs(j0.max() - slices.min()))) + 2
        reach = np.floor(np.minimum(best[live], (far + 1) * dz) / dz + 1.0).astype(np.int64)
        reach = np.minimum(reach, far)
        m_all = np.arange(1, int(reach.max()) + 1)
        rows, ms = np.nonzero(m_all[None, :] <= reach[:, None])
        rows = np.repeat(live[rows], 2)
        ms = np.stack([m_all[ms], -m_all[ms]], axis=1).ravel()
        j = j0[rows] + ms
        zoff = np.maximum(np.abs(w[rows] - j * dz) - 0.5 * dz, 0.0)
        keep = zoff < best[rows]
        rows, j, zoff = rows[keep], j[keep], zoff[keep]
        has = np.isin(j, slices) if not inside_metric else None
        if inside_metric:
            empty = ~np.isin(j, slices)
            np.minimum.at(best, rows[empty], zoff[empty])
            rows, j, zoff = rows[~empty], j[~empty], zoff[~empty]
        else:
            assert has is not None
            rows, j, zoff = rows[has], j[has], zoff[has]
        if len(rows):
            # Prune with the kept in-plane lower bounds: a pair whose term cannot go below
            # the current bound cannot change the answer.
            lb = self._plane_lower_bound(pts[rows, :2], j, inside_metric)
            keep = np.hypot(lb, zoff) < best[rows]
            rows, j, zoff = rows[keep], j[keep], zoff[keep]
        if len(rows):
            e, inside = self._inplane_many(j, pts[rows, :2])
            e = np.where(inside, e, 0.0) if inside_metric else np.where(inside, 0.0, e)
            np.minimum.at(best, rows, np.hypot(e, zoff))
        return best

    def _plane_lower_bound(
        self, q_uv: NDArray[np.float64], ks: NDArray[np.int64], inside_metric: bool
    ) -> NDArray[np.float64]:
        """Lower bound of the in-plane metric of point i on slice ks[i] from the kept voxel
        table: the metric is 1-Lipschitz in-plane, so each of the four surrounding pixel
        centres c gives ``table(c) - |q - c|``. 0 where the table does not reach."""
        out = np.zeros(len(ks))
        kept = self._plane_lo.get(inside_metric)
        if kept is None or len(ks) == 0:
            return out
        lo, table = kept
        vox = self.voxel_size_mm[:2]
        f = q_uv / vox - lo[:2]
        base = np.floor(f).astype(np.int64)
        kk = ks - lo[2]
        shape = np.array(table.shape)
        best = np.full(len(ks), -np.inf)
        for di in (0, 1):
            for dj in (0, 1):
                ii, jj = base[:, 0] + di, base[:, 1] + dj
                ok = (
                    (ii >= 0)
                    & (ii < shape[0])
                    & (jj >= 0)
                    & (jj < shape[1])
                    & (kk >= 0)
                    & (kk < shape[2])
                )
                val = np.full(len(ks), -np.inf)
                val[ok] = table[ii[ok], jj[ok], kk[ok]]
                gap = np.hypot((f[:, 0] - ii) * vox[0], (f[:, 1] - jj) * vox[1])
                best = np.maximum(best, val - gap)
        return np.maximum(best, 0.0)

    def _inplane_many(
        self, ks: NDArray[np.int64], q_uv: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """In-plane boundary distance and inside-ness of point i on slice ks[i].

        A slice with many points gets its own call (its outline's tree); the few points of
        every other slice are measured together against every segment of their slice, as
        :meth:`SliceOutline.boundary_distance` does for few points (same formula, same
        minimum), in one padded table (:func:`~lattice.geometry.surface_tables.inplane_few`).
        """
        dist = np.full(len(ks), np.inf)
        inside = np.zeros(len(ks), dtype=bool)
        order = np.argsort(ks, kind="stable")
        sorted_k = ks[order]
        cuts = np.flatnonzero(np.diff(sorted_k)) + 1
        few_rows: list[NDArray[np.int64]] = []
        few_outlines: list[SliceOutline] = []
        for group in np.split(order, cuts):
            if len(group) == 0:
                continue
            k = int(ks[group[0]])
            outline = self.outline(k)
            if outline is None:
                continue
            if not outline.empty and len(group) * len(outline.segments) <= _BRUTE_FORCE_PAIRS:
                few_rows.append(group)
                few_outlines.append(outline)
                continue
            d, ins = self._inplane(k, q_uv[group])
            dist[group] = d
            inside[group] = ins
        if few_rows:
            rows = np.concatenate(few_rows)
            d, ins = inplane_few(
                self, few_outlines, [len(g) for g in few_rows], ks[rows], q_uv[rows]
            )
            dist[rows] = d
            inside[rows] = ins
        return dist, inside

    # -- voxel-centre tables ------------------------------------------------------------------

    def voxel_depth_bounds(
        self, box: tuple[slice, slice, slice], *, exact_to_mm: float
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Lower and upper bounds (mm) of the depth of every voxel centre of ``box``.

        The box must hold every voxel of the mask. See :meth:`_inplane_bounds` for how tight
        they are; for polygon outlines both are exact wherever the depth is <= ``exact_to_mm``
        (beyond, both are only known to exceed it).
        """
        sub = self.mask[box]
        lo = np.array([s.start for s in box], dtype=np.int64)
        e_hi = self._inplane_bounds(sub, lo, exact_to_mm, inside_metric=True)
        self._plane_lo[True] = (lo, self._plane_lower(e_hi))
        return self._bounds(stack_slabs(e_hi, self.slice_gap_mm, exact_to_mm, inside_metric=True))

    def _plane_lower(self, upper: NDArray[np.float32]) -> NDArray[np.float32]:
        """The lower bound of an in-plane table, in an array of its own (the stack may
        reuse ``upper``'s memory)."""
        lower = self._bounds(upper)[0]
        return lower.copy() if lower is upper else lower

    def _bounds(
        self, upper: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(lower, upper) from the stacked upper bound U3: every in-plane term obeys
        ``e^2 >= U^2 - a^2`` (a = :attr:`table_slack_mm`), so the stacked distance is at
        least ``sqrt(U3^2 - a^2)``."""
        a2 = np.float32(self.table_slack_mm**2)
        if a2 == 0:
            return upper, upper
        lower = np.square(upper)
        lower -= a2
        np.maximum(lower, np.float32(0.0), out=lower)
        np.sqrt(lower, out=lower)
        return lower, upper

    def voxel_distance_bounds(
        self, box: tuple[slice, slice, slice], *, exact_to_mm: float
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Lower and upper bounds (mm) of the distance from each voxel centre of ``box`` to the
        solid; tight up to ``exact_to_mm`` (beyond: only known to exceed it, inf where nothing
        is in reach). The work is done on ``box`` grown by the reach and cropped back.
        """
        vox = self.voxel_size_mm
        grow = np.ceil(exact_to_mm / vox).astype(np.int64) + 1
        shape = np.array(self.mask.shape)
        lo = np.maximum(np.array([s.start for s in box]) - grow, 0)
        hi = np.minimum(np.array([s.stop for s in box]) + grow, shape)
        sub = self.mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        if self.from_mask and not sub.any():
            # Nothing of the structure within reach of the box.
            far = np.full(tuple(s.stop - s.start for s in box), np.inf, dtype=np.float32)
            return far, far
        f_hi = self._inplane_bounds(sub, lo, exact_to_mm, inside_metric=False)
        self._plane_lo[False] = (lo.astype(np.int64), self._plane_lower(f_hi))
        a = np.array([s.start for s in box]) - lo
        b = a + np.array([s.stop - s.start for s in box])
        # The slab stack mixes slices only: crop in-plane first (the EDT needed the margin).
        f_hi = np.ascontiguousarray(f_hi[a[0] : b[0], a[1] : b[1], :])
        out = stack_slabs(f_hi, float(vox[2]), exact_to_mm, inside_metric=False)
        return self._bounds(np.ascontiguousarray(out[:, :, a[2] : b[2]]))

    @property
    def table_slack_mm(self) -> float:
        """Half the longest outline segment of the voxel tables' bound (0 for polygons).

        For a mask the outline's vertices are the midpoints between inside and outside voxel
        centres and its segments are at most one pixel long (ell). The distance U from a pixel
        centre to the nearest vertex bounds the distance e to the outline:
        ``sqrt(U^2 - (ell/2)^2) <= e <= U``, since the foot of the perpendicular lies within
        ell/2 of a segment end.
        """
        return 0.5 * float(self.voxel_size_mm[:2].max()) if self.from_mask else 0.0

    def _inplane_bounds(
        self,
        sub: NDArray[np.bool_],
        lo: NDArray[np.int64],
        exact_to_mm: float,
        *,
        inside_metric: bool,
    ) -> NDArray[np.float32]:
        """Per-slice upper bound of the in-plane distance at the pixel centres of ``sub`` (at
        ``lo``): exact for polygon outlines (within reach), the distance to the nearest outline
        vertex for mask outlines (see :attr:`table_slack_mm`).

        inside_metric: distance to the boundary for inside pixels (0 outside); otherwise the
        distance to the region for outside pixels (0 inside, inf on empty slices).
        """
        if self.from_mask:
            return self._mask_bounds(sub, exact_to_mm, inside_metric=inside_metric)
        return self._polygon_table(sub, lo, exact_to_mm, inside_metric=inside_metric)

    def _mask_bounds(
        self, sub: NDArray[np.bool_], exact_to_mm: float, *, inside_metric: bool
    ) -> NDArray[np.float32]:
        """:func:`~lattice.geometry.surface_tables.mask_vertex_bounds` of ``sub``."""
        return mask_vertex_bounds(
            sub,
            self.voxel_size_mm,
            exact_to_mm,
            self.table_slack_mm,
            inside_metric=inside_metric,
        )

    def _polygon_table(
        self,
        sub: NDArray[np.bool_],
        lo: NDArray[np.int64],
        exact_to_mm: float,
        *,
        inside_metric: bool,
    ) -> NDArray[np.float32]:
        """Exact in-plane distances for every pixel within reach of a free polygon outline."""
        vox = self.voxel_size_mm
        out = np.zeros(sub.shape, dtype=np.float32)
        beyond = np.float32(exact_to_mm * (1 + 1e-6) + 1e-6)
        for kk in range(sub.shape[2]):
            outline = self.outline(int(lo[2]) + kk)
            plane = sub[:, :, kk]
            if outline is None:
                if not inside_metric:
                    out[:, :, kk] = np.inf
                continue
            target = plane if inside_metric else ~plane
            ij = np.argwhere(target)
            if len(ij) == 0:
                continue
            q = (ij + lo[:2]) * vox[:2]
            assert outline._tree is not None
            # A midpoint farther than the reach plus the longest half segment proves the
            # pixel out of reach.
            dmid, _ = outline._tree.query(
                q, distance_upper_bound=exact_to_mm + outline._half_max + 1e-6
            )
            near = np.isfinite(dmid)
            col = np.where(target, beyond, np.float32(0.0)).astype(np.float32)
            col[tuple(ij[near].T)] = outline.boundary_distance(q[near]).astype(np.float32)
            out[:, :, kk] = col
        return out


@dataclass(frozen=True, eq=False)
class ContourVolume(Volume):
    """A mask rasterised from slice polygons that keeps the polygons (DICOM input).

    ``rings_ijk`` holds ``(k, (m, 2) ndarray)``: each polygon in voxel indices (i, j) on the
    slice plane k it lies on. :func:`solid_of` builds the TPS solid from them rather than from
    the voxels. Derived volumes (``with_array``, ``crop``) are plain :class:`Volume` objects.
    """

    rings_ijk: tuple[tuple[int, NDArray[np.float64]], ...] = ()


def solid_of(mask: Volume) -> SlabSolid:
    """The TPS solid of a boolean mask volume: its own polygons when it has them
    (:class:`ContourVolume`), otherwise the marching-squares outlines of its slices."""
    rings = mask.rings_ijk if isinstance(mask, ContourVolume) else None
    return SlabSolid(np.asarray(mask.array, dtype=bool), mask.voxel_size_mm, rings_ijk=rings)
