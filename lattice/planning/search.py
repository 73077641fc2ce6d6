"""The lattice pose search: a lattice's translation and orientation with the most vertices.

For a pattern scaled to the spacing, every rigid placement ``p -> c + R (p + t)`` (rotation R
about the search centre c, translation t within one lattice cell) is a candidate. The search

1. evaluates a coarse grid: every orientation of the orientation set x ``steps^3``
   translations covering the cell;
2. refines the best few candidates on a finer local grid of translations and angles;
3. keeps the candidate with the most allowed vertices; ties go to the larger room of the
   tightest kept vertex (its slack: the smallest margin beyond the GTV-margin and OAR rules),
   then to the first found. The search is deterministic.

Every count is exact (see :mod:`lattice.planning.rules`): most points are settled by a table
look-up, the few within half a voxel diagonal of a rule boundary by exact distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from ..errors import ParameterError
from ..forking import on_two_threads
from ..geometry.margins import bounding_box
from ..geometry.patterns import LatticePattern, make_pattern
from ..volume import Volume
from .pairs import coplanar_conflicts, max_independent_subset
from .plan import PlanParameters
from .rules import ALLOWED, UNDECIDED, RuleField

#: Candidates carried from the coarse grid into local refinement.
N_REFINE = 6
#: Poses compared after a pairwise rule (co-planar) thins their vertices.
N_FINALISTS = 12
#: Local refinement: offsets per axis, as fractions of one coarse step.
REFINE_OFFSETS = np.array([-0.5, -0.25, 0.0, 0.25, 0.5])
#: The '3d' search tilts the lattice's layer normal away from world z by each of
#: these angles (deg), towards each azimuth of TILT_AZIMUTHS_DEG, on top of the rotation about
#: that normal (ZXZ Euler angles). The lattices are centrosymmetric, so three azimuths cover
#: six directions of the normal.
TILTS_3D_DEG = (22.5, 45.0, 67.5, 90.0)
TILT_AZIMUTHS_DEG = (0.0, 60.0, 120.0)
#: Points of one evaluation from which the table bounds of its poses are read by two
#: threads (:func:`_bound`): a coarse evaluation of the benchmark case has ~330,000.
THREADED_POINTS = 200_000


@dataclass(frozen=True)
class _Candidate:
    count: int
    tie: float
    angle_deg: float
    tilt_deg: float
    azimuth_deg: float
    frac: tuple[float, float, float]


def _base_frame(gtv: Volume) -> NDArray[np.float64]:
    """Orthonormal frame (columns) whose z is the slice normal and x follows the i axis."""
    d = gtv.directions
    z = d[:, 2] / np.linalg.norm(d[:, 2])
    x = d[:, 0] - z * (d[:, 0] @ z)
    x /= np.linalg.norm(x)
    return np.column_stack([x, np.cross(z, x), z])


#: Most lattice points a pose may hold: the search keeps (translations x points x 3) indices
#: at once, ~40 kB per point with the default 12^3 translations, so ~2 GB at this limit. A
#: 2000 cc GTV with a 10 mm spacing needs ~30 000.
MAX_LATTICE_POINTS = 50_000


class _Search:
    """Evaluates lattice placements against a :class:`RuleField`."""

    def __init__(
        self,
        field: RuleField,
        pattern: LatticePattern,
        frame: NDArray[np.float64],
        centre: NDArray[np.float64],
        cap: int | None,
        slice_step_mm: float | None,
    ):
        self.field = field
        self.pattern = pattern
        self.frame = frame
        self.centre = centre
        self.cap = cap
        self.slice_step_mm = slice_step_mm
        cand = field.slack_vox_hi > -field.band_mm
        cbox = bounding_box(cand)
        self.cand_lo = np.array([s.start for s in cbox], float) - 1.0
        self.cand_hi = np.array([s.stop for s in cbox], float)
        extent_mm = (self.cand_hi - self.cand_lo) * field.gtv.voxel_size_mm
        cell_diam = max(
            float(np.linalg.norm(c, axis=0).sum()) for c in (pattern.cell_mm, pattern.primitive_mm)
        )
        radius = 0.5 * float(np.linalg.norm(extent_mm)) + cell_diam
        # Each pose weighs every point for every translation at once: refuse a spacing so
        # small against the GTV that this would need gigabytes (the count is estimated from
        # the ball's volume over the primitive cell's, before any point is made).
        n_points = 4.0 / 3.0 * np.pi * radius**3 / abs(np.linalg.det(pattern.primitive_mm))
        if n_points > MAX_LATTICE_POINTS:
            # The ball's radius grows with the spacing too (the cell term): n(s) falls to the
            # limit where (half_diag + k s) / s = q, with k = cell_diam / s and q the radius
            # per unit spacing the limit allows.
            s0 = pattern.min_spacing_mm
            half_diag, k = 0.5 * float(np.linalg.norm(extent_mm)), cell_diam / s0
            cell_per_s3 = abs(np.linalg.det(pattern.primitive_mm)) / s0**3
            q = (MAX_LATTICE_POINTS * cell_per_s3 * 3 / (4 * np.pi)) ** (1 / 3)
            least = half_diag / (q - k) if q > k else 10 * s0
            raise ParameterError(
                f"{{min_spacing_mm}} {pattern.min_spacing_mm:g} is too small for this GTV "
                f"(about {2 * radius:.0f} mm across): the search would weigh about "
                f"{n_points:.3g} lattice points per pose (the limit is {MAX_LATTICE_POINTS}); "
                f"use a spacing of at least {np.ceil(least * 10 + 1e-6) / 10:g} mm",
                parameters=["min_spacing_mm"],
            )
        self.local = pattern.points_in_ball(radius)
        self.n_evaluated = 0
        self.n_settled = 0
        #: Best exact count seen so far (branch and bound threshold).
        self.best_count = 0

    def rotation(
        self, angle_deg: float, tilt_deg: float = 0.0, azimuth_deg: float = 0.0
    ) -> NDArray[np.float64]:
        """Lattice orientation: ``frame Rz(azimuth) Rx(tilt) Rz(angle)`` (ZXZ Euler angles)."""
        # Intrinsic z-x-z: Rz(azimuth) Rx(tilt) Rz(angle).
        return (
            self.frame
            @ Rotation.from_euler(
                "ZXZ", [azimuth_deg, tilt_deg, angle_deg], degrees=True
            ).as_matrix()
        )

    def translations(self, fracs: NDArray[np.float64]) -> NDArray[np.float64]:
        """Cell fractions -> lattice-frame translations.

        Free placement spans the primitive cell (each distinct placement once). With slice
        snapping the conventional cell is used, whose z edge is a whole number of slices, and
        z is rounded to a slice step.
        """
        if self.slice_step_mm is None:
            return fracs @ self.pattern.primitive_mm.T
        t = fracs @ self.pattern.cell_mm.T
        t[:, 2] = np.round(t[:, 2] / self.slice_step_mm) * self.slice_step_mm
        return t

    def evaluate(
        self, rot: NDArray[np.float64], fracs: NDArray[np.float64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Counts and tie-break values for one orientation and many translations.

        Branch and bound: cheap bounds give each pose a lower and an upper count; exact
        distances are computed only for poses whose upper count can still reach the best
        exact count seen so far, best first. Counts of the other poses are lower bounds
        below that best, so they can never be chosen.
        """
        field = self.field
        n = len(fracs)
        trans = self.translations(fracs) @ rot.T
        base_idx = field.world_to_box_index(self.centre + self.local @ rot.T)
        shift_idx = trans @ field._affine_inv[:3, :3].T
        lo = base_idx + shift_idx.min(axis=0)
        hi = base_idx + shift_idx.max(axis=0)
        keep = np.all((hi >= self.cand_lo - 1) & (lo <= self.cand_hi + 1), axis=1)
        base_idx = base_idx[keep]
        self.n_evaluated += n
        if len(base_idx) == 0:
            return np.zeros(n, np.int64), np.full(n, -np.inf)
        idx = base_idx[None, :, :] + shift_idx[:, None, :]
        state, est = _bound(field, idx)
        cap = self.cap if self.cap is not None else state.shape[1]
        allowed = state == ALLOWED
        undecided = state == UNDECIDED
        n_allowed = np.count_nonzero(allowed, axis=1)
        lower = np.minimum(n_allowed, cap)
        n_undecided = np.count_nonzero(undecided, axis=1)
        upper = np.minimum(lower + n_undecided, cap)
        open_rows = n_undecided > 0
        threshold = max(self.best_count, int(lower.max()))
        for u in np.unique(upper[open_rows])[::-1]:
            if u < threshold:
                break
            rows = np.flatnonzero(open_rows & (upper == u))
            mask = undecided[rows]
            settled = allowed[rows]
            settled[mask] = field.settle(idx[rows][mask]) == ALLOWED
            allowed[rows] = settled
            n_allowed[rows] = np.count_nonzero(settled, axis=1)
            self.n_settled += int(len(rows))
            threshold = max(threshold, int(np.minimum(n_allowed[rows], cap).max()))
        kept = np.minimum(n_allowed, cap)
        self.best_count = max(self.best_count, int(kept.max()))
        return kept, _tie(allowed, est, kept, n_allowed)

    def points(self, cand: _Candidate) -> NDArray[np.float64]:
        rot = self.rotation(cand.angle_deg, cand.tilt_deg, cand.azimuth_deg)
        t = self.translations(np.array([cand.frac]))[0]
        return self.centre + (self.local + t) @ rot.T


