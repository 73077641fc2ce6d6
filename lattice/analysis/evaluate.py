"""SFRT dose metrics of a LATTICE plan from a dose on the CT grid (domain notes, section 8).

Conventions (one place; the JSON repeats them under ``conventions``):

- **D_x** (x in % of a structure's volume) is the dose that x % of the structure's voxels
  receive at least, voxel-based: every voxel centre inside the mask counts with the same
  volume, and ``D_x = percentile(doses, 100 - x)`` with linear interpolation between the
  sorted voxel doses (numpy's default ``"linear"`` method). D0 is the maximum, D100 the
  minimum. ``D_v cc`` (v in cc) is ``D_x`` with ``x = 100 v / V``; a structure smaller than
  v cc gives its minimum (x clipped to 100). The same convention as the dose proxy's D10/D90.
- **Voxels without dose** (centre outside the dose grid, or a NaN dose): the GTV, the peaks
  and the cold spheres must be fully covered, otherwise :class:`DoseError` (every target
  metric would be biased). An OAR partly outside is evaluated on its covered voxels and a
  warning names it and the missing volume; an OAR entirely outside gets None metrics.
  Given ``outside``, a NaN or infinite dose inside the dose grid is a bad value, refused as
  such; a negative dose (below rounding) always is (:mod:`lattice.io.dose_values`).
- **Implausible doses** are evaluated with a warning: 0 Gy in the whole GTV, or a maximum
  above :data:`~lattice.io.dose_values.IMPLAUSIBLE_DOSE_GY` (cGy stored as Gy?).
- **PVDR** = D10 / D90 of the GTV. **ePVDR** = mean peak dose / mean valley dose, each a
  volume-weighted (voxel) mean.
- **Threshold volumes**: GTV volume receiving >= 70 % and <= 20 % of the GTV's maximum
  dose (the peak and valley volumes of MAAS-SFRThelper's evaluation, domain notes section 8).
- **HCND** = vertices per 100 cc of GTV (domain notes, section 2 vocabulary).
- **Onion shells**: GTV voxels split by depth into ``n_shells`` shells of equal thickness
  from depth 0 to the deepest voxel; depth is the given map, else the exact Euclidean
  distance (mm, ``sampling`` = voxel size) from each voxel centre to the nearest centre
  outside the GTV (the mask padded with background first). Mean and coefficient of
  variation (population standard deviation / mean) per shell; shell 1 is the outermost.
- **Profiles**: the segment from each vertex centre to its nearest neighbour's (each pair
  once), sampled at the same number of equally spaced points, at most ``profile_step_mm``
  apart, by trilinear interpolation of the native dose grid when given, else of the
  CT-grid dose. The valley minimum is the profile's smallest value and where it lies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lattice.analysis.dose_coverage import coverage_report, voxels_without_dose
from lattice.analysis.dvh import (
    _dx,
    _max,
    _mean,
    _num,
    _ratio,
    cumulative_dvh,
    depth_map_mm,
    dose_at_volume_cc,
    dose_at_volume_percent,
    onion_shells,
)
from lattice.analysis.resample import resample_dose, sample_dose
from lattice.io.dose_values import dose_value_warnings, refuse_negative, refuse_non_finite
from lattice.io.rtdose import DoseError, DoseVolume, check_frame_of_reference

__all__ = [
    "EvaluationMasks",
    "evaluate_dose",
    "evaluate_dose_volume",
    "dose_at_volume_percent",
    "dose_at_volume_cc",
    "cumulative_dvh",
    "depth_map_mm",
    "onion_shells",
    "vertex_profiles",
    "target_metrics",
    "GTV_PERCENTS",
    "PEAK_THRESHOLD",
    "VALLEY_THRESHOLD",
]

#: D_x of the GTV that evaluation.json reports.
GTV_PERCENTS = (2, 5, 10, 50, 90, 95, 98)
#: Fractions of the GTV's maximum dose above / below which a voxel counts as peak / valley.
PEAK_THRESHOLD = 0.70
VALLEY_THRESHOLD = 0.20
#: Volume of the OAR near-maximum dose, cc (D0.03cc, the usual small-volume maximum).
OAR_NEAR_MAX_CC = 0.03
#: Points of the cumulative DVH curves in the JSON (0 to 5 % above the highest dose).
DVH_POINTS = 201
CONVENTIONS = {
    "D_x": "voxel-based: percentile(doses, 100 - x), linear interpolation between sorted "
    "voxel doses; D_v cc uses x = 100 v / V (clipped to 100)",
    "outside_dose_grid": "GTV, peaks and cold spheres must be fully covered (else an "
    "error); OARs are evaluated on their covered voxels, with a warning",
    "pvdr": "D10 / D90 of the GTV",
    "epvdr": "mean peak dose / mean valley dose",
    "thresholds": "GTV volume >= 70 % and <= 20 % of the GTV maximum dose",
    "hcnd": "vertices per 100 cc of GTV",
    "shells": "equal-thickness depth shells from 0 to the deepest GTV voxel, shell 1 "
    "outermost; depth = EDT in mm to the nearest voxel centre outside the GTV",
    "profiles": "vertex to nearest neighbour, equally spaced samples at most step_mm apart, "
    "trilinear on the native dose grid if given",
}


@dataclass(frozen=True, eq=False)
class EvaluationMasks:
    """The structures a dose is evaluated on, all on the dose's (CT) grid.

    Attributes
    ----------
    gtv : (I, J, K) ndarray of bool
    vertex_labels : (I, J, K) ndarray of int
        Label ``i + 1`` on the voxels of vertex ``i``, 0 elsewhere (``vertices.nii.gz``).
    peaks : (I, J, K) ndarray of bool, optional
        Union of the vertex spheres; default ``vertex_labels > 0``.
    valley : (I, J, K) ndarray of bool, optional
        Default ``gtv & ~peaks``.
    cold_labels : (I, J, K) ndarray of int, optional
        Label ``c + 1`` on cold sphere ``c``.
    oars : mapping of str to (I, J, K) ndarray of bool
    depth_mm : (I, J, K) ndarray of float, optional
        Depth below the GTV surface for the onion shells; default :func:`depth_map_mm`.
    """

    gtv: NDArray[np.bool_]
    vertex_labels: NDArray[np.integer[Any]]
    peaks: NDArray[np.bool_] | None = None
    valley: NDArray[np.bool_] | None = None
    cold_labels: NDArray[np.integer[Any]] | None = None
    oars: Mapping[str, NDArray[np.bool_]] = field(default_factory=dict)
    depth_mm: NDArray[np.floating[Any]] | None = None

    def resolved_peaks(self) -> NDArray[np.bool_]:
        return (
            np.asarray(self.vertex_labels) > 0
            if self.peaks is None
            else np.asarray(self.peaks, dtype=bool)
        )

    def resolved_valley(self) -> NDArray[np.bool_]:
        if self.valley is not None:
            return np.asarray(self.valley, dtype=bool)
        return np.asarray(self.gtv, dtype=bool) & ~self.resolved_peaks()

    def check(self, shape: tuple[int, ...]) -> None:
        """Every array on a grid of ``shape``; a non-empty GTV.

        Raises
        ------
        DoseError
        """
        arrays = {
            "gtv": self.gtv,
            "vertex_labels": self.vertex_labels,
            "peaks": self.peaks,
            "valley": self.valley,
            "cold_labels": self.cold_labels,
            "depth_mm": self.depth_mm,
            **{f"OAR '{k}'": v for k, v in self.oars.items()},
        }
        for name, array in arrays.items():
            if array is not None and np.shape(array) != tuple(shape):
                raise DoseError(
                    f"{name} has shape {np.shape(array)}, the dose {tuple(shape)}; "
                    "resample the dose onto the CT grid first"
                )
        if not np.any(self.gtv):
            raise DoseError("the GTV mask is empty; pass the plan's GTV")


def _nearest_pairs(centers_ras_mm: NDArray[np.float64]) -> list[tuple[int, int]]:
    """Each vertex with its nearest neighbour, each unordered pair once, sorted."""
    from scipy.spatial.distance import cdist

    if len(centers_ras_mm) < 2:
        return []
    distances = cdist(centers_ras_mm, centers_ras_mm)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argmin(distances, axis=1)
    return sorted({(min(a, int(b)), max(a, int(b))) for a, b in enumerate(nearest)})


def vertex_profiles(
    dose_gy: NDArray[np.float64],
    centers_ras_mm: NDArray[np.float64],
    *,
    affine_ras: NDArray[np.float64],
    vertex_ids: Sequence[Any],
    step_mm: float = 0.5,
) -> list[dict[str, Any]]:
    """Dose profiles between each vertex and its nearest neighbour, with the valley minimum.

    Parameters
    ----------
    dose_gy : (I, J, K) ndarray of float
        The dose sampled (trilinear) along the segments, on its own grid.
    centers_ras_mm : (n, 3) ndarray of float
    affine_ras : (4, 4) ndarray of float
        ``dose_gy``'s voxel index to RAS mm.
    vertex_ids : sequence
        One id per centre.
    step_mm : float
        Largest distance between samples.

    Returns
    -------
    list of dict
        ``from_id``, ``to_id``, ``length_mm``, ``step_mm``, ``distance_mm`` and ``dose_gy``
        (the samples; None where the dose grid has no dose), ``start_gy``, ``end_gy``,
        ``min_gy``, ``min_at_mm`` (from the first vertex), ``min_ras_mm``, and
        ``peak_to_valley`` (mean of the end doses over the minimum).
    """
    centers = np.asarray(centers_ras_mm, dtype=np.float64).reshape(-1, 3)
    profiles = []
    for a, b in _nearest_pairs(centers):
        length = float(np.linalg.norm(centers[b] - centers[a]))
        n = int(np.ceil(length / step_mm - 1e-9)) + 1
        t_mm = np.linspace(0.0, length, n)
        points = centers[a] + np.outer(t_mm / length, centers[b] - centers[a])
        values = sample_dose(dose_gy, points, affine_ras=affine_ras)
        known = np.isfinite(values)
        lowest = int(np.nanargmin(values)) if known.any() else None
        low = None if lowest is None else float(values[lowest])
        start, end = _num(values[0]), _num(values[-1])
        profiles.append(
            {
                "from_id": vertex_ids[a],
                "to_id": vertex_ids[b],
                "length_mm": length,
                "step_mm": float(t_mm[1] - t_mm[0]) if n > 1 else 0.0,
                "distance_mm": t_mm.tolist(),
                "dose_gy": [_num(v) for v in values],
                "start_gy": start,
                "end_gy": end,
                "min_gy": low,
                "min_at_mm": None if lowest is None else float(t_mm[lowest]),
                "min_ras_mm": None if lowest is None else points[lowest].tolist(),
                "peak_to_valley": (
                    _ratio(0.5 * (start + end), low)
                    if start is not None and end is not None
                    else None
                ),
            }
        )
    return profiles


def _gtv_metrics(values: NDArray[np.float64], *, voxel_volume_cc: float) -> dict[str, Any]:
    out: dict[str, Any] = {f"D{p}_gy": _dx(values, p) for p in GTV_PERCENTS}
    out.update(
        mean_gy=_mean(values),
        max_gy=_max(values),
        min_gy=_num(float(values.min())),
        volume_cc=values.size * voxel_volume_cc,
    )
    return out


def target_metrics(
    dose_gy: NDArray[np.float64],
    masks: EvaluationMasks,
    *,
    voxel_volume_cc: float,
    lacking: NDArray[np.bool_] | None = None,
) -> dict[str, Any]:
    """``gtv``, ``pvdr_d10_d90``, ``peaks``, ``valley``, ``epvdr`` of :func:`evaluate_dose`,
    also the dose proxy's (:func:`lattice.analysis.dose.dose_proxy_metrics`); ``lacking``:
    voxels without dose, left out of the valley."""
    gtv = np.asarray(masks.gtv, dtype=bool)
    peaks, valley = masks.resolved_peaks(), masks.resolved_valley()
    if lacking is not None:
        valley = valley & ~lacking
    out: dict[str, Any] = {"gtv": _gtv_metrics(dose_gy[gtv], voxel_volume_cc=voxel_volume_cc)}
    out["pvdr_d10_d90"] = _ratio(out["gtv"]["D10_gy"], out["gtv"]["D90_gy"])
    out["peaks"] = {
        "mean_gy": _mean(dose_gy[peaks]),
        "D95_gy": _dx(dose_gy[peaks], 95),
        "volume_cc": int(peaks.sum()) * voxel_volume_cc,
    }
    out["valley"] = {
        "mean_gy": _mean(dose_gy[valley]),
        "D50_gy": _dx(dose_gy[valley], 50),
        "D90_gy": _dx(dose_gy[valley], 90),
        "volume_cc": int(masks.resolved_valley().sum()) * voxel_volume_cc,
    }
    out["epvdr"] = _ratio(out["peaks"]["mean_gy"], out["valley"]["mean_gy"])
    return out


def _threshold_volumes(values: NDArray[np.float64], *, voxel_volume_cc: float) -> dict[str, Any]:
    top = float(values.max())
    n_peak = int(np.count_nonzero(values >= PEAK_THRESHOLD * top))
    n_valley = int(np.count_nonzero(values <= VALLEY_THRESHOLD * top))
    return {
        "gtv_max_gy": top,
        "peak_threshold_gy": PEAK_THRESHOLD * top,
        "valley_threshold_gy": VALLEY_THRESHOLD * top,
        "peak_volume_cc": n_peak * voxel_volume_cc,
        "peak_volume_percent": 100.0 * n_peak / values.size,
        "valley_volume_cc": n_valley * voxel_volume_cc,
        "valley_volume_percent": 100.0 * n_valley / values.size,
    }


def _per_label(
    dose_gy: NDArray[np.float64],
    labels: NDArray[np.integer[Any]],
    ids: Sequence[Any],
    *,
    voxel_volume_cc: float,
    with_d95: bool,
) -> list[dict[str, Any]]:
    """Mean, max (and D95) of each label ``i + 1``; None for a label with no voxel."""
    flat = np.asarray(labels).ravel()
    labelled = np.flatnonzero(flat)  # sort only the labelled voxels, not the whole grid
    doses = dose_gy.ravel()[labelled]
    flat = flat[labelled]
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(1, len(ids) + 2))
    rows = []
    for i, ident in enumerate(ids):
        values = doses[order[bounds[i] : bounds[i + 1]]]
        row = {
            "id": ident,
            "n_voxels": int(values.size),
            "volume_cc": values.size * voxel_volume_cc,
            "mean_gy": _mean(values),
            "max_gy": _max(values),
        }
        if with_d95:
            row["D95_gy"] = _dx(values, 95)
        rows.append(row)
    return rows


def _check_labels(labels: NDArray[np.integer[Any]], n: int, what: str) -> None:
    top = int(np.max(labels)) if np.size(labels) else 0
    if top > n:
        raise DoseError(
            f"{what} label map has label {top} but {n} {what} ids were given; "
            "pass one id per label (label i + 1 = entry i)"
        )


def _oar_metrics(
    dose_gy: NDArray[np.float64],
    masks: EvaluationMasks,
    lacking: NDArray[np.bool_],
    *,
    voxel_volume_cc: float,
) -> dict[str, Any]:
    oars = {}
    for name, mask in masks.oars.items():
        mask = np.asarray(mask, dtype=bool)
        values = dose_gy[mask & ~lacking]
        oars[name] = {
            "max_gy": _max(values),
            "mean_gy": _mean(values),
            "D0.03cc_gy": _num(
                dose_at_volume_cc(values, OAR_NEAR_MAX_CC, voxel_volume_cc=voxel_volume_cc)
            ),
            "volume_cc": int(mask.sum()) * voxel_volume_cc,
            "n_voxels_without_dose": int(np.count_nonzero(mask & lacking)),
        }
    return oars


def _dvh(curves: Mapping[str, NDArray[np.float64]]) -> dict[str, Any]:
    """Cumulative DVHs of the named dose samples on one dose axis (0 to 105 % of the max)."""
    present = {k: v for k, v in curves.items() if v.size}
    top = max((float(v.max()) for v in present.values()), default=1.0)
    bins = np.linspace(0.0, 1.05 * max(top, 1e-9), DVH_POINTS)
    return {
        "dose_gy": bins.tolist(),
        "percent_volume": {
            k: cumulative_dvh(v, dose_bins_gy=bins).tolist() for k, v in present.items()
        },
    }


def evaluate_dose(
    dose_gy: NDArray[np.floating[Any]],
    masks: EvaluationMasks,
    *,
    affine_ras: NDArray[np.float64],
    vertex_centers_ras_mm: NDArray[np.float64],
    vertex_ids: Sequence[Any] | None = None,
    cold_ids: Sequence[Any] | None = None,
    outside: NDArray[np.bool_] | None = None,
    native_dose: DoseVolume | None = None,
    n_shells: int = 5,
    profile_step_mm: float = 0.5,
) -> dict[str, Any]:
    """Every metric of evaluation.json from a dose on the CT grid (see the module notes).

    Parameters
    ----------
    dose_gy : (I, J, K) ndarray of float
        Dose on the CT grid (``ResampledDose.dose_gy``; NaN = no dose).
    masks : EvaluationMasks
        On the same grid.
    affine_ras : (4, 4) ndarray of float
        The CT grid's voxel index to RAS mm (voxel volume, depth sampling, profiles).
    vertex_centers_ras_mm : (n, 3) ndarray of float
    vertex_ids, cold_ids : sequence, optional
        One per vertex / cold label; default 1..n.
    outside : (I, J, K) ndarray of bool, optional
        Voxels outside the dose grid (``ResampledDose.outside``).
    native_dose : DoseVolume, optional
        The dose on its own grid: profiles are sampled on it, and ``dose`` records its file.
    n_shells : int
    profile_step_mm : float

    Returns
    -------
    dict
        JSON-ready: ``gtv``, ``pvdr_d10_d90``, ``peaks``, ``valley``, ``epvdr``,
        ``vertices``, ``cold``, ``threshold_volumes``, ``n_vertices``, ``gtv_cc``,
        ``hcnd_per_100cc``, ``shells``, ``oars``, ``profiles``, ``dvh``, ``coverage``,
        ``dose``, ``conventions``, ``warnings``.

    Raises
    ------
    DoseError
        Masks on another grid, an empty GTV, label maps that do not match the ids, a
        negative dose, a NaN or infinite dose inside the dose grid (``outside`` given), or
        a GTV, peak or cold sphere voxel without dose.
    """
    dose = np.asarray(dose_gy, dtype=np.float64)
    masks.check(dose.shape)
    affine = np.asarray(affine_ras, dtype=np.float64)
    centers = np.asarray(vertex_centers_ras_mm, dtype=np.float64).reshape(-1, 3)
    ids = list(vertex_ids) if vertex_ids is not None else list(range(1, len(centers) + 1))
    if len(ids) != len(centers):
        raise DoseError(f"{len(ids)} vertex ids for {len(centers)} centres; pass one id each")
    if n_shells < 1 or profile_step_mm <= 0:
        raise DoseError(
            f"n_shells must be >= 1 and profile_step_mm > 0 (got {n_shells}, {profile_step_mm})"
        )
    _check_labels(masks.vertex_labels, len(ids), "vertex")
    voxel_cc = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    source = "the dose on the CT grid"
    if outside is not None:  # NaN means "no dose" only outside the dose grid
        refuse_non_finite(dose, source=source, affine_ras=affine, skip=np.asarray(outside))
    refuse_negative(dose, source=source, affine_ras=affine)
    lacking = voxels_without_dose(dose, outside)
    coverage, warnings = coverage_report(masks, lacking, voxel_volume_cc=voxel_cc)
    warnings += dose_value_warnings(dose, masks.gtv)
    gtv = np.asarray(masks.gtv, dtype=bool)
    result = target_metrics(dose, masks, voxel_volume_cc=voxel_cc, lacking=lacking)
    result["vertices"] = _per_label(
        dose, masks.vertex_labels, ids, voxel_volume_cc=voxel_cc, with_d95=True
    )
    for row, centre in zip(result["vertices"], centers):
        row["center_ras_mm"] = centre.tolist()
    result["cold"] = _cold_metrics(dose, masks, cold_ids, voxel_volume_cc=voxel_cc)
    result["threshold_volumes"] = _threshold_volumes(dose[gtv], voxel_volume_cc=voxel_cc)
    gtv_cc = float(gtv.sum()) * voxel_cc
    result.update(n_vertices=len(ids), gtv_cc=gtv_cc, hcnd_per_100cc=100.0 * len(ids) / gtv_cc)
    depth = (
        depth_map_mm(gtv, voxel_size_mm=np.linalg.norm(affine[:3, :3], axis=0))
        if masks.depth_mm is None
        else np.asarray(masks.depth_mm, dtype=np.float64)
    )
    result["shells"] = onion_shells(
        dose[gtv], depth[gtv], n_shells=n_shells, voxel_volume_cc=voxel_cc
    )
    result["oars"] = _oar_metrics(dose, masks, lacking, voxel_volume_cc=voxel_cc)
    profile_dose, profile_affine = (
        (native_dose.dose_gy, native_dose.affine_ras) if native_dose is not None else (dose, affine)
    )
    result["profiles"] = vertex_profiles(
        profile_dose, centers, affine_ras=profile_affine, vertex_ids=ids, step_mm=profile_step_mm
    )
    result["dvh"] = _dvh(_dvh_samples(dose, masks, lacking))
    result.update(
        coverage=coverage,
        conventions=CONVENTIONS,
        warnings=warnings,
        dose=_dose_section(native_dose),
    )
    return result


def _cold_metrics(
    dose_gy: NDArray[np.float64],
    masks: EvaluationMasks,
    cold_ids: Sequence[Any] | None,
    *,
    voxel_volume_cc: float,
) -> dict[str, Any] | None:
    if masks.cold_labels is None:
        return None
    labels = np.asarray(masks.cold_labels)
    n = int(labels.max()) if labels.size else 0
    ids = list(cold_ids) if cold_ids is not None else list(range(1, n + 1))
    _check_labels(labels, len(ids), "cold sphere")
    values = dose_gy[labels > 0]
    return {
        "mean_gy": _mean(values),
        "max_gy": _max(values),
        "volume_cc": values.size * voxel_volume_cc,
        "spheres": _per_label(
            dose_gy, labels, ids, voxel_volume_cc=voxel_volume_cc, with_d95=False
        ),
    }


def _dvh_samples(
    dose_gy: NDArray[np.float64], masks: EvaluationMasks, lacking: NDArray[np.bool_]
) -> dict[str, NDArray[np.float64]]:
    samples = {
        "GTV": dose_gy[np.asarray(masks.gtv, dtype=bool)],
        "peaks": dose_gy[masks.resolved_peaks()],
        "valley": dose_gy[masks.resolved_valley() & ~lacking],
    }
    if masks.cold_labels is not None:
        samples["cold spheres"] = dose_gy[np.asarray(masks.cold_labels) > 0]
    for name, mask in masks.oars.items():
        samples[name] = dose_gy[np.asarray(mask, dtype=bool) & ~lacking]
    return samples


def _dose_section(native_dose: DoseVolume | None) -> dict[str, Any]:
    if native_dose is None:
        return {"path": None, "sha256": None, "units": "GY", "summation_type": None, "grid": None}
    return native_dose.info.to_dict()


def evaluate_dose_volume(
    dose: DoseVolume,
    masks: EvaluationMasks,
    *,
    ct_affine_ras: NDArray[np.float64],
    ct_frame_of_reference_uid: str | None,
    vertex_centers_ras_mm: NDArray[np.float64],
    vertex_ids: Sequence[Any] | None = None,
    cold_ids: Sequence[Any] | None = None,
    n_shells: int = 5,
    profile_step_mm: float = 0.5,
) -> dict[str, Any]:
    """A dose file's dose, checked against the CT's frame, resampled onto it, evaluated.

    What ``lattice evaluate`` does between reading the files and writing the outputs:
    :func:`rtdose.check_frame_of_reference`, :func:`resample.resample_dose` onto the grid of
    ``masks`` (shape of ``masks.gtv``, ``ct_affine_ras``), then :func:`evaluate_dose` with
    the profiles sampled on the dose's own grid.

    Raises
    ------
    DoseError
        A foreign frame of reference, or any refusal of :func:`evaluate_dose`.
    """
    check_frame_of_reference(dose.info, ct_frame_of_reference_uid)
    shape = np.shape(masks.gtv)
    on_ct = resample_dose(
        dose.dose_gy,
        affine_ras=dose.affine_ras,
        target_shape=(shape[0], shape[1], shape[2]),
        target_affine_ras=ct_affine_ras,
    )
    return evaluate_dose(
        on_ct.dose_gy,
        masks,
        affine_ras=ct_affine_ras,
        vertex_centers_ras_mm=vertex_centers_ras_mm,
        vertex_ids=vertex_ids,
        cold_ids=cold_ids,
        outside=on_ct.outside,
        native_dose=dose,
        n_shells=n_shells,
        profile_step_mm=profile_step_mm,
    )
