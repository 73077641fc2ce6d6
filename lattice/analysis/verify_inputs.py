"""What the independent verifier reads: the plan document's rules, grid and centres, and the
input masks a written plan records (checksums and grid checked).

See :mod:`lattice.analysis.verify`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputFileError
from ..grid import Grid
from ..io.nifti import load_grid, load_mask, sha256_file
from ..io.planfolder import PlanDocument, validate_plan_document
from ..volume import Volume
from .verify_report import RULE_TOLERANCE_MM, Violation, format_mm


@dataclass(frozen=True)
class Rules:
    diameter_mm: float
    min_spacing_mm: float
    gtv_margin_mm: float
    oar_clearance_mm: dict[str, float]
    snap_to_slices: bool
    max_vertices: int | None
    min_vertices: int | None
    coplanar_mm: float | None
    coplanar_spacing_mm: float | None
    shell_width_mm: float | None

    @property
    def radius_mm(self) -> float:
        return self.diameter_mm / 2.0


def bad_document(source: str, what: str) -> InputFileError:
    return InputFileError(f"{source}: {what}; write the plan again with `lattice plan`")


def _number(
    value: Any, name: str, source: str, *, minimum: float = 0.0, optional: bool = False
) -> float | None:
    if value is None and optional:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < minimum
    ):
        raise bad_document(source, f"{name} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def parse_rules(params: Any, source: str) -> Rules:
    if not isinstance(params, Mapping):
        raise bad_document(source, "'parameters' is missing or not an object")
    for key in ("diameter_mm", "min_spacing_mm", "gtv_margin_mm"):
        if key not in params:
            raise bad_document(source, f"parameters.{key} is missing")
    clearances = params.get("oar_clearance_mm") or {}
    if not isinstance(clearances, Mapping):
        raise bad_document(source, "parameters.oar_clearance_mm is not an object")
    counts = {}
    for key in ("max_vertices", "min_vertices"):
        value = params.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise bad_document(source, f"parameters.{key} must be a whole number, got {value!r}")
        counts[key] = value
    diameter = _number(params["diameter_mm"], "parameters.diameter_mm", source, minimum=0)
    assert diameter is not None
    coplanar = _number(params.get("coplanar_mm"), "parameters.coplanar_mm", source, optional=True)
    coplanar_spacing = _number(
        params.get("coplanar_spacing_mm"), "parameters.coplanar_spacing_mm", source, optional=True
    )
    # Shell mode: the deepest allowed centre is margin + R + width (width defaults to R).
    # Documents without a "mode" key (older or other writers) are in shell mode when they
    # name a width; in "fill" mode a width left in the parameters is not a rule.
    mode = params.get("mode")
    width = _number(
        params.get("shell_width_mm"), "parameters.shell_width_mm", source, optional=True
    )
    if mode == "shell" and width is None:
        width = diameter / 2.0
    elif mode is not None and mode != "shell":
        width = None
    return Rules(
        diameter_mm=diameter,
        min_spacing_mm=_number(params["min_spacing_mm"], "parameters.min_spacing_mm", source),  # type: ignore[arg-type]
        gtv_margin_mm=_number(params["gtv_margin_mm"], "parameters.gtv_margin_mm", source),  # type: ignore[arg-type]
        oar_clearance_mm={
            str(k): float(_number(v, f"parameters.oar_clearance_mm.{k}", source) or 0.0)
            for k, v in clearances.items()
        },
        snap_to_slices=bool(params.get("snap_to_slices", False)),
        max_vertices=counts["max_vertices"],
        min_vertices=counts["min_vertices"],
        coplanar_mm=coplanar if coplanar_spacing is not None else None,
        coplanar_spacing_mm=coplanar_spacing if coplanar is not None else None,
        shell_width_mm=width,
    )


def parse_grid(grid: Any, source: str) -> Grid:
    """The plan's grid (shape and affine)."""
    try:
        shape = tuple(int(n) for n in grid["shape"])
        affine = np.array(grid["affine"], dtype=np.float64)
    except (TypeError, KeyError, ValueError) as exc:
        raise bad_document(source, f"'grid' lacks a valid shape and affine ({exc})") from None
    if len(shape) != 3 or affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise bad_document(
            source,
            f"'grid' has shape {shape} and a {affine.shape} affine; "
            "expected 3 sizes and a 4x4 affine",
        )
    return Grid(shape, affine)  # type: ignore[arg-type]  # three sizes: checked above


