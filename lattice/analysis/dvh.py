"""Dose-volume statistics of one structure: D_x, D_v cc, the cumulative DVH, the GTV depth
map and the onion shells (conventions: :mod:`lattice.analysis.evaluate`, module notes).

Every value is JSON-ready: a float, or None when the structure is empty or the value is
not finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "dose_at_volume_percent",
    "dose_at_volume_cc",
    "cumulative_dvh",
    "depth_map_mm",
    "onion_shells",
]


def dose_at_volume_percent(doses_gy: NDArray[np.floating[Any]], percent: float) -> float | None:
    """D_x: the dose that ``percent`` % of the voxels receive at least (see the module notes).

    >>> dose_at_volume_percent(np.arange(11.0), 10)
    9.0
    """
    values = np.asarray(doses_gy, dtype=np.float64).ravel()
    if values.size == 0:
        return None
    return float(np.percentile(values, 100.0 - float(np.clip(percent, 0.0, 100.0))))


def dose_at_volume_cc(
    doses_gy: NDArray[np.floating[Any]], volume_cc: float, *, voxel_volume_cc: float
) -> float | None:
    """D_v cc: ``dose_at_volume_percent`` with ``x = 100 v / V`` (clipped to 100)."""
    values = np.asarray(doses_gy).ravel()
    if values.size == 0:
        return None
    return dose_at_volume_percent(values, 100.0 * volume_cc / (values.size * voxel_volume_cc))


def cumulative_dvh(
    doses_gy: NDArray[np.floating[Any]], *, dose_bins_gy: NDArray[np.float64]
) -> NDArray[np.float64]:
    """% of the voxels with dose >= each bin (cumulative DVH); empty input gives zeros."""
    values = np.sort(np.asarray(doses_gy, dtype=np.float64).ravel())
    if values.size == 0:
        return np.zeros(len(dose_bins_gy))
    below = np.searchsorted(values, np.asarray(dose_bins_gy), side="left")
    return 100.0 * (values.size - below) / values.size


def depth_map_mm(gtv: NDArray[np.bool_], *, voxel_size_mm: Sequence[float]) -> NDArray[np.float64]:
    """Exact EDT (mm) from each GTV voxel centre to the nearest centre outside it; 0 outside.

    The mask is padded with background first, so a GTV touching the array border is eroded
    from there too (domain notes, section 5).
    """
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(gtv, dtype=bool)
    depth = np.zeros(mask.shape)
    if not mask.any():
        return depth
    # The EDT runs on the GTV's box plus one background layer: clamping any outside centre
    # onto that layer brings it no further from a GTV centre, so the result is exact.
    nonzero = np.argwhere(mask)
    lo, hi = nonzero.min(axis=0), nonzero.max(axis=0) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    padded = np.pad(mask[box], 1)
    inner = distance_transform_edt(padded, sampling=tuple(float(v) for v in voxel_size_mm))
    depth[box] = np.asarray(inner, dtype=np.float64)[1:-1, 1:-1, 1:-1]
    return depth


def _num(value: float | None) -> float | None:
    """A JSON-ready float: None for missing or non-finite values."""
    if value is None or not np.isfinite(value):
        return None
    return float(value)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else _num(a / b)


def _mean(values: NDArray[np.float64]) -> float | None:
    return _num(float(values.mean())) if values.size else None


def _max(values: NDArray[np.float64]) -> float | None:
    return _num(float(values.max())) if values.size else None


def _dx(values: NDArray[np.float64], percent: float) -> float | None:
    return _num(dose_at_volume_percent(values, percent))


def onion_shells(
    doses_gy: NDArray[np.float64],
    depths_mm: NDArray[np.float64],
    *,
    n_shells: int,
    voxel_volume_cc: float,
) -> list[dict[str, Any]]:
    """Mean and CV of the dose per equal-thickness depth shell (see the module notes).

    Parameters
    ----------
    doses_gy, depths_mm : (n,) ndarray of float
        Dose and depth of each GTV voxel.
    n_shells : int
    voxel_volume_cc : float
    """
    deepest = float(depths_mm.max()) if depths_mm.size else 0.0
    edges = np.linspace(0.0, deepest, n_shells + 1)
    # Shell s holds depths in (edges[s], edges[s+1]]; shell 0 also holds depth 0.
    index = np.clip(np.searchsorted(edges, depths_mm, side="left") - 1, 0, n_shells - 1)
    shells = []
    for s in range(n_shells):
        values = doses_gy[index == s]
        mean = _mean(values)
        cv = _ratio(float(values.std()), mean) if values.size else None
        shells.append(
            {
                "index": s + 1,
                "depth_from_mm": float(edges[s]),
                "depth_to_mm": float(edges[s + 1]),
                "n_voxels": int(values.size),
                "volume_cc": values.size * voxel_volume_cc,
                "mean_gy": mean,
                "cv": cv,
            }
        )
    return shells
