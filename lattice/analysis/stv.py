"""The SCART treatment volume (STV): the GTV contracted about its core.

SCART (stereotactic central/core ablative RT) gives an ablative dose to a central part of the
GTV. The contraction is an exact Euclidean erosion in mm: the STV is the set of GTV voxels
whose depth below the GTV surface exceeds a margin, so it is always the deepest part of the
GTV (its core), whatever the GTV's shape. The margin is either given or found so that the STV
holds a given fraction of the GTV's volume.

Depth is :mod:`lattice.geometry.margins`' depth: the distance in mm from a voxel centre to the
nearest voxel centre outside the GTV, voxels beyond the array border counting as outside. Erosion by
``margin_mm`` keeps the voxels with depth ``> margin_mm`` (the same result as
:func:`lattice.geometry.margins.erode_mm`).

>>> from lattice.io.nifti import load_mask
>>> gtv = load_mask("gtv.nii.gz")                    # doctest: +SKIP
>>> res = contract_gtv(gtv, fraction=0.3)           # doctest: +SKIP
>>> res.margin_mm, res.fraction                     # doctest: +SKIP
(11.72, 0.2998)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..errors import MaskError, ParameterError
from ..geometry.margins import depth_in_box_mm
from ..io.nifti import mask_from_array
from ..volume import Volume

#: Largest relative difference between the STV fraction asked for and the one reached before
#: the result carries a warning. The STV can only grow or shrink by whole depth levels (every
#: voxel at one depth value goes together); on a tumour of a few thousand voxels or more a
#: level is far below 5 % of the volume, so a larger miss means the GTV is tiny.
FRACTION_TOLERANCE = 0.05

#: Face neighbours (6-connectivity): STV pieces and the STV boundary are defined through faces.
_FACES = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True, eq=False)
class StvResult:
    """An STV with the numbers that describe it.

    Attributes
    ----------
    stv : Volume
        Boolean mask on the GTV's grid: GTV voxels with depth > ``margin_mm``.
    method : {'margin', 'fraction'}
        How the contraction was specified.
    margin_mm : float
        The erosion margin used. With ``method == 'fraction'`` it is the depth of the deepest
        voxel removed: every margin from it up to (not including) the next depth level gives
        the same STV, and ``contract_gtv(gtv, margin_mm=margin_mm)`` reproduces it exactly.
    fraction_requested : float or None
        The fraction asked for (``method == 'fraction'``), else None.
    gtv_cc, stv_cc : float
        Volumes: voxel count x voxel volume, cm^3.
    fraction : float
        ``stv_cc / gtv_cc``, the fraction reached.
    gtv_max_depth_mm : float
        Depth of the GTV's deepest voxel: every margin >= this leaves nothing.
    centroid_stv_ras_mm, centroid_gtv_ras_mm : (3,) ndarray of float
        Mean of the voxel centres, RAS+ mm.
    surface_distance_min_mm, surface_distance_max_mm : float
        Distance from the STV surface to the GTV surface, measured on the STV's boundary
        voxels: the STV voxels with at least one face neighbour outside the STV (voxels beyond
        the array border count as outside). For each boundary voxel the distance is its depth
        below the GTV surface (as above); these are the smallest and largest of them. For an
        erosion by margin m every boundary voxel has a face neighbour of depth <= m, and depth
        changes by at most one voxel step between neighbours, so both lie in
        ``(m, m + max(voxel_size_mm)]``: the margin within a voxel.
    n_components : int
        Number of face-connected (6-connectivity) pieces of the STV.
    warnings : tuple of str
        Things the user should know (fraction missed by more than
        :data:`FRACTION_TOLERANCE`, an STV in several pieces).
    """

    stv: Volume
    method: str
    margin_mm: float
    fraction_requested: float | None
    gtv_cc: float
    stv_cc: float
    fraction: float
    gtv_max_depth_mm: float
    centroid_stv_ras_mm: NDArray[np.float64]
    centroid_gtv_ras_mm: NDArray[np.float64]
    surface_distance_min_mm: float
    surface_distance_max_mm: float
    n_components: int
    warnings: tuple[str, ...] = ()

    @property
    def centroid_shift_mm(self) -> float:
        """Distance between the STV and GTV centroids (mm)."""
        return float(np.linalg.norm(self.centroid_stv_ras_mm - self.centroid_gtv_ras_mm))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no mask), units in the key names.

        ``margin_mm`` keeps full precision so that it reproduces the STV; the other lengths
        are rounded to 1 µm, volumes to 1 mm^3.
        """
        return {
            "method": self.method,
            "margin_mm": float(self.margin_mm),
            "fraction_requested": self.fraction_requested,
            "gtv_cc": round(self.gtv_cc, 3),
            "stv_cc": round(self.stv_cc, 3),
            "stv_fraction_of_gtv": round(self.fraction, 5),
            "gtv_max_depth_mm": round(self.gtv_max_depth_mm, 3),
            "centroid_stv_ras_mm": [round(float(v), 3) for v in self.centroid_stv_ras_mm],
            "centroid_gtv_ras_mm": [round(float(v), 3) for v in self.centroid_gtv_ras_mm],
            "centroid_shift_mm": round(self.centroid_shift_mm, 3),
            "surface_distance_min_mm": round(self.surface_distance_min_mm, 3),
            "surface_distance_max_mm": round(self.surface_distance_max_mm, 3),
            "n_components": self.n_components,
            "warnings": list(self.warnings),
        }


