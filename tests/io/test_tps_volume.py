"""Per-vertex ``tps_volume_cc``: the volume a TPS rebuilds from the exported circles.

A TPS stacks the slice contours of a structure (area x slice gap). For a sphere of radius r
cut by slice planes at signed distances d_k from its centre, with the regular N-gon the
RTSTRUCT writer inscribes in each circle, that is

    V = sum_k (N / 2) sin(2 pi / N) (r^2 - d_k^2) * gap        (|d_k| < r)

computed here from the grid alone, and again from the polygons of the written rtstruct.dcm.
A D 10 mm sphere on 3.27 mm slices comes back between -8.9 % and +5.0 % of 4/3 pi r^3; plan.json
warns beyond 5 %.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_redirected as run
from dicom_oracle import read_series_geometry, read_structures, sphere_from_contours

from lattice.planning.plan import Plan, PlanParameters
from lattice.volume import Volume

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "STS_001"
N = 64  # points per exported circle


def analytic_cc(center_ras, radius, affine, n_slices) -> float:
    """The formula above, from the affine only (RAS in, slice planes along the k column)."""
    k_axis = affine[:3, 2]
    gap = float(np.linalg.norm(k_axis))
    normal = k_axis / gap
    d = (np.asarray(center_ras) - (affine[:3, 3] + np.arange(n_slices)[:, None] * k_axis)) @ normal
    d = d[np.abs(d) < radius]
    polygon = N / 2 * np.sin(2 * np.pi / N)
    return float(np.sum(polygon * (radius**2 - d**2)) * gap / 1000.0)


def make_plan(grid: Volume, centers_ras, diameter, *, snap=False) -> Plan:
    gtv = Volume(np.ones(grid.shape, dtype=bool), grid.affine)
    n = len(centers_ras)
    return Plan(
        PlanParameters(
            diameter_mm=diameter,
            min_spacing_mm=max(diameter, 20.0),
            gtv_margin_mm=0.0,
            snap_to_slices=snap,
        ),
        gtv=gtv,
        lattice_target=gtv,
        centers_ras_mm=np.asarray(centers_ras, float),
        depth_mm=np.full(n, 50.0),
        oar_distance_mm={},
        search={},
    )


@pytest.mark.parametrize("kind", ["identity-like", "lps", "oblique"])
def test_tps_volume_matches_the_formula(make_volume, kind):
    grid = make_volume((40, 40, 30), (0.98, 0.98, 3.27), kind)
    k_axis = grid.affine[:3, 2]
    base = grid.affine[:3, 3] + 15 * k_axis + 20 * grid.affine[:3, 0] + 20 * grid.affine[:3, 1]
    # Centres on a plane, a quarter and half a gap off it, and near a plane.
    offsets = [0.0, 0.25, 0.5, 0.93]
    centers = [
        base + f * k_axis + 25.0 * i * grid.affine[:3, 0] / 0.98 for i, f in enumerate(offsets)
    ]
    centers = [c - 40.0 * grid.affine[:3, 0] / 0.98 for c in centers]
    plan = make_plan(grid, centers, 10.0)
    doc = plan.to_dict()
    exact = np.pi / 6 * 10.0**3 / 1000
    got = [v["tps_volume_cc"] for v in doc["vertices"]]
    want = [analytic_cc(c, 5.0, grid.affine, grid.shape[2]) for c in centers]
    np.testing.assert_allclose(got, want, atol=6e-5)
    ratios = np.array(want) / exact - 1
    # By hand: on a plane 3 planes (d = 0, +-3.27), +5.02 %; a quarter gap off, +1.09 %;
    # half a gap off 4 planes (d = +-1.635, +-4.905), -8.84 %.
    np.testing.assert_allclose(ratios[:3], [0.0502, 0.0109, -0.0884], atol=1e-4)
    (warning,) = [w for w in doc["warnings"] if "come back in a TPS" in w]
    flagged = [i for i, r in enumerate(ratios) if abs(r) > 0.05]
    assert f"{len(flagged)} of 4 vertex spheres" in warning
    assert all(f"VTX_{i + 1:02d}" in warning for i in flagged)
    assert "3.27 mm slice gap" in warning
    # Snapping would not help here (+5.02 % on a plane); a diameter that does is named.
    assert "--snap-to-slices would give +5.0 % on these slices" in warning
    assert "a larger --diameter-mm (e.g. 10.5: at most 4.7 % off" in warning
    assert (
        max(
            abs(
                analytic_cc(base + t / 200 * k_axis, 5.25, grid.affine, grid.shape[2])
                / (np.pi / 6 * 10.5**3 / 1000)
                - 1
            )
            for t in range(200)
        )
        < 0.05
    )


def test_no_warning_for_d15_and_snap_advice(make_volume):
    grid = make_volume((40, 40, 30), (0.98, 0.98, 3.27), "lps")
    k_axis = grid.affine[:3, 2]
    center = grid.affine[:3, 3] + 15.5 * k_axis + 20 * grid.affine[:3, 0] + 20 * grid.affine[:3, 1]
    doc = make_plan(grid, [center], 15.0).to_dict()
    assert not [w for w in doc["warnings"] if "come back in a TPS" in w]
    assert doc["vertices"][0]["tps_volume_cc"] == pytest.approx(
        analytic_cc(center, 7.5, grid.affine, grid.shape[2]), abs=6e-5
    )
    # Snapped already (on a plane, D 10: +5.02 %): only a larger diameter is suggested.
    on_plane = grid.affine[:3, 3] + 15 * k_axis + 20 * grid.affine[:3, 0] + 20 * grid.affine[:3, 1]
    (warning,) = [
        w
        for w in make_plan(grid, [on_plane], 10.0, snap=True).to_dict()["warnings"]
        if "come back in a TPS" in w
    ]
    assert "+5.0 %" in warning and "snap" not in warning and "larger --diameter-mm" in warning


def test_snapping_suggested_where_it_helps(make_volume):
    """D 7.5 on 5 mm slices: half a gap off a plane +10.9 % (two planes at +-2.5 mm); on a
    plane -0.2 % (one plane: pi r^2 x 5 mm = 4/3 pi r^3, less the 64-gon's 0.16 %)."""
    grid = make_volume((40, 40, 20), (0.98, 0.98, 5.0), "identity-like")
    k_axis = grid.affine[:3, 2]
    center = grid.affine[:3, 3] + 10.5 * k_axis + 20 * grid.affine[:3, 0] + 20 * grid.affine[:3, 1]
    exact = np.pi / 6 * 7.5**3 / 1000
    ratio = analytic_cc(center, 3.75, grid.affine, 20) / exact - 1
    on_plane = analytic_cc(center - 0.5 * k_axis, 3.75, grid.affine, 20) / exact - 1
    np.testing.assert_allclose([ratio, on_plane], [0.1093, -0.0016], atol=1e-4)
    (warning,) = [
        w for w in make_plan(grid, [center], 7.5).to_dict()["warnings"] if "come back in a TPS" in w
    ]
    assert "VTX_01 +10.9 %" in warning
    assert "use --snap-to-slices (every vertex then -0.2 %) or a larger --diameter-mm" in warning


def test_tps_volume_on_the_reference_series_slices(make_volume):
    """The RTSTRUCT's slices are those of the series it references: a reference series that
    stores the same voxels in another axis order slices the sphere along another axis."""
    grid = make_volume((30, 30, 30), (1.0, 1.0, 3.27), "identity-like")
    permuted = Volume(np.ones((30, 30, 30), dtype=bool), grid.affine[:, [2, 0, 1, 3]])
    center = grid.affine[:3, 3] + grid.affine[:3, :3] @ np.array([15.0, 15.0, 15.0])
    plan = make_plan(grid, [center], 10.0)
    own = plan.to_dict()["vertices"][0]["tps_volume_cc"]
    other = plan.to_dict(slice_grid=permuted)["vertices"][0]["tps_volume_cc"]
    assert own == pytest.approx(analytic_cc(center, 5.0, grid.affine, 30), abs=6e-5)
    assert other == pytest.approx(analytic_cc(center, 5.0, permuted.affine, 30), abs=6e-5)
    assert abs(own - other) > 0.01  # 3.27 mm slices against 1 mm slices


def test_cli_d10_on_327mm_slices_warns_and_matches_rtstruct(tmp_path):
    """The sample CT has 3.27 mm slices: with D 10 (snapped) the warning reaches stderr and
    plan.json, and every tps_volume_cc is the slab volume of that vertex's polygons in
    rtstruct.dcm."""
    out = tmp_path / "plan"
    code, _, err = run(
        [
            "plan",
            "--ct",
            SAMPLE / "ct.nii.gz",
            "--gtv",
            SAMPLE / "gtv.nii.gz",
            "--out",
            out,
            "--no-picture",
            "--mesh-format",
            "none",
            "--diameter-mm",
            "10",
            "--spacing-mm",
            "20",
            "--gtv-margin-mm",
            "3",
            "--snap-to-slices",
        ]
    )
    assert code == 0, err
    doc = json.loads((out / "plan.json").read_text())
    geometry = read_series_geometry(out / "ct_dicom")
    structures = read_structures(out / "rtstruct.dcm")
    affine = np.array(doc["grid"]["affine"])
    exact = np.pi / 6 * 10.0**3 / 1000
    ratios = []
    for v in doc["vertices"]:
        _, volume_mm3 = sphere_from_contours(structures[v["name"]], geometry)
        assert v["tps_volume_cc"] == pytest.approx(volume_mm3 / 1000, abs=6e-5)
        assert v["tps_volume_cc"] == pytest.approx(
            analytic_cc(v["center_ras_mm"], 5.0, affine, doc["grid"]["shape"][2]), abs=6e-5
        )
        ratios.append(v["tps_volume_cc"] / exact - 1)
    # Every centre on a slice plane: +5.02 % each, just beyond the 5 % of the warning.
    np.testing.assert_allclose(ratios, 0.0502, atol=2e-4)
    (warning,) = [w for w in doc["warnings"] if "come back in a TPS" in w]
    assert f"lattice: warning: {warning}" in err.splitlines()
    assert f"{len(ratios)} of {len(ratios)} vertex spheres" in warning
