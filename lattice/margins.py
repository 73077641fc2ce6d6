"""Distances inside masks and erosion by a margin in millimetres.

All distances are exact Euclidean distances between voxel centres in physical units
(``scipy.ndimage.distance_transform_edt`` with ``sampling=voxel_size_mm``). The depth of a
voxel is its distance to the nearest voxel centre outside the mask; voxels beyond the array
border count as outside (the array is padded with background first, since the EDT alone
would treat a mask touching the border as if it went on). Work is done on the mask's
bounding box so the cost follows the tumour, not the CT.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from .errors import MaskError, ParameterError

BoxSlices = tuple[slice, slice, slice]


def bounding_box(mask: NDArray[np.bool_], *, pad_vox: ArrayLike = 0) -> BoxSlices:
    """Slices of the smallest box holding every true voxel, grown by ``pad_vox`` per axis.

    The box is clipped to the array. Raises :class:`MaskError` for an empty mask.
    """
    pad = np.broadcast_to(np.asarray(pad_vox, dtype=int), (3,))
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=other))
        if hit.size == 0:
            raise MaskError("the mask is empty; it needs at least one voxel")
        lo = max(int(hit[0]) - int(pad[axis]), 0)
        hi = min(int(hit[-1]) + 1 + int(pad[axis]), mask.shape[axis])
        out.append(slice(lo, hi))
    return out[0], out[1], out[2]


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
    padded = np.pad(mask[box], 1, mode="constant", constant_values=False)
    depth = ndimage.distance_transform_edt(padded, sampling=np.asarray(voxel_size_mm, float))
    return depth[1:-1, 1:-1, 1:-1].astype(np.float32), box


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