def contract_gtv(
    gtv: Volume, *, margin_mm: float | None = None, fraction: float | None = None
) -> StvResult:
    """Contract the GTV about its core into the SCART treatment volume.

    Give exactly one of ``margin_mm`` and ``fraction``.

    Parameters
    ----------
    gtv : Volume
        GTV mask (bool, or values accepted by :func:`lattice.io.nifti.mask_from_array`) on an
        orthogonal grid.
    margin_mm : float, optional
        Erosion margin (>= 0): the STV is the GTV voxels with depth > ``margin_mm``.
    fraction : float, optional
        STV volume / GTV volume, 0 < fraction < 1. The margin is the depth quantile that
        leaves that fraction of the GTV's voxels: of the depth levels the candidate margins
        (every STV is "depth > one of the GTV's depth values"), the one whose STV volume is
        closest to ``fraction x GTV volume`` (equally close: the smaller margin).

    Returns
    -------
    StvResult

    Raises
    ------
    ParameterError
        Neither or both options, a negative or non-finite margin, a fraction outside (0, 1),
        or a contraction that leaves nothing (the message gives the GTV's maximal depth, the
        bound every margin must stay below).
    MaskError
        Empty GTV.
    GridMismatchError
        Sheared grid.

    Examples
    --------
    >>> res = contract_gtv(gtv, margin_mm=10.0)     # doctest: +SKIP
    >>> res.stv_cc, res.surface_distance_min_mm     # doctest: +SKIP
    (95.2, 10.1)
    """
    margin_mm, fraction = _validate(margin_mm, fraction)
    gtv.check_not_sheared(name="the GTV")
    mask = (
        gtv.array
        if gtv.array.dtype == bool
        else mask_from_array(np.asarray(gtv.array), name="the GTV mask")
    )
    if not mask.any():
        raise MaskError("the GTV mask is empty (no voxel set); check that it is the right mask")
    vox = gtv.voxel_size_mm
    depth, box = depth_in_box_mm(mask, voxel_size_mm=vox)
    sub = mask[box]
    gtv_depths = depth[sub]
    max_depth = float(gtv_depths.max())

    if fraction is not None:
        margin_mm = _margin_for_fraction(gtv_depths, fraction)
    assert margin_mm is not None
    stv_box = depth > margin_mm  # as erode_mm: erosion by a closed ball of radius margin_mm
    n_stv = int(np.count_nonzero(stv_box))
    if n_stv == 0:
        raise ParameterError(
            f"a margin of {margin_mm:g} mm leaves nothing of the GTV: its deepest voxel is "
            f"{max_depth:.3f} mm below the surface (the GTV's maximal depth); use a margin "
            f"smaller than {max_depth:.3f} mm, or contract by a volume fraction instead"
        )

    n_gtv = gtv_depths.size
    voxel_cc = gtv.voxel_volume_cc
    boundary = stv_box & ~ndimage.binary_erosion(stv_box, structure=_FACES, border_value=0)
    boundary_depth = depth[boundary]
    n_components = int(ndimage.label(stv_box, structure=_FACES)[1])
    lo = np.array([s.start for s in box], dtype=float)
    stv_array = np.zeros(gtv.shape, dtype=bool)
    stv_array[box] = stv_box

    reached = n_stv / n_gtv
    warnings: list[str] = []
    if fraction is not None and abs(reached / fraction - 1.0) > FRACTION_TOLERANCE:
        warnings.append(
            f"the STV holds {reached:.3f} of the GTV, not the {fraction:g} asked for: the GTV "
            f"({n_gtv} voxels) has too few depth levels for a closer match"
        )
    if n_components > 1:
        warnings.append(f"the STV is in {n_components} separate pieces (face-connected)")

    return StvResult(
        stv=gtv.with_array(stv_array),
        method="margin" if fraction is None else "fraction",
        margin_mm=float(margin_mm),
        fraction_requested=fraction,
        gtv_cc=n_gtv * voxel_cc,
        stv_cc=n_stv * voxel_cc,
        fraction=reached,
        gtv_max_depth_mm=max_depth,
        centroid_stv_ras_mm=gtv.ijk_to_ras(_mean_index(stv_box) + lo)[0],
        centroid_gtv_ras_mm=gtv.ijk_to_ras(_mean_index(sub) + lo)[0],
        surface_distance_min_mm=float(boundary_depth.min()),
        surface_distance_max_mm=float(boundary_depth.max()),
        n_components=n_components,
        warnings=tuple(warnings),
    )


