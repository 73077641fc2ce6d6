"""Lesion measurements against analytic ellipsoids and brute force on the real cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run_redirected as run
from conftest import rotation_about_axis
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from lattice.analysis.measure import TRIAL_RULES, evaluate_rules, measure_lesion, parse_size_rule
from lattice.errors import MaskError, ParameterError
from lattice.io.nifti import load_mask
from lattice.volume import Volume


def world_of(shape, affine):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def rotated_ellipsoid(vol, center, semi_axes, angle_deg):
    """Ellipsoid with semi-axes along world x, y, z, then turned about the grid's k axis."""
    k_axis = vol.affine[:3, 2] / np.linalg.norm(vol.affine[:3, 2])
    rot = rotation_about_axis(k_axis, angle_deg) @ _frame(vol)
    local = (world_of(vol.shape, vol.affine) - center) @ rot
    return (local / np.asarray(semi_axes)) ** 2 @ np.ones(3) <= 1.0


def _frame(vol):
    """Columns: the grid's unit i, j, k directions (ellipsoid axes follow the grid)."""
    return vol.affine[:3, :3] / np.linalg.norm(vol.affine[:3, :3], axis=0)


@pytest.mark.parametrize("kind, angle", [("identity-like", 0.0), ("lps", 30.0), ("oblique", 65.0)])
def test_ellipsoid_diameters_within_one_voxel(make_volume, kind, angle):
    vol = make_volume((90, 80, 40), (0.9, 1.1, 2.0), kind)
    center = vol.ijk_to_ras(np.array([[44.3, 39.6, 19.5]]))[0]
    a, b, c = 32.0, 20.0, 26.0  # in-plane long and short semi-axes, then along k
    mask = rotated_ellipsoid(vol, center, (a, b, c), angle)
    m = measure_lesion(Volume(mask, vol.affine))
    voxel = vol.voxel_size_mm.max()
    # The slice nearest the centre is at most half a slice (1 mm) off: chord factor ~0.9993.
    assert m.long_axis_mm == pytest.approx(2 * a, abs=voxel)
    assert m.short_axis_mm == pytest.approx(2 * b, abs=voxel)
    assert m.max_diameter_3d_mm == pytest.approx(2 * a, abs=voxel)
    assert m.volume_cc * 1000 == pytest.approx(4 / 3 * np.pi * a * b * c, rel=0.02)
    # The reported end points are where they should be: the long axis along the rotated
    # x axis, through the centre, on the reported slice.
    long_dir = np.diff(m.long_axis_ras_mm, axis=0)[0]
    x_axis = (
        rotation_about_axis(vol.affine[:3, 2] / np.linalg.norm(vol.affine[:3, 2]), angle)
        @ _frame(vol)[:, 0]
    )
    assert abs(long_dir @ x_axis) / np.linalg.norm(long_dir) > 0.99
    short_dir = np.diff(m.short_axis_ras_mm, axis=0)[0]
    assert abs(short_dir @ long_dir) / np.linalg.norm(short_dir) / np.linalg.norm(long_dir) < 1e-6
    assert np.linalg.norm(m.long_axis_ras_mm.mean(axis=0) - center) < 2.0
    ijk = vol.ras_to_ijk(m.long_axis_ras_mm)
    np.testing.assert_allclose(ijk[:, 2], m.axial_slice_index, atol=1e-9)


def test_sphericity_orders_shapes(make_volume, ellipsoid_mask):
    vol = make_volume((70, 70, 70), (1.0, 1.0, 1.0), "identity-like")
    sphere = measure_lesion(Volume(ellipsoid_mask(vol, (-12.0, 25.0, 40.0), 25.0), vol.affine))
    cigar = measure_lesion(
        Volume(ellipsoid_mask(vol, (-12.0, 25.0, 40.0), (30.0, 10.0, 10.0)), vol.affine)
    )
    assert 0.85 < sphere.sphericity <= 1.0
    # Analytic sphericity of a 3:1:1 prolate spheroid is 0.79; voxel surfaces score lower.
    assert cigar.sphericity < sphere.sphericity - 0.1
    assert sphere.max_diameter_3d_mm == pytest.approx(50.0, abs=1.0)


def test_empty_mask_is_an_error(make_volume):
    vol = make_volume((10, 10, 10), 1.0, "identity-like")
    with pytest.raises(MaskError, match="empty"):
        measure_lesion(Volume(np.zeros(vol.shape, bool), vol.affine))


def test_size_rules():
    m = measure_lesion(Volume(np.pad(np.ones((40, 20, 5), bool), 2), np.diag([1, 1, 3, 1.0])))
    assert m.long_axis_mm == pytest.approx(np.hypot(40, 20), abs=1.0)
    checks = evaluate_rules(
        m,
        [
            parse_size_rule("short_axis_mm>30"),
            parse_size_rule("long_axis_mm >= 40"),
            TRIAL_RULES["NCT06987370"],
        ],
    )
    assert [c["met"] for c in checks] == [m.short_axis_mm > 30, True, m.short_axis_mm > 30]
    for bad in ("short>30", "short_axis_mm=30", "volume_cc > x", ""):
        with pytest.raises(ParameterError, match="size rule"):
            parse_size_rule(bad)


