"""Distances inside masks and erosion by a margin in millimetres.

All distances are exact Euclidean distances between voxel centres in physical units, from the
anisotropic EDT of the ``edt`` package (Seung lab; the same result as
``scipy.ndimage.distance_transform_edt(..., sampling=voxel_size_mm)`` to float32 precision,
about six times faster). The depth of a voxel is its distance to the nearest voxel centre
outside the mask; voxels beyond the array border count as outside (``black_border``: an EDT
alone would treat a mask touching the border as if it went on). Work is done on the mask's
bounding box so the cost follows the tumour, not the CT.
"""

from __future__ import annotations

import edt
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import MaskError, ParameterError

BoxSlices = tuple[slice, slice, slice]


def bounding_box(mask: NDArray[np.bool_], *, pad_vox: ArrayLike = 0) -> BoxSlices:
    """Slices of the smallest box holding every true voxel, grown by ``pad_vox`` per axis.

    The box is clipped to the array. Raises :class:`MaskError` for an empty mask. One pass
    over the array: the projection along the slowest-varying axis gives the other two
    ranges, the third comes from the (small) box they span.
    """
    pad = np.broadcast_to(np.asarray(pad_vox, dtype=int), (3,))
    # Reduce along the axis that is contiguous in memory last (k for C order, i for Fortran).
    axis = 0 if mask.flags.f_contiguous and not mask.flags.c_contiguous else 2
    others = [a for a in range(3) if a != axis]
    flat = np.any(mask, axis=axis)
    ranges: dict[int, tuple[int, int]] = {}
    for pos, a in enumerate(others):
        hit = np.flatnonzero(np.any(flat, axis=1 - pos))
        if hit.size == 0:
            raise MaskError("the mask is empty; it needs at least one voxel")
        ranges[a] = (int(hit[0]), int(hit[-1]) + 1)
    sub = mask[tuple(slice(*ranges[a]) if a in ranges else slice(None) for a in range(3))]
    hit = np.flatnonzero(np.any(sub, axis=tuple(others)))
    ranges[axis] = (int(hit[0]), int(hit[-1]) + 1)
    return tuple(  # type: ignore[return-value]
        slice(max(ranges[a][0] - int(pad[a]), 0), min(ranges[a][1] + int(pad[a]), mask.shape[a]))
        for a in range(3)
    )


#: Iso-level of marching cubes on a 0/1 mask: the surface passes halfway between the centres
#: of an inside and an outside voxel.
MASK_SURFACE_LEVEL = 0.5