def _validate(margin_mm: Any, fraction: Any) -> tuple[float | None, float | None]:
    """Exactly one option, each a finite number in range; returns them as floats."""
    if (margin_mm is None) == (fraction is None):
        raise ParameterError(
            "give exactly one of {margin_mm} and {fraction}, "
            f"got {'both' if margin_mm is not None else 'neither'}",
            parameters=["margin_mm", "fraction"],
        )
    if margin_mm is not None:
        value = _number(margin_mm, "margin_mm")
        if not math.isfinite(value) or value < 0:
            raise ParameterError(
                f"{{margin_mm}} must be a non-negative number of mm, got {margin_mm}; "
                "use e.g. 10 for a 10 mm contraction",
                parameters=["margin_mm"],
            )
        from ..planning.parameters import check_range

        return check_range("stv_margin_mm", value, label="{margin_mm}", parameter="margin_mm"), None
    value = _number(fraction, "fraction")
    if not math.isfinite(value) or not 0.0 < value < 1.0:
        raise ParameterError(
            f"{{fraction}} must be between 0 and 1 (exclusive), got {fraction}; "
            "use e.g. 0.3 for an STV of 30 % of the GTV volume",
            parameters=["fraction"],
        )
    return None, value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ParameterError(f"{{{name}}} must be a number, got {value!r}", parameters=[name])
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ParameterError(
            f"{{{name}}} must be a number, got {value!r}", parameters=[name]
        ) from None


def _margin_for_fraction(gtv_depths: NDArray[np.float32], fraction: float) -> float:
    """The depth level whose erosion keeps a voxel count closest to ``fraction`` x all.

    Eroding by a margin equal to the i-th smallest distinct depth keeps the voxels deeper
    than it; only these margins give distinct STVs. The deepest level would keep nothing, so
    it is not a candidate.
    """
    levels, counts = np.unique(gtv_depths, return_counts=True)
    kept = gtv_depths.size - np.cumsum(counts)  # voxels with depth > levels[i]
    if len(levels) < 2:
        raise ParameterError(
            f"the GTV cannot be contracted: every voxel lies {float(levels[-1]):.3f} mm below "
            "its surface (the GTV's maximal depth), so any margin keeps all of it or nothing; "
            "check the GTV mask"
        )
    miss = np.abs(kept[:-1] - fraction * gtv_depths.size)
    return float(levels[int(np.argmin(miss))])  # argmin: first, i.e. smaller margin on ties


def _mean_index(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """(1, 3) mean voxel index of the set voxels, from per-axis projections (no index list)."""
    n = np.count_nonzero(mask)
    mean = np.empty(3)
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        counts = np.count_nonzero(mask, axis=others)
        mean[axis] = float(np.dot(counts, np.arange(mask.shape[axis]))) / n
    return mean[None, :]
