"""Reading a written plan folder back: its document and the volumes its pictures need.

``lattice show`` and ``lattice report`` work from a plan folder of an earlier run without
planning again: the vertices and parameters come from ``plan.json``, the LATTICE target (and
STV) from the folder, the CT, GTV and OARs from the input files ``plan.json`` records (the
DICOM series and RTSTRUCT for a plan made from DICOM; the folder's own ``ct_dicom/`` when the
recorded CT is gone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import InputFileError
from .volume import Volume


def read_plan_document(folder: str | Path) -> dict[str, Any]:
    """``plan.json`` of a plan folder (or the file itself).

    Raises
    ------
    InputFileError
        No folder, no plan.json, or not a plan document.
    """
    folder = Path(folder)
    path = folder / "plan.json" if folder.is_dir() else folder
    if not path.is_file():
        raise InputFileError(f"no plan.json in '{folder}'; pass a folder written by "
                             "`lattice plan`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"cannot read '{path}' as JSON ({exc})") from exc
    if not isinstance(doc, dict) or "vertices" not in doc or "parameters" not in doc:
        raise InputFileError(f"'{path}' is not a plan written by `lattice plan`")
    return doc


@dataclass(frozen=True, eq=False)
class PlanVolumes:
    """What the pictures of a written plan show."""

    document: dict[str, Any]
    ct: Volume
    gtv: Volume
    lattice_target: Volume
    oars: dict[str, Volume]
    stv: Volume | None
    centers_ras_mm: NDArray[np.float64]
    diameter_mm: float


def load_plan_volumes(folder: str | Path) -> PlanVolumes:
    """The CT, masks and vertices of a written plan (see the module docstring).

    Raises
    ------
    InputFileError
        A recorded input that is gone or unreadable (the message names it).
    GridMismatchError
        Files that are no longer on the plan's grid.
    """
    from .io import load_image, load_mask

    folder = Path(folder)
    doc = read_plan_document(folder)
    inputs = doc.get("inputs") or {}
    ct_entry = inputs.get("ct") or {}
    ct_dicom = ct_entry.get("dicom_folder")
    if inputs.get("rtstruct"):
        from .dicom import load_dicom_case

        oar_entries = list(inputs.get("oars") or [])
        if not ct_dicom or not Path(str(ct_dicom)).is_dir():
            raise InputFileError(f"the CT series folder '{ct_dicom}' recorded in plan.json is "
                                 "gone; restore it to draw the plan")
        case = load_dicom_case(str(ct_dicom), _existing(inputs["rtstruct"]["path"], "RTSTRUCT"),
                               gtv_name=str((inputs.get("gtv") or {}).get("roi")),
                               oar_names=[str(e.get("roi") or e.get("name"))
                                          for e in oar_entries],
                               series_uid=ct_entry.get("series_instance_uid"))
        ct, gtv = case.series.grid, case.gtv
        oars = {str(e.get("name")): m for e, m in zip(oar_entries, case.oars.values())}
    else:
        ct_path = ct_entry.get("path")
        if ct_path and Path(ct_path).is_file():
            ct = load_image(ct_path)
        elif (folder / "ct_dicom").is_dir():
            from .dicom import load_series

            ct = load_series(folder / "ct_dicom").grid
        else:
            raise InputFileError(f"the CT recorded in '{folder / 'plan.json'}' ('{ct_path}') "
                                 "is gone; restore it to draw the plan")
        gtv_entry = inputs.get("gtv") or {}
        gtv = load_mask(_existing(gtv_entry.get("path"), "GTV mask"),
                        label=gtv_entry.get("label"))
        oars = {str(e.get("name")): load_mask(_existing(e.get("path"), "OAR mask"))
                for e in inputs.get("oars") or []}
    grid = np.asarray((doc.get("grid") or {}).get("affine"), dtype=float)
    target = load_mask(_existing(folder / "lattice_target.nii.gz", "LATTICE target"))
    from .dicom import on_grid

    # A DICOM series may store the axes in another order than the plan's grid: reorder.
    ct = on_grid(ct, target, name="CT", grid_name="the plan's grid")
    gtv = on_grid(gtv, target, name="GTV", grid_name="the plan's grid")
    oars = {n: on_grid(m, target, name=f"OAR '{n}'", grid_name="the plan's grid")
            for n, m in oars.items()}
    if grid.shape == (4, 4) and not np.allclose(grid, target.affine, atol=1e-3):
        raise InputFileError(f"lattice_target.nii.gz in '{folder}' is not on the grid "
                             "plan.json records; the folder was changed after planning")
    stv_path = folder / "stv.nii.gz"
    stv = load_mask(stv_path) if stv_path.is_file() else None
    centers = np.array([v["center_ras_mm"] for v in doc["vertices"]], dtype=float).reshape(-1, 3)
    return PlanVolumes(document=doc, ct=ct, gtv=gtv, lattice_target=target, oars=oars, stv=stv,
                       centers_ras_mm=centers,
                       diameter_mm=float(doc["parameters"]["diameter_mm"]))


def _existing(path: Any, what: str) -> Path:
    if not path or not Path(str(path)).is_file():
        raise InputFileError(f"the {what} '{path}' recorded in plan.json is gone; restore it "
                             "to draw the plan")
    return Path(str(path))
