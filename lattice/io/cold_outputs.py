"""The cold (valley) spheres of a plan as files: ``cold.csv``, ``cold.mrk.json``,
``cold.nii.gz`` and the ``LATTICE_COLD`` ROI (or one ``COLD_nn`` ROI per sphere, or both) of
``rtstruct.dcm``.

Written only when the plan has cold spheres (``plan.cold``, ``lattice plan --cold-spheres``;
see :mod:`lattice.planning.cold_plan`), in their own colour
(:data:`lattice.render.style.COLD_COLOR`).
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputWriteError, ParameterError
from ..grid import Grid
from ..planning.cold import cold_sphere_entries
from ..planning.plan import Plan
from ..render.style import COLD_COLOR
from ..volume import Volume
from .folder import write_json
from .markups import markups_document
from .masks import sphere_label_map
from .nifti import save_volume

__all__ = [
    "COLD_FILES",
    "COLD_ROI_CHOICES",
    "COLD_ROI_NAME",
    "cold_centers_of_document",
    "cold_labels_of_document",
    "cold_markups_document",
    "cold_roi",
    "write_cold_files",
]

#: The files :func:`write_cold_files` writes.
COLD_FILES = ("cold.csv", "cold.mrk.json", "cold.nii.gz")
#: The RTSTRUCT ROI holding every cold sphere (<= 16 characters).
COLD_ROI_NAME = "LATTICE_COLD"
#: ``--cold-rois``: the combined ROI, one ROI per cold sphere (``COLD_01``...), or both.
COLD_ROI_CHOICES = ("combined", "each", "both")
#: :data:`~lattice.render.style.COLD_COLOR` as RGB 0-255 (RTSTRUCT) and 0-1 (Slicer).
COLD_RGB = tuple(int(COLD_COLOR[i : i + 2], 16) for i in (1, 3, 5))
_COLD_RGB_UNIT = [c / 255.0 for c in COLD_RGB]


def cold_records(plan: Plan) -> list[dict[str, Any]]:
    """plan.json's ``cold_spheres`` records of the plan (empty without cold spheres)."""
    return [] if plan.cold is None else cold_sphere_entries(plan.cold)


def cold_markups_document(plan: Plan) -> dict[str, Any]:
    """The Slicer markups of the cold-sphere centres: as the vertices' (LPS mm, locked,
    drawn as spheres of their diameter), named ``LATTICE cold spheres``, in the cold colour."""
    doc = copy.deepcopy(markups_document(plan))
    markup = doc["markups"][0]
    records = cold_records(plan)
    markup["name"] = "LATTICE cold spheres"
    markup["labelFormat"] = "COLD_%02d"
    markup["lastUsedControlPointNumber"] = len(records)
    template = markup["controlPoints"][0] if markup["controlPoints"] else None
    points = []
    for r in records:
        point = dict(template) if template is not None else {}
        point.update(
            id=str(r["id"]),
            label=r["name"],
            description=f"{r['nearest_peak_mm']:.2f} mm from the nearest vertex centre",
            position=r["center_lps_mm"],
        )
        points.append(point)
    markup["controlPoints"] = points
    display = markup["display"]
    display["color"] = display["selectedColor"] = _COLD_RGB_UNIT
    if plan.cold is not None:
        display["glyphSize"] = float(plan.cold.diameter_mm)
    return doc


def cold_label_map(plan: Plan) -> Volume:
    """Label map of the cold spheres on the plan's grid (label = cold sphere id)."""
    assert plan.cold is not None
    return sphere_label_map(
        plan.gtv, plan.cold.centers_ras_mm, diameter_mm=float(plan.cold.diameter_mm)
    )


def cold_labels_of_document(document: Mapping[str, Any], grid: Grid | Volume) -> Any:
    """Label map (int32 array on ``grid``) of a plan.json's ``cold_spheres``, label = position
    + 1 in the list (their ids as written); None when the plan has none. For plan folders
    read back (``lattice evaluate``, ``lattice show``)."""
    cold = document.get("cold_spheres") or []
    if not cold:
        return None
    labels = np.zeros(grid.shape, dtype=np.int32)
    for diameter in sorted({float(c["diameter_mm"]) for c in cold}):  # one per plan
        index = [i for i, c in enumerate(cold) if float(c["diameter_mm"]) == diameter]
        centers = np.array([cold[i]["center_ras_mm"] for i in index], dtype=float)
        drawn = np.asarray(sphere_label_map(grid, centers, diameter_mm=diameter).array)
        for k, i in enumerate(index):
            labels[drawn == k + 1] = i + 1
    return labels


