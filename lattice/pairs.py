"""Pairwise protocol rules and choosing the largest set of vertices that obeys them.

The Mayo co-planar rule (Deufel et al., Phys Med Biol 2024;69:075010): two vertices whose
centres differ by less than ``coplanar_mm`` along the patient's superior-inferior axis
(world z) must be at least ``coplanar_spacing_mm`` apart, so the MLC can shape each one.
Unlike the field rules of :mod:`lattice.rules` it involves pairs, so it is applied by keeping
a maximum subset of the allowed points without a conflicting pair: a maximum independent set,
solved exactly as an integer programme (HiGHS through ``scipy.optimize.milp``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

#: Time limit (s) of one exact selection; the graphs here have at most a few hundred points.
SELECTION_TIME_LIMIT_S = 5.0


def coplanar_conflicts(centers_ras_mm: NDArray[np.float64], *, coplanar_mm: float,
                       coplanar_spacing_mm: float) -> NDArray[np.int64]:
    """Pairs (i, j), i < j, that break the co-planar rule, shape (m, 2)."""
    c = np.asarray(centers_ras_mm, dtype=np.float64)
    if len(c) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    i, j = np.triu_indices(len(c), k=1)
    dz = np.abs(c[i, 2] - c[j, 2])
    dist = np.linalg.norm(c[i] - c[j], axis=1)
    bad = (dz < coplanar_mm) & (dist < coplanar_spacing_mm)
    return np.column_stack([i[bad], j[bad]]).astype(np.int64)


def max_independent_subset(n: int, conflicts: NDArray[np.int64],
                           weights: NDArray[np.float64] | None = None) -> NDArray[np.int64]:
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
    bonus = np.zeros(n) if weights is None else np.asarray(weights, dtype=np.float64)
    span = float(np.ptp(bonus)) if n else 0.0
    bonus = (bonus - bonus.min()) / span * (0.5 / n) if span > 0 else np.zeros(n)
    m = len(conflicts)
    rows = np.repeat(np.arange(m), 2)
    a = coo_matrix((np.ones(2 * m), (rows, conflicts.ravel())), shape=(m, n)).tocsr()
    res = milp(c=-(1.0 + bonus), integrality=np.ones(n), bounds=Bounds(0, 1),
               constraints=LinearConstraint(a, -np.inf, 1.0),
               options={"time_limit": SELECTION_TIME_LIMIT_S})
    if res.x is None:  # no solution within the time limit: greedy by bonus
        keep: list[int] = []
        blocked = np.zeros(n, dtype=bool)
        for k in np.argsort(-bonus, kind="stable"):
            if not blocked[k]:
                keep.append(int(k))
                blocked[conflicts[conflicts[:, 0] == k, 1]] = True
                blocked[conflicts[conflicts[:, 1] == k, 0]] = True
        return np.array(sorted(keep), dtype=np.int64)
    return np.flatnonzero(res.x > 0.5)