def _tie(
    allowed: NDArray[np.bool_],
    est: NDArray[np.float32],
    kept: NDArray[np.int64],
    n_allowed: NDArray[np.int64],
) -> NDArray[np.float64]:
    """Per pose (row), the ``kept``-th largest tabled slack of its ``n_allowed`` allowed
    points (-inf when none is kept): the room of the tightest vertex kept.

    A pose that keeps all its allowed points (no cap) has the smallest of them, a reduction;
    only poses whose cap drops some need their row sorted.
    """
    room = np.where(allowed, est, np.float32(np.inf)).min(axis=1, initial=np.inf)
    capped = np.flatnonzero(kept < n_allowed)
    if len(capped):
        rows = -np.sort(-np.where(allowed[capped], est[capped], -np.inf), axis=1)
        room[capped] = rows[np.arange(len(capped)), kept[capped] - 1]
    return np.where(kept > 0, room.astype(np.float64), -np.inf)


def _best(counts: NDArray[np.int64], tie: NDArray[np.float64], n: int) -> NDArray[np.int64]:
    """Indices of the n best (count desc, tie desc, index asc)."""
    order = np.lexsort((np.arange(len(counts)), -tie, -counts))
    return order[:n]


def _frac_grid(steps: int, z_steps: int) -> NDArray[np.float64]:
    axes = [np.arange(steps) / steps, np.arange(steps) / steps, np.arange(z_steps) / z_steps]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


