"""The TPS surface model (lattice.geometry.surface): analytic solids, table bounds against exact
queries, polygon route against mask route, robust shift, and old plans caught by verify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import find_contours

from lattice.geometry.margins import bounding_box
from lattice.geometry.surface import SlabSolid
from lattice.planning.placement import plan_vertices
from lattice.planning.rules import RuleField

REPO = Path(__file__).resolve().parents[2]
VOX = np.array([0.9, 1.1, 3.0])


def _blob(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = ndimage.gaussian_filter(rng.random((60, 60, 30)), 3) > 0.5
    g[:, :, :2] = False
    return g


def test_box_mask_is_a_cuboid_half_a_voxel_beyond_its_outer_centres_away_from_its_edges():
    m = np.zeros((25, 30, 14), bool)
    m[5:15, 4:21, 3:9] = True
    solid = SlabSolid(m, VOX)
    lo = np.array([4.5, 3.5, 2.5]) * VOX
    hi = np.array([14.5, 20.5, 8.5]) * VOX
    # Points whose nearest face is a flat part of the cuboid (not a chamfered in-plane corner).
    pts = (
        np.array([[10, 12, 5], [5.3, 12, 5.5], [10, 12, 8.4], [10, 20.2, 5.0], [9.1, 11.7, 3.1]])
        * VOX
    )
    expected = np.min(np.concatenate([pts - lo, hi - pts], axis=1), axis=1)
    np.testing.assert_allclose(solid.depth(pts), expected, atol=1e-9)
    outside = np.array([[20, 12, 5], [10, 12, 11], [10, 1, 5]]) * VOX
    gap = np.maximum(np.maximum(lo - outside, 0), np.maximum(outside - hi, 0))
    np.testing.assert_allclose(solid.distance(outside), np.linalg.norm(gap, axis=1), atol=1e-9)
    assert np.all(solid.depth(outside) == 0)


def test_single_voxel_is_a_diamond_prism():
    m = np.zeros((5, 5, 5), bool)
    m[2, 2, 2] = True
    solid = SlabSolid(m, np.array([1.0, 1.0, 2.0]))
    centre = np.array([[2.0, 2.0, 4.0]])
    # In-plane the outline is the diamond |du| + |dv| = 1/2: its inradius is 1/(2 sqrt 2).
    assert solid.depth(centre)[0] == pytest.approx(0.5 / np.sqrt(2), abs=1e-12)
    # Straight above, the solid ends half a slice gap (1 mm) above the plane.
    assert solid.distance(np.array([[2.0, 2.0, 7.0]]))[0] == pytest.approx(2.0, abs=1e-12)


def test_voxel_tables_bracket_the_exact_depth_and_distance():
    g = _blob()
    solid = SlabSolid(g, VOX)
    box = bounding_box(g, pad_vox=1)
    lo, hi = solid.voxel_depth_bounds(box, exact_to_mm=10)
    ijk = np.argwhere(g[box])
    exact = solid.depth((ijk + [b.start for b in box]) * VOX)
    at = tuple(ijk.T)
    assert np.all(lo[at] <= exact + 1e-5) and np.all(hi[at] >= exact - 1e-5)
    deep = exact > 3
    assert (hi[at] - lo[at])[deep].max() < 0.06  # tight where rules are decided
    sub = (slice(5, 55), slice(5, 55), slice(0, 30))
    dlo, dhi = solid.voxel_distance_bounds(sub, exact_to_mm=8)
    pts = (np.argwhere(np.ones(dlo.shape, bool)) + [5, 5, 0]) * VOX
    d = solid.distance(pts)
    near = d <= 8
    assert np.all(dlo.ravel()[near] <= d[near] + 1e-5)
    assert np.all(dhi.ravel()[near] >= d[near] - 1e-5)
    # Beyond the reach: the lower bound still holds, and nothing claims to be within reach.
    assert np.all(dlo.ravel() <= d + 1e-5)
    assert np.all(dhi.ravel()[~near] > 8 - 1e-5)


def test_outline_segments_are_the_marching_squares_contours_of_each_slice():
    """The outline of a mask slice has exactly the segments of scikit-image's
    find_contours at 0.5 (saddles included), placed in the grid frame."""
    rng = np.random.default_rng(3)
    m = rng.random((14, 11, 6)) < 0.45  # dense enough for many saddle cells
    m[:, :, 0] = False
    solid = SlabSolid(m, VOX)
    for k in range(1, 6):
        ref = []
        for line in find_contours(np.pad(m[:, :, k], 1).astype(float), 0.5):
            pts = (line - 1.0) * VOX[:2]
            ref += [tuple(np.round(np.r_[a, b], 9)) for a, b in zip(pts[:-1], pts[1:])]
        got = solid.outline(k)
        assert got is not None
        mine = [tuple(np.round(s, 9)) for s in got.segments]
        canon = lambda segs: sorted(min(s, s[2:] + s[:2]) for s in segs)  # noqa: E731
        assert canon(mine) == canon(ref)


def test_brute_force_depth_of_random_points_by_dense_boundary_sampling():
    """Independent of the slab formula: sample the solid's boundary densely (the outline's
    side walls and each slab's exposed top/bottom) and compare nearest-sample distances."""
    g = _blob(3)
    solid = SlabSolid(g, VOX)
    rng = np.random.default_rng(1)
    ks = [k for k in range(g.shape[2]) if g[:, :, k].any()]
    k = ks[len(ks) // 2]
    inside = np.argwhere(g[:, :, k])
    pick = inside[rng.choice(len(inside), 40, replace=False)]
    pts = (
        np.column_stack(
            [pick + rng.uniform(-0.5, 0.5, (40, 2)), np.full(40, k) + rng.uniform(-0.5, 0.5, 40)]
        )
        * VOX
    )
    d = solid.depth(pts)
    # Dense samples of the outlines on slabs k-3..k+3 and of their slab walls.
    samples = []
    for kk in range(k - 4, k + 5):
        plane = g[:, :, kk] if 0 <= kk < g.shape[2] else np.zeros(g.shape[:2], bool)
        for line in find_contours(np.pad(plane, 1).astype(float), 0.5):
            line = line - 1.0
            seg = np.linspace(0, 1, 8, endpoint=False)
            dense = (line[:-1, None] + seg[None, :, None] * np.diff(line, axis=0)[:, None]).reshape(
                -1, 2
            ) * VOX[:2]
            for z in np.linspace(kk - 0.5, kk + 0.5, 13):
                samples.append(np.column_stack([dense, np.full(len(dense), z * VOX[2])]))
    samples = np.concatenate(samples)
    from scipy.spatial import cKDTree

    ref, _ = cKDTree(samples).query(pts)
    # Top/bottom faces are not sampled: the sampled distance is an upper bound of the depth
    # (boundary points of the side walls), equal where the nearest point is on a wall.
    assert np.all(d <= ref + 0.05)
    assert np.median(ref - d) < 0.05


def test_polygon_route_equals_mask_route_for_the_masks_own_contours():
    g = _blob(5)
    rings = []
    for k in range(g.shape[2]):
        if g[:, :, k].any():
            for line in find_contours(np.pad(g[:, :, k], 1).astype(float), 0.5):
                rings.append((k, line[:-1] - 1.0))
    a = SlabSolid(g, VOX)
    b = SlabSolid(g, VOX, rings_ijk=tuple(rings))
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 1, (2000, 3)) * np.array(g.shape) * VOX
    np.testing.assert_allclose(a.depth(pts), b.depth(pts), atol=1e-9)
    np.testing.assert_allclose(a.distance(pts), b.distance(pts), atol=1e-9)


