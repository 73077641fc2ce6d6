"""Shared fixtures: analytic phantoms on synthetic grids, NIfTI writing, the shared data.

Every factory is a session-scoped fixture that returns a plain function (no state), so a
test, or a module-scoped fixture, asks for the factory and calls it as often as it needs::

    def test_something(make_volume, ellipsoid_mask):
        vol = make_volume((30, 28, 16), (0.9, 1.2, 2.5), "oblique", center_ras_mm=(5, 0, 0))
        gtv = ellipsoid_mask(vol, (5, 0, 0), (12.0, 9.0, 15.0))  # in the middle of the grid

Grids (``make_affine`` / ``make_volume``)
    ``affine_kind`` is one of :data:`AFFINE_KINDS`:

    ``"identity-like"``  diag(vx, vy, vz) + offset (array axes = R, A, S)
    ``"lps"``            diag(-vx, -vy, vz) + offset (DICOM-style storage: i runs to the
                         patient's left (-x in RAS), j to posterior (-y), k to superior)
    ``"oblique"``        R @ diag(vx, vy, vz) + offset, R a rotation of
                         :data:`OBLIQUE_ANGLE_DEG` about the oblique axis
                         :data:`OBLIQUE_AXIS`; orthogonal columns (no shear)

    The offset is chosen so that the centre of the array, index ``(shape - 1) / 2``, lies at
    ``center_ras_mm`` (default :data:`DEFAULT_CENTER_RAS_MM`, deliberately not the origin so
    that a forgotten offset shows up). The same physical point is therefore the grid centre
    whatever the kind, and a shape defined in world coordinates lands in the middle of every
    grid.

Shapes (``ellipsoid_mask``)
    Computed from the world coordinates of the voxel centres (the affine, not the indices),
    so an ellipsoid is the same physical object on every grid; only its voxelisation differs.

Files (``write_nifti``)
    Writes with nibabel directly (not with ``lattice.io.nifti``, so the reader is tested against an
    independent writer), sform = qform = affine, codes 1.

None of these helpers calls lattice code except :class:`lattice.volume.Volume`, the container
``make_volume`` returns.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot; tests never open a window

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lattice.volume import Volume  # noqa: E402

#: The grid kinds ``make_affine`` / ``make_volume`` accept.
AFFINE_KINDS = ("identity-like", "lps", "oblique")
#: World point (RAS+ mm) of the array centre unless a test asks for another one.
DEFAULT_CENTER_RAS_MM = (-12.0, 25.0, 40.0)
#: The oblique grid's rotation: ~20 degrees about an axis that is not a coordinate axis.
OBLIQUE_AXIS = np.array([1.0, 2.0, 3.0]) / np.sqrt(14.0)
OBLIQUE_ANGLE_DEG = 20.0

REPO_ROOT = Path(__file__).resolve().parents[1]


def rotation_about_axis(axis, angle_deg: float) -> np.ndarray:
    """(3, 3) rotation matrix (Rodrigues) about a unit ``axis`` by ``angle_deg``."""
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    t = np.deg2rad(angle_deg)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(t) * k + (1.0 - np.cos(t)) * k @ k


def affine_for(shape, voxel_size_mm, affine_kind: str, *, center_ras_mm=None) -> np.ndarray:
    """(4, 4) voxel-to-RAS affine of the given kind (see the module docstring)."""
    vox = np.broadcast_to(np.asarray(voxel_size_mm, dtype=float), (3,))
    if affine_kind == "identity-like":
        lin = np.diag(vox)
    elif affine_kind == "lps":
        lin = np.diag(vox * np.array([-1.0, -1.0, 1.0]))
    elif affine_kind == "oblique":
        lin = rotation_about_axis(OBLIQUE_AXIS, OBLIQUE_ANGLE_DEG) @ np.diag(vox)
    else:
        raise ValueError(f"unknown affine_kind {affine_kind!r}; choose one of {AFFINE_KINDS}")
    centre = np.asarray(
        DEFAULT_CENTER_RAS_MM if center_ras_mm is None else center_ras_mm, dtype=float
    )
    affine = np.eye(4)
    affine[:3, :3] = lin
    affine[:3, 3] = centre - lin @ ((np.asarray(shape, dtype=float) - 1.0) / 2.0)
    return affine


def voxel_centers_ras_mm(shape, affine) -> np.ndarray:
    """(I, J, K, 3) world coordinates (RAS+ mm) of every voxel centre, from the affine only."""
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), axis=-1)
    affine = np.asarray(affine, dtype=float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


@pytest.fixture(scope="session")
def make_affine():
    """Factory ``make_affine(shape, voxel_size_mm, affine_kind, *, center_ras_mm=None)``.

    Returns the (4, 4) affine; see the module docstring for the kinds.
    """
    return affine_for


@pytest.fixture(scope="session")
def make_volume():
    """Factory ``make_volume(shape, voxel_size_mm, affine_kind, *, center_ras_mm=None,
    array=None, dtype=np.int16)`` -> :class:`lattice.volume.Volume`.

    The array is ``array`` if given (its shape must be ``shape``), else zeros of ``dtype``
    (a blank CT-like image). The affine is :func:`affine_for` of the same arguments.
    """

    def _make(
        shape,
        voxel_size_mm,
        affine_kind="identity-like",
        *,
        center_ras_mm=None,
        array=None,
        dtype=np.int16,
    ):
        shape = tuple(int(n) for n in shape)
        if array is None:
            array = np.zeros(shape, dtype=dtype)
        elif np.shape(array) != shape:
            raise ValueError(f"array shape {np.shape(array)} != shape {shape}")
        return Volume(
            np.asarray(array),
            affine_for(shape, voxel_size_mm, affine_kind, center_ras_mm=center_ras_mm),
        )

    return _make


@pytest.fixture(scope="session")
def ellipsoid_mask():
    """Factory ``ellipsoid_mask(volume, center_ras_mm, radii_mm, *, rotation=None)``.

    Returns an (I, J, K) bool array on ``volume``'s grid (``volume`` may be a Volume or any
    object with ``shape`` and ``affine``; a ``(shape, affine)`` tuple also works): True where
    the voxel centre's world point p satisfies ``sum(((R.T (p - c)) / radii)**2) <= 1``.
    ``radii_mm`` is a number (sphere) or three semi-axes along the world x, y, z axes, or
    along the columns of ``rotation`` when given.
    """

    def _mask(volume, center_ras_mm, radii_mm, *, rotation=None):
        if isinstance(volume, tuple):
            shape, affine = volume
        else:
            shape, affine = volume.shape, volume.affine
        p = voxel_centers_ras_mm(shape, affine) - np.asarray(center_ras_mm, dtype=float)
        if rotation is not None:
            p = p @ np.asarray(rotation, dtype=float)  # world -> ellipsoid frame: R.T @ p
        radii = np.broadcast_to(np.asarray(radii_mm, dtype=float), (3,))
        return np.sum((p / radii) ** 2, axis=-1) <= 1.0

    return _mask


@pytest.fixture(scope="session")
def write_nifti():
    """Factory ``write_nifti(folder, name, volume_or_array, affine=None, dtype=None)`` -> Path.

    Writes ``folder / name`` with nibabel: sform = qform = affine, codes 1, units mm.
    ``affine`` defaults to the Volume's affine (required for a bare array). ``dtype`` is the
    on-disk type; by default bool becomes uint8 and int64 becomes int32 (nibabel refuses
    bool and warns about int64), anything else is kept.
    """

    def _write(folder, name, volume_or_array, affine=None, dtype=None):
        if isinstance(volume_or_array, Volume):
            data = np.asarray(volume_or_array.array)
            if affine is None:
                affine = volume_or_array.affine
        else:
            data = np.asarray(volume_or_array)
        if affine is None:
            raise ValueError("write_nifti needs an affine for a bare array")
        affine = np.asarray(affine, dtype=float)
        if dtype is None:
            dtype = {np.dtype(bool): np.uint8, np.dtype(np.int64): np.int32}.get(
                data.dtype, data.dtype
            )
        data = data.astype(dtype)
        img = nib.Nifti1Image(data, affine)
        img.header.set_data_dtype(dtype)
        img.set_sform(affine, code=1)
        img.set_qform(affine, code=1)
        img.header.set_xyzt_units("mm")
        path = Path(folder) / name
        nib.save(img, path)
        return path

    return _write


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data`` beside the checkout; skips the test when it is absent."""
    path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("../shared/data not present")
    return path


@pytest.fixture
def is_root() -> bool:
    """Whether the tests run as root (permission checks cannot fail then)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0
