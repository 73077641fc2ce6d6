"""Irregular maximal packing: as many vertices as the rules allow, on no lattice.

The problem: find as many centres as possible in the allowed region
``F = {p : slack(p) >= 0}`` of a :class:`~lattice.rules.RuleField` with every pair at least
``S = min_spacing_mm`` apart. In space this packs balls of radius S/2 whose centres stay in F;
on a finite set of candidate points it is a maximum independent set (MIS) of the conflict
graph, whose edges join candidates closer than S. Both are NP-hard; near an irregular
boundary the best packing is no lattice (domain brief, section 3).

Method, three stages sharing one time budget:

1. *Candidates*: the exactly allowed points (:meth:`RuleField.classify`) of a cubic grid on
   world axes, anchored at the world origin, of step about S/6.3 (finer for small regions).
   The candidates therefore depend on the world geometry only, not on how the image is
   stored. Two grid points conflict when their index offset is in a fixed stencil.
2. *Discrete*: an MIS on the candidates. A small graph is solved exactly by integer
   programming (:func:`lattice.pairs.max_independent_set_milp`; one constraint per clique "the
   candidates within S/2 of a half-grid point", which covers every conflict and gives a far
   tighter relaxation than one row per edge); its bound is reported. A larger graph gets a
   greedy solution (fewest conflicts first, so corners and the boundary fill first) improved
   by iterated local search (Andrade, Resende & Werneck, "Fast local search for the maximum
   independent set problem", J Heuristics 2012): (1,2)-swaps that remove one centre and
   insert two, and seeded random forced insertions as the perturbation.
3. *Continuous*: a grid centre sits up to half a step away from where it would help most,
   and on the sarcoma cases this costs more than the discrete search recovers (STS_013,
   D 10 / S 20: greedy 147, local search 169, continuous stage 207). So
   the larger of the discrete solution and ``initial`` is refined in space: add a centre at
   the emptiest candidate (least overlap with the current centres) and let it and every
   centre within ``MOVE_RADIUS_SPACINGS * S`` move so that all overlaps and boundary
   violations vanish (L-BFGS on a squared penalty over the trilinearly interpolated slack,
   with the small pads below). A move is kept only when the exact rules and the spacing hold
   for every moved centre. When no hole takes another centre, a seeded random kick jiggles
   a neighbourhood within the rules, which opens new holes.

The count never decreases from the start, so the result has at least as many centres as
``initial``. For a fixed seed the result is deterministic as long as the work limits below
end each stage before the time budget does (``info["stopped_by"]`` says which ended it).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from nibabel.affines import apply_affine
from numpy.typing import ArrayLike, NDArray
from scipy import fft, sparse
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist

from .errors import ParameterError
from .margins import EDT_TOLERANCE_MM, bounding_box
from .pairs import max_independent_set_milp
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
#: Exact integer programming up to this many candidates: measured with HiGHS on the
#: half-grid clique model, 140 candidates solve in 0.4-3 s, 430 in 14 s.
MILP_MAX_CANDIDATES = 120
#: Share of the budget the discrete stage may use; the continuous stage gains more per second.
DISCRETE_SHARE = 0.25
#: Iterated local search: at most ILS_MAX_ITERATIONS perturbations; stop after
#: max(ILS_MIN_STALL, ILS_STALL_PER_VERTEX * count) in a row without a larger solution.
ILS_MAX_ITERATIONS = 4000
ILS_MIN_STALL = 200
ILS_STALL_PER_VERTEX = 10
#: Continuous stage. Centres within MOVE_RADIUS_SPACINGS * S of a new centre may move: a wide
#: neighbourhood lets the packing shift as a whole. Total count over the six sarcoma settings
#: of the acceptance table, 5 s each: 2 S: 418, 4 S: 443, 6 S: 446, everything: 443 (each
#: move costs more).
MOVE_RADIUS_SPACINGS = 6.0
#: The penalty aims at S + SPACING_PAD_MM and at an interpolated slack of SLACK_PAD_MM, so
#: that a configuration the optimiser calls feasible nearly always is: trilinear interpolation
#: of the slack overestimates it by at most ~h^2 / (8 * depth), ~0.1 mm for 3.3 mm slices.
SPACING_PAD_MM = 0.02
SLACK_PAD_MM = 0.2
#: A relaxation succeeds when its penalty is below this: every single overlap or violation
#: is then below half its pad, so the exact checks (which decide) almost always pass.
ACCEPT_PENALTY = (SPACING_PAD_MM / 2) ** 2
RELAX_MAX_ITERATIONS = 150
#: Overlaps by dense distance matrices up to this many pairs, by KD-tree pair lists above.
DENSE_PAIRS_MAX = 20000
#: L-BFGS memory, and its stall rule: give up when the penalty fell by less than
#: STALL_DECREASE over the last STALL_WINDOW iterations (a local minimum above zero).
LBFGS_HISTORY = 8
STALL_WINDOW = 10
STALL_DECREASE = 0.03
#: Insertion gives up after this many failed holes in a row, then kicks.
MAX_FAILED_HOLES = 10
#: Kicks: random displacement (mm, per axis, normal) of the centres near a random centre,
#: then a relaxation with the same count. The stage ends after MAX_KICKS_WITHOUT_GAIN kicks
#: in a row without a new centre.
KICK_MM = 3.0
MAX_KICKS_WITHOUT_GAIN = 5


def pack_maximal(
    field: RuleField,
    *,
    min_spacing_mm: float,
    time_budget_s: float = 5.0,
    seed: int = 0,
    max_vertices: int | None = None,
    initial: ArrayLike | None = None,
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """As many vertex centres as the rules allow, at least ``min_spacing_mm`` apart.

    Parameters
    ----------
    field : RuleField
        The placement rules (GTV margin, OAR clearances, optional shell).
    min_spacing_mm : float
        Minimum centre-to-centre distance S (mm).
    time_budget_s : float
        Wall-clock budget of the whole call, including building the candidates.
    seed : int
        Seed of every random choice; the same seed gives the same centres (see the module
        docstring for the one exception, a search cut short by the budget).
    max_vertices : int, optional
        Stop at this many; when more were found keep those with the most room (largest
        exact slack), as :func:`lattice.placement.plan_vertices` does.
    initial : (n, 3) array_like of float, optional
        A valid placement (RAS mm), e.g. the best lattice; the result is never smaller.

    Returns
    -------
    centres : (m, 3) ndarray of float64
        RAS mm, every one exactly allowed by ``field``, pairwise distances >= S, sorted by
        z (superior first), then y, then x.
    info : dict
        ``method``, ``seed``, ``grid_step_mm``, ``candidates``, ``initial_count``,
        ``discrete`` (``method``, ``count``, and ``iterations`` / ``stopped_by`` for the
        local search or ``optimal`` for integer programming), ``upper_bound_on_grid`` (the
        integer program's bound on a grid-only solution, else None; the continuous stage may
        exceed it), ``start`` (``"discrete"`` or ``"initial"``), ``insertions_tried``,
        ``insertions_kept``, ``kicks``, ``stopped_by`` (``"converged"``, ``"time"`` or
        ``"max_vertices"``), ``count``, and elapsed ``seconds_candidates``,
        ``seconds_discrete``, ``seconds``.

    Raises
    ------
    ParameterError
        A non-positive spacing or budget, a negative ``max_vertices``, or an ``initial``
        placement that breaks the rules.

    Examples
    --------
    >>> field = RuleField(gtv, [], diameter_mm=15, gtv_margin_mm=5)     # doctest: +SKIP
    >>> centres, info = pack_maximal(field, min_spacing_mm=30)          # doctest: +SKIP
    """
    t0 = time.perf_counter()
    spacing = _positive(min_spacing_mm, "min_spacing_mm")
    budget = _positive(time_budget_s, "time_budget_s")
    if max_vertices is not None and (int(max_vertices) != max_vertices or max_vertices < 0):
        raise ParameterError(f"max_vertices must be a whole number >= 0, got {max_vertices}")
    cap = None if max_vertices is None else int(max_vertices)
    start = _checked_initial(field, initial, spacing)
    rng = np.random.default_rng(seed)
    deadline = t0 + budget

    step, ijk, cand = _candidates(field, spacing)
    info: dict[str, Any] = {
        "method": "maximal packing: grid MIS, then continuous insertion (exact rule checks)",
        "seed": int(seed), "grid_step_mm": round(step, 4), "candidates": int(len(cand)),
        "initial_count": int(len(start)), "upper_bound_on_grid": None,
        "seconds_candidates": round(time.perf_counter() - t0, 3)}

    discrete = np.zeros((0, 3))
    if len(cand):
        grid = _ConflictGrid(ijk, cand, step, spacing)
        ids, info["discrete"] = _max_independent_set(
            grid, rng, min(deadline, t0 + DISCRETE_SHARE * budget), cap)
        info["upper_bound_on_grid"] = info["discrete"].pop("upper_bound_on_grid", None)
        discrete = cand[ids]
    info["start"] = "discrete" if len(discrete) > len(start) else "initial"
    if len(discrete) > len(start):
        start = discrete
    info["seconds_discrete"] = round(time.perf_counter() - t0, 3)

    centres, stats = _Refiner(field, cand, spacing, rng).run(start, deadline, cap)
    info.update(stats)
    if not _valid(field, centres, spacing):  # never expected: every move was checked
        centres, info["stopped_by"] = start, "refinement failed its final check"
    if cap is not None and len(centres) > cap:
        room = np.round(field.exact_slack(centres), 6)
        centres = centres[np.lexsort((*_position_keys(centres), -room))[:cap]]
    centres = centres[np.lexsort(_position_keys(centres))]
    info["count"] = int(len(centres))
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return centres, info


# -- validation -----------------------------------------------------------------------------

def _positive(value: float, name: str) -> float:
    if not np.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} must be a positive number, got {value}")
    return float(value)


def _valid(field: RuleField, pts: NDArray[np.float64], spacing: float) -> bool:
    if len(pts) == 0:
        return True
    ok = bool(field.classify(pts)[0].all())
    return ok and (len(pts) < 2 or bool(pdist(pts).min() >= spacing))


def _checked_initial(field: RuleField, initial: ArrayLike | None,
                     spacing: float) -> NDArray[np.float64]:
    if initial is None:
        return np.zeros((0, 3))
    pts = np.array(initial, dtype=np.float64).reshape(-1, 3) if np.size(initial) else \
        np.zeros((0, 3))
    if not np.all(np.isfinite(pts)):
        raise ParameterError("the initial placement holds a non-finite coordinate; pass (n, 3) "
                             "RAS points in mm")
    allowed, _ = field.classify(pts)
    if not allowed.all():
        i = int(np.flatnonzero(~allowed)[0])
        raise ParameterError(
            f"initial centre {i} at {np.round(pts[i], 2).tolist()} mm breaks the GTV margin or "
            "an OAR clearance; pass a placement made under the same rules")
    if len(pts) > 1 and pdist(pts).min() < spacing:
        raise ParameterError(
            f"two initial centres are {pdist(pts).min():.3f} mm apart, closer than the spacing "
            f"{spacing:g} mm; pass a placement made with the same spacing")
    return pts


def _position_keys(pts: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
    """Sort keys (last is primary): z descending, then y descending, then x."""
    return pts[:, 0], -pts[:, 1], -pts[:, 2]


# -- candidates ----------------------------------------------------------------------------

def _candidates(field: RuleField, spacing: float
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
    return float(np.count_nonzero(field.slack_vox >= 0)) * float(
        np.prod(field.gtv.voxel_size_mm))


def _grid_step(field: RuleField, spacing: float, volume_mm3: float,
               step: float | None = None) -> float:
    """Step of the candidate grid (see the constants), nudged off float ties with S."""
    if step is None:
        step = min(spacing / GRID_DIVISIONS, max(spacing / GRID_DIVISIONS_MAX,
                                                 (volume_mm3 / TARGET_CANDIDATES) ** (1 / 3)))
    # Keep every grid offset clear of S by 0.1 %, so no conflict hinges on float rounding.
    for _ in range(20):
        r = spacing / step
        norms = np.sqrt(np.arange(int(r * r * 1.1) + 2))
        if np.all(np.abs(norms - r) > 1e-3 * r):
            break
        step *= 0.997
    return step


def _candidate_grid(field: RuleField, step: float
                    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
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
    yz = np.stack(np.meshgrid(np.arange(k0[1], k1[1] + 1), np.arange(k0[2], k1[2] + 1),
                              indexing="ij"), -1).reshape(-1, 2)
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


class _ConflictGrid:
    """Candidates on a cubic grid; two conflict when their index offset is in a stencil."""

    def __init__(self, ijk: NDArray[np.int64], pts: NDArray[np.float64], step: float,
                 spacing: float) -> None:
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
        conv = conv[r:r + self.dims[0], r:r + self.dims[1], r:r + self.dims[2]]
        return np.rint(conv.ravel()[self.cell]).astype(np.int64)


# -- discrete stage ------------------------------------------------------------------------

def _max_independent_set(grid: _ConflictGrid, rng: np.random.Generator, deadline: float,
                         cap: int | None) -> tuple[NDArray[np.int64], dict[str, Any]]:
    exact: tuple[NDArray[np.int64], dict[str, Any]] | None = None
    if len(grid) <= MILP_MAX_CANDIDATES:
        exact = _milp(grid, deadline)
        if exact[1]["optimal"]:
            return exact
    search = _LocalSearch(grid, rng)
    search.greedy()
    ids, iterations, stop = search.iterate(deadline, cap)
    info = {"method": "greedy + iterated local search", "count": int(len(ids)),
            "iterations": iterations, "stopped_by": stop}
    if exact is None:
        return ids, info
    # The integer program ran out of time: keep the larger solution and its bound.
    info["upper_bound_on_grid"] = exact[1]["upper_bound_on_grid"]
    return (exact if len(exact[0]) > len(ids) else (ids, info))


def _milp(grid: _ConflictGrid, deadline: float) -> tuple[NDArray[np.int64], dict[str, Any]]:
    """Exact MIS by integer programming over half-grid ball cliques.

    Two candidates closer than S have their midpoint on the half-grid, both within S/2 of
    it; candidates within a ball of radius just under S/2 are pairwise closer than S. So
    "at most one per such ball, for every half-grid centre" is exactly the conflict rule.
    """
    n = len(grid)
    tree = cKDTree(grid.pts)
    lo, hi = grid.pts.min(0) - grid.spacing / 2, grid.pts.max(0) + grid.spacing / 2
    rows: list[int] = []
    cols: list[int] = []
    seen: set[tuple[int, ...]] = set()
    half = grid.step / 2
    axes = [np.arange(np.floor(lo[d] / half), np.ceil(hi[d] / half) + 1) * half for d in range(3)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    for members in tree.query_ball_point(centres, grid.spacing / 2 * (1 - 1e-9)):
        if len(members) > 1:
            key = tuple(sorted(members))
            if key not in seen:
                seen.add(key)
                rows += [len(seen) - 1] * len(key)
                cols += key
    info: dict[str, Any] = {"method": "integer programming (HiGHS)", "optimal": False,
                            "count": 0, "upper_bound_on_grid": None}
    if not seen:  # no conflict at all: take everything
        info.update(optimal=True, count=n, upper_bound_on_grid=n)
        return np.arange(n), info
    cliques = sparse.csr_array((np.ones(len(rows)), (rows, cols)), shape=(len(seen), n))
    found = max_independent_set_milp(
        n, cliques, time_limit_s=max(deadline - time.perf_counter(), 0.05))
    if not found.found:
        return found.ids, info
    info.update(optimal=found.optimal, count=int(len(found.ids)),
                upper_bound_on_grid=found.upper_bound)
    return found.ids, info


class _LocalSearch:
    """Greedy MIS and iterated local search with (1,2)-swaps (Andrade et al. 2012).

    ``tight[v]`` counts the solution members in conflict with v: v is free at 0, and a
    solution member x can be swapped for two 1-tight neighbours that do not conflict.
    """

    def __init__(self, grid: _ConflictGrid, rng: np.random.Generator) -> None:
        self.grid = grid
        self.rng = rng
        self.in_sol = np.zeros(len(grid), bool)
        self.tight = np.zeros(len(grid), np.int32)
        self.sol: set[int] = set()
        self.degree = grid.degrees()
        self.log: list[tuple[bool, int]] | None = None

    def insert(self, v: int) -> None:
        self.in_sol[v] = True
        self.tight[self.grid.neighbours(v)] += 1
        self.sol.add(v)
        if self.log is not None:
            self.log.append((True, v))

    def remove(self, v: int) -> None:
        self.in_sol[v] = False
        self.tight[self.grid.neighbours(v)] -= 1
        self.sol.discard(v)
        if self.log is not None:
            self.log.append((False, v))

    def greedy(self) -> None:
        """Fewest conflicts first, ties at random: corners and boundary fill first."""
        order = np.lexsort((self.rng.random(len(self.grid)), self.degree))
        for v in order.tolist():
            if self.tight[v] == 0:
                self.insert(v)

    def fill(self, ids: NDArray[np.int64]) -> list[int]:
        """Insert the free candidates among ids, fewest conflicts first."""
        free = np.unique(ids[(self.tight[ids] == 0) & ~self.in_sol[ids]])
        out = []
        for v in free[np.lexsort((self.rng.random(len(free)), self.degree[free]))].tolist():
            if self.tight[v] == 0 and not self.in_sol[v]:
                self.insert(v)
                out.append(v)
        return out

    def _near_solution(self, ids: list[int]) -> list[int]:
        sol = np.fromiter(self.sol, np.int64, len(self.sol))
        if len(sol) == 0:
            return []
        pts = self.grid.pts
        d = np.linalg.norm(pts[sol][:, None, :] - pts[ids][None], axis=2).min(1)
        return sol[d < 2 * self.grid.spacing].tolist()

    def _pair(self, ones: NDArray[np.int64]) -> tuple[int, int] | None:
        """Two of ``ones`` that do not conflict, chosen at random, or None."""
        if len(ones) > 256:
            ones = ones[self.rng.choice(len(ones), 256, replace=False)]
        p = self.grid.pts[ones]
        far = ((p[:, None, :] - p[None]) ** 2).sum(2) >= self.grid.spacing ** 2
        i, j = np.nonzero(np.triu(far, 1))
        if len(i) == 0:
            return None
        k = int(self.rng.integers(len(i)))
        return int(ones[i[k]]), int(ones[j[k]])

    def improve(self, queue: list[int]) -> None:
        """(1,2)-swaps until none applies to the queued members (and those they touch)."""
        while queue:
            x = queue.pop()
            if not self.in_sol[x]:
                continue
            nb = self.grid.neighbours(x)
            ones = nb[(self.tight[nb] == 1) & ~self.in_sol[nb]]
            pair = self._pair(ones) if len(ones) > 1 else None
            if pair is None:
                continue
            self.remove(x)
            self.insert(pair[0])
            self.insert(pair[1])
            added = self.fill(ones)
            queue.extend(self._near_solution([x, *pair, *added]))

    def iterate(self, deadline: float, cap: int | None
                ) -> tuple[NDArray[np.int64], int, str]:
        self.improve(list(self.sol))
        best = set(self.sol)
        last_gain = it = 0
        stop = "iterations"
        while it < ILS_MAX_ITERATIONS and it - last_gain < max(
                ILS_MIN_STALL, ILS_STALL_PER_VERTEX * len(best)):
            if cap is not None and len(best) >= cap:
                stop = "max_vertices"
                break
            if time.perf_counter() > deadline:
                stop = "time"
                break
            it += 1
            before = len(self.sol)
            v = self._outsider()
            if v is None:
                continue
            self.log = []
            gone = self.grid.neighbours(v)
            gone = gone[self.in_sol[gone]].tolist()
            for x in gone:
                self.remove(x)
            self.insert(v)
            added: list[int] = []
            for x in gone:
                added += self.fill(self.grid.neighbours(x))
            self.improve(self._near_solution([v, *gone, *added]))
            log, self.log = self.log, None
            if len(self.sol) > len(best):
                best, last_gain = set(self.sol), it
            elif len(self.sol) < before:
                # Accept a worse solution with probability 1 / (1 + d * d_best) (ARW 2012).
                d, d_best = before - len(self.sol), len(best) - len(self.sol)
                if self.rng.random() > 1.0 / (1.0 + d * d_best):
                    for inserted, u in reversed(log):
                        (self.remove if inserted else self.insert)(u)
        return np.array(sorted(best), dtype=np.int64), it, stop

    def _outsider(self) -> int | None:
        """A random non-member with one or two members in conflict (a 1- or 2-for-1 move)."""
        for _ in range(32):
            v = int(self.rng.integers(len(self.grid)))
            if not self.in_sol[v] and 1 <= self.tight[v] <= 2:
                return v
        return None


# -- continuous stage ----------------------------------------------------------------------

class _SlackInterpolator:
    """Trilinear interpolation of the voxel slack, with its gradient, at world points."""

    _CORNERS = np.array(list(np.ndindex(2, 2, 2)))

    def __init__(self, field: RuleField) -> None:
        s = field.slack_vox.astype(np.float64)
        # Interpolation needs two voxels per axis. The box is one voxel thick only along an
        # array axis of length 1 (a single-slice image): repeat that layer, so the slack is
        # constant across it (its base index would otherwise be -1 and read other voxels).
        s = np.pad(s, [(0, max(2 - n, 0)) for n in s.shape], mode="edge")
        # OAR distances beyond their reach may be inf; any large finite value works there.
        self.flat = np.where(np.isfinite(s), s, 1e3).ravel()
        self.shape = np.array(s.shape)
        self.strides = np.array([s.shape[1] * s.shape[2], s.shape[2], 1])
        self.corner_offsets = self._CORNERS @ self.strides
        # RAS mm -> fractional index of the field's box (the box starts at box_lo).
        self.to_box_ijk = np.linalg.inv(field.gtv.affine)
        self.to_box_ijk[:3, 3] -= field.box_lo
        self.lin = self.to_box_ijk[:3, :3]  # the gradient's chain rule
        self.sign = np.where(self._CORNERS == 1, 1.0, -1.0)

    def __call__(self, pts: NDArray[np.float64]
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        idx = apply_affine(self.to_box_ijk, pts)
        base = np.clip(np.floor(idx).astype(np.int64), 0, self.shape - 2)
        t = idx - base
        v = self.flat[(base @ self.strides)[:, None] + self.corner_offsets]
        w = np.stack([1 - t, t], axis=1)  # (n, 2, 3)
        c = self._CORNERS
        wx, wy, wz = w[:, c[:, 0], 0], w[:, c[:, 1], 1], w[:, c[:, 2], 2]
        value = (v * wx * wy * wz).sum(1)
        grad = np.stack([(v * self.sign[:, 0] * wy * wz).sum(1),
                         (v * wx * self.sign[:, 1] * wz).sum(1),
                         (v * wx * wy * self.sign[:, 2]).sum(1)], 1)
        return value, grad @ self.lin


def _relax(moving: NDArray[np.float64], fixed: NDArray[np.float64], spacing: float,
           slack: _SlackInterpolator) -> tuple[NDArray[np.float64], float]:
    """Move ``moving`` to remove overlaps (with each other and ``fixed``) and violations.

    Minimises ``sum max(0, S' - d_ij)^2 + sum max(0, pad - slack_i)^2`` with L-BFGS, S' and
    pad the padded targets. Returns the points and the final penalty.
    """
    target = spacing + SPACING_PAD_MM
    m = len(moving)
    overlap = (_DenseOverlap if m * (m + len(fixed)) <= DENSE_PAIRS_MAX else _TreeOverlap)(
        m, fixed, target)

    def penalty(x: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        p = x.reshape(m, 3)
        value, grad = overlap(p)
        s, gs = slack(p)
        short = np.maximum(SLACK_PAD_MM - s, 0.0)
        value += float(short @ short)
        grad -= 2.0 * short[:, None] * gs
        return value, grad.ravel()

    x, value = _lbfgs(penalty, moving.ravel(), ACCEPT_PENALTY)
    return x.reshape(m, 3), value


class _DenseOverlap:
    """``sum max(0, target - d)^2`` over moving-moving and moving-fixed pairs, all pairs."""

    def __init__(self, m: int, fixed: NDArray[np.float64], target: float) -> None:
        self.fixed, self.target = fixed, target
        self.weight = np.ones((m, m + len(fixed)))
        self.weight[:, :m] = 0.5  # pairs among moving points appear twice
        self.diag = np.arange(m)

    def __call__(self, p: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        dv = p[:, None, :] - np.vstack([p, self.fixed])[None]
        # Coincident points (d = 0) get no push apart rather than an infinite one.
        d = np.maximum(np.sqrt(np.einsum("ijk,ijk->ij", dv, dv)), 1e-9)
        d[self.diag, self.diag] = np.inf
        over = np.maximum(self.target - d, 0.0)
        value = float((self.weight * over * over).sum())
        return value, np.einsum("ij,ijk->ik", -2.0 * over / d, dv)


class _TreeOverlap:
    """The same sum over the pairs closer than target only, found with KD-trees."""

    def __init__(self, m: int, fixed: NDArray[np.float64], target: float) -> None:
        self.m, self.fixed, self.target = m, fixed, target
        self.fixed_tree = cKDTree(fixed) if len(fixed) else None

    def __call__(self, p: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        tree = cKDTree(p)
        pairs = tree.query_pairs(self.target, output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
        dv = p[i] - p[j]
        if self.fixed_tree is not None:
            near = tree.sparse_distance_matrix(self.fixed_tree, self.target,
                                               output_type="ndarray")
            i = np.concatenate([i, near["i"]])
            dv = np.vstack([dv, p[near["i"]] - self.fixed[near["j"]]])
        d = np.maximum(np.sqrt(np.einsum("ij,ij->i", dv, dv)), 1e-9)
        over = np.maximum(self.target - d, 0.0)
        push = (-2.0 * over / d)[:, None] * dv
        grad = np.zeros((self.m, 3))
        for c in range(3):
            grad[:, c] = (np.bincount(i, push[:, c], minlength=self.m)
                          - np.bincount(j, push[:len(j), c], minlength=self.m))
        return float(over @ over), grad


def _lbfgs(fun: Any, x: NDArray[np.float64], good_enough: float
           ) -> tuple[NDArray[np.float64], float]:
    """Minimise ``fun`` (value, gradient) by L-BFGS with a backtracking line search.

    Written out rather than scipy's L-BFGS-B because (a) it stops as soon as the value is
    ``good_enough`` or the descent stalls (most relaxations fail, and fail slowly), and
    (b) scipy's version calls threaded BLAS on tiny vectors, which on a busy 2-core machine
    was measured 20x slower.
    """
    value, grad = fun(x)
    history: list[tuple[NDArray[np.float64], NDArray[np.float64], float]] = []
    trail = [value]
    for it in range(RELAX_MAX_ITERATIONS):
        if value <= good_enough:
            break
        if it >= 2 * STALL_WINDOW and value > (1 - STALL_DECREASE) * trail[-STALL_WINDOW]:
            break
        q = grad.copy()
        alphas = []
        for s, y, rho in reversed(history):
            a = rho * (s @ q)
            q -= a * y
            alphas.append(a)
        if history:
            s, y, _ = history[-1]
            q *= (s @ y) / (y @ y)
        else:  # first step: move no point by more than 1 mm
            q *= 1.0 / max(float(np.abs(grad).max()), 1.0)
        for (s, y, rho), a in zip(history, reversed(alphas)):
            q += s * (a - rho * (y @ q))
        direction = -q
        slope = float(grad @ direction)
        if slope >= 0:  # not a descent direction: restart from the gradient
            history.clear()
            direction = -grad / max(float(np.abs(grad).max()), 1.0)
            slope = float(grad @ direction)
        step = 1.0
        while True:
            x_new = x + step * direction
            v_new, g_new = fun(x_new)
            if v_new <= value + 1e-4 * step * slope:
                break
            step *= 0.5
            if step < 1e-8:
                return x, value
        s, y = x_new - x, g_new - grad
        sy = float(s @ y)
        if sy > 1e-12:
            history.append((s, y, 1.0 / sy))
            if len(history) > LBFGS_HISTORY:
                history.pop(0)
        x, value, grad = x_new, v_new, g_new
        trail.append(value)
    return x, value


class _Refiner:
    """Continuous stage: insert centres into holes and relax, kick when stuck."""

    def __init__(self, field: RuleField, cand: NDArray[np.float64], spacing: float,
                 rng: np.random.Generator) -> None:
        self.field = field
        self.cand = cand
        self.spacing = spacing
        self.rng = rng
        self.tree = cKDTree(cand) if len(cand) else None
        self.slack = _SlackInterpolator(field)
        #: Overlap of each candidate with the current centres: sum of (S - d)^2.
        self.crowding = np.zeros(len(cand))

    def _crowd(self, pts: NDArray[np.float64], sign: float) -> None:
        if self.tree is None or len(pts) == 0:
            return
        lists = self.tree.query_ball_point(pts, self.spacing)
        owner = np.repeat(np.arange(len(pts)), [len(x) for x in lists])
        if len(owner) == 0:
            return
        ids = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
        d = np.linalg.norm(self.cand[ids] - pts[owner], axis=1)
        np.add.at(self.crowding, ids, sign * (self.spacing - d) ** 2)

    def _try(self, pts: NDArray[np.float64], centre: NDArray[np.float64],
             new: NDArray[np.float64] | None) -> tuple[NDArray[np.float64], NDArray[np.bool_],
                                                       NDArray[np.float64]] | None:
        """Relax the centres near ``centre`` (plus ``new``); the new set, or None."""
        s = self.spacing
        d = np.linalg.norm(pts - centre, axis=1)
        move = d < MOVE_RADIUS_SPACINGS * s
        moving = pts[move] if new is None else np.vstack([pts[move], new])
        if new is None:
            moving = moving + self.rng.normal(0.0, KICK_MM, moving.shape)
        fixed = pts[~move & (d < (MOVE_RADIUS_SPACINGS + 2) * s)]
        moved, value = _relax(moving, fixed, s, self.slack)
        if value > ACCEPT_PENALTY or not self.field.classify(moved)[0].all():
            return None
        rest = pts[~move]
        if len(rest) and cKDTree(rest).query(moved)[0].min() < s:
            return None
        if len(moved) > 1 and pdist(moved).min() < s:
            return None
        return np.vstack([rest, moved]), move, moved

    def run(self, pts: NDArray[np.float64], deadline: float, cap: int | None
            ) -> tuple[NDArray[np.float64], dict[str, Any]]:
        self._crowd(pts, 1.0)
        failed: list[NDArray[np.float64]] = []  # holes that failed since their area changed
        tried = kept = kicks = misses = idle_kicks = 0
        stop = "converged"
        while True:
            if cap is not None and len(pts) >= cap:
                stop = "max_vertices"
                break
            if time.perf_counter() > deadline:
                stop = "time"
                break
            hole = self._next_hole(failed) if misses < MAX_FAILED_HOLES else None
            if hole is None:
                if idle_kicks >= MAX_KICKS_WITHOUT_GAIN or len(pts) == 0:
                    break
                kicks += 1
                idle_kicks += 1
                centre = pts[int(self.rng.integers(len(pts)))]
                result = self._try(pts, centre, None)
                misses = 0
                if result is not None:
                    pts = self._accept(pts, result, failed)
                continue
            tried += 1
            result = self._try(pts, hole, hole[None])
            if result is None:
                failed.append(hole)
                misses += 1
                continue
            kept += 1
            misses = idle_kicks = 0
            pts = self._accept(pts, result, failed)
        return pts, {"insertions_tried": tried, "insertions_kept": kept, "kicks": kicks,
                     "stopped_by": stop}

    def _accept(self, pts: NDArray[np.float64], result: tuple, failed: list) -> NDArray:
        new_pts, move, moved = result
        self._crowd(pts[move], -1.0)
        self._crowd(moved, 1.0)
        # Holes near a change may work now.
        reach = (MOVE_RADIUS_SPACINGS + 1) * self.spacing
        changed = np.vstack([pts[move], moved])
        failed[:] = [h for h in failed
                     if np.linalg.norm(changed - h, axis=1).min() >= reach]
        return new_pts

    def _next_hole(self, failed: list[NDArray[np.float64]]) -> NDArray[np.float64] | None:
        """The least crowded candidate at least S/2 from every failed hole."""
        if len(self.cand) == 0:
            return None
        order = np.argsort(self.crowding, kind="stable")
        bad = np.array(failed) if failed else np.zeros((0, 3))
        for k in order[:4096].tolist():
            q = self.cand[k]
            if len(bad) == 0 or np.linalg.norm(bad - q, axis=1).min() >= self.spacing / 2:
                return q
        return None
