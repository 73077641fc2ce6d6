"""Grid: a shape and an affine without voxels; index <-> RAS, LPS, crops, same-grid checks."""

from __future__ import annotations

import numpy as np
import pytest

from lattice.errors import GridMismatchError
from lattice.grid import LPS_TO_RAS, Grid, lps_to_ras, ras_to_lps
from lattice.volume import Volume

KINDS = ("identity-like", "lps", "oblique")
VOXEL_MM = (0.9, 1.3, 2.5)
SHAPE = (24, 20, 12)


@pytest.mark.parametrize("kind", KINDS)
def test_ijk_to_ras_is_the_affine_on_homogeneous_indices(make_affine, kind):
    grid = Grid(SHAPE, make_affine(SHAPE, VOXEL_MM, kind))
    ijk = np.random.default_rng(0).uniform(-3, 30, size=(40, 3))
    # Brute force: the 4x4 product, one point at a time.
    expected = np.array([(grid.affine @ np.append(p, 1.0))[:3] for p in ijk])
    np.testing.assert_allclose(grid.ijk_to_ras(ijk), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(grid.ras_to_ijk(expected), ijk, rtol=0, atol=1e-9)


def test_single_point_comes_back_as_one_row(make_affine):
    grid = Grid(SHAPE, make_affine(SHAPE, VOXEL_MM, "oblique"))
    assert grid.ijk_to_ras([1, 2, 3]).shape == (1, 3)
    assert grid.ras_to_ijk([1.0, 2.0, 3.0]).shape == (1, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_volume_answers_through_its_grid(make_volume, kind):
    vol = make_volume(SHAPE, VOXEL_MM, kind)
    assert vol.grid.shape == vol.shape == SHAPE
    assert vol.grid.affine is vol.affine  # the same array, not a copy
    ijk = np.random.default_rng(1).uniform(0, 12, size=(10, 3))
    np.testing.assert_array_equal(vol.ijk_to_ras(ijk), vol.grid.ijk_to_ras(ijk))
    np.testing.assert_array_equal(vol.voxel_size_mm, vol.grid.voxel_size_mm)
    assert vol.voxel_volume_cc == vol.grid.voxel_volume_cc
    np.testing.assert_array_equal(vol.lps_affine, vol.grid.lps_affine)


@pytest.mark.parametrize("kind", KINDS)
def test_voxel_size_and_volume_follow_the_affine_columns(make_affine, kind):
    grid = Grid(SHAPE, make_affine(SHAPE, VOXEL_MM, kind))
    np.testing.assert_allclose(grid.voxel_size_mm, VOXEL_MM, rtol=1e-12)
    assert grid.voxel_volume_cc == pytest.approx(np.prod(VOXEL_MM) / 1000.0, rel=1e-12)
    d = grid.directions
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(grid.slice_normal(), d[:, 2], atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_crop_keeps_every_voxel_in_place(make_volume, kind):
    vol = make_volume(SHAPE, VOXEL_MM, kind)
    box = (slice(3, 17), slice(5, None), slice(2, 9))
    sub = vol.grid.crop(box)
    assert sub.shape == vol.array[box].shape
    ijk = np.array([[0, 0, 0], [4, 7, 3], [13, 14, 6]], dtype=float)
    start = np.array([3, 5, 2])
    np.testing.assert_allclose(sub.ijk_to_ras(ijk), vol.ijk_to_ras(ijk + start), atol=1e-12)
    np.testing.assert_array_equal(vol.crop(box).affine, sub.affine)


def test_ras_lps_flip_negates_x_and_y_and_is_its_own_inverse():
    pts = np.random.default_rng(2).normal(size=(5, 3)) * 100
    lps = ras_to_lps(pts)
    np.testing.assert_array_equal(lps[:, :2], -pts[:, :2])
    np.testing.assert_array_equal(lps[:, 2], pts[:, 2])
    np.testing.assert_array_equal(lps_to_ras(lps), pts)
    np.testing.assert_array_equal(LPS_TO_RAS @ LPS_TO_RAS, np.eye(4))
    homogeneous = np.column_stack([pts, np.ones(len(pts))])
    np.testing.assert_array_equal((LPS_TO_RAS @ homogeneous.T).T[:, :3], lps)


@pytest.mark.parametrize("kind", KINDS)
def test_lps_affine_maps_indices_to_the_lps_points(make_affine, kind):
    grid = Grid(SHAPE, make_affine(SHAPE, VOXEL_MM, kind))
    ijk = np.random.default_rng(3).uniform(0, 10, size=(8, 3))
    lps_affine = grid.lps_affine
    by_affine = ijk @ lps_affine[:3, :3].T + lps_affine[:3, 3]
    np.testing.assert_allclose(by_affine, ras_to_lps(grid.ijk_to_ras(ijk)), atol=1e-12)


def test_same_grid_check_accepts_a_volume_on_it_and_names_a_shifted_one(make_volume):
    vol = make_volume(SHAPE, VOXEL_MM, "oblique")
    grid = Grid(SHAPE, vol.affine.copy())
    grid.check_same_grid(vol, name="the plan's grid", other_name="GTV")
    vol.check_same_grid(grid, name="CT", other_name="the plan's grid")
    shifted = vol.affine.copy()
    shifted[:3, 3] += [0.0, 0.0, 2.0]
    with pytest.raises(GridMismatchError, match=r"GTV is on a different grid .* 2 mm"):
        Grid(SHAPE, shifted).check_same_grid(vol, name="CT", other_name="GTV")
    with pytest.raises(GridMismatchError, match=r"has shape \(24, 20, 11\)"):
        grid.check_same_grid(Grid((24, 20, 11), vol.affine), name="CT", other_name="GTV")


def test_sheared_and_degenerate_grids_are_refused():
    sheared = np.eye(4)
    sheared[0, 1] = 0.3
    with pytest.raises(GridMismatchError, match="sheared"):
        Grid(SHAPE, sheared).check_not_sheared(name="CT")
    flat = np.diag([1.0, 0.0, 1.0, 1.0])
    with pytest.raises(GridMismatchError, match="degenerate"):
        Grid(SHAPE, flat).check_not_sheared(name="CT")


@pytest.mark.parametrize(
    "shape, affine", [((4, 4), np.eye(4)), ((4, 4, -1), np.eye(4)), ((4, 4, 4), np.eye(3))]
)
def test_bad_shapes_and_affines_are_refused(shape, affine):
    with pytest.raises(ValueError):
        Grid(shape, affine)


def test_a_grid_holds_no_voxels_and_compares_against_volumes_alike(make_volume):
    vol = make_volume((300, 300, 200), VOXEL_MM, "lps")
    grid = Grid(vol.shape, vol.affine)
    assert not hasattr(grid, "array")
    assert grid.corner_distance_mm(vol) == 0.0
    assert isinstance(vol.with_array(np.zeros(vol.shape, bool)).grid, Grid)
    assert Volume(np.zeros((2, 3, 4)), np.eye(4)).grid.shape == (2, 3, 4)