@dataclass(frozen=True)
class _Setup:
    """A pose search ready to run: the lattice, its origin and the translation grid."""

    search: _Search
    lattice: LatticePattern
    centre: NDArray[np.float64]
    slice_step: float | None
    fracs: NDArray[np.float64]
    steps: int
    z_steps: int


def _setup(field: RuleField, gtv: Volume, params: PlanParameters) -> _Setup:
    """The lattice (stretched to whole slices with slice snapping), centred on the region
    where centres may go, and the coarse grid of cell-fraction translations."""
    lattice = make_pattern(params.pattern, min_spacing_mm=params.min_spacing_mm)
    frame = _base_frame(gtv) if params.snap_to_slices else np.eye(3)
    slice_step = None
    cand_box = bounding_box(field.slack_vox_hi > -field.band_mm)
    centre_ijk = np.array([(s.start + s.stop - 1) / 2 for s in cand_box]) + field.box_lo
    if params.snap_to_slices:
        slice_step = float(gtv.voxel_size_mm[2])
        layers = np.ceil(lattice.layer_step_mm / slice_step - 1e-9)
        lattice = lattice.stretched_z(layers * slice_step / lattice.layer_step_mm)
        centre_ijk[2] = np.round(centre_ijk[2])
    centre = gtv.ijk_to_ras(centre_ijk)[0]
    search = _Search(field, lattice, frame, centre, params.max_vertices, slice_step)
    steps = params.translation_steps
    z_steps = steps
    if slice_step is not None:
        z_steps = max(int(round(lattice.cell_mm[2, 2] / slice_step)), 1)
    return _Setup(search, lattice, centre, slice_step, _frac_grid(steps, z_steps), steps, z_steps)


