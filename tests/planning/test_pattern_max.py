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
    # A budget that leaves room for all four lattice searches even on a loaded machine (a
    # search starts only if it is expected to end within half the budget); the packing's
    # work limits end it long before (stopped_by says so).
    plan = plan_vertices(Volume(mask, aff), pattern="max", time_budget_s=3600.0, **kw)
    check_rules(plan, mask, aff, s=20, d=10, margin=3)
    assert plan.n_vertices >= max(lattices.values())
    assert plan.search["lattice_counts"] == lattices
    assert plan.search["stopped_by"] != "time"


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


def test_max_pattern_starts_no_lattice_search_it_expects_to_overrun_the_budget(monkeypatch):
    """The lattice stage stays within half the budget: a search that would end past it is
    not started (its cost is estimated from the slowest search so far, per degree of the
    lattice's symmetry), and the packer gets the rest."""
    import lattice.planning.placement as placement

    shape, vox = (30, 30, 20), (2.0, 2.0, 3.0)
    aff = grid(shape, vox)
    centre = world_of(shape, aff).mean(axis=0)
    mask = ellipsoid(shape, aff, centre, np.array([22.0, 22.0, 22.0]))
    clock = {"now": 0.0}
    real_search = placement.search_lattice

    def slow_search(*args, **kwargs):
        clock["now"] += 1.0  # every lattice search "takes" one second
        return real_search(*args, **kwargs)

    monkeypatch.setattr(placement, "search_lattice", slow_search)
    monkeypatch.setattr(placement.time, "perf_counter", lambda: clock["now"])
    budgets = {}

    def fake_pack(field, *, time_budget_s, initial, **kwargs):
        budgets["packing"] = time_budget_s
        return np.asarray(initial), {"stopped_by": "time"}

    import lattice.planning.packing as packing

    monkeypatch.setattr(packing, "pack_maximal", fake_pack)
    kw = dict(diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3, pattern="max")
    # hcp took 1 s for 60 deg of symmetry: fcc (90 deg) is expected to take 1.5 s, which
    # would end at 2.5 s, past half of a 4.8 s budget; with 5.2 s it fits, bcc does not.
    plan = plan_vertices(Volume(mask, aff), time_budget_s=4.8, **kw)
    assert list(plan.search["lattice_counts"]) == ["hcp"]
    assert budgets["packing"] == 4.8 - 1.0
    plan = plan_vertices(Volume(mask, aff), time_budget_s=5.2, **kw)
    assert list(plan.search["lattice_counts"]) == ["hcp", "fcc"]
    assert budgets["packing"] == 5.2 - 2.0
