"""Plan metrics and the per-vertex table, checked against brute force."""

from __future__ import annotations

import csv

import numpy as np
from oracles import check_rules, ellipsoid, grid, oracle_depth, world_of
from scipy.spatial.distance import cdist

from lattice.io.plan_writer import write_plan_folder
from lattice.planning.placement import plan_vertices
from lattice.volume import Volume

SHAPE, VOX = (40, 36, 26), (2.0, 2.2, 2.5)


def phantom():
    aff = grid(SHAPE, VOX)
    centre = world_of(SHAPE, aff).mean(axis=0)
    mask = ellipsoid(SHAPE, aff, centre, np.array([34.0, 30.0, 26.0]))
    return mask, aff


def test_covering_radius_equals_brute_force():
    mask, aff = phantom()
    plan = plan_vertices(Volume(mask, aff), diameter_mm=10, min_spacing_mm=18, gtv_margin_mm=3)
    brute = cdist(world_of(SHAPE, aff)[mask.ravel()], plan.centers_ras_mm).min(axis=1).max()
    assert plan.covering_radius_mm == brute
    assert plan.summary()["covering_radius_mm"] == round(brute, 3)


def test_nearest_neighbour_statistics_match_pairwise_distances():
    mask, aff = phantom()
    plan = plan_vertices(Volume(mask, aff), diameter_mm=10, min_spacing_mm=18, gtv_margin_mm=3)
    d = cdist(plan.centers_ras_mm, plan.centers_ras_mm) + np.diag(np.full(plan.n_vertices, np.inf))
    nn = d.min(axis=1)
    s = plan.summary()
    assert s["nearest_vertex_min_mm"] == round(nn.min(), 3)
    assert abs(s["nearest_vertex_cv"] - nn.std() / nn.mean()) < 1e-4
    limit = 3 + 10
    depth = oracle_depth(mask, aff, plan.centers_ras_mm)
    assert abs(s["fraction_in_outer_shell"] - np.mean(depth <= limit)) < 1e-4


def test_shell_mode_keeps_every_depth_in_its_band():
    mask, aff = phantom()
    for width in (None, 3.0):
        plan = plan_vertices(
            Volume(mask, aff),
            diameter_mm=10,
            min_spacing_mm=18,
            gtv_margin_mm=3,
            mode="shell",
            shell_width_mm=width,
        )
        check_rules(plan, mask, aff, s=18, d=10, margin=3)
        depth = oracle_depth(mask, aff, plan.centers_ras_mm)
        top = 3 + 5 + (5 if width is None else width)
        assert np.all(depth <= top + 1e-9)
        assert np.all(depth >= 3 + 5 - 1e-9)


def test_shell_mode_places_vertices_nearer_the_edge_than_fill():
    mask, aff = phantom()
    fill = plan_vertices(Volume(mask, aff), diameter_mm=10, min_spacing_mm=18, gtv_margin_mm=3)
    shell = plan_vertices(
        Volume(mask, aff), diameter_mm=10, min_spacing_mm=18, gtv_margin_mm=3, mode="shell"
    )
    assert shell.depth_mm.max() < fill.depth_mm.max()


def test_vertices_csv_matches_the_plan(tmp_path):
    mask, aff = phantom()
    plan = plan_vertices(Volume(mask, aff), diameter_mm=10, min_spacing_mm=18, gtv_margin_mm=3)
    write_plan_folder(plan, tmp_path / "out", picture=False)
    with open(tmp_path / "out" / "vertices.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == plan.n_vertices
    ras = np.array([[float(r[k]) for k in ("x_ras_mm", "y_ras_mm", "z_ras_mm")] for r in rows])
    lps = np.array([[float(r[k]) for k in ("x_lps_mm", "y_lps_mm", "z_lps_mm")] for r in rows])
    np.testing.assert_array_equal(ras, plan.centers_ras_mm)
    np.testing.assert_array_equal(lps, ras * [-1, -1, 1])
    assert [int(r["id"]) for r in rows] == list(range(1, plan.n_vertices + 1))
