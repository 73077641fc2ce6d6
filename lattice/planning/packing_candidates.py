"""Maximal packing, stage 1: the candidate grid and its conflict stencil (see
:mod:`lattice.planning.packing`).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import fft

from ..geometry.margins import EDT_TOLERANCE_MM, bounding_box
from .rules import RuleField

#: Candidate grid step = S / GRID_DIVISIONS for large regions. Finer grids help the discrete
#: stage little once the continuous stage runs (measured), while the conflict stencil grows
#: as the cube (~1000 offsets here). The step is then nudged so that no grid offset is within
#: 0.1 % of S, so no conflict is decided by float rounding.
GRID_DIVISIONS = 6.3
#: Small regions get a finer grid, down to S / GRID_DIVISIONS_MAX, aiming at about
#: TARGET_CANDIDATES candidates.
GRID_DIVISIONS_MAX = 12.3
TARGET_CANDIDATES = 4000
#: Halvings of the step tried when no grid point of a non-empty region is allowed.
CANDIDATE_REFINEMENTS = 3


def candidates(
    field: RuleField, spacing: float
) -> tuple[float, NDArray[np.int64], NDArray[np.float64]]:
    """Grid step, grid indices and RAS points of the candidates.

    A region thinner than the grid step may hold allowed points but no grid point; the step
    is then halved (at most CANDIDATE_REFINEMENTS times) before giving up.
    """
    step = _grid_step(field, spacing, _feasible_volume_mm3(field))
    ijk, pts = _candidate_grid(field, step)
    for _ in range(CANDIDATE_REFINEMENTS):
        if len(pts) or not np.any(field.slack_vox_hi > -field.band_mm):
            break
        step = _grid_step(field, spacing, 0.0, step / 2)
        ijk, pts = _candidate_grid(field, step)
    return step, ijk, pts


def _feasible_volume_mm3(field: RuleField) -> float:
    return float(np.count_nonzero(field.slack_vox >= 0)) * float(np.prod(field.gtv.voxel_size_mm))


def _grid_step(
    field: RuleField, spacing: float, volume_mm3: float, step: float | None = None
) -> float:
    """Step of the candidate grid (see the constants), nudged off float ties with S."""
    if step is None:
        step = min(
            spacing / GRID_DIVISIONS,
            max(spacing / GRID_DIVISIONS_MAX, (volume_mm3 / TARGET_CANDIDATES) ** (1 / 3)),
        )
    # Keep every grid offset clear of S by 0.1 %, so no conflict hinges on float rounding.
    for _ in range(20):
        r = spacing / step
        norms = np.sqrt(np.arange(int(r * r * 1.1) + 2))
        if np.all(np.abs(norms - r) > 1e-3 * r):
            break
        step *= 0.997
    return step


def _candidate_grid(field: RuleField, step: float) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Exactly allowed points of the world grid ``step * Z^3``: indices and RAS mm."""
    maybe = field.slack_vox_hi > -field.band_mm - EDT_TOLERANCE_MM
    if not maybe.any():
        return np.zeros((0, 3), np.int64), np.zeros((0, 3))
    box = bounding_box(maybe)
    # One voxel beyond the last maybe-voxel each way: the interpolation cell around it.
    lo = np.array([b.start for b in box]) - 1
    hi = np.array([b.stop for b in box])
    corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T
    world = field.gtv.ijk_to_ras(corners + field.box_lo)
    k0 = np.floor(world.min(0) / step).astype(np.int64)
    k1 = np.ceil(world.max(0) / step).astype(np.int64)
    ijk_parts, pts_parts = [], []
    # One x-slab at a time keeps memory at a slab's worth for a large region.
    yz = np.stack(
        np.meshgrid(np.arange(k0[1], k1[1] + 1), np.arange(k0[2], k1[2] + 1), indexing="ij"), -1
    ).reshape(-1, 2)
    for i in range(k0[0], k1[0] + 1):
        ijk = np.column_stack([np.full(len(yz), i), yz])
        pts = ijk * step
        keep = field.lookup_upper(field.world_to_box_index(pts)) > -field.band_mm - EDT_TOLERANCE_MM
        if keep.any():
            allowed, _ = field.classify(pts[keep])
            ijk_parts.append(ijk[keep][allowed])
            pts_parts.append(pts[keep][allowed])
    if not ijk_parts:
        return np.zeros((0, 3), np.int64), np.zeros((0, 3))
    return np.concatenate(ijk_parts), np.concatenate(pts_parts)


class ConflictGrid:
    """Candidates on a cubic grid; two conflict when their index offset is in a stencil."""

    def __init__(
        self, ijk: NDArray[np.int64], pts: NDArray[np.float64], step: float, spacing: float
    ) -> None:
        self.pts = pts
        self.step = step
        self.spacing = spacing
        reach = int(math.ceil(spacing / step))
        lo = ijk.min(0) - reach
        self.dims = tuple(int(v) for v in ijk.max(0) - lo + reach + 1)
        strides = np.array([self.dims[1] * self.dims[2], self.dims[2], 1], dtype=np.int64)
        self.cell = (ijk - lo) @ strides
        self.index = np.full(int(np.prod(self.dims)), -1, dtype=np.int64)
        self.index[self.cell] = np.arange(len(ijk))
        r = np.arange(-reach, reach + 1)
        off = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
        length = np.linalg.norm(off, axis=1) * step
        self.offsets = off[(length < spacing) & (length > 0)]
        self.stencil = self.offsets @ strides
        self.reach = reach
        self._cache: dict[int, NDArray[np.int64]] = {}

    def __len__(self) -> int:
        return len(self.pts)

    def neighbours(self, v: int) -> NDArray[np.int64]:
        """Candidates in conflict with candidate v."""
        out = self._cache.get(v)
        if out is None:
            out = self.index[self.cell[v] + self.stencil]
            out = out[out >= 0]
            self._cache[v] = out
        return out

    def degrees(self) -> NDArray[np.int64]:
        """Number of conflicts of every candidate (a convolution with the stencil)."""
        occ = np.zeros(self.dims)
        occ.ravel()[self.cell] = 1.0
        kernel = np.zeros((2 * self.reach + 1,) * 3)
        kernel[tuple((self.offsets + self.reach).T)] = 1.0
        shape = [n + 2 * self.reach for n in self.dims]
        conv = fft.irfftn(fft.rfftn(occ, shape) * fft.rfftn(kernel, shape), shape)
        r = self.reach
        conv = conv[r : r + self.dims[0], r : r + self.dims[1], r : r + self.dims[2]]
        return np.rint(conv.ravel()[self.cell]).astype(np.int64)