def parse_vertices(
    vertices: Any, source: str
) -> tuple[list[Mapping[str, Any]], NDArray[np.float64]]:
    if not isinstance(vertices, list):
        raise bad_document(source, "'vertices' is missing or not a list")
    centres = []
    for i, v in enumerate(vertices):
        if not isinstance(v, Mapping) or "center_ras_mm" not in v:
            raise bad_document(source, f"vertex {i + 1} has no center_ras_mm")
        try:
            c = np.array(v["center_ras_mm"], dtype=np.float64)
        except (TypeError, ValueError):
            c = np.zeros(0)
        if c.shape != (3,) or not np.all(np.isfinite(c)):
            raise bad_document(
                source,
                f"vertex {i + 1} has center_ras_mm {v['center_ras_mm']!r}; "
                "expected three finite numbers",
            )
        centres.append(c)
    return vertices, np.array(centres, dtype=np.float64).reshape(-1, 3)


def check_on_grid(mask: Volume | Grid, grid: Grid, *, name: str, fix: str) -> None:
    """Raise GridMismatchError unless ``mask`` lies on the plan's grid (plan.json's
    ``grid``); the message ends with ``fix`` (see :func:`restore_fix`)."""
    grid.check_same_grid(mask, name="plan.json's grid", other_name=name, fix=fix)


def restore_fix(changed: bool | None) -> str:
    """What to do when a recorded input is off the plan's grid: ``changed`` tells whether
    its sha256 differs from plan.json's (None: no checksum to compare)."""
    if changed:
        return (
            "the file changed after planning (its sha256 is not the one in plan.json): "
            "restore the file the plan was made from, or plan again"
        )
    if changed is None:
        return "plan.json's grid or the input changed after planning: restore them, or plan again"
    return (
        "the file is the one planned from (its sha256 is the one in plan.json), so "
        "plan.json's grid was edited: restore plan.json, or plan again"
    )


def read_plan(path: Path) -> tuple[Path, PlanDocument]:
    """The plan.json path (of a folder or the file itself) and its document, validated by the
    schema; the messages say what to pass to ``lattice verify``."""
    path = Path(path)
    if path.is_dir():
        path = path / "plan.json"
    if not path.exists():
        raise InputFileError(f"plan not found: '{path}'; pass a plan.json or a plan folder")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputFileError(
            f"cannot read '{path}' as JSON ({exc}); pass the plan.json that `lattice plan` wrote"
        ) from exc
    if not isinstance(doc, dict):
        raise InputFileError(f"'{path}' holds a JSON {type(doc).__name__}, not a plan")
    # Wrong types: one line naming the key.
    return path, PlanDocument(validate_plan_document(doc, path))


def _input_path(entry: Any, what: str, plan_path: Path) -> Path:
    if not isinstance(entry, Mapping) or not entry.get("path"):
        raise InputFileError(
            f"{plan_path}: inputs record no {what} file; verify with "
            "lattice.verify_plan and the masks instead"
        )
    p = Path(str(entry["path"]))
    # A relative path is the planner's working directory; the plan folder is the best guess
    # when that is gone.
    if not p.is_absolute() and not p.exists() and (plan_path.parent / p).exists():
        p = plan_path.parent / p
    return p


def checksum_finding(
    entry: Mapping[str, Any], path: Path, what: str
) -> tuple[Violation | None, str | None]:
    """(violation, warning) from comparing a file's sha256 with the recorded one."""
    recorded = entry.get("sha256")
    if not recorded:
        return None, f"no checksum recorded for {what} '{path}'; cannot tell if it changed"
    now = sha256_file(path)
    if now != recorded:
        return Violation(
            "input_files",
            (),
            f"{what} '{path}' changed after planning (sha256 "
            f"{now[:12]}... , recorded {str(recorded)[:12]}...); the plan was made "
            "for another file: plan again",
        ), None
    return None, None


