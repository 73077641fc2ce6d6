"""A voxel grid: its shape and the affine that places it in world space, without voxel data.

World space is RAS+ in millimetres (nibabel's convention): ``ras = A @ [i, j, k, 1]``. The
columns of the 3x3 part of ``A`` are the world steps of one voxel along i, j and k, so their
lengths are the voxel size and their directions the array axes. Points are mapped with
:func:`nibabel.affines.apply_affine`.

DICOM and 3D Slicer files use LPS+ (x to the patient's left, y posterior): the same points
with x and y negated. That change of frame is a rotation by 180 degrees about z, its own
inverse; :func:`ras_to_lps`, :func:`lps_to_ras` and :data:`LPS_TO_RAS` are the only places
that spell it out.

:class:`Grid` is what a header gives (a NIfTI file read without its voxels, a DICOM series
read without pixels, the ``grid`` of a ``plan.json``); a :class:`~lattice.volume.Volume`
holds an array on one (``Volume.grid``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import GridMismatchError

#: Two grids are the same grid when their voxel corners agree within this distance. Affines
#: written by different tools differ by float rounding (~1e-4 mm); a real registration or
#: resampling difference is at least a sizeable fraction of a voxel.
SAME_GRID_TOLERANCE_MM = 1e-3

#: Largest |cos| between two affine columns that still counts as orthogonal. Scanner affines
#: stored as float32 are orthogonal to ~1e-6; a sheared grid is far above this.
ORTHOGONALITY_TOLERANCE = 1e-4

#: (4, 4) float: LPS mm -> RAS mm on homogeneous points, and RAS -> LPS too (its own inverse).
#: ``LPS_TO_RAS @ affine`` turns a voxel -> RAS affine into a voxel -> LPS one.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

_FLIP_XY = np.array([-1.0, -1.0, 1.0])


def ras_to_lps(points_ras_mm: ArrayLike) -> NDArray[np.float64]:
    """World points from RAS+ to LPS+ (x and y negated), any shape ``(..., 3)``.

    Examples
    --------
    >>> ras_to_lps([10.0, -20.0, 30.0]).tolist()
    [-10.0, 20.0, 30.0]
    """
    return np.asarray(points_ras_mm, dtype=np.float64) * _FLIP_XY


def lps_to_ras(points_lps_mm: ArrayLike) -> NDArray[np.float64]:
    """World points from LPS+ to RAS+, any shape ``(..., 3)`` (the same flip as
    :func:`ras_to_lps`)."""
    return np.asarray(points_lps_mm, dtype=np.float64) * _FLIP_XY


def _apply_affine(affine: NDArray, points: ArrayLike) -> NDArray[np.float64]:
    """:func:`nibabel.affines.apply_affine`, imported when first used: nibabel takes ~0.35 s
    to import, and ``lattice --help`` (which imports this module) maps no point."""
    from nibabel.affines import apply_affine

    return apply_affine(affine, points)


class OnGrid(Protocol):
    """Anything with a shape and a voxel -> RAS affine: a :class:`Grid` or a Volume."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def affine(self) -> NDArray[np.float64]: ...


