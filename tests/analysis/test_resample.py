"""Resampling onto the CT grid: exact world mapping (a linear dose is reproduced exactly on
any grid pair), the outside mask against a brute-force test, and NaN instead of zeros."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from dose_phantoms import world_points
from scipy.spatial.transform import Rotation

from lattice.analysis import resample
from lattice.analysis.resample import resample_dose, sample_dose
from lattice.io.rtdose import DoseError

GRADIENT_GY_PER_MM = np.array([0.03, -0.02, 0.05])


def _linear_dose(points_ras_mm: np.ndarray) -> np.ndarray:
    return 10.0 + points_ras_mm @ GRADIENT_GY_PER_MM


def _rotated_affine(angle_deg: float, axis, voxel_mm, origin) -> np.ndarray:
    affine = np.eye(4)
    rotation = Rotation.from_rotvec(
        np.deg2rad(angle_deg) * np.asarray(axis, float) / np.linalg.norm(axis)
    ).as_matrix()
    affine[:3, :3] = rotation * np.asarray(voxel_mm, float)
    affine[:3, 3] = origin
    return affine


DOSE_AFFINE = _rotated_affine(30, (1, 1, 3), (2.0, 2.5, 3.0), (-20.0, -25.0, -15.0))
DOSE_SHAPE = (22, 20, 14)
CT_AFFINE = np.array([[-1.1, 0, 0, 18.0], [0, -0.9, 0, 20.0], [0, 0, 2.5, -12.0], [0, 0, 0, 1]])
CT_SHAPE = (40, 48, 14)


def test_a_linear_dose_is_reproduced_exactly_between_oblique_grids():
    """Trilinear interpolation is exact for a field linear in index space, and a field linear
    in world space is linear in every grid's index space: any half-voxel or axis-order slip
    in the world mapping would show here."""
    dose = _linear_dose(world_points(DOSE_SHAPE, DOSE_AFFINE))
    out = resample_dose(
        dose, affine_ras=DOSE_AFFINE, target_shape=CT_SHAPE, target_affine_ras=CT_AFFINE
    )
    truth = _linear_dose(world_points(CT_SHAPE, CT_AFFINE))
    inside = ~out.outside
    assert 0.2 < inside.mean() < 0.95  # the grids overlap only partly
    np.testing.assert_allclose(out.dose_gy[inside], truth[inside], atol=1e-9)


def test_outside_marks_exactly_the_centres_beyond_the_dose_grid():
    dose = np.ones(DOSE_SHAPE)
    out = resample_dose(
        dose, affine_ras=DOSE_AFFINE, target_shape=CT_SHAPE, target_affine_ras=CT_AFFINE
    )
    ijk = (
        world_points(CT_SHAPE, CT_AFFINE) @ np.linalg.inv(DOSE_AFFINE)[:3, :3].T
        + np.linalg.inv(DOSE_AFFINE)[:3, 3]
    )
    brute = np.any((ijk < -1e-9) | (ijk > np.array(DOSE_SHAPE) - 1 + 1e-9), axis=-1)
    np.testing.assert_array_equal(out.outside, brute)
    assert np.all(np.isnan(out.dose_gy[out.outside]))
    np.testing.assert_allclose(out.dose_gy[~out.outside], 1.0, rtol=1e-12)


def test_result_does_not_depend_on_the_chunk_size(monkeypatch):
    dose = _linear_dose(world_points(DOSE_SHAPE, DOSE_AFFINE))
    first = resample_dose(
        dose, affine_ras=DOSE_AFFINE, target_shape=CT_SHAPE, target_affine_ras=CT_AFFINE
    )
    monkeypatch.setattr(resample, "PLANES_PER_CHUNK", 3)
    second = resample_dose(
        dose, affine_ras=DOSE_AFFINE, target_shape=CT_SHAPE, target_affine_ras=CT_AFFINE
    )
    np.testing.assert_array_equal(first.outside, second.outside)
    np.testing.assert_array_equal(first.dose_gy, second.dose_gy)


def test_sample_dose_at_grid_corners_and_beyond():
    dose = _linear_dose(world_points(DOSE_SHAPE, DOSE_AFFINE))
    corner = DOSE_AFFINE @ [DOSE_SHAPE[0] - 1, DOSE_SHAPE[1] - 1, DOSE_SHAPE[2] - 1, 1]
    beyond = DOSE_AFFINE @ [DOSE_SHAPE[0] - 0.5, 0, 0, 1]
    values = sample_dose(dose, np.array([corner[:3], beyond[:3]]), affine_ras=DOSE_AFFINE)
    assert values[0] == pytest.approx(_linear_dose(corner[:3]))
    assert np.isnan(values[1])


def test_bad_input_is_refused():
    with pytest.raises(DoseError, match="need a 3-D dose"):
        resample_dose(
            np.ones((3, 3)),
            affine_ras=np.eye(4),
            target_shape=(2, 2, 2),
            target_affine_ras=np.eye(4),
        )
    with pytest.raises(DoseError, match="singular"):
        resample_dose(
            np.ones((3, 3, 3)),
            affine_ras=np.zeros((4, 4)),
            target_shape=(2, 2, 2),
            target_affine_ras=np.eye(4),
        )


def test_docstring_example():
    assert doctest.testmod(resample, raise_on_error=False).failed == 0
