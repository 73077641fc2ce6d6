"""plan_vertices(pattern='max'): the maximal packing as the planner uses it."""

from __future__ import annotations

import numpy as np
from oracles import check_rules, ellipsoid, grid, world_of

from lattice.planning.placement import plan_vertices
from lattice.volume import Volume


def test_max_pattern_obeys_rules_and_beats_every_lattice():
    shape, vox = (46, 42, 30), (2.0, 2.2, 3.0)
    aff = grid(shape, vox)
    centre = world_of(shape, aff).mean(axis=0)
    mask = ellipsoid(shape, aff, centre, np.array([36.0, 30.0, 34.0]))
    kw = dict(diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3)
    lattices = {
        p: plan_vertices(Volume(mask, aff), pattern=p, **kw).n_vertices
        for p in ("sc", "bcc", "fcc", "hcp")
    }
    plan = plan_vertices(Volume(mask, aff), pattern="max", time_budget_s=10.0, **kw)
    check_rules(plan, mask, aff, s=20, d=10, margin=3)
    assert plan.n_vertices >= max(lattices.values())
    assert plan.search["lattice_counts"] == lattices


def test_max_pattern_respects_max_vertices_and_shell_mode():
    shape, vox = (40, 40, 28), (2.0, 2.0, 2.5)
    aff = grid(shape, vox)
    centre = world_of(shape, aff).mean(axis=0)
    mask = ellipsoid(shape, aff, centre, np.array([34.0, 34.0, 30.0]))
    plan = plan_vertices(
        Volume(mask, aff),
        pattern="max",
        diameter_mm=10,
        min_spacing_mm=20,
        gtv_margin_mm=3,
        mode="shell",
        max_vertices=5,
        time_budget_s=1.0,
    )
    assert plan.n_vertices == 5
    check_rules(plan, mask, aff, s=20, d=10, margin=3)
    assert np.all(plan.depth_mm <= 3 + 5 + 5 + 1e-9)
