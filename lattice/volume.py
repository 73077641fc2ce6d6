"""A voxel array together with the grid that places it in world space.

World space is RAS+ in millimetres (nibabel's convention): ``ras = A @ [i, j, k, 1]``. The
geometry (index <-> world maps, voxel size, same-grid and shear checks) is the
:class:`~lattice.grid.Grid`'s; a :class:`Volume` is an array on one, and answers the same
questions through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import MaskError
from .grid import Grid


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

    @cached_property
    def grid(self) -> Grid:
        """The grid the array lies on: its shape and affine."""
        return Grid(self.shape, self.affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(I, J, K)``."""
        i, j, k = self.array.shape
        return int(i), int(j), int(k)

    @property
    def voxel_size_mm(self) -> NDArray[np.float64]:
        """(3,) float: edge lengths of one voxel along i, j, k in mm."""
        return self.grid.voxel_size_mm

    @property
    def voxel_volume_cc(self) -> float:
        """Volume of one voxel in cm^3."""
        return self.grid.voxel_volume_cc

    @property
    def directions(self) -> NDArray[np.float64]:
        """(3, 3) float: unit world vectors of the i, j, k axes, as columns."""
        return self.grid.directions

    @property
    def lps_affine(self) -> NDArray[np.float64]:
        """(4, 4) float: voxel index -> LPS+ mm (DICOM's patient frame)."""
        return self.grid.lps_affine

    def ijk_to_ras(self, ijk: ArrayLike) -> NDArray[np.float64]:
        """Map voxel indices, ``(n, 3)`` or ``(3,)``, to RAS+ world points in mm, shape
        (n, 3) (:meth:`Grid.ijk_to_ras <lattice.grid.Grid.ijk_to_ras>`)."""
        return self.grid.ijk_to_ras(ijk)

    def ras_to_ijk(self, ras_mm: ArrayLike) -> NDArray[np.float64]:
        """Map RAS+ world points (mm) to fractional voxel indices, shape (n, 3)."""
        return self.grid.ras_to_ijk(ras_mm)

    def crop(self, box: tuple[slice, slice, slice]) -> Volume:
        """The sub-volume ``array[box]`` with the affine that keeps it in place in the world.

        ``box`` holds three slices with non-negative starts and unit steps.
        """
        return Volume(self.array[box], self.grid.crop(box).affine)

    def with_array(self, array: NDArray) -> Volume:
        """A volume on the same grid holding ``array``."""
        return Volume(array, self.affine)

    def corner_distance_mm(self, other: Grid | Volume) -> float:
        """Largest distance in mm between corresponding corner voxels of two grids."""
        return self.grid.corner_distance_mm(other)

    def check_same_grid(self, other: Grid | Volume, *, name: str, other_name: str) -> None:
        """Raise :class:`~lattice.errors.GridMismatchError` unless ``other`` lies on this
        volume's grid (:meth:`Grid.check_same_grid <lattice.grid.Grid.check_same_grid>`)."""
        self.grid.check_same_grid(other, name=name, other_name=other_name)

    def check_not_sheared(self, *, name: str) -> None:
        """Raise :class:`~lattice.errors.GridMismatchError` if the voxel axes are not
        orthogonal."""
        self.grid.check_not_sheared(name=name)

    def slice_normal(self) -> NDArray[np.float64]:
        """(3,) float: unit world normal of the k = const slice planes, pointing along +k."""
        return self.grid.slice_normal()
