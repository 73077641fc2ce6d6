"""Irregular maximal packing: as many vertices as the rules allow, on no lattice.

The problem: find as many centres as possible in the allowed region
``F = {p : slack(p) >= 0}`` of a :class:`~lattice.planning.rules.RuleField` with every pair at least
``S = min_spacing_mm`` apart. In space this packs balls of radius S/2 whose centres stay in F;
on a finite set of candidate points it is a maximum independent set (MIS) of the conflict
graph, whose edges join candidates closer than S. Both are NP-hard; near an irregular
boundary the best packing is no lattice (docs/patterns.md, "Irregular packings").

Method, three stages sharing one time budget:

1. *Candidates*: the exactly allowed points (:meth:`RuleField.classify`) of a cubic grid on
   world axes, anchored at the world origin, of step about S/6.3 (finer for small regions).
   The candidates therefore depend on the world geometry only, not on how the image is
   stored. Two grid points conflict when their index offset is in a fixed stencil.
2. *Discrete*: an MIS on the candidates. A small graph is solved exactly by integer
   programming (:func:`lattice.planning.pairs.max_independent_set_milp`; one constraint per clique
   "the candidates within S/2 of a half-grid point", which covers every conflict and gives a far
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

import time
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.distance import pdist

from ..errors import ParameterError
from .packing_candidates import ConflictGrid, candidates
from .packing_continuous import Refiner
from .packing_discrete import max_independent_set
from .rules import RuleField

#: Share of the budget the discrete stage may use; the continuous stage gains more per second.
DISCRETE_SHARE = 0.25


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
        exact slack), as :func:`lattice.planning.placement.plan_vertices` does.
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

    step, ijk, cand = candidates(field, spacing)
    info: dict[str, Any] = {
        "method": "maximal packing: grid MIS, then continuous insertion (exact rule checks)",
        "seed": int(seed),
        "grid_step_mm": round(step, 4),
        "candidates": int(len(cand)),
        "initial_count": int(len(start)),
        "upper_bound_on_grid": None,
        "seconds_candidates": round(time.perf_counter() - t0, 3),
    }

    discrete = np.zeros((0, 3))
    if len(cand):
        grid = ConflictGrid(ijk, cand, step, spacing)
        ids, info["discrete"] = max_independent_set(
            grid, rng, min(deadline, t0 + DISCRETE_SHARE * budget), cap
        )
        info["upper_bound_on_grid"] = info["discrete"].pop("upper_bound_on_grid", None)
        discrete = cand[ids]
    info["start"] = "discrete" if len(discrete) > len(start) else "initial"
    if len(discrete) > len(start):
        start = discrete
    info["seconds_discrete"] = round(time.perf_counter() - t0, 3)

    centres, stats = Refiner(field, cand, spacing, rng).run(start, deadline, cap)
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


def _checked_initial(
    field: RuleField, initial: ArrayLike | None, spacing: float
) -> NDArray[np.float64]:
    if initial is None:
        return np.zeros((0, 3))
    pts = (
        np.array(initial, dtype=np.float64).reshape(-1, 3) if np.size(initial) else np.zeros((0, 3))
    )
    if not np.all(np.isfinite(pts)):
        raise ParameterError(
            "the initial placement holds a non-finite coordinate; pass (n, 3) RAS points in mm"
        )
    allowed, _ = field.classify(pts)
    if not allowed.all():
        i = int(np.flatnonzero(~allowed)[0])
        raise ParameterError(
            f"initial centre {i} at {np.round(pts[i], 2).tolist()} mm breaks the GTV margin or "
            "an OAR clearance; pass a placement made under the same rules"
        )
    if len(pts) > 1 and pdist(pts).min() < spacing:
        raise ParameterError(
            f"two initial centres are {pdist(pts).min():.3f} mm apart, closer than the spacing "
            f"{spacing:g} mm; pass a placement made with the same spacing"
        )
    return pts


def _position_keys(pts: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
    """Sort keys (last is primary): z descending, then y descending, then x."""
    return pts[:, 0], -pts[:, 1], -pts[:, 2]