def mask_surface_ijk(
    mask: NDArray, *, block_vox: ArrayLike = 1, box: BoxSlices | None = None
) -> tuple[NDArray[np.float64], NDArray[np.int32]]:
    """The closed surface of a mask, as a triangle mesh in voxel indices.

    Marching cubes (scikit-image, Lewiner) at :data:`MASK_SURFACE_LEVEL` on the mask's
    bounding box padded with one background voxel on every side, so the surface is closed
    even where the mask touches the array border. No smoothing: on a 0/1 mask every point
    lies halfway between an inside and an outside voxel centre. With ``block_vox`` above 1
    the mask is first averaged over blocks of that many voxels (a coarser surface, within
    about half a block of the voxel one), and the points are placed on the mask's grid
    through the block centres.

    Parameters
    ----------
    mask : (I, J, K) ndarray
        Bool, or any type with non-zero values inside.
    block_vox : int or (3,) array_like of int
        Voxels per block along i, j, k (1: the voxel surface).
    box : tuple of 3 slices, optional
        The mask's bounding box (:func:`bounding_box`), when the caller has it already.

    Returns
    -------
    verts_ijk : (n, 3) ndarray of float
        Points as fractional indices of ``mask``; map them with the grid's affine.
    faces : (m, 3) ndarray of int
        Indices into ``verts_ijk``; counter-clockwise seen from outside in index space (a
        mirroring affine turns them inward).

    Raises
    ------
    MaskError
        An empty mask.
    """
    from skimage.measure import marching_cubes

    mask = np.asarray(mask)
    if box is None:
        box = bounding_box(mask if mask.dtype == np.bool_ else mask != 0)
    sub = mask[box].astype(bool, copy=False)
    factor = np.broadcast_to(np.asarray(block_vox, dtype=int), (3,))
    if np.any(factor > 1):
        padded = np.pad(sub, [(0, -n % f) for n, f in zip(sub.shape, factor)])
        nb = [n // f for n, f in zip(padded.shape, factor)]
        values = padded.reshape(nb[0], factor[0], nb[1], factor[1], nb[2], factor[2]).mean(
            axis=(1, 3, 5), dtype=np.float32
        )
    else:
        values = sub.astype(np.float32)
    verts, faces, _, _ = marching_cubes(np.pad(values, 1), level=MASK_SURFACE_LEVEL)
    lo = np.array([s.start for s in box])
    # Padded block index -> block centre on the mask's grid (-1 undoes the padding).
    verts_ijk = (verts - 1.0) * factor + (factor - 1) / 2.0 + lo
    return verts_ijk, faces


def decimated_surface_ijk(
    mask: NDArray, *, voxel_size_mm: ArrayLike, max_faces: int
) -> tuple[NDArray[np.float64], NDArray[np.int32]]:
    """The surface of a mask (:func:`mask_surface_ijk`) with about ``max_faces`` triangles.

    A large mask is averaged over blocks of voxels about equally long in mm (so thin slices
    are merged less than wide pixels are); the surface is the 0.5 level of the block
    averages and stays within about half a block of the voxel surface. Marching cubes makes
    about two triangles per block face on the surface, which sets the block size.

    Parameters
    ----------
    mask : (I, J, K) ndarray
        Bool, or any type with non-zero values inside; not empty.
    voxel_size_mm : (3,) array_like of float
    max_faces : int

    Returns
    -------
    verts_ijk : (n, 3) ndarray of float
    faces : (m, 3) ndarray of int
        As :func:`mask_surface_ijk`.
    """
    array = np.asarray(mask) != 0
    box = bounding_box(array)
    sub = array[box]
    voxel = np.asarray(voxel_size_mm, dtype=float)
    face_mm2 = np.prod(voxel) / voxel
    area = sum(
        int(np.count_nonzero(np.diff(np.pad(sub, 1), axis=a))) * face_mm2[a] for a in range(3)
    )
    block_mm = np.sqrt(2.0 * area / max_faces)
    factor = np.clip(np.round(block_mm / voxel), 1, None).astype(int)
    return mask_surface_ijk(array, block_vox=factor, box=box)


#: Largest error of the float32 EDT against an exact float64 distance, mm (measured 5e-6 mm
#: on 100 mm distances; float32 has 24 bits of mantissa). Decisions near a rule boundary use
#: this as a guard.
EDT_TOLERANCE_MM = 1e-4


def distance_to_background_mm(
    mask: NDArray[np.bool_], *, voxel_size_mm: ArrayLike, border_is_background: bool
) -> NDArray[np.float32]:
    """Distance from each voxel centre to the nearest voxel centre where ``mask`` is False.

    Parameters
    ----------
    mask : (I, J, K) ndarray of bool
    voxel_size_mm : (3,) array_like of float
    border_is_background : bool
        Count the voxels just beyond the array as background.

    Returns
    -------
    (I, J, K) ndarray of float32
        0 on background voxels. Where there is no background at all (and the border does not
        count) every value is inf.
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    if not border_is_background and mask.all():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    vox = tuple(float(v) for v in np.asarray(voxel_size_mm, dtype=float))
    return np.asarray(
        edt.edt(mask, anisotropy=vox, black_border=border_is_background, parallel=1),
        dtype=np.float32,
    )


def depth_in_box_mm(
    mask: NDArray[np.bool_], *, voxel_size_mm: ArrayLike, pad_vox: int = 0
) -> tuple[NDArray[np.float32], BoxSlices]:
    """Depth of every voxel of the mask's bounding box below the mask surface.

    Parameters
    ----------
    mask : (I, J, K) ndarray of bool
    voxel_size_mm : (3,) array_like of float
    pad_vox : int
        Grow the box by this many voxels per side (clipped to the array).

    Returns
    -------
    depth : (i, j, k) ndarray of float32
        Distance in mm from each voxel centre of the box to the nearest voxel centre outside
        the mask (0 outside the mask). Voxels beyond the array border count as outside.
    box : tuple of 3 slices
        Where the box sits in ``mask``.
    """
    box = bounding_box(mask, pad_vox=pad_vox)
    # The box edge is either the array border (outside by definition) or a background layer
    # of the grown box, so counting the box border as background is exact.
    depth = distance_to_background_mm(
        mask[box], voxel_size_mm=voxel_size_mm, border_is_background=True
    )
    return depth, box


def depth_mm(mask: NDArray[np.bool_], *, voxel_size_mm: ArrayLike) -> NDArray[np.float32]:
    """Depth of every voxel below the mask surface, full array (0 outside the mask).

    See :func:`depth_in_box_mm`, which avoids the full-size float array.
    """
    out = np.zeros(mask.shape, dtype=np.float32)
    if mask.any():
        depth, box = depth_in_box_mm(mask, voxel_size_mm=voxel_size_mm)
        out[box] = depth
    return out


def erode_mm(
    mask: NDArray[np.bool_], margin_mm: float, *, voxel_size_mm: ArrayLike
) -> NDArray[np.bool_]:
    """Erode a mask by a Euclidean margin in mm.

    A voxel is kept when every voxel centre within ``margin_mm`` of it is in the mask, i.e.
    when its depth is greater than ``margin_mm`` (erosion by a closed ball).

    Parameters
    ----------
    mask : (I, J, K) ndarray of bool
    margin_mm : float
        Erosion distance in mm (>= 0).
    voxel_size_mm : (3,) array_like of float

    Returns
    -------
    (I, J, K) ndarray of bool
        The eroded mask; may be empty.

    Raises
    ------
    ParameterError
        Negative or non-finite margin.
    """
    if not np.isfinite(margin_mm) or margin_mm < 0:
        raise ParameterError(f"margin must be a non-negative number of mm, got {margin_mm}")
    out = np.zeros(mask.shape, dtype=bool)
    if mask.any():
        depth, box = depth_in_box_mm(mask, voxel_size_mm=voxel_size_mm)
        out[box] = depth > margin_mm
    return out