def nifti_inputs(
    inputs: Mapping[str, Any],
    grid: Grid,
    path: Path,
    doc: PlanDocument,
    checksum: Any,
    violations: list[Violation],
    warnings: list[str],
) -> tuple[Volume, dict[str, Volume]]:
    """GTV and OAR masks from the NIfTI files a plan records (checksums and grid checked)."""
    gtv_entry = inputs.get("gtv")
    gtv_path = _input_path(gtv_entry, "GTV", path)
    assert isinstance(gtv_entry, Mapping)  # _input_path checked it
    label = gtv_entry.get("label")
    gtv = load_mask(gtv_path, label=label)
    changed = checksum(gtv_entry, gtv_path, "GTV mask")
    check_on_grid(gtv, grid, name=f"GTV mask '{gtv_path}'", fix=restore_fix(changed))

    oars: dict[str, Volume] = {}
    for k, entry in enumerate(inputs.get("oars") or []):
        p = _input_path(entry, f"OAR #{k + 1}", path)
        name = str(entry.get("name") or p.name)
        oars[name] = load_mask(p)
        changed = checksum(entry, p, f"OAR mask '{name}'")
        check_on_grid(
            oars[name],
            grid,
            name=f"OAR mask '{p}'",
            fix=restore_fix(changed),
        )
        recorded = (doc.parameters.get("oar_clearance_mm") or {}).get(name)
        if (
            entry.get("clearance_mm") is not None
            and recorded is not None
            and not math.isclose(
                float(entry["clearance_mm"]), float(recorded), abs_tol=RULE_TOLERANCE_MM
            )
        ):
            violations.append(
                Violation(
                    "reported_values",
                    (),
                    f"inputs give OAR '{name}' a clearance of "
                    f"{format_mm(entry['clearance_mm'])} mm but the parameters "
                    f"{format_mm(recorded)} mm",
                )
            )

    ct_entry = inputs.get("ct")
    if isinstance(ct_entry, Mapping) and ct_entry.get("path"):
        ct_path = _input_path(ct_entry, "CT", path)
        if ct_path.is_file():
            changed = checksum(ct_entry, ct_path, "CT")
            check_on_grid(
                load_grid(ct_path), grid, name=f"CT '{ct_path}'", fix=restore_fix(changed)
            )
        else:
            warnings.append(f"CT '{ct_path}' not found; its checksum was not checked")
    else:
        warnings.append("the plan records no CT file; its checksum was not checked")
    return gtv, oars


def dicom_inputs(
    inputs: Mapping[str, Any], grid: Grid, path: Path, checksum: Any, warnings: list[str]
) -> tuple[Volume, dict[str, Volume]]:
    """GTV and OAR masks rasterised again from the CT series and RTSTRUCT a plan records."""
    from ..io.dicom import load_dicom_case, series_checksum

    rt_entry = inputs["rtstruct"]
    ct_entry = inputs.get("ct") or {}
    if not isinstance(ct_entry, Mapping) or not ct_entry.get("dicom_folder"):
        raise bad_document(str(path), "inputs record an RTSTRUCT but no CT series folder")
    rt_path = _input_path(rt_entry, "RTSTRUCT", path)
    gtv_entry = inputs.get("gtv") or {}
    oar_entries = list(inputs.get("oars") or [])
    case = load_dicom_case(
        ct_entry["dicom_folder"],
        rt_path,
        gtv_name=str(gtv_entry.get("roi")),
        oar_names=[str(e.get("roi") or e.get("name")) for e in oar_entries],
        series_uid=ct_entry.get("series_instance_uid"),
        pixels=False,
    )
    checksum(rt_entry, rt_path, "RTSTRUCT")
    warnings.extend(case.warnings)  # contours left out, as at planning
    recorded = ct_entry.get("sha256")
    if recorded and series_checksum(case.series) != recorded:
        warnings.append(f"the CT series in '{ct_entry['dicom_folder']}' changed after planning")
    check_on_grid(case.gtv, grid, name=f"GTV ROI '{case.gtv_name}'", fix=restore_fix(None))
    oars = {str(e.get("name") or e.get("roi")): m for e, m in zip(oar_entries, case.oars.values())}
    return case.gtv, oars