def cold_centers_of_document(document: Mapping[str, Any]) -> tuple[Any, float | None]:
    """``(centres (m, 3) RAS mm, diameter mm)`` of a plan.json's ``cold_spheres``;
    ``(None, None)`` when the plan has none (the 3-D picture of ``lattice show``)."""
    cold = document.get("cold_spheres") or []
    if not cold:
        return None, None
    centers = np.array([c["center_ras_mm"] for c in cold], dtype=float).reshape(-1, 3)
    return centers, max(float(c["diameter_mm"]) for c in cold)


def write_cold_csv(plan: Plan, path: str | Path) -> Path:
    """Write id, name, centre in RAS / LPS mm, diameter and nearest vertex centre distance."""
    header = ["id", "name", "x_ras_mm", "y_ras_mm", "z_ras_mm", "x_lps_mm", "y_lps_mm"]
    header += ["z_lps_mm", "diameter_mm", "nearest_vertex_mm"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r in cold_records(plan):
            writer.writerow(
                [
                    r["id"],
                    r["name"],
                    *r["center_ras_mm"],
                    *r["center_lps_mm"],
                    r["diameter_mm"],
                    round(r["nearest_peak_mm"], 3),
                ]
            )
    return Path(path)


def write_cold_files(plan: Plan, stage: Path) -> list[str]:
    """Write :data:`COLD_FILES` into ``stage`` when the plan has cold spheres; their names.

    Raises
    ------
    OutputWriteError
    """
    if plan.cold is None:
        return []
    try:
        write_cold_csv(plan, stage / "cold.csv")
        write_json(cold_markups_document(plan), stage / "cold.mrk.json")
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write the cold-sphere files in '{stage}' ({exc.strerror or exc}); free "
            "some space or choose another output folder"
        ) from exc
    save_volume(cold_label_map(plan), stage / "cold.nii.gz")
    return list(COLD_FILES)


def cold_roi(plan: Plan, grid: Grid | Volume, *, cold_rois: str = "combined") -> list[Any]:
    """The cold spheres' AVOIDANCE ROIs, their circles on the slices of ``grid``: with
    ``cold_rois`` ``'combined'`` one :data:`COLD_ROI_NAME` holding every sphere, ``'each'``
    one ``COLD_01``, ``COLD_02``... per sphere (plan.json's ids), ``'both'`` all of them (the
    vertex ROIs' ``--vertex-rois`` choice, for cold spheres). Empty without cold spheres, or
    with none placed.

    Raises
    ------
    ParameterError
        ``cold_rois`` is not one of :data:`COLD_ROI_CHOICES`.
    """
    from .rtstruct_contours import sphere_contours
    from .rtstruct_write import RoiSpec

    if cold_rois not in COLD_ROI_CHOICES:
        raise ParameterError(
            f"{{cold_rois}} must be one of {', '.join(COLD_ROI_CHOICES)}, got {cold_rois!r}",
            parameters=["cold_rois"],
        )
    if plan.cold is None or len(plan.cold) == 0:
        return []
    radius = float(plan.cold.diameter_mm) / 2.0
    lps = plan.cold.centers_ras_mm * [-1.0, -1.0, 1.0]
    circles = [sphere_contours(centre, radius, grid) for centre in lps]
    sizes = f"D {plan.cold.diameter_mm:g} mm, gap {plan.cold.gap_mm:g} mm to the vertices"
    rois = []
    if cold_rois in ("combined", "both"):
        rois.append(
            RoiSpec(
                COLD_ROI_NAME,
                "AVOIDANCE",
                COLD_RGB,  # type: ignore[arg-type]
                [c for per in circles for c in per],
                f"{len(plan.cold)} cold spheres, {sizes}",
            )
        )
    if cold_rois in ("each", "both"):
        rois += [
            RoiSpec(
                f"COLD_{index:02d}",
                "AVOIDANCE",
                COLD_RGB,  # type: ignore[arg-type]
                per,
                f"LATTICE cold sphere {index}, {sizes}",
            )
            for index, per in enumerate(circles, start=1)
        ]
    return rois