def test_robust_shift_is_the_least_slack_and_every_shift_within_it_keeps_the_rules(
    make_volume, ellipsoid_mask
):
    vol = make_volume((60, 56, 24), (1.0, 1.0, 3.0), "oblique")
    centre = vol.ijk_to_ras((np.array(vol.shape) - 1) / 2.0)[0]
    gtv = vol.with_array(ellipsoid_mask(vol, centre, (24.0, 20.0, 30.0)))
    plan = plan_vertices(gtv, diameter_mm=10, min_spacing_mm=18, gtv_margin_mm=3)
    shift = plan.summary()["robust_shift_mm"]
    assert plan.n_vertices > 0 and shift is not None and shift > 0
    field = RuleField(gtv, [], diameter_mm=10, gtv_margin_mm=3)
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(300, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    worst_in, worst_out = np.inf, np.inf
    for d in dirs:
        worst_in = min(worst_in, field.exact_slack(plan.centers_ras_mm + 0.999 * shift * d).min())
        worst_out = min(worst_out, field.exact_slack(plan.centers_ras_mm + (shift + 0.5) * d).min())
    assert worst_in >= 0
    assert worst_out < 0  # a little more in the worst direction breaks a rule


def test_verify_catches_a_plan_written_before_the_surface_model(tmp_path, capsys):
    from lattice_cli.main import main

    doc = json.loads((REPO / "tests" / "fixtures" / "plan_before_surface_model.json").read_text())
    case = REPO / "sample_data" / "STS_001"
    doc["inputs"]["ct"]["path"] = str(case / "ct.nii.gz")
    doc["inputs"]["gtv"]["path"] = str(case / "gtv.nii.gz")
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    code = main(["verify", str(path)])
    out = capsys.readouterr().out
    assert code == 8
    short = [line for line in out.splitlines() if line.startswith("violation [gtv_margin]")]
    assert short, out
    assert "VTX_01 centre is" in out and "mm short" in short[0]
    # The shortfall is the half voxel the old model gained: below 3.27 mm / 2 each.
    shortfalls = [float(line.split("(")[-1].split(" mm short")[0]) for line in short]
    assert 0 < max(shortfalls) < 3.27 / 2


def test_surface_model_is_recorded_in_plan_json(tmp_path):
    from lattice_cli.main import main

    case = REPO / "sample_data" / "STS_001"
    out = tmp_path / "out"
    assert (
        main(
            [
                "plan",
                "--ct",
                str(case / "ct.nii.gz"),
                "--gtv",
                str(case / "gtv.nii.gz"),
                "--out",
                str(out),
                "--no-picture",
                "--no-dicom",
                "--mesh-format",
                "none",
            ]
        )
        == 0
    )
    doc = json.loads((out / "plan.json").read_text())
    model = doc["surface_model"]
    assert model["name"] == "tps_slab_extrusion"
    assert "marching squares" in model["gtv_outline"]
    assert model["slice_gap_mm"] == pytest.approx(float(doc["grid"]["voxel_size_mm"][2]))
    assert doc["summary"]["robust_shift_mm"] >= 0


def test_copy_of_sample_stays_the_same_case():
    # The fixture plan refers to the bundled case by checksum: the sample must not change.
    doc = json.loads((REPO / "tests" / "fixtures" / "plan_before_surface_model.json").read_text())
    import hashlib

    digest = hashlib.sha256((REPO / "sample_data" / "STS_001" / "gtv.nii.gz").read_bytes())
    assert digest.hexdigest() == doc["inputs"]["gtv"]["sha256"]
