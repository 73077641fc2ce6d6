"""A voxel array together with the affine that places it in world space.

World space is RAS+ in millimetres (nibabel's convention): ``ras = A @ [i, j, k, 1]``. The
columns of the 3x3 part of ``A`` are the world steps of one voxel along i, j and k, so their
lengths are the voxel size and their directions the array axes. Anything that maps points
between array indices and the world goes through this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import GridMismatchError, MaskError

#: Two grids are the same grid when their voxel corners agree within this distance. Affines
#: written by different tools differ by float rounding (~1e-4 mm); a real registration or
#: resampling difference is at least a sizeable fraction of a voxel.
SAME_GRID_TOLERANCE_MM = 1e-3

#: Largest |cos| between two affine columns that still counts as orthogonal. Scanner affines
#: stored as float32 are orthogonal to ~1e-6; a sheared grid is far above this.
ORTHOGONALITY_TOLERANCE = 1e-4


@dataclass(frozen=True, eq=False)
class Volume:
    """An array on a voxel grid with its 4x4 voxel-to-RAS affine.

    Parameters
    ----------
    array : (I, J, K) ndarray
        Voxel values (CT numbers, or a boolean mask).
    affine : (4, 4) ndarray of float
        Maps voxel indices ``(i, j, k, 1)`` to RAS+ world coordinates in mm.
    """

    array: NDArray
    affine: NDArray[np.float64]

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
        if np.asarray(self.array).ndim != 3:
            raise MaskError(
                f"expected a 3-D volume, got {np.asarray(self.array).ndim}-D data of shape "
                f"{np.shape(self.array)}; pass a single 3-D image"
            )
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(I, J, K)``."""
        i, j, k = self.array.shape
        return int(i), int(j), int(k)

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

    def ijk_to_ras(self, ijk: ArrayLike) -> NDArray[np.float64]:
        """Map voxel indices to RAS+ world points.

        Parameters
        ----------
        ijk : (n, 3) array_like of float
            Voxel indices (fractional allowed; integer values are voxel centres).

        Returns
        -------
        (n, 3) ndarray of float
            World points in mm, RAS+.
        """
        pts = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return pts @ self.affine[:3, :3].T + self.affine[:3, 3]

    def ras_to_ijk(self, ras_mm: ArrayLike) -> NDArray[np.float64]:
        """Map RAS+ world points (mm) to fractional voxel indices, shape (n, 3)."""
        pts = np.atleast_2d(np.asarray(ras_mm, dtype=np.float64))
        return np.linalg.solve(self.affine[:3, :3], (pts - self.affine[:3, 3]).T).T

    def crop(self, box: tuple[slice, slice, slice]) -> Volume:
        """The sub-volume ``array[box]`` with the affine that keeps it in place in the world.

        ``box`` holds three slices with non-negative starts and unit steps.
        """
        lo = np.array([s.start or 0 for s in box], dtype=float)
        affine = self.affine.copy()
        affine[:3, 3] = self.affine[:3, :3] @ lo + self.affine[:3, 3]
        return Volume(self.array[box], affine)

    def with_array(self, array: NDArray) -> Volume:
        """A volume on the same grid holding ``array``."""
        return Volume(array, self.affine)

    def corner_distance_mm(self, other: Volume) -> float:
        """Largest distance in mm between corresponding corner voxels of two grids."""
        corners = np.array(list(product(*[(0, n - 1) for n in self.shape])), dtype=float)
        return float(np.linalg.norm(self.ijk_to_ras(corners) - other.ijk_to_ras(corners),
                                    axis=1).max())

    def check_same_grid(self, other: Volume, *, name: str, other_name: str) -> None:
        """Raise :class:`GridMismatchError` unless ``other`` lies on this volume's grid.

        Grids match when shapes are equal and every corner voxel maps to the same world point
        within :data:`SAME_GRID_TOLERANCE_MM`.
        """
        if self.shape != other.shape:
            raise GridMismatchError(
                f"{other_name} has shape {other.shape} but {name} has shape {self.shape}; "
                f"resample {other_name} onto the grid of {name}"
            )
        diff = self.corner_distance_mm(other)
        if diff > SAME_GRID_TOLERANCE_MM:
            raise GridMismatchError(
                f"{other_name} is on a different grid than {name} (voxel positions differ by "
                f"up to {diff:.3g} mm); resample it onto the grid of {name}"
            )

    def check_not_sheared(self, *, name: str) -> None:
        """Raise :class:`GridMismatchError` if the voxel axes are not orthogonal."""
        if np.any(self.voxel_size_mm <= 0) or not np.all(np.isfinite(self.affine)):
            raise GridMismatchError(
                f"{name} has a degenerate affine (voxel size "
                f"{', '.join(f'{v:g}' for v in self.voxel_size_mm)} mm); fix the file's "
                "header so every voxel axis has a non-zero length")
        d = self.directions
        cos = np.abs(d.T @ d - np.eye(3)).max()
        if cos > ORTHOGONALITY_TOLERANCE:
            raise GridMismatchError(
                f"{name} has a sheared or degenerate affine (axis |cos| up to {cos:.2g}); "
                "resample it onto an orthogonal grid"
            )

    def slice_normal(self) -> NDArray[np.float64]:
        """(3,) float: unit world normal of the k = const slice planes, pointing along +k."""
        return self.directions[:, 2]
