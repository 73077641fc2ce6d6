"""An independent reading of an RT Dose and straightforward metrics, for the tests.

Nothing here imports the modules under test. The dose is located by projecting each world
point on the header's row and column directions and the plane normal (no 4x4 affine), and
the metrics are loops over plain sorted arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydicom
from numpy.typing import NDArray
from scipy.ndimage import map_coordinates


@dataclass
class HandGrid:
    values_gy: NDArray[np.float64]  # (frames, rows, columns), as stored
    ipp_lps: NDArray[np.float64]
    row_dir: NDArray[np.float64]
    col_dir: NDArray[np.float64]
    normal: NDArray[np.float64]
    spacing_rows_cols: tuple[float, float]
    frame_t_mm: NDArray[np.float64]  # each frame's distance along the normal from the IPP


def read_by_hand(path: str) -> HandGrid:
    ds = pydicom.dcmread(path)
    iop = [float(v) for v in ds.ImageOrientationPatient]
    row_dir, col_dir = np.array(iop[:3]), np.array(iop[3:])
    normal = np.cross(row_dir, col_dir)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    offsets = np.array([float(v) for v in ds.GridFrameOffsetVector])
    if offsets[0] == 0:
        t = offsets
    else:  # absolute: z positions of axial planes
        t = (offsets - ipp[2]) / normal[2]
    scale = float(ds.DoseGridScaling) * (0.01 if ds.DoseUnits == "CGY" else 1.0)
    values = ds.pixel_array.astype(np.float64) * scale
    dr, dc = (float(v) for v in ds.PixelSpacing)
    return HandGrid(values, ipp, row_dir, col_dir, normal, (dr, dc), t)


def sample_by_hand(grid: HandGrid, points_ras_mm: NDArray[np.float64]) -> NDArray[np.float64]:
    """Trilinear dose at RAS points; NaN outside the grid's box of centres."""
    lps = np.asarray(points_ras_mm, dtype=np.float64).reshape(-1, 3) * np.array([-1, -1, 1])
    rel = lps - grid.ipp_lps
    column = rel @ grid.row_dir / grid.spacing_rows_cols[1]
    row = rel @ grid.col_dir / grid.spacing_rows_cols[0]
    t = rel @ grid.normal
    step = grid.frame_t_mm[1] - grid.frame_t_mm[0]
    frame = (t - grid.frame_t_mm[0]) / step
    coords = np.stack([frame, row, column])
    upper = np.array(grid.values_gy.shape, dtype=float)[:, None] - 1
    inside = np.all((coords > -1e-6) & (coords < upper + 1e-6), axis=0)
    out = np.full(coords.shape[1], np.nan)
    out[inside] = map_coordinates(
        grid.values_gy, np.clip(coords[:, inside], 0, upper), order=1, mode="nearest"
    )
    return out


def d_at(values: NDArray[np.float64], percent: float) -> float:
    """Dose that ``percent`` % of the voxels receive at least: sorted doses, linear between."""
    v = np.sort(np.asarray(values, dtype=float))
    position = (1 - percent / 100) * (len(v) - 1)
    lo = int(np.floor(position))
    hi = min(lo + 1, len(v) - 1)
    return float(v[lo] + (position - lo) * (v[hi] - v[lo]))


