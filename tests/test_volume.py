"""Volume: index <-> world mapping, voxel size, same-grid and shear checks."""

from __future__ import annotations

import numpy as np
import pytest

from lattice.errors import GridMismatchError, LatticeError
from lattice.volume import Volume

KINDS = ("identity-like", "lps", "oblique")
VOXEL_MM = (0.9, 1.3, 2.5)
SHAPE = (24, 20, 12)


@pytest.mark.parametrize("kind", KINDS)
def test_ijk_to_ras_is_the_affine_applied_to_homogeneous_indices(make_volume, kind):
    vol = make_volume(SHAPE, VOXEL_MM, kind)
    rng = np.random.default_rng(0)
    ijk = rng.uniform(-3, 30, size=(50, 3))
    expected = (vol.affine @ np.column_stack([ijk, np.ones(len(ijk))]).T).T[:, :3]
    np.testing.assert_allclose(vol.ijk_to_ras(ijk), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_ijk_ras_round_trip(make_volume, kind):
    vol = make_volume(SHAPE, VOXEL_MM, kind)
    rng = np.random.default_rng(1)
    ijk = rng.uniform(-5, 35, size=(200, 3))
    np.testing.assert_allclose(vol.ras_to_ijk(vol.ijk_to_ras(ijk)), ijk, rtol=0, atol=1e-9)
    ras = rng.uniform(-100, 100, size=(200, 3))
    np.testing.assert_allclose(vol.ijk_to_ras(vol.ras_to_ijk(ras)), ras, rtol=0, atol=1e-9)


def test_single_point_is_accepted_as_one_row(make_volume):
    vol = make_volume(SHAPE, VOXEL_MM, "oblique")
    out = vol.ijk_to_ras([1.0, 2.0, 3.0])
    assert out.shape == (1, 3)
    assert vol.ras_to_ijk(out[0]).shape == (1, 3)


def test_array_centre_maps_to_requested_world_point(make_volume):
    centre = np.array([3.0, -4.0, 5.5])
    vol = make_volume(SHAPE, VOXEL_MM, "oblique", center_ras_mm=centre)
    mid = (np.array(SHAPE) - 1) / 2
    np.testing.assert_allclose(vol.ijk_to_ras(mid)[0], centre, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_voxel_size_is_the_length_of_each_affine_column(make_volume, kind):
    vol = make_volume(SHAPE, VOXEL_MM, kind)
    np.testing.assert_allclose(vol.voxel_size_mm, VOXEL_MM, rtol=1e-12)
    # One step along an index axis moves exactly one voxel edge in the world.
    for axis in range(3):
        step = np.zeros((2, 3))
        step[1, axis] = 1.0
        a, b = vol.ijk_to_ras(step)
        assert np.linalg.norm(b - a) == pytest.approx(VOXEL_MM[axis], rel=1e-12)
    assert vol.voxel_volume_cc == pytest.approx(np.prod(VOXEL_MM) / 1000.0, rel=1e-12)


def test_directions_are_orthonormal_and_slice_normal_follows_k(make_volume):
    vol = make_volume(SHAPE, VOXEL_MM, "oblique")
    d = vol.directions
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-12)
    k_step = vol.affine[:3, 2] / np.linalg.norm(vol.affine[:3, 2])
    np.testing.assert_allclose(vol.slice_normal(), k_step, atol=1e-12)


def test_lps_affine_flips_x_and_y_only(make_volume):
    vol = make_volume(SHAPE, VOXEL_MM, "lps")
    a, b = vol.ijk_to_ras([[0, 0, 0], [1, 1, 1]])
    np.testing.assert_allclose(b - a, [-VOXEL_MM[0], -VOXEL_MM[1], VOXEL_MM[2]], atol=1e-12)


# -- same grid -------------------------------------------------------------------------------


def _shifted(vol: Volume, shift_mm) -> Volume:
    affine = vol.affine.copy()
    affine[:3, 3] += shift_mm
    return Volume(vol.array, affine)


@pytest.mark.parametrize("kind", KINDS)
def test_same_grid_accepts_rounding_differences(make_volume, kind):
    vol = make_volume(SHAPE, VOXEL_MM, kind)
    # 1e-4 mm along an oblique direction: what two writers' float rounding looks like.
    vol.check_same_grid(_shifted(vol, 1e-4 * np.array([1, 2, 2]) / 3), name="CT", other_name="GTV")
    # The affine stored as float32 and read back.
    f32 = Volume(vol.array, vol.affine.astype(np.float32).astype(np.float64))
    vol.check_same_grid(f32, name="CT", other_name="GTV")
    vol.check_same_grid(vol, name="CT", other_name="GTV")


@pytest.mark.parametrize("kind", KINDS)
def test_same_grid_rejects_a_hundredth_of_a_millimetre(make_volume, kind):
    vol = make_volume(SHAPE, VOXEL_MM, kind)
    with pytest.raises(GridMismatchError) as info:
        vol.check_same_grid(
            _shifted(vol, [0.0, 0.0, 0.01]),
            name="CT 'ct.nii.gz'",
            other_name="GTV mask 'gtv.nii.gz'",
        )
    msg = str(info.value)
    assert "CT 'ct.nii.gz'" in msg and "GTV mask 'gtv.nii.gz'" in msg
    assert "0.01" in msg  # the size of the difference is reported


def test_same_grid_rejects_a_small_rotation(make_volume):
    vol = make_volume(SHAPE, VOXEL_MM, "identity-like")
    other = make_volume(SHAPE, VOXEL_MM, "oblique")
    with pytest.raises(GridMismatchError):
        vol.check_same_grid(other, name="CT", other_name="GTV")


def test_same_grid_rejects_different_shapes_naming_both(make_volume):
    vol = make_volume(SHAPE, VOXEL_MM, "oblique")
    other = Volume(np.zeros((24, 20, 13), np.uint8), vol.affine)
    with pytest.raises(GridMismatchError) as info:
        vol.check_same_grid(other, name="CT 'ct.nii.gz'", other_name="GTV mask 'gtv.nii.gz'")
    msg = str(info.value)
    assert "CT 'ct.nii.gz'" in msg and "GTV mask 'gtv.nii.gz'" in msg
    assert "(24, 20, 13)" in msg and "(24, 20, 12)" in msg


def test_grid_mismatch_is_a_value_error_with_its_exit_code():
    assert issubclass(GridMismatchError, ValueError)
    assert issubclass(GridMismatchError, LatticeError)
    assert GridMismatchError.exit_code == 5


# -- shear -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_orthogonal_grids_are_not_sheared(make_volume, kind):
    make_volume(SHAPE, VOXEL_MM, kind).check_not_sheared(name="the GTV")


def test_sheared_affine_is_rejected(make_volume):
    vol = make_volume(SHAPE, VOXEL_MM, "oblique")
    affine = vol.affine.copy()
    affine[:3, 2] += 0.2 * affine[:3, 0]  # k axis leans towards i: a gantry-tilt style shear
    with pytest.raises(GridMismatchError, match="the GTV"):
        Volume(vol.array, affine).check_not_sheared(name="the GTV")


def test_degenerate_affine_is_rejected_without_a_warning(make_volume):
    # pyproject turns warnings into errors, so this also asserts that no warning is emitted.
    vol = make_volume(SHAPE, VOXEL_MM, "identity-like")
    affine = vol.affine.copy()
    affine[:3, 1] = 0.0
    with pytest.raises(GridMismatchError):
        Volume(vol.array, affine).check_not_sheared(name="the GTV")


# -- construction ----------------------------------------------------------------------------


def test_volume_needs_three_dimensional_data_and_a_4x4_affine():
    with pytest.raises(ValueError):
        Volume(np.zeros((4, 4)), np.eye(4))
    with pytest.raises(ValueError):
        Volume(np.zeros((4, 4, 4)), np.eye(3))


def test_with_array_keeps_the_grid(make_volume):
    vol = make_volume(SHAPE, VOXEL_MM, "oblique")
    other = vol.with_array(np.ones(SHAPE, bool))
    np.testing.assert_array_equal(other.affine, vol.affine)
    assert other.array.dtype == bool
