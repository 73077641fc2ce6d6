"""How well the vertices cover the GTV: the largest distance from a GTV voxel to its nearest
vertex centre (plan.json ``covering_radius_mm``)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..geometry.margins import bounding_box
from ..volume import Volume

#: Block edge (voxels) of :func:`covering_radius_mm`'s first stage: 4 queries a 64th of the
#: voxels there, and the few blocks left for the second stage hold a few thousand voxels.
COVERING_BLOCK_VOX = 4


def covering_radius_mm(gtv: Volume, centers_ras_mm: NDArray[np.float64]) -> float | None:
    """Largest distance (mm) from a voxel centre of the GTV to its nearest vertex centre.

    Exact, in two stages over blocks of k x k x k voxels (k =
    :data:`COVERING_BLOCK_VOX`): with d the distance to the nearest centre, every voxel u of a
    block satisfies d(u) <= d(corner) + r (r = the diagonal of k - 1 voxels, the corner's
    largest distance to a voxel of its block). The largest d over corners that are GTV voxels
    is a lower bound L of the answer, so only blocks with d(corner) >= L - r can hold it; their
    GTV voxels get exact distances. None without vertices.
    """
    from scipy.spatial import cKDTree

    if len(centers_ras_mm) == 0:
        return None
    k = COVERING_BLOCK_VOX
    box = bounding_box(gtv.array)
    sub = gtv.array[box]
    lo = np.array([s.start for s in box])
    any_in = sub
    for axis in range(3):  # blocks at the end of an axis may be thinner
        any_in = np.logical_or.reduceat(any_in, np.arange(0, sub.shape[axis], k), axis=axis)
    tree = cKDTree(centers_ras_mm)
    corners = np.argwhere(any_in) * k
    d_corner, _ = tree.query(gtv.ijk_to_ras(corners + lo))
    corner_in_gtv = sub[tuple(corners.T)]
    lower = float(d_corner[corner_in_gtv].max()) if corner_in_gtv.any() else 0.0
    reach = float(np.linalg.norm((k - 1) * gtv.voxel_size_mm))
    hot = corners[d_corner >= lower - reach - 1e-9]
    offsets = np.argwhere(np.ones((k, k, k), dtype=bool))
    voxels = (hot[:, None, :] + offsets[None]).reshape(-1, 3)
    voxels = voxels[np.all(voxels < np.array(sub.shape), axis=1)]
    voxels = voxels[sub[tuple(voxels.T)]]
    d, _ = tree.query(gtv.ijk_to_ras(voxels + lo))
    return float(np.max(d))
