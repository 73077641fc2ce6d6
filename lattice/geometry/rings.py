"""Rings at a distance in mm from a structure: support shells around the vertex spheres and
SCART rings around the GTV and the STV, as label maps on the CT grid.

A ring between bounds ``a < b`` holds the voxels whose centre lies at a distance ``d`` with
``a < d <= b`` from the structure; ring ``k`` of the bounds ``b_0 < b_1 < ... < b_n`` is
label ``k`` (1-based). Open below, closed above, so consecutive rings partition the space
beyond ``b_0`` and a ring starting at 0 never takes a voxel of the structure itself
(structure voxels are at ``d <= 0``).

Two distances, both exact:

- :func:`sphere_union_distance_mm`: from a world point to the surface of the union of equal
  spheres, ``min_i |x - c_i| - D/2``, computed analytically in world mm (a KD-tree finds the
  nearest centre). This is the exact distance to the spheres as drawn analytically (the
  RTSTRUCT circles), not to a voxelised sphere.
- :func:`mask_ring_labels`: from a voxel centre to the nearest voxel centre of a mask
  (the exact anisotropic EDT of ``edt``, as :mod:`lattice.geometry.margins`). A helper ring
  around a traced structure is measured between voxel centres because the structure itself
  is known only as voxels and is written back as the contour through the voxel-centre
  midpoints; the TPS surface model (:mod:`lattice.geometry.surface`) decides the *rules*
  (vertex depth), where a half voxel matters, whereas a ring is a prompt to the optimiser
  that a half voxel does not change.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..grid import Grid
from ..volume import Volume
from .margins import bounding_box, distance_to_background_mm

__all__ = [
    "CHUNK_VOXELS",
    "label_of_distance",
    "mask_ring_labels",
    "sphere_ring_labels",
    "sphere_union_distance_mm",
]

#: Voxels whose distance is computed at once (a KD-tree query of this many points holds a
#: few arrays of this length: ~50 MB).
CHUNK_VOXELS = 1 << 20


def label_of_distance(distance_mm: NDArray[np.floating], bounds_mm: ArrayLike) -> NDArray[np.uint8]:
    """Ring label of each distance: ``k`` where ``bounds[k-1] < d <= bounds[k]``, else 0.

    Parameters
    ----------
    distance_mm : ndarray of float
    bounds_mm : (n + 1,) array_like of float
        Strictly increasing ring bounds, at most 256 (labels are uint8).

    Returns
    -------
    ndarray of uint8, shaped as ``distance_mm``
    """
    bounds = np.asarray(bounds_mm, dtype=np.float64)
    if bounds.ndim != 1 or len(bounds) < 2 or np.any(np.diff(bounds) <= 0):
        raise ValueError(f"ring bounds must be at least two increasing values, not {bounds}")
    if len(bounds) > 256:
        raise ValueError("at most 255 rings")
    d = np.asarray(distance_mm, dtype=np.float64)
    # searchsorted 'left': index k with bounds[k-1] < d <= bounds[k].
    k = np.searchsorted(bounds, d, side="left")
    inside = (d > bounds[0]) & (d <= bounds[-1])
    return np.where(inside, k, 0).astype(np.uint8)


def sphere_union_distance_mm(
    points_ras_mm: ArrayLike,
    centers_ras_mm: ArrayLike,
    *,
    diameter_mm: float,
    upper_bound_mm: float = np.inf,
) -> NDArray[np.float64]:
    """Exact signed distance from points to the surface of a union of equal spheres.

    ``d(x) = min_i |x - c_i| - D/2``: negative inside a sphere, 0 on the surface. For equal
    spheres the nearest surface belongs to the nearest centre, so this *is* the Euclidean
    distance to the union outside it (no voxel approximation).

    Parameters
    ----------
    points_ras_mm : (m, 3) array_like of float
    centers_ras_mm : (n, 3) array_like of float
        Sphere centres (n >= 0; with none every distance is inf).
    diameter_mm : float
    upper_bound_mm : float
        Distances above this may be returned as inf (the KD-tree stops looking).

    Returns
    -------
    (m,) ndarray of float64
    """
    from scipy.spatial import cKDTree

    points = np.asarray(points_ras_mm, dtype=np.float64).reshape(-1, 3)
    centers = np.asarray(centers_ras_mm, dtype=np.float64).reshape(-1, 3)
    radius = float(diameter_mm) / 2.0
    if len(centers) == 0:
        return np.full(len(points), np.inf)
    tree = cKDTree(centers)
    out = np.empty(len(points), dtype=np.float64)
    bound = float(upper_bound_mm) + radius
    for start in range(0, len(points), CHUNK_VOXELS):
        chunk = points[start : start + CHUNK_VOXELS]
        # A bound just above the wanted distance (cKDTree's bound is strict).
        nearest, _ = tree.query(chunk, k=1, distance_upper_bound=np.nextafter(bound, np.inf))
        out[start : start + len(chunk)] = nearest - radius
    return out


def _sphere_box(
    grid: Grid | Volume, centers_ras_mm: NDArray[np.float64], reach_mm: float
) -> tuple[slice, slice, slice] | None:
    """Index box of every voxel within ``reach_mm`` of a centre (None: none on the grid)."""
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    world = (centers_ras_mm[:, None, :] + reach_mm * corners[None]).reshape(-1, 3)
    ijk = grid.ras_to_ijk(world)
    lo = np.floor(ijk.min(axis=0)).astype(int)
    hi = np.ceil(ijk.max(axis=0)).astype(int) + 1
    shape = np.array(grid.shape)
    lo, hi = np.clip(lo, 0, shape), np.clip(hi, 0, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def sphere_ring_labels(
    clip: Volume,
    centers_ras_mm: ArrayLike,
    *,
    diameter_mm: float,
    bounds_mm: ArrayLike,
) -> Volume:
    """Support shells: rings around the union of the vertex spheres, inside ``clip``.

    Parameters
    ----------
    clip : Volume
        Boolean mask (the GTV, or the body) the rings are clipped to; its grid is the
        result's.
    centers_ras_mm : (n, 3) array_like of float
        Vertex centres, RAS mm.
    diameter_mm : float
    bounds_mm : (r + 1,) array_like of float
        Ring bounds from the sphere surfaces, mm, increasing (see the module docstring).

    Returns
    -------
    Volume
        uint8 labels 1..r (0 elsewhere), by :func:`sphere_union_distance_mm` at each voxel
        centre.
    """
    centers = np.asarray(centers_ras_mm, dtype=np.float64).reshape(-1, 3)
    bounds = np.asarray(bounds_mm, dtype=np.float64)
    out = np.zeros(clip.shape, dtype=np.uint8)
    box = None
    if len(centers):
        box = _sphere_box(clip, centers, float(diameter_mm) / 2.0 + float(bounds[-1]))
    if box is None:
        label_of_distance(np.zeros(0), bounds)  # the bounds are still checked
        return Volume(out, clip.affine)
    mask = np.asarray(clip.array, dtype=bool)[box]
    ijk = np.argwhere(mask) + [s.start for s in box]
    distance = sphere_union_distance_mm(
        clip.ijk_to_ras(ijk), centers, diameter_mm=diameter_mm, upper_bound_mm=bounds[-1]
    )
    out[tuple(ijk.T)] = label_of_distance(distance, bounds)
    return Volume(out, clip.affine)


def mask_ring_labels(
    mask: NDArray[np.bool_],
    *,
    voxel_size_mm: ArrayLike,
    bounds_mm: ArrayLike,
    clip: NDArray[np.bool_] | None = None,
) -> NDArray[np.uint8]:
    """Rings around a mask: label ``k`` where the distance from the voxel centre to the
    nearest voxel centre of ``mask`` is in ``(bounds[k-1], bounds[k]]``.

    Exact (the anisotropic EDT of ``edt`` on the mask's bounding box grown by the outer
    bound, which holds every voxel a ring can reach; beyond the array there is nothing).

    Parameters
    ----------
    mask : (I, J, K) ndarray of bool
        Non-empty.
    voxel_size_mm : (3,) array_like of float
    bounds_mm : (r + 1,) array_like of float
        Increasing, from 0 or more.
    clip : (I, J, K) ndarray of bool, optional
        Keep the rings only there (e.g. the body).

    Returns
    -------
    (I, J, K) ndarray of uint8

    Raises
    ------
    MaskError
        An empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    vox = np.asarray(voxel_size_mm, dtype=np.float64)
    bounds = np.asarray(bounds_mm, dtype=np.float64)
    pad = np.ceil(float(bounds[-1]) / vox).astype(int) + 1
    box = bounding_box(mask, pad_vox=pad)
    distance = distance_to_background_mm(~mask[box], voxel_size_mm=vox, border_is_background=False)
    out = np.zeros(mask.shape, dtype=np.uint8)
    out[box] = label_of_distance(distance, bounds)
    if clip is not None:
        out[~np.asarray(clip, dtype=bool)] = 0
    return out
