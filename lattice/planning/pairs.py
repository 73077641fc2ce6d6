"""Pairwise protocol rules and choosing the largest set of vertices that obeys them.

The Mayo co-planar rule (Deufel et al., Phys Med Biol 2024;69:075010): two vertices whose
centres differ by less than ``coplanar_mm`` along the patient's superior-inferior axis
(world z) must be at least ``coplanar_spacing_mm`` apart, so the MLC can shape each one.
Unlike the field rules of :mod:`lattice.planning.rules` it involves pairs, so it is applied by
keeping a maximum subset of the allowed points without a conflicting pair: a maximum independent
set, solved exactly as an integer programme (HiGHS through ``scipy.optimize.milp``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix

#: Time limit (s) of one exact selection; the graphs here have at most a few hundred points.
SELECTION_TIME_LIMIT_S = 5.0


@dataclass(frozen=True)
class IndependentSet:
    """What :func:`max_independent_set_milp` found.

    Attributes
    ----------
    ids : (k,) ndarray of int
        The points kept, sorted; empty when no solution was found in time.
    found : bool
        A solution was found within the time limit.
    optimal : bool
        It is proven to be a largest one.
    upper_bound : int or None
        The largest size a solution can have (HiGHS's dual bound), when known.
    """

    ids: NDArray[np.int64]
    found: bool
    optimal: bool
    upper_bound: int | None


def max_independent_set_milp(
    n: int, cliques: Any, *, weights: NDArray[np.float64] | None = None, time_limit_s: float
) -> IndependentSet:
    """A largest subset of ``range(n)`` holding at most one point of each clique, exactly.

    The integer programme ``max sum x_i`` over ``x in {0, 1}^n`` with ``sum_{i in C} x_i <= 1``
    for every clique ``C`` (HiGHS through :func:`scipy.optimize.milp`). A conflict graph's
    edges are cliques of two; grouping points that are pairwise in conflict into larger
    cliques gives the same optimum with a much tighter relaxation.

    Parameters
    ----------
    n : int
        Number of points.
    cliques : (m, n) sparse matrix or array of 0/1
        Row ``r`` marks the points of clique ``r``.
    weights : (n,) ndarray of float, optional
        Tie-break among equally large subsets: a tiny bonus per kept point (e.g. its slack),
        scaled so that all of them together weigh less than one point: it never trades one
        point for another.
    time_limit_s : float
        HiGHS's time limit; the best solution found by then is returned, not proven optimal.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp  # ~0.5 s to import

    bonus = _tie_break_bonus(n, weights)
    res = milp(
        c=-(1.0 + bonus),
        integrality=np.ones(n),
        bounds=Bounds(0, 1),
        constraints=LinearConstraint(cliques, -np.inf, 1.0),
        options={"time_limit": time_limit_s},
    )
    if res.x is None:
        return IndependentSet(np.zeros(0, np.int64), found=False, optimal=False, upper_bound=None)
    bound = getattr(res, "mip_dual_bound", None)
    # -bound is the size plus at most 0.5 of bonus: its floor is the size bound.
    upper = int(np.floor(-bound + 1e-6)) if bound is not None and np.isfinite(bound) else None
    return IndependentSet(
        np.flatnonzero(res.x > 0.5), found=True, optimal=res.status == 0, upper_bound=upper
    )


def _tie_break_bonus(n: int, weights: NDArray[np.float64] | None) -> NDArray[np.float64]:
    """Weights mapped onto [0, 0.5 / n]: all n together weigh less than one point."""
    bonus = np.zeros(n) if weights is None else np.asarray(weights, dtype=np.float64)
    span = float(np.ptp(bonus)) if n else 0.0
    return (bonus - bonus.min()) / span * (0.5 / n) if span > 0 else np.zeros(n)


def coplanar_conflicts(
    centers_ras_mm: NDArray[np.float64], *, coplanar_mm: float, coplanar_spacing_mm: float
) -> NDArray[np.int64]:
    """Pairs (i, j), i < j, that break the co-planar rule, shape (m, 2)."""
    c = np.asarray(centers_ras_mm, dtype=np.float64)
    if len(c) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    i, j = np.triu_indices(len(c), k=1)
    dz = np.abs(c[i, 2] - c[j, 2])
    dist = np.linalg.norm(c[i] - c[j], axis=1)
    bad = (dz < coplanar_mm) & (dist < coplanar_spacing_mm)
    return np.column_stack([i[bad], j[bad]]).astype(np.int64)


def max_independent_subset(
    n: int, conflicts: NDArray[np.int64], weights: NDArray[np.float64] | None = None
) -> NDArray[np.int64]:
    """Indices of a largest subset of ``range(n)`` with no conflicting pair.

    Parameters
    ----------
    n : int
    conflicts : (m, 2) ndarray of int
        Pairs that may not both be kept.
    weights : (n,) ndarray of float, optional
        Tie-break among equally large subsets: a tiny bonus per kept point (e.g. its slack),
        scaled so that it can never trade one point for another.

    Returns
    -------
    (k,) ndarray of int, sorted.
    """
    if len(conflicts) == 0:
        return np.arange(n)
    m = len(conflicts)
    rows = np.repeat(np.arange(m), 2)
    edges = coo_matrix((np.ones(2 * m), (rows, conflicts.ravel())), shape=(m, n)).tocsr()
    exact = max_independent_set_milp(n, edges, weights=weights, time_limit_s=SELECTION_TIME_LIMIT_S)
    if exact.found:
        return exact.ids
    # No solution within the time limit: greedy by weight.
    keep: list[int] = []
    blocked = np.zeros(n, dtype=bool)
    for k in np.argsort(-_tie_break_bonus(n, weights), kind="stable"):
        if not blocked[k]:
            keep.append(int(k))
            blocked[conflicts[conflicts[:, 0] == k, 1]] = True
            blocked[conflicts[conflicts[:, 1] == k, 0]] = True
    return np.array(sorted(keep), dtype=np.int64)
