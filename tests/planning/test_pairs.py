"""Pairwise rules: the exact maximum independent set against brute force."""

from __future__ import annotations

import itertools

import numpy as np
from oracles import ellipsoid, grid, world_of

from lattice.planning.pairs import coplanar_conflicts, max_independent_subset
from lattice.planning.placement import plan_vertices
from lattice.volume import Volume


def brute_force_mis(n, conflicts):
    for size in range(n, -1, -1):
        for subset in itertools.combinations(range(n), size):
            s = set(subset)
            if not any(a in s and b in s for a, b in conflicts):
                return size
    return 0


def test_max_independent_subset_is_maximum_and_independent():
    rng = np.random.default_rng(3)
    for _ in range(40):
        n = int(rng.integers(1, 12))
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.35]
        conflicts = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        keep = set(max_independent_subset(n, conflicts).tolist())
        assert not any(a in keep and b in keep for a, b in pairs)
        assert len(keep) == brute_force_mis(n, pairs)


def test_coplanar_conflicts_are_the_pairs_that_break_the_rule():
    rng = np.random.default_rng(4)
    c = rng.uniform(-60, 60, size=(25, 3))
    got = {tuple(p) for p in coplanar_conflicts(c, coplanar_mm=20, coplanar_spacing_mm=80)}
    want = {
        (i, j)
        for i in range(25)
        for j in range(i + 1, 25)
        if abs(c[i, 2] - c[j, 2]) < 20 and np.linalg.norm(c[i] - c[j]) < 80
    }
    assert got == want


def test_plan_with_coplanar_rule_obeys_it():
    shape, vox = (50, 44, 34), (2.0, 2.0, 2.5)
    aff = grid(shape, vox)
    mask = ellipsoid(shape, aff, world_of(shape, aff).mean(axis=0), np.array([45.0, 40.0, 38.0]))
    plan = plan_vertices(
        Volume(mask, aff),
        diameter_mm=10,
        min_spacing_mm=20,
        gtv_margin_mm=3,
        coplanar_mm=15,
        coplanar_spacing_mm=45,
    )
    c = plan.centers_ras_mm
    assert plan.n_vertices >= 3
    assert len(coplanar_conflicts(c, coplanar_mm=15, coplanar_spacing_mm=45)) == 0