def hand_metrics(
    dose_ct: NDArray[np.float64],
    masks,
    vertex_centers,
    voxel_cc: float,
    depth_mm: NDArray[np.float64],
) -> dict:
    """The headline numbers, each from its own definition."""
    gtv = masks.gtv
    g = dose_ct[gtv]
    peaks = masks.vertex_labels > 0
    valley = gtv & ~peaks
    out = {f"gtv.D{p}_gy": d_at(g, p) for p in (2, 5, 10, 50, 90, 95, 98)}
    out["gtv.mean_gy"] = g.mean()
    out["pvdr_d10_d90"] = d_at(g, 10) / d_at(g, 90)
    out["peaks.mean_gy"] = dose_ct[peaks].mean()
    out["peaks.D95_gy"] = d_at(dose_ct[peaks], 95)
    out["valley.mean_gy"] = dose_ct[valley].mean()
    out["valley.D50_gy"] = d_at(dose_ct[valley], 50)
    out["valley.D90_gy"] = d_at(dose_ct[valley], 90)
    out["epvdr"] = dose_ct[peaks].mean() / dose_ct[valley].mean()
    for n in range(len(vertex_centers)):
        v = dose_ct[masks.vertex_labels == n + 1]
        out[f"vertex{n}.mean_gy"], out[f"vertex{n}.max_gy"] = v.mean(), v.max()
        out[f"vertex{n}.D95_gy"] = d_at(v, 95)
    cold = dose_ct[masks.cold_labels > 0]
    out["cold.mean_gy"], out["cold.max_gy"] = cold.mean(), cold.max()
    top = g.max()
    out["threshold.peak_volume_cc"] = np.sum(g >= 0.7 * top) * voxel_cc
    out["threshold.valley_volume_cc"] = np.sum(g <= 0.2 * top) * voxel_cc
    out["hcnd_per_100cc"] = len(vertex_centers) / (gtv.sum() * voxel_cc) * 100
    d = depth_mm[gtv]
    edges = np.linspace(0, d.max(), 6)
    for s in range(5):
        sel = (d > edges[s]) & (d <= edges[s + 1]) if s else (d <= edges[1])
        out[f"shell{s}.mean_gy"] = g[sel].mean()
        out[f"shell{s}.cv"] = g[sel].std() / g[sel].mean()
    for name, mask in masks.oars.items():
        o = dose_ct[mask & np.isfinite(dose_ct)]
        out[f"oar.{name}.max_gy"], out[f"oar.{name}.mean_gy"] = o.max(), o.mean()
        # D0.03cc: the x % of the volume that 0.03 cc is
        out[f"oar.{name}.D0.03cc_gy"] = d_at(o, min(100.0, 100 * 0.03 / (o.size * voxel_cc)))
    return out


def flatten(result: dict) -> dict:
    """The module's result in the oracle's key scheme."""
    out = {f"gtv.{k}": result["gtv"][k] for k in result["gtv"] if k.startswith("D")}
    out["gtv.mean_gy"] = result["gtv"]["mean_gy"]
    for key in ("pvdr_d10_d90", "epvdr", "hcnd_per_100cc"):
        out[key] = result[key]
    for section, keys in (
        ("peaks", ("mean_gy", "D95_gy")),
        ("valley", ("mean_gy", "D50_gy", "D90_gy")),
        ("cold", ("mean_gy", "max_gy")),
    ):
        for k in keys:
            out[f"{section}.{k}"] = result[section][k]
    for n, row in enumerate(result["vertices"]):
        for k in ("mean_gy", "max_gy", "D95_gy"):
            out[f"vertex{n}.{k}"] = row[k]
    out["threshold.peak_volume_cc"] = result["threshold_volumes"]["peak_volume_cc"]
    out["threshold.valley_volume_cc"] = result["threshold_volumes"]["valley_volume_cc"]
    for s, shell in enumerate(result["shells"]):
        out[f"shell{s}.mean_gy"], out[f"shell{s}.cv"] = shell["mean_gy"], shell["cv"]
    for name, row in result["oars"].items():
        for k in ("max_gy", "mean_gy", "D0.03cc_gy"):
            out[f"oar.{name}.{k}"] = row[k]
    return out


def hand_profile(
    grid: HandGrid, a: NDArray[np.float64], b: NDArray[np.float64], step_mm: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    length = float(np.linalg.norm(b - a))
    n = int(np.ceil(length / step_mm)) + 1
    t = np.linspace(0, length, n)
    return t, sample_by_hand(grid, a + np.outer(t / length, b - a))