def _bound(
    field: RuleField, idx: NDArray[np.float64]
) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
    """``field.bound(idx)`` for poses x points: each point is bounded on its own, so on many
    points half the poses go to a second thread (numpy's loops release the GIL), with the
    same values as one call (coarse pose search of the benchmark case: 0.18 -> 0.11 s)."""
    if idx.shape[0] < 2 or idx.shape[0] * idx.shape[1] < THREADED_POINTS:
        return field.bound(idx)
    half = idx.shape[0] // 2
    (s0, e0), (s1, e1) = on_two_threads(
        lambda: field.bound(idx[:half]), lambda: field.bound(idx[half:])
    )
    return np.concatenate([s0, s1]), np.concatenate([e0, e1])


def _coarse_pool(
    setup: _Setup, angles: NDArray[np.float64], tilts: Sequence[tuple[float, float]]
) -> list[_Candidate]:
    """The best :data:`N_REFINE` translations of every orientation, best first."""
    search, fracs = setup.search, setup.fracs
    pool: list[_Candidate] = []
    for tilt, azimuth in tilts:
        for angle in angles:
            counts, tie = search.evaluate(search.rotation(angle, tilt, azimuth), fracs)
            for i in _best(counts, tie, N_REFINE):
                pool.append(
                    _Candidate(
                        int(counts[i]), float(tie[i]), float(angle), tilt, azimuth, tuple(fracs[i])
                    )
                )
    pool.sort(key=lambda c: (-c.count, -c.tie))
    return pool


def _refine(
    setup: _Setup, seeds: Sequence[_Candidate], rotation_step_deg: float
) -> list[_Candidate]:
    """Local refinement, two levels: around each seed a 5x5x5 grid of translations at a
    quarter coarse step and 5 angles at a quarter angle step, then again at 1/16."""
    search = setup.search
    scale = np.array([1 / setup.steps, 1 / setup.steps, 1 / setup.z_steps])
    z_offsets = REFINE_OFFSETS if setup.slice_step is None else np.array([0.0])
    local = np.stack(
        np.meshgrid(REFINE_OFFSETS, REFINE_OFFSETS, z_offsets, indexing="ij"), axis=-1
    ).reshape(-1, 3)
    seeds = list(seeds)
    for level in (1.0, 0.25):
        refined = []
        for seed in seeds:
            top = seed
            for d_angle in REFINE_OFFSETS * rotation_step_deg * level:
                angle = seed.angle_deg + d_angle
                fr = np.array(seed.frac) + local * scale * level
                counts, tie = search.evaluate(
                    search.rotation(angle, seed.tilt_deg, seed.azimuth_deg), fr
                )
                i = _best(counts, tie, 1)[0]
                cand = _Candidate(
                    int(counts[i]),
                    float(tie[i]),
                    float(angle),
                    seed.tilt_deg,
                    seed.azimuth_deg,
                    tuple(fr[i]),
                )
                if (cand.count, cand.tie) > (top.count, top.tie):
                    top = cand
            refined.append(top)
        seeds = refined
    return seeds


def _allowed_points(
    setup: _Setup, field: RuleField, gtv: Volume, cand: _Candidate
) -> NDArray[np.float64]:
    """The centres of a pose that every field rule allows (snapped to slices if asked)."""
    pts = setup.search.points(cand)
    if setup.slice_step is not None:
        ijk = gtv.ras_to_ijk(pts)
        ijk[:, 2] = np.round(ijk[:, 2])
        pts = gtv.ijk_to_ras(ijk)
    allowed, _ = field.classify(pts)
    return pts[allowed]


