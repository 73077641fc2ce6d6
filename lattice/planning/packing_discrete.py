"""Maximal packing, stage 2: a maximum independent set of the candidates, exact by integer
programming on small graphs, greedy plus iterated local search on large ones (see
:mod:`lattice.planning.packing`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from scipy.spatial import cKDTree

from .packing_candidates import ConflictGrid
from .pairs import max_independent_set_milp

#: Exact integer programming up to this many candidates: measured with HiGHS on the
#: half-grid clique model, 140 candidates solve in 0.4-3 s, 430 in 14 s.
MILP_MAX_CANDIDATES = 120
#: Iterated local search: at most ILS_MAX_ITERATIONS perturbations; stop after
#: max(ILS_MIN_STALL, ILS_STALL_PER_VERTEX * count) in a row without a larger solution.
ILS_MAX_ITERATIONS = 4000
ILS_MIN_STALL = 200
ILS_STALL_PER_VERTEX = 10


def max_independent_set(
    grid: ConflictGrid, rng: np.random.Generator, deadline: float, cap: int | None
) -> tuple[NDArray[np.int64], dict[str, Any]]:
    """Ids of a large independent set of the candidates (at most ``cap``), and its info.

    Exact by integer programming up to :data:`MILP_MAX_CANDIDATES` candidates; otherwise,
    or when the programme runs out of time before ``deadline`` (``time.perf_counter()``), the
    greedy solution improved by iterated local search (the larger of the two is kept).
    """
    exact: tuple[NDArray[np.int64], dict[str, Any]] | None = None
    if len(grid) <= MILP_MAX_CANDIDATES:
        exact = _milp(grid, deadline)
        if exact[1]["optimal"]:
            return exact
    search = _LocalSearch(grid, rng)
    search.greedy()
    ids, iterations, stop = search.iterate(deadline, cap)
    info = {
        "method": "greedy + iterated local search",
        "count": int(len(ids)),
        "iterations": iterations,
        "stopped_by": stop,
    }
    if exact is None:
        return ids, info
    # The integer program ran out of time: keep the larger solution and its bound.
    info["upper_bound_on_grid"] = exact[1]["upper_bound_on_grid"]
    return exact if len(exact[0]) > len(ids) else (ids, info)


def _milp(grid: ConflictGrid, deadline: float) -> tuple[NDArray[np.int64], dict[str, Any]]:
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
    info: dict[str, Any] = {
        "method": "integer programming (HiGHS)",
        "optimal": False,
        "count": 0,
        "upper_bound_on_grid": None,
    }
    if not seen:  # no conflict at all: take everything
        info.update(optimal=True, count=n, upper_bound_on_grid=n)
        return np.arange(n), info
    cliques = sparse.csr_array((np.ones(len(rows)), (rows, cols)), shape=(len(seen), n))
    found = max_independent_set_milp(
        n, cliques, time_limit_s=max(deadline - time.perf_counter(), 0.05)
    )
    if not found.found:
        return found.ids, info
    info.update(
        optimal=found.optimal, count=int(len(found.ids)), upper_bound_on_grid=found.upper_bound
    )
    return found.ids, info


class _LocalSearch:
    """Greedy MIS and iterated local search with (1,2)-swaps (Andrade et al. 2012).

    ``tight[v]`` counts the solution members in conflict with v: v is free at 0, and a
    solution member x can be swapped for two 1-tight neighbours that do not conflict.
    """

    def __init__(self, grid: ConflictGrid, rng: np.random.Generator) -> None:
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
        far = ((p[:, None, :] - p[None]) ** 2).sum(2) >= self.grid.spacing**2
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

    def iterate(self, deadline: float, cap: int | None) -> tuple[NDArray[np.int64], int, str]:
        self.improve(list(self.sol))
        best = set(self.sol)
        last_gain = it = 0
        stop = "iterations"
        while it < ILS_MAX_ITERATIONS and it - last_gain < max(
            ILS_MIN_STALL, ILS_STALL_PER_VERTEX * len(best)
        ):
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
