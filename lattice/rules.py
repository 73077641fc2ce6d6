"""The placement rules as a field over space: how much room a vertex centre has.

For a vertex of radius R centred at a world point p the rules are

* GTV margin: ``depth(p) >= gtv_margin_mm + R``, where ``depth(p)`` is the distance from p
  to the nearest voxel centre outside the GTV (voxels beyond the array border count as
  outside);
* OAR clearance, per organ: ``dist(p, OAR) >= clearance_mm + R``, the distance to the
  nearest OAR voxel centre;
* shell placement only: ``depth(p) <= max_depth_mm`` (``margin + R + shell width``).

The *slack* of p is the smallest of ``depth - (margin + R)``, every
``dist_k - (clearance_k + R)`` and, for a shell, ``max_depth_mm - depth``; p is allowed when
the slack is >= 0.

Both distances are 1-Lipschitz in p and exact (EDT) at voxel centres, so the slack at the
nearest voxel centre differs from the slack at p by at most the half voxel diagonal ``band``.
A point whose voxel slack is >= band is certainly allowed, one below -band certainly not;
only points inside the band are settled with exact KD-tree distances. Every decision is
therefore exact, at the cost of a table look-up for most points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from .errors import ParameterError
from .margins import EDT_TOLERANCE_MM, bounding_box, depth_in_box_mm, distance_to_background_mm
from .volume import Volume

#: Point states of :meth:`RuleField.bound`.
FORBIDDEN, ALLOWED, UNDECIDED = 0, 1, -1


@dataclass(frozen=True, eq=False)
class Oar:
    """An organ at risk: a boolean mask on the GTV grid and its clearance in mm."""

    name: str
    mask: Volume
    clearance_mm: float


def _surface_points_ijk(mask: NDArray[np.bool_], *, outside: bool) -> NDArray[np.float64]:
    """Voxel indices of one side of a mask's surface, with the array border as background.

    ``outside=True``: background voxels with a 26-neighbour in the mask (possibly one voxel
    beyond the array). ``outside=False``: mask voxels with a 26-neighbour in the background.
    For any point whose nearest voxel lies on the other side, the nearest voxel centre of
    this side is one of these, so a KD-tree over them gives exact distances.
    """
    box = bounding_box(mask, pad_vox=1)
    sub = np.pad(mask[box], 1, mode="constant", constant_values=False)
    # 3x3x3 max / min filters are the 26-neighbour dilation / erosion, done separably.
    if outside:
        surf = ~sub & ndimage.maximum_filter(sub, size=3, mode="constant", cval=False)
    else:
        surf = sub & ~ndimage.minimum_filter(sub, size=3, mode="constant", cval=False)
    offset = np.array([s.start for s in box], dtype=float) - 1.0
    return np.argwhere(surf).astype(np.float64) + offset


class RuleField:
    """Slack of the placement rules over the GTV's bounding box, with exact point checks.

    Parameters
    ----------
    gtv : Volume
        Boolean GTV mask.
    oars : sequence of Oar
        Masks on the GTV grid with clearances in mm.
    diameter_mm, gtv_margin_mm : float
        Vertex diameter and GTV margin.
    """

    def __init__(self, gtv: Volume, oars: Sequence[Oar], *, diameter_mm: float,
                 gtv_margin_mm: float, max_depth_mm: float | None = None) -> None:
        self.gtv = gtv
        self.oars = tuple(oars)
        self.radius_mm = diameter_mm / 2.0
        self.need_depth_mm = gtv_margin_mm + self.radius_mm
        #: Shell placement: centres no deeper than this (None: no limit).
        self.max_depth_mm = max_depth_mm
        self.need_oar_mm = {o.name: o.clearance_mm + self.radius_mm for o in self.oars}
        vox = gtv.voxel_size_mm
        #: Largest distance from any point to its nearest voxel centre.
        self.band_mm = 0.5 * float(np.linalg.norm(vox))
        if self.need_depth_mm <= self.band_mm:
            raise ParameterError(
                f"vertex radius + GTV margin ({self.need_depth_mm:g} mm) is not larger than "
                f"half the voxel diagonal ({self.band_mm:.2f} mm); use a larger diameter or "
                "a finer grid"
            )
        for o in self.oars:
            gtv.check_same_grid(o.mask, name="the GTV", other_name=f"OAR '{o.name}'")
        depth, box = depth_in_box_mm(gtv.array, voxel_size_mm=vox, pad_vox=1)
        #: Depth (mm) of every voxel of :attr:`box` below the GTV surface.
        self.depth_box = depth
        self.box = box
        self.box_lo = np.array([s.start for s in box], dtype=np.int64)
        slack = depth - np.float32(self.need_depth_mm)
        if max_depth_mm is not None:
            # The shell's inner boundary is one more 1-Lipschitz term of the slack.
            np.minimum(slack, np.float32(max_depth_mm) - depth, out=slack)
        # OAR terms matter only where the GTV term leaves a chance (> -band): elsewhere the
        # GTV term alone rejects, and a corner there cannot raise a lower bound above 0.
        self.cand = bounding_box(slack > -self.band_mm - EDT_TOLERANCE_MM, pad_vox=1) \
            if np.any(slack > -self.band_mm - EDT_TOLERANCE_MM) else None
        if self.cand is not None:
            view = slack[self.cand]
            for o in self.oars:
                np.minimum(view, self._oar_distance(o, self.cand) - np.float32(
                    self.need_oar_mm[o.name]), out=view)
        # C order once: lookup() ravels it for every batch of points.
        self.slack_vox: NDArray[np.float32] = np.ascontiguousarray(slack)
        self._slack_flat = self.slack_vox.ravel()
        self._shape32 = np.array(slack.shape, dtype=np.int32)
        self._strides32 = np.array([slack.shape[1] * slack.shape[2], slack.shape[2], 1],
                                   dtype=np.int32)
        self._affine_inv = np.linalg.inv(gtv.affine)

    def _oar_distance(self, oar: Oar, sub: tuple[slice, slice, slice]) -> NDArray[np.float32]:
        """Distance (mm) from each voxel of ``sub`` (box indices) to the nearest OAR voxel.

        Exact where the distance is within the rule's reach (clearance + R + 2 band); beyond
        it the value is only guaranteed to exceed the reach (possibly inf), which is all a
        decision needs. The EDT therefore runs only on the part of ``sub`` near the OAR, grown
        by the reach.
        """
        vox = self.gtv.voxel_size_mm
        reach = oar.clearance_mm + self.radius_mm + 2 * self.band_mm
        grow = np.ceil(reach / vox).astype(int) + 1
        sub_lo = self.box_lo + [s.start for s in sub]
        sub_hi = self.box_lo + [s.stop for s in sub]
        out = np.full(tuple(sub_hi - sub_lo), np.inf, dtype=np.float32)
        if not oar.mask.array[tuple(slice(a, b) for a, b in zip(
                np.maximum(sub_lo - grow, 0), np.minimum(sub_hi + grow, self.gtv.shape)))].any():
            return out
        organ = bounding_box(oar.mask.array)
        near_lo = np.maximum(sub_lo, [s.start for s in organ] - grow)
        near_hi = np.minimum(sub_hi, [s.stop for s in organ] + grow)
        lo = np.maximum(near_lo - grow, 0)
        hi = np.minimum(near_hi + grow, self.gtv.shape)
        region = oar.mask.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        dist = distance_to_background_mm(~region, voxel_size_mm=vox, border_is_background=False)
        a, b = near_lo - lo, near_hi - lo
        o, e = near_lo - sub_lo, near_hi - sub_lo
        out[o[0]:e[0], o[1]:e[1], o[2]:e[2]] = dist[a[0]:b[0], a[1]:b[1], a[2]:b[2]]
        return out

    # -- fast look-up ---------------------------------------------------------------------

    def world_to_box_index(self, ras_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """(..., 3) world points -> fractional indices into :attr:`slack_vox`."""
        a = self._affine_inv
        return ras_mm @ a[:3, :3].T + (a[:3, 3] - self.box_lo)

    def lookup(self, box_ijk: NDArray[np.float64]) -> NDArray[np.float32]:
        """Slack at the nearest voxel centre of fractional box indices ``(..., 3)``.

        Points outside the box get -inf (the box holds every voxel of the GTV).
        """
        idx = np.rint(box_ijk).astype(np.int32)
        ok = np.all((idx >= 0) & (idx < self._shape32), axis=-1)
        flat = idx @ self._strides32
        out = self._slack_flat[np.where(ok, flat, 0)]
        return np.where(ok, out, np.float32(-np.inf))

    # -- exact distances ------------------------------------------------------------------

    @cached_property
    def _gtv_outside_tree(self) -> cKDTree:
        ijk = _surface_points_ijk(self.gtv.array, outside=True)
        return cKDTree(self.gtv.ijk_to_ras(ijk))

    @cached_property
    def _oar_trees(self) -> dict[str, cKDTree]:
        return {o.name: cKDTree(self.gtv.ijk_to_ras(_surface_points_ijk(o.mask.array,
                                                                          outside=False)))
                for o in self.oars}

    def depth_mm(self, ras_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Exact depth (mm) below the GTV surface of points whose nearest voxel is in the GTV."""
        d, _ = self._gtv_outside_tree.query(np.atleast_2d(ras_mm))
        return np.asarray(d, dtype=np.float64)

    def oar_distance_mm(self, ras_mm: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
        """Exact distance (mm) from each point to the nearest voxel centre of each OAR."""
        pts = np.atleast_2d(ras_mm)
        return {o.name: self._in_organ(o, pts, self._oar_trees[o.name].query(pts)[0])
                for o in self.oars}

    def _in_organ(self, oar: Oar, pts: NDArray[np.float64],
                  surface_d: NDArray[np.float64]) -> NDArray[np.float64]:
        """Exact OAR distances from the distances ``surface_d`` to its surface tree.

        The surface tree is exact for points whose nearest voxel is outside the organ. For a
        point whose nearest voxel is an organ voxel, that voxel's centre is the nearest organ
        voxel centre: the distance is the distance to it (at most half a voxel diagonal).
        """
        near = np.rint(pts @ self._affine_inv[:3, :3].T + self._affine_inv[:3, 3]).astype(
            np.int64)
        ok = np.all((near >= 0) & (near < np.array(self.gtv.shape)), axis=1)
        inside = np.zeros(len(pts), dtype=bool)
        inside[ok] = np.asarray(oar.mask.array[tuple(near[ok].T)], dtype=bool)
        d = np.asarray(surface_d, dtype=np.float64).copy()
        if inside.any():
            d[inside] = np.linalg.norm(self.gtv.ijk_to_ras(near[inside]) - pts[inside], axis=1)
        return d

    def exact_slack(self, ras_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Exact slack (mm) of world points (see module docstring)."""
        pts = np.atleast_2d(ras_mm)
        depth = self.depth_mm(pts)
        slack = depth - self.need_depth_mm
        if self.max_depth_mm is not None:
            slack = np.minimum(slack, self.max_depth_mm - depth)
        inside = self.lookup(self.world_to_box_index(pts)) > -np.inf
        # A point whose nearest voxel is outside the box is outside the GTV.
        slack = np.where(inside, slack, -np.inf)
        for name, d in self.oar_distance_mm(pts).items():
            slack = np.minimum(slack, d - self.need_oar_mm[name])
        return slack

    def classify(self, ras_mm: NDArray[np.float64]
                 ) -> tuple[NDArray[np.bool_], NDArray[np.float32]]:
        """Exact allowed/forbidden decision for world points of any leading shape.

        Returns
        -------
        allowed : (...) ndarray of bool
        slack_estimate : (...) ndarray of float32
            Slack at the nearest voxel centre (within ``band_mm`` of the exact slack).
        """
        box_ijk = self.world_to_box_index(ras_mm)
        state, est = self.bound(box_ijk)
        undecided = state == UNDECIDED
        if undecided.any():
            state[undecided] = self.settle(box_ijk[undecided])
        return state == ALLOWED, est

    def bound(self, box_ijk: NDArray[np.float64]
              ) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
        """Decide what cheap bounds can decide, exactly.

        The slack at the nearest voxel centre c bounds the slack at p to ``s(c) +- |p - c|``
        (``band_mm`` at most); points still undecided are bounded by the eight surrounding
        voxel centres. What remains is left to :meth:`settle`.

        Returns
        -------
        state : (...) ndarray of int8
            :data:`ALLOWED`, :data:`FORBIDDEN` or :data:`UNDECIDED`.
        slack_estimate : (...) ndarray of float32
        """
        est = self.lookup(box_ijk)
        tol = EDT_TOLERANCE_MM
        state = np.where(est >= self.band_mm + tol, ALLOWED, FORBIDDEN).astype(np.int8)
        unsure = (est > -self.band_mm - tol) & (state == FORBIDDEN)
        if not unsure.any():
            return state, est
        ijk = box_ijk[unsure]
        s_near = est[unsure].astype(np.float64)
        off = np.linalg.norm((ijk - np.rint(ijk)) * self.gtv.voxel_size_mm, axis=-1)
        sub = np.where(s_near >= off + tol, ALLOWED, FORBIDDEN).astype(np.int8)
        maybe = (s_near > -off - tol) & (sub == FORBIDDEN)
        if maybe.any():
            lower, upper = self._corner_bounds(ijk[maybe])
            sub[maybe] = np.where(lower >= tol, ALLOWED,
                                  np.where(upper >= -tol, UNDECIDED, FORBIDDEN))
        state[unsure] = sub
        return state, est

    def settle(self, box_ijk: NDArray[np.float64]) -> NDArray[np.int8]:
        """Exact decision (ALLOWED / FORBIDDEN) for points given as box indices, shape (n, 3)."""
        a = self.gtv.affine
        pts = (box_ijk + self.box_lo) @ a[:3, :3].T + a[:3, 3]
        return np.where(self._exact_allowed(pts), ALLOWED, FORBIDDEN).astype(np.int8)

    def _corner_bounds(self, box_ijk: NDArray[np.float64]
                       ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Lower and upper bounds of the slack from the 8 voxel centres around each point."""
        base = np.floor(box_ijk)
        vox = self.gtv.voxel_size_mm
        lower = np.full(len(box_ijk), -np.inf)
        upper = np.full(len(box_ijk), np.inf)
        corners = np.array(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij")).reshape(3, -1).T
        for corner in corners:
            c = base + corner
            dist = np.linalg.norm((box_ijk - c) * vox, axis=-1)
            s_c = self.lookup(c).astype(np.float64)
            lower = np.maximum(lower, s_c - dist)
            # Beyond the box is outside the GTV: depth 0 there bounds the slack from above.
            s_c = np.where(np.isneginf(s_c), -self.need_depth_mm, s_c)
            upper = np.minimum(upper, s_c + dist)
        return lower, upper

    def _exact_allowed(self, pts: NDArray[np.float64]) -> NDArray[np.bool_]:
        # Bounded queries stop early: only whether something lies closer than the rule matters.
        need = self.need_depth_mm
        if self.max_depth_mm is None:
            d, _ = self._gtv_outside_tree.query(pts, distance_upper_bound=need * (1 + 1e-9) + 1e-9)
            ok = d >= need
        else:
            lim = self.max_depth_mm * (1 + 1e-9) + 1e-9
            d, _ = self._gtv_outside_tree.query(pts, distance_upper_bound=lim)
            ok = (d >= need) & (d <= self.max_depth_mm)
        for o in self.oars:
            lim = self.need_oar_mm[o.name]
            d, _ = self._oar_trees[o.name].query(pts[ok],
                                                 distance_upper_bound=lim * (1 + 1e-9) + 1e-9)
            sub = ok.copy()
            sub[ok] = self._in_organ(o, pts[ok], d) >= lim
            ok = sub
        return np.asarray(ok, dtype=bool)