@dataclass(frozen=True, eq=False)
class Grid:
    """A voxel grid: array shape and 4x4 voxel-to-RAS affine.

    Parameters
    ----------
    shape : (3,) tuple of int
        Voxels along i, j, k.
    affine : (4, 4) array_like of float
        Maps voxel indices ``(i, j, k, 1)`` to RAS+ world coordinates in mm.

    Raises
    ------
    ValueError
        ``affine`` is not 4x4, or ``shape`` is not three non-negative sizes.

    Examples
    --------
    >>> grid = Grid((10, 10, 5), np.diag([0.5, 0.5, 2.0, 1.0]))
    >>> grid.ijk_to_ras([[2, 4, 1]]).tolist()
    [[1.0, 2.0, 2.0]]
    """

    shape: tuple[int, int, int]
    affine: NDArray[np.float64]

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 0:
            raise ValueError(f"a grid has three non-negative sizes, got shape {self.shape}")
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "shape", shape)

    @property
    def voxel_size_mm(self) -> NDArray[np.float64]:
        """(3,) float: edge lengths of one voxel along i, j, k in mm."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def voxel_volume_cc(self) -> float:
        """Volume of one voxel in cm^3."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def directions(self) -> NDArray[np.float64]:
        """(3, 3) float: unit world vectors of the i, j, k axes, as columns."""
        return self.affine[:3, :3] / self.voxel_size_mm

    @property
    def lps_affine(self) -> NDArray[np.float64]:
        """(4, 4) float: voxel index -> LPS+ mm (DICOM's patient frame)."""
        return LPS_TO_RAS @ self.affine

    def slice_normal(self) -> NDArray[np.float64]:
        """(3,) float: unit world normal of the k = const slice planes, pointing along +k."""
        return self.directions[:, 2]

    def ijk_to_ras(self, ijk: ArrayLike) -> NDArray[np.float64]:
        """Map voxel indices to RAS+ world points.

        Parameters
        ----------
        ijk : (n, 3) or (3,) array_like of float
            Voxel indices (fractional allowed; integer values are voxel centres).

        Returns
        -------
        (n, 3) ndarray of float
            World points in mm, RAS+ (one row for a single point).
        """
        return _apply_affine(self.affine, np.atleast_2d(np.asarray(ijk, dtype=np.float64)))

    def ras_to_ijk(self, ras_mm: ArrayLike) -> NDArray[np.float64]:
        """Map RAS+ world points (mm), ``(n, 3)`` or ``(3,)``, to fractional voxel indices,
        shape (n, 3).

        Solved against the affine rather than multiplied by its inverse: a point on a voxel
        centre comes back as a whole index to the last bit more often.
        """
        pts = np.atleast_2d(np.asarray(ras_mm, dtype=np.float64))
        return np.linalg.solve(self.affine[:3, :3], (pts - self.affine[:3, 3]).T).T

    def crop(self, box: tuple[slice, slice, slice]) -> Grid:
        """The grid of ``array[box]``, placed where that sub-array lies in the world.

        ``box`` holds three slices with non-negative starts and unit steps.
        """
        lo = np.array([s.start or 0 for s in box], dtype=float)
        shape = tuple(len(range(*s.indices(n))) for s, n in zip(box, self.shape))
        affine = self.affine.copy()
        affine[:3, 3] = _apply_affine(self.affine, lo)
        return Grid(shape, affine)  # type: ignore[arg-type]

    def corner_distance_mm(self, other: OnGrid) -> float:
        """Largest distance in mm between corresponding corner voxels of two grids."""
        corners = np.array(list(product(*[(0, n - 1) for n in self.shape])), dtype=float)
        return float(
            np.linalg.norm(
                self.ijk_to_ras(corners) - _apply_affine(other.affine, corners), axis=1
            ).max()
        )

    def check_same_grid(
        self, other: OnGrid, *, name: str, other_name: str, fix: str | None = None
    ) -> None:
        """Raise :class:`GridMismatchError` unless ``other`` lies on this grid.

        Grids match when shapes are equal and every corner voxel maps to the same world point
        within :data:`SAME_GRID_TOLERANCE_MM`. The message ends with ``fix`` (default: to
        resample ``other`` onto the grid of ``name``, an image).
        """
        other_shape = tuple(int(n) for n in other.shape)
        if self.shape != other_shape:
            raise GridMismatchError(
                f"{other_name} has shape {other_shape} but {name} has shape {self.shape}; "
                + (fix or f"resample {other_name} onto the grid of {name}")
            )
        diff = self.corner_distance_mm(other)
        if diff > SAME_GRID_TOLERANCE_MM:
            raise GridMismatchError(
                f"{other_name} is on a different grid than {name} (voxel positions differ by "
                f"up to {diff:.3g} mm); " + (fix or f"resample it onto the grid of {name}")
            )

    def check_not_sheared(self, *, name: str) -> None:
        """Raise :class:`GridMismatchError` if the voxel axes are not orthogonal (or a voxel
        axis has no length, or the affine is not finite)."""
        if np.any(self.voxel_size_mm <= 0) or not np.all(np.isfinite(self.affine)):
            raise GridMismatchError(
                f"{name} has a degenerate affine (voxel size "
                f"{', '.join(f'{v:g}' for v in self.voxel_size_mm)} mm); fix the file's "
                "header so every voxel axis has a non-zero length"
            )
        d = self.directions
        cos = np.abs(d.T @ d - np.eye(3)).max()
        if cos > ORTHOGONALITY_TOLERANCE:
            raise GridMismatchError(
                f"{name} has a sheared or degenerate affine (axis |cos| up to {cos:.2g}); "
                "resample it onto an orthogonal grid"
            )
