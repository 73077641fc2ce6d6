"""Vertex spheres as voxel masks on the CT grid."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..grid import Grid
from ..volume import Volume


def sphere_label_map(
    reference: Grid | Volume, centers_ras_mm: NDArray[np.float64], *, diameter_mm: float
) -> Volume:
    """Label map with label i+1 on every voxel whose centre lies within D/2 of centre i.

    Parameters
    ----------
    reference : Grid or Volume
        Grid to draw on (a volume's array is not used).
    centers_ras_mm : (n, 3) ndarray of float
    diameter_mm : float

    Returns
    -------
    Volume
        uint8 labels (uint16 above 255 vertices), 0 = background. Where spheres overlap
        (only if spacing < diameter) the later label wins.
    """
    n = len(centers_ras_mm)
    dtype = np.uint8 if n < 256 else np.uint16
    out = np.zeros(reference.shape, dtype=dtype, order="F")  # NIfTI order: no copy on save
    radius = diameter_mm / 2.0
    vox = reference.voxel_size_mm
    # A world ball of radius r spans at most r / voxel_size voxels along each (orthogonal)
    # array axis, whatever the orientation.
    reach = np.ceil(radius / vox).astype(int) + 1
    shape = np.array(reference.shape)
    for label, centre in enumerate(np.atleast_2d(centers_ras_mm), start=1):
        c = np.rint(reference.ras_to_ijk(centre)[0]).astype(int)
        lo = np.clip(c - reach, 0, shape)
        hi = np.clip(c + reach + 1, 0, shape)
        if np.any(hi <= lo):
            continue
        block_ijk = np.stack(
            np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), axis=-1
        )
        d2 = np.sum((reference.ijk_to_ras(block_ijk.reshape(-1, 3)) - centre) ** 2, axis=1)
        inside = (d2 <= radius**2).reshape(block_ijk.shape[:3])
        view = out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        view[inside] = label
    return Volume(out, reference.affine)