@pytest.mark.parametrize("case", ["STS_013", "STS_044"])
def test_real_cases_against_brute_force(shared_data, case):
    gtv = load_mask(shared_data / case / "gtv.nii.gz")
    m = measure_lesion(gtv)
    k = m.axial_slice_index

    def farthest(points):  # the farthest pair is among the convex hull's vertices
        return pdist(points[ConvexHull(points).vertices]).max()

    xy = np.argwhere(gtv.array[:, :, k]) * gtv.voxel_size_mm[:2]
    centres_long = farthest(xy)  # voxel centres: at most one voxel diagonal shorter
    assert centres_long <= m.long_axis_mm <= centres_long + np.hypot(*gtv.voxel_size_mm[:2])
    # No slice has voxel centres farther apart than the reported long axis.
    for kk in np.flatnonzero(gtv.array.any(axis=(0, 1))):
        pts = np.argwhere(gtv.array[:, :, kk]) * gtv.voxel_size_mm[:2]
        if len(pts) > 2 and np.linalg.matrix_rank(pts - pts[0]) == 2:
            assert farthest(pts) <= m.long_axis_mm + 1e-6
    assert m.short_axis_mm <= m.long_axis_mm <= m.max_diameter_3d_mm + 1e-6
    volume = gtv.array.sum() * gtv.voxel_volume_cc
    assert m.volume_cc == pytest.approx(volume)


def test_measure_command(shared_data, tmp_path):
    gtv = shared_data / "STS_044" / "gtv.nii.gz"
    code, out, err = run(
        [
            "measure",
            "--gtv",
            gtv,
            "--size-rule",
            "NCT05602415",
            "--size-rule",
            "volume_cc>1000",
            "--json",
            tmp_path / "m.json",
        ]
    )
    assert code == 0, err
    assert "long axis (axial)" in out and " mm" in out and " cc" in out
    doc = json.loads((tmp_path / "m.json").read_text())
    assert [r["met"] for r in doc["size_rules"]] == [True, False]
    assert doc["measurements"]["long_axis_mm"] > 50
    code, _, err = run(["measure", "--gtv", gtv, "--json", tmp_path / "m.json"])
    assert code == 6 and "--force" in err
    code, _, err = run(["measure", "--gtv", gtv, "--size-rule", "bogus"])
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_condensed_index_to_pair():
    from scipy.spatial.distance import squareform

    from lattice.analysis.measure import _pair_of

    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 40):
        d = pdist(rng.random((n, 3)))
        square = squareform(d)
        for index in range(len(d)):
            i, j = _pair_of(index, n)
            assert i < j and square[i, j] == d[index]


def _oracle_outline_points(array):
    """The outline points as measure.py found them before they were sorted as integers: the
    padded mask against itself rolled four ways, then np.unique per slice."""
    padded = np.pad(array, ((1, 1), (1, 1), (0, 0)))
    found = []
    for axis in (0, 1):
        for step in (1, -1):
            edge = padded & ~np.roll(padded, -step, axis=axis)
            idx = np.argwhere(edge).astype(np.float64)
            idx[:, axis] += 0.5 * step
            found.append(idx)
    points = np.concatenate(found)
    points[:, :2] -= 1.0
    ks = np.unique(points[:, 2]).astype(int)
    return [(int(k), np.unique(points[points[:, 2] == k][:, :2], axis=0)) for k in ks]


@pytest.mark.parametrize("fill", [0.1, 0.6])
def test_outline_points_are_the_unique_points_of_each_slice(fill):
    from lattice.analysis.measure import _outline_points

    rng = np.random.default_rng(3)
    array = rng.random((13, 17, 9)) < fill  # touches every border, holes, single voxels
    array[:, :, 4] = False  # a slice without the lesion
    array[:, :, 6] = True  # a full slice
    got, want = _outline_points(array), _oracle_outline_points(array)
    assert [k for k, _ in got] == [k for k, _ in want]
    size = np.array([0.7, 1.3])
    for (_, g), (_, w) in zip(got, want):
        np.testing.assert_array_equal(g, w)  # same values, same order
        np.testing.assert_array_equal(g * size, np.unique(w * size, axis=0))


def test_diameter_bound_is_never_below_the_diameter():
    from lattice.analysis.measure import _diameter_bound

    rng = np.random.default_rng(5)
    for n in (2, 3, 10, 200):
        for _ in range(50):
            xy = rng.normal(0, 1, (n, 2)) * rng.uniform(0.01, 300, 2) + rng.uniform(-500, 500, 2)
            assert _diameter_bound(xy) >= pdist(xy).max()
    # Two points along a direction half-way between two of the eight: the tightest case.
    a = np.pi / 16
    xy = np.array([[0.0, 0.0], [np.cos(a), np.sin(a)]]) * 37.0
    assert _diameter_bound(xy) >= 37.0


@pytest.mark.parametrize("kind", ["identity-like", "lps", "oblique"])
def test_slices_skipped_by_the_bound_change_nothing(make_volume, ellipsoid_mask, kind, monkeypatch):
    from lattice.analysis import measure

    vol = make_volume((40, 36, 24), (0.9, 1.1, 2.0), kind)
    centre = vol.ijk_to_ras([20.0, 18.0, 12.0])
    arr = ellipsoid_mask(vol, centre, (14.0, 9.0, 18.0)) | ellipsoid_mask(
        vol, vol.ijk_to_ras([8.0, 9.0, 5.0]), 4.0
    )
    mask = Volume(arr, vol.affine)
    got = measure_lesion(mask)
    monkeypatch.setattr(measure, "_diameter_bound", lambda xy: np.inf)  # every slice measured
    want = measure_lesion(mask)
    for name in ("long_axis_mm", "short_axis_mm", "axial_slice_index"):
        assert getattr(got, name) == getattr(want, name)
    np.testing.assert_array_equal(got.long_axis_ras_mm, want.long_axis_ras_mm)
    np.testing.assert_array_equal(got.short_axis_ras_mm, want.short_axis_ras_mm)
