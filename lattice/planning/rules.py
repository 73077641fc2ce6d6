"""The placement rules as a field over space: how much room a vertex centre has.

Distances follow the TPS surface model of :mod:`lattice.geometry.surface`: the GTV and every OAR are
the solids a TPS rebuilds from their slice contours. For a vertex of radius R centred at a world
point p the rules are

* GTV margin: ``depth(p) >= gtv_margin_mm + R``, ``depth`` the distance from p to the outside
  of the GTV solid;
* OAR clearance, per organ: ``dist(p, OAR solid) >= clearance_mm + R``;
* shell placement only: ``depth(p) <= max_depth_mm`` (``margin + R + shell width``).

The *slack* of p is the smallest of ``depth - (margin + R)``, every
``dist_k - (clearance_k + R)`` and, for a shell, ``max_depth_mm - depth``; p is allowed when
the slack is >= 0.

Both distances are 1-Lipschitz in p. The field keeps, at every voxel centre of the GTV's
bounding box, a lower and an upper bound of the slack (exact for polygon outlines, within a
few hundredths of a mm of each other near the rule boundaries for mask outlines; see
:meth:`lattice.geometry.surface.SlabSolid.table_slack_mm`). The slack at p therefore lies within
``|p - c|`` (at most the half voxel diagonal ``band``) of the bounds at the nearest voxel
centre c. A point whose lower bound is >= band is certainly allowed, one whose upper bound is
below -band certainly not; only points in between are settled with exact distances to the
solids. Every decision is exact, at the cost of a table look-up for most points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nibabel.affines import apply_affine
from numpy.typing import NDArray

from ..errors import ParameterError
from ..geometry.margins import EDT_TOLERANCE_MM, bounding_box
from ..geometry.surface import SlabSolid, solid_of
from ..volume import Volume

#: Point states of :meth:`RuleField.bound`. FORBIDDEN and ALLOWED are the int8 values of
#: False and True, so a boolean "allowed" array is viewed as states without a copy.
FORBIDDEN, ALLOWED, UNDECIDED = 0, 1, -1
#: The 8 voxel centres around a point, as offsets from its floor index.
_CORNERS = np.array(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), float).reshape(3, -1).T


@dataclass(frozen=True, eq=False)
class Oar:
    """An organ at risk: a boolean mask on the GTV grid and its clearance in mm.

    A mask rasterised from an RTSTRUCT (:class:`lattice.geometry.surface.ContourVolume`) keeps its
    polygons, and the OAR solid is built from them.
    """

    name: str
    mask: Volume
    clearance_mm: float


class RuleField:
    """Slack of the placement rules over the GTV's bounding box, with exact point checks.

    Parameters
    ----------
    gtv : Volume
        Boolean GTV mask (a :class:`~lattice.geometry.surface.ContourVolume` keeps its polygons).
    oars : sequence of Oar
        Masks on the GTV grid with clearances in mm.
    diameter_mm, gtv_margin_mm : float
        Vertex diameter and GTV margin.
    max_depth_mm : float, optional
        Shell placement: centres no deeper than this.
    """

    def __init__(
        self,
        gtv: Volume,
        oars: Sequence[Oar],
        *,
        diameter_mm: float,
        gtv_margin_mm: float,
        max_depth_mm: float | None = None,
    ) -> None:
        self.gtv = gtv
        self.oars = tuple(oars)
        self.radius_mm = diameter_mm / 2.0
        self.gtv_margin_mm = float(gtv_margin_mm)
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
        self.gtv_solid: SlabSolid = solid_of(gtv)
        self.oar_solids: dict[str, SlabSolid] = {o.name: solid_of(o.mask) for o in self.oars}
        self._affine_inv = np.linalg.inv(gtv.affine)
        box = bounding_box(gtv.array, pad_vox=1)
        self.box = box
        self.box_lo = np.array([s.start for s in box], dtype=np.int64)
        deepest_rule = max(self.need_depth_mm, max_depth_mm or 0.0, self.gtv_margin_mm)
        d_lo, d_hi = self.gtv_solid.voxel_depth_bounds(
            box, exact_to_mm=deepest_rule + 2 * self.band_mm + 1.0
        )
        #: Depth (mm) of every voxel centre of :attr:`box` below the GTV surface: lower and
        #: upper bounds (equal for polygon outlines; see :mod:`lattice.geometry.surface`).
        self.depth_box, self.depth_box_hi = d_lo, d_hi
        need = np.float32(self.need_depth_mm)
        slack = d_lo - need
        slack_hi = d_hi - need
        if max_depth_mm is not None:
            # The shell's inner boundary is one more 1-Lipschitz term of the slack.
            np.minimum(slack, np.float32(max_depth_mm) - d_hi, out=slack)
            np.minimum(slack_hi, np.float32(max_depth_mm) - d_lo, out=slack_hi)
        self._add_oar_terms(slack, slack_hi)
        # C order once: lookup() ravels it for every batch of points.
        #: Lower bound of the slack at every voxel centre of :attr:`box`.
        self.slack_vox: NDArray[np.float32] = np.ascontiguousarray(slack)
        self._slack_flat = self.slack_vox.ravel()
        #: Upper bound of the slack at every voxel centre of :attr:`box`.
        self.slack_vox_hi: NDArray[np.float32] = np.ascontiguousarray(slack_hi)
        self._slack_hi_flat = self.slack_vox_hi.ravel()
        # Largest gap between the slack bounds where it can matter. Every bound gap is at most
        # the half outline segment a (see lattice.geometry.surface); a voxel whose lower bound is
        # below -band - a therefore has its upper bound below -band whatever its gap, so only the
        # voxels above that need their gaps measured (near the rule boundary the gap is
        # ~a^2 / (2 depth), hundredths of a mm, where near the surface it reaches a).
        a = max(
            [
                self.gtv_solid.table_slack_mm,
                *(sol.table_slack_mm for sol in self.oar_solids.values()),
            ]
        )
        near = self._slack_flat > -self.band_mm - a - EDT_TOLERANCE_MM
        gap = self._slack_hi_flat[near] - self._slack_flat[near]
        #: Largest gap between the slack bounds of any voxel that the bounds may not decide.
        self.table_gap_mm = float(np.max(gap[np.isfinite(gap)], initial=0.0))

    def _add_oar_terms(self, slack: NDArray[np.float32], slack_hi: NDArray[np.float32]) -> None:
        """Lower ``slack`` and ``slack_hi`` (in place) by every OAR's clearance term; sets
        :attr:`cand` and the OAR distance bounds on it."""
        # OAR terms matter only where the GTV term leaves a chance (> -band): elsewhere the
        # GTV term alone rejects, and a corner there cannot raise a lower bound above 0.
        #: Per OAR, lower and upper bounds of its distance on the :attr:`cand` sub-box.
        self._oar_bounds: dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]] = {}
        reach = slack_hi > -self.band_mm - EDT_TOLERANCE_MM
        self.cand = bounding_box(reach, pad_vox=1) if np.any(reach) else None
        if self.cand is not None:
            glob = tuple(
                slice(int(lo) + c.start, int(lo) + c.stop) for lo, c in zip(self.box_lo, self.cand)
            )
            for o in self.oars:
                need_o = self.need_oar_mm[o.name]
                o_lo, o_hi = self.oar_solids[o.name].voxel_distance_bounds(
                    glob,  # type: ignore[arg-type]
                    exact_to_mm=need_o + 2 * self.band_mm + 1.0,
                )
                self._oar_bounds[o.name] = (o_lo, o_hi)
                np.minimum(slack[self.cand], o_lo - np.float32(need_o), out=slack[self.cand])
                np.minimum(slack_hi[self.cand], o_hi - np.float32(need_o), out=slack_hi[self.cand])
        self._shape32 = np.array(slack.shape, dtype=np.uint32)
        self._strides32 = np.array(
            [slack.shape[1] * slack.shape[2], slack.shape[2], 1], dtype=np.uint32
        )

    def deeper_than(self, depth_mm: float) -> NDArray[np.bool_]:
        """Voxel centres of :attr:`box` whose exact depth exceeds ``depth_mm``.

        The LATTICE target is ``deeper_than(gtv_margin_mm)``. The table bounds decide most
        voxels; those within the float32 tolerance or the bounds' gap of the threshold get
        exact depths.
        """
        tol = EDT_TOLERANCE_MM
        out = self.depth_box > depth_mm + tol
        unsure = ~out & (self.depth_box_hi >= depth_mm - tol)
        if unsure.any():
            ijk = np.argwhere(unsure)
            uvw = (ijk + self.box_lo) * self.gtv.voxel_size_mm
            d = self.gtv_solid.depth(uvw, cap_mm=depth_mm * (1 + 1e-9) + 1e-6)
            out[tuple(ijk.T)] = d > depth_mm
        return out

    # -- fast look-up ---------------------------------------------------------------------

    def world_to_box_index(self, ras_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """(..., 3) world points -> fractional indices into :attr:`slack_vox`."""
        a = self._affine_inv
        return apply_affine(a, ras_mm) - self.box_lo

    def _flat(self, box_ijk: NDArray[np.float64]) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
        """Flat index of the nearest voxel centre of :attr:`slack_vox` (0 where ``ok`` is
        False: outside the box). Viewed as unsigned, a negative index exceeds every bound, so
        one comparison per axis tests both ends (and integer matmul is far slower than
        multiply-add)."""
        idx = np.rint(box_ijk).astype(np.int32).view(np.uint32)
        i, j, k = idx[..., 0], idx[..., 1], idx[..., 2]
        shape, strides = self._shape32, self._strides32
        ok = (i < shape[0]) & (j < shape[1]) & (k < shape[2])
        flat = i * strides[0] + j * strides[1] + k
        return np.where(ok, flat, np.uint32(0)).astype(np.int32), ok

    def lookup(self, box_ijk: NDArray[np.float64]) -> NDArray[np.float32]:
        """Lower bound of the slack at the nearest voxel centre of fractional box indices
        ``(..., 3)``. Points outside the box get -inf (the box holds every voxel of the GTV).
        """
        flat, ok = self._flat(box_ijk)
        return np.where(ok, self._slack_flat[flat], np.float32(-np.inf))

    def lookup_upper(self, box_ijk: NDArray[np.float64]) -> NDArray[np.float32]:
        """Upper bound of the slack at the nearest voxel centre (-inf outside the box)."""
        flat, ok = self._flat(box_ijk)
        return np.where(ok, self._slack_hi_flat[flat], np.float32(-np.inf))

    # -- exact distances ------------------------------------------------------------------

    def _grid_mm(self, ras_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """World points -> the grid frame (i dx, j dy, k dz) of :mod:`lattice.geometry.surface`."""
        a = self._affine_inv
        pts = np.atleast_2d(np.asarray(ras_mm, dtype=np.float64))
        return apply_affine(a, pts) * self.gtv.voxel_size_mm

    def depth_mm(self, ras_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Exact depth (mm) of world points below the GTV surface (0 outside the GTV)."""
        return self.gtv_solid.depth(self._grid_mm(ras_mm))

    def oar_distance_mm(self, ras_mm: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
        """Exact distance (mm) from each world point to each OAR solid (0 inside it)."""
        uvw = self._grid_mm(ras_mm)
        return {o.name: self.oar_solids[o.name].distance(uvw) for o in self.oars}

    def exact_slack(self, ras_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Exact slack (mm) of world points (see module docstring)."""
        uvw = self._grid_mm(ras_mm)
        depth = self.gtv_solid.depth(uvw)
        slack = depth - self.need_depth_mm
        if self.max_depth_mm is not None:
            slack = np.minimum(slack, self.max_depth_mm - depth)
        for o in self.oars:
            slack = np.minimum(
                slack, self.oar_solids[o.name].distance(uvw) - self.need_oar_mm[o.name]
            )
        return slack

    def classify(
        self, ras_mm: NDArray[np.float64]
    ) -> tuple[NDArray[np.bool_], NDArray[np.float32]]:
        """Exact allowed/forbidden decision for world points of any leading shape.

        Returns
        -------
        allowed : (...) ndarray of bool
        slack_estimate : (...) ndarray of float32
            The tabled slack at the nearest voxel centre. Where the GTV term leaves the point
            a chance (the :attr:`cand` box, the only place the rules can allow) it is a lower
            bound of that voxel's slack, within ``band_mm`` plus :attr:`table_gap_mm` of the
            point's exact slack. Elsewhere the OAR terms are not tabled: it is the GTV term
            alone, below ``-band_mm``, and may exceed the exact slack.
        """
        box_ijk = self.world_to_box_index(ras_mm)
        state, est = self.bound(box_ijk)
        undecided = state == UNDECIDED
        if undecided.any():
            state[undecided] = self.settle(box_ijk[undecided])
        return state == ALLOWED, est

    def bound(self, box_ijk: NDArray[np.float64]) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
        """Decide what cheap bounds can decide, exactly.

        The slack bounds at the nearest voxel centre c bound the slack at p to within
        ``|p - c|`` (``band_mm`` at most); points still undecided are bounded by the eight
        surrounding voxel centres. What remains is left to :meth:`settle`.

        Returns
        -------
        state : (...) ndarray of int8
            :data:`ALLOWED`, :data:`FORBIDDEN` or :data:`UNDECIDED`.
        slack_estimate : (...) ndarray of float32
        """
        flat, ok = self._flat(box_ijk)
        est = np.where(ok, self._slack_flat[flat], np.float32(-np.inf))
        tol = EDT_TOLERANCE_MM
        allowed = est >= self.band_mm + tol
        state = allowed.view(np.int8)  # False/True are FORBIDDEN/ALLOWED
        # The upper bound is read only where the lower one leaves a chance.
        unsure = est > -self.band_mm - self.table_gap_mm - tol
        unsure &= ~allowed
        if not unsure.any():
            return state, est
        ijk = box_ijk[unsure]
        s_near = est[unsure].astype(np.float64)
        s_near_hi = self._slack_hi_flat[flat[unsure]].astype(np.float64)
        off = np.linalg.norm((ijk - np.rint(ijk)) * self.gtv.voxel_size_mm, axis=-1)
        sub = np.where(s_near >= off + tol, ALLOWED, FORBIDDEN).astype(np.int8)
        maybe = (s_near_hi > -off - tol) & (sub == FORBIDDEN)
        if maybe.any():
            lower, upper = self._corner_bounds(ijk[maybe])
            sub[maybe] = np.where(
                lower >= tol, ALLOWED, np.where(upper >= -tol, UNDECIDED, FORBIDDEN)
            )
        state[unsure] = sub
        return state, est

    def settle(self, box_ijk: NDArray[np.float64]) -> NDArray[np.int8]:
        """Exact decision (ALLOWED / FORBIDDEN) for points given as box indices, shape (n, 3)."""
        a = self.gtv.affine
        pts = apply_affine(a, box_ijk + self.box_lo)
        return np.where(self._exact_allowed(pts), ALLOWED, FORBIDDEN).astype(np.int8)

    def _corner_bounds(
        self, box_ijk: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Lower and upper bounds of the slack from the 8 voxel centres around each point."""
        c = np.floor(box_ijk)[:, None, :] + _CORNERS  # (n, 8, 3): all corners at once
        dist = np.linalg.norm((box_ijk[:, None, :] - c) * self.gtv.voxel_size_mm, axis=-1)
        flat, ok = self._flat(c)
        s_lo = np.where(ok, self._slack_flat[flat], np.float32(-np.inf)).astype(np.float64)
        lower = (s_lo - dist).max(axis=1, initial=-np.inf)
        # Beyond the box is outside the GTV: depth 0 there bounds the slack from above.
        s_hi = np.where(ok, self._slack_hi_flat[flat], np.float32(-self.need_depth_mm))
        upper = (s_hi.astype(np.float64) + dist).min(axis=1, initial=np.inf)
        return lower, upper

    def _exact_allowed(self, pts: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Exact decision for world points ``(n, 3)``.

        A point comes here because its combined slack is uncertain, usually through one term.
        Each term is first bounded from its own table at the nearest voxel centre c (the
        distance moves by at most ``|p - c|``); exact distances are computed only where that
        leaves the term open. Capped queries stop early: only whether something lies closer
        than the rule matters.
        """
        uvw = self._grid_mm(pts)
        tol = EDT_TOLERANCE_MM
        box_ijk = self.world_to_box_index(pts)
        near = np.rint(box_ijk).astype(np.int64)
        off = np.linalg.norm((box_ijk - near) * self.gtv.voxel_size_mm, axis=-1)
        in_box = np.all((near >= 0) & (near < np.array(self.depth_box.shape)), axis=1)
        d_lo = np.zeros(len(pts))
        d_hi = np.full(len(pts), np.inf)
        idx = tuple(near[in_box].T)
        d_lo[in_box] = self.depth_box[idx]
        d_hi[in_box] = self.depth_box_hi[idx]
        need = self.need_depth_mm
        deepest = np.inf if self.max_depth_mm is None else self.max_depth_mm
        sure_in = (d_lo - off >= need + tol) & (d_hi + off <= deepest - tol)
        sure_out = in_box & ((d_hi + off < need - tol) | (d_lo - off > deepest + tol))
        ok = sure_in.copy()
        open_ = ~sure_in & ~sure_out
        if open_.any():
            cap = (need if self.max_depth_mm is None else self.max_depth_mm) * (1 + 1e-9) + 1e-9
            d = self.gtv_solid.depth(uvw[open_], cap_mm=cap)
            ok[open_] = (d >= need) & (d <= deepest)
        for o in self.oars:
            lim = self.need_oar_mm[o.name]
            rows = np.flatnonzero(ok)
            if len(rows) == 0:
                break
            decided = np.zeros(len(rows), dtype=bool)
            verdict = np.zeros(len(rows), dtype=bool)
            bounds = self._oar_bounds.get(o.name)
            if bounds is not None and self.cand is not None:
                o_lo, o_hi = bounds
                c = near[rows] - [s.start for s in self.cand]
                inside = np.all((c >= 0) & (c < np.array(o_lo.shape)), axis=1)
                ci = tuple(c[inside].T)
                lo_v = o_lo[ci] - off[rows][inside]
                hi_v = o_hi[ci] + off[rows][inside]
                decided[inside] = (lo_v >= lim + tol) | (hi_v < lim - tol)
                verdict[inside] = lo_v >= lim + tol
            todo = rows[~decided]
            if len(todo):
                verdict[~decided] = (
                    self.oar_solids[o.name].distance(uvw[todo], cap_mm=lim * (1 + 1e-9) + 1e-9)
                    >= lim
                )
            ok[rows] = verdict
        return np.asarray(ok, dtype=bool)