def _coplanar_choice(
    setup: _Setup,
    field: RuleField,
    gtv: Volume,
    params: PlanParameters,
    finalists: Sequence[_Candidate],
) -> tuple[_Candidate, NDArray[np.float64]]:
    """A pairwise rule: keep each finalist's largest conflict-free subset, and let that count
    choose among the best poses (the pose search itself counts field rules only)."""
    chosen = None
    for cand in finalists[:N_FINALISTS]:
        cand_pts = _allowed_points(setup, field, gtv, cand)
        keep = max_independent_subset(
            len(cand_pts),
            coplanar_conflicts(
                cand_pts,
                coplanar_mm=float(params.coplanar_mm or 0.0),
                coplanar_spacing_mm=float(params.coplanar_spacing_mm or 0.0),
            ),
            weights=field.exact_slack(cand_pts) if len(cand_pts) else None,
        )
        if chosen is None or len(keep) > len(chosen[1]):
            chosen = (cand, cand_pts[keep])
    assert chosen is not None
    return chosen


def _numbered(
    field: RuleField, pts: NDArray[np.float64], max_vertices: int | None
) -> NDArray[np.float64]:
    """Most room first, then position, so ``max_vertices`` keeps the safest ones
    deterministically; then numbered by position (superior first).

    The exact slacks are computed only when the cap drops some: the centres are distinct, so
    the position keys alone order the ones kept.
    """
    if max_vertices is not None and len(pts) > max_vertices:
        slack = field.exact_slack(pts)
        order = np.lexsort((pts[:, 0], -pts[:, 1], -pts[:, 2], -np.round(slack, 6)))
        pts = pts[order[:max_vertices]]
    return pts[np.lexsort((pts[:, 0], -pts[:, 1], -pts[:, 2]))]


def search_lattice(
    field: RuleField, gtv: Volume, params: PlanParameters
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Best lattice pose for ``params``: the allowed centres (numbered) and what was searched."""
    setup = _setup(field, gtv, params)
    search = setup.search
    angles = np.arange(0.0, setup.lattice.symmetry_deg, params.rotation_step_deg)
    tilts = [(0.0, 0.0)]
    if params.orientation_search == "3d":
        tilts += [(t, a) for t in TILTS_3D_DEG for a in TILT_AZIMUTHS_DEG]
    pool = _coarse_pool(setup, angles, tilts)
    n_coarse = search.n_evaluated
    seeds = _refine(setup, pool[:N_REFINE], params.rotation_step_deg)
    best = max([pool[0], *seeds], key=lambda c: (c.count, c.tie))
    pts = _allowed_points(setup, field, gtv, best)
    n_allowed = len(pts)
    if params.coplanar_mm:
        finalists = sorted(
            {best, *seeds, *pool[:N_FINALISTS]},
            key=lambda c: (-c.count, -c.tie, c.angle_deg, c.frac),
        )
        best, pts = _coplanar_choice(setup, field, gtv, params, finalists)
    pts = _numbered(field, pts, params.max_vertices)
    rot = search.rotation(best.angle_deg, best.tilt_deg, best.azimuth_deg)
    info: dict[str, Any] = {
        "method": "lattice pose search (exact rule checks)",
        "pattern": params.pattern,
        "orientation_search": params.orientation_search,
        "angles_deg": [float(angles[0]), float(angles[-1]), params.rotation_step_deg],
        "tilts_deg": [list(t) for t in tilts],
        "translations_per_orientation": int(len(setup.fracs)),
        "poses_evaluated_coarse": int(n_coarse),
        "poses_evaluated_total": int(search.n_evaluated),
        "poses_needing_exact_distances": int(search.n_settled),
        "chosen_angle_deg": round(best.angle_deg, 4),
        "chosen_tilt_deg": round(best.tilt_deg, 4),
        "chosen_tilt_azimuth_deg": round(best.azimuth_deg, 4),
        "chosen_translation_mm": [
            round(float(v), 4) for v in search.translations(np.array([best.frac]))[0]
        ],
        "chosen_translation_cell_fraction": [round(float(v), 5) for v in best.frac],
        "lattice_origin_ras_mm": [round(float(v), 4) for v in setup.centre],
        "lattice_rotation": [[round(float(v), 8) for v in row] for row in rot],
        "layer_step_mm": round(setup.lattice.layer_step_mm, 4),
        "n_allowed_before_cap": int(n_allowed),
    }
    return pts, info
