"""A dose onto another grid (the CT's) by trilinear interpolation with exact world mapping.

Each target voxel centre ``x = A_target @ ijk`` is mapped into the dose grid's continuous
index ``u = A_dose^-1 @ x`` (one 4x4 matrix, no rounding to a voxel) and the dose is
interpolated there (:func:`scipy.ndimage.map_coordinates`, ``order=1``). A centre whose
``u`` lies outside ``[0, n - 1]`` on any axis (beyond :data:`EDGE_TOL_VOX`) has no dose: the
dose grid says nothing there. Such voxels are returned as NaN together with a boolean mask,
never filled with zeros; the evaluation decides what to do with them (see ``evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lattice.io.rtdose import DoseError

__all__ = ["ResampledDose", "resample_dose", "sample_dose"]

#: A centre this close (in dose voxels) outside the dose grid's first or last plane is taken
#: as on it: it covers float error of the affine product (~1e-12), not a real gap.
EDGE_TOL_VOX = 1e-6
#: Target planes resampled at once: bounds the coordinate arrays to ~ 3 x 8 bytes x this x
#: I x J (about 60 MB for a 512 x 512 CT), whatever the number of slices.
PLANES_PER_CHUNK = 10


@dataclass(frozen=True, eq=False)
class ResampledDose:
    """A dose on a target grid.

    Attributes
    ----------
    dose_gy : (I, J, K) ndarray of float64
        NaN where ``outside`` is True.
    outside : (I, J, K) ndarray of bool
        Target voxels whose centre lies outside the dose grid.
    """

    dose_gy: NDArray[np.float64]
    outside: NDArray[np.bool_]


def sample_dose(
    dose_gy: NDArray[np.floating[Any]],
    points_ras_mm: NDArray[np.float64],
    *,
    affine_ras: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Trilinear dose at world points; NaN at points outside the grid (or next to NaN voxels).

    Parameters
    ----------
    dose_gy : (I, J, K) ndarray of float
    points_ras_mm : (n, 3) ndarray of float
    affine_ras : (4, 4) ndarray of float
        The dose grid's voxel index to RAS mm.

    Returns
    -------
    (n,) ndarray of float64
    """
    dose = np.asarray(dose_gy, dtype=np.float64)
    points = np.asarray(points_ras_mm, dtype=np.float64).reshape(-1, 3)
    to_ijk = np.linalg.inv(np.asarray(affine_ras, dtype=np.float64))
    values, _ = _interpolate(dose, points @ to_ijk[:3, :3].T + to_ijk[:3, 3])
    return values


def _inside(ijk: NDArray[np.float64], shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """(n,) bool: continuous indices within the grid's first and last centres."""
    upper = np.array(shape, dtype=np.float64) - 1
    return np.all((ijk >= -EDGE_TOL_VOX) & (ijk <= upper + EDGE_TOL_VOX), axis=1)


def resample_dose(
    dose_gy: NDArray[np.floating[Any]],
    *,
    affine_ras: NDArray[np.float64],
    target_shape: tuple[int, int, int],
    target_affine_ras: NDArray[np.float64],
) -> ResampledDose:
    """The dose at every voxel centre of a target grid (see the module notes).

    Parameters
    ----------
    dose_gy : (I, J, K) ndarray of float
        The dose on its own grid.
    affine_ras : (4, 4) ndarray of float
        The dose grid's voxel index to RAS mm.
    target_shape : tuple of 3 int
    target_affine_ras : (4, 4) ndarray of float
        The target grid's voxel index to RAS mm.

    Returns
    -------
    ResampledDose

    Raises
    ------
    DoseError
        A dose that is not 3-D or a singular affine.

    Examples
    --------
    >>> import numpy as np
    >>> out = resample_dose(np.ones((3, 3, 3)), affine_ras=np.eye(4), target_shape=(5, 1, 1),
    ...                     target_affine_ras=np.eye(4))
    >>> out.outside.ravel().tolist()
    [False, False, False, True, True]
    """
    dose = np.asarray(dose_gy, dtype=np.float64)
    if dose.ndim != 3 or len(target_shape) != 3:
        raise DoseError(
            f"resample: need a 3-D dose and a 3-D target, got {dose.shape} and "
            f"{tuple(target_shape)}"
        )
    try:
        to_dose = np.linalg.inv(np.asarray(affine_ras, dtype=np.float64)) @ np.asarray(
            target_affine_ras, dtype=np.float64
        )
    except np.linalg.LinAlgError as exc:
        raise DoseError(
            "resample: the dose affine is singular; pass the dose grid's voxel-to-RAS affine"
        ) from exc
    out = np.full(tuple(target_shape), np.nan)
    outside = np.ones(tuple(target_shape), dtype=bool)
    box = _overlap_box(dose.shape, to_dose, tuple(target_shape))
    if box is None:
        return ResampledDose(dose_gy=out, outside=outside)
    (i0, i1), (j0, j1), (k0, k1) = box
    ii = np.arange(i0, i1, dtype=np.float64)[:, None, None]
    jj = np.arange(j0, j1, dtype=np.float64)[None, :, None]
    for start in range(k0, k1, PLANES_PER_CHUNK):
        stop = min(start + PLANES_PER_CHUNK, k1)
        kk = np.arange(start, stop, dtype=np.float64)[None, None, :]
        uvw = np.stack(
            [
                (
                    to_dose[a, 0] * ii + to_dose[a, 1] * jj + to_dose[a, 2] * kk + to_dose[a, 3]
                ).ravel()
                for a in range(3)
            ],
            axis=1,
        )
        values, inside = _interpolate(dose, uvw)
        shape = (i1 - i0, j1 - j0, stop - start)
        out[i0:i1, j0:j1, start:stop] = values.reshape(shape)
        outside[i0:i1, j0:j1, start:stop] = ~inside.reshape(shape)
    return ResampledDose(dose_gy=out, outside=outside)


def _overlap_box(
    dose_shape: tuple[int, ...], to_dose: NDArray[np.float64], target_shape: tuple[int, ...]
) -> list[tuple[int, int]] | None:
    """Target index ranges that can lie inside the dose grid (a superset), or None.

    The dose grid's box of centres is convex, so its image in target index space lies within
    the bounds of its 8 mapped corners; one voxel of slack covers rounding.
    """
    corners = np.array(
        [
            [a, b, c]
            for a in (0, dose_shape[0] - 1)
            for b in (0, dose_shape[1] - 1)
            for c in (0, dose_shape[2] - 1)
        ],
        dtype=np.float64,
    )
    to_target = np.linalg.inv(to_dose)
    mapped = corners @ to_target[:3, :3].T + to_target[:3, 3]
    lo = np.maximum(np.floor(mapped.min(axis=0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(mapped.max(axis=0)).astype(int) + 2, np.array(target_shape))
    if np.any(hi <= lo):
        return None
    return [(int(a), int(b)) for a, b in zip(lo, hi)]


def _interpolate(
    dose: NDArray[np.float64], uvw: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Trilinear values at continuous dose indices (NaN outside) and the inside mask."""
    from scipy.ndimage import map_coordinates

    inside = _inside(uvw, dose.shape)
    values = np.full(len(uvw), np.nan)
    if inside.any():
        clipped = np.clip(uvw[inside], 0, np.array(dose.shape) - 1)
        values[inside] = map_coordinates(dose, clipped.T, order=1, mode="nearest")
    return values, inside
