"""Reading a written plan folder back: its document and the volumes its pictures need.

``lattice show`` and ``lattice report`` work from a plan folder of an earlier run without
planning again: the vertices and parameters come from ``plan.json``, the LATTICE target (and
STV) from the folder, the CT, GTV and OARs from the input files ``plan.json`` records (the
DICOM series and RTSTRUCT for a plan made from DICOM; the folder's own ``ct_dicom/`` when the
recorded CT is gone).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputFileError
from ..volume import Volume

#: The JSON Schema of plan.json, shipped with the package (README "plan.json schema").
SCHEMA_NAME = "plan.schema.json"
#: Longest excerpt of a wrong value quoted in an error message.
_SHOWN_CHARS = 60


def read_plan_document(folder: str | Path) -> dict[str, Any]:
    """``plan.json`` of a plan folder (or the file itself), validated against the schema.

    Raises
    ------
    InputFileError
        No folder, no plan.json, not JSON, or not a plan document (the message names the
        first problem by its JSON path; see :func:`validate_plan_document`).
    """
    folder = Path(folder)
    path = folder / "plan.json" if folder.is_dir() else folder
    if not path.is_file():
        raise InputFileError(f"no plan.json in '{folder}'; pass a folder written by `lattice plan`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputFileError(f"cannot read '{path}' as JSON ({exc})") from exc
    return validate_plan_document(doc, path)


@dataclass(frozen=True, eq=False)
class PlanDocument:
    """A plan.json document, validated against the schema, read through named accessors.

    The schema requires only ``grid``, ``parameters`` and ``vertices``; every other section
    may be missing (a document written by another version or by hand), and its accessor
    then gives an empty mapping or None. This is the one place that knows the document's
    layout; readers use it instead of ``.get`` chains.

    >>> doc = PlanDocument.read("out")                   # doctest: +SKIP
    >>> doc.summary["n_vertices"], doc.lesion_measurements.get("long_axis_mm")  # doctest: +SKIP
    """

    data: dict[str, Any]

    @classmethod
    def read(cls, folder: str | Path) -> PlanDocument:
        """The plan.json of a plan folder (or the file itself); see :func:`read_plan_document`."""
        return cls(read_plan_document(folder))

    def _section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def parameters(self) -> dict[str, Any]:
        return self._section("parameters")

    @property
    def summary(self) -> dict[str, Any]:
        return self._section("summary")

    @property
    def inputs(self) -> dict[str, Any]:
        return self._section("inputs")

    @property
    def grid(self) -> dict[str, Any]:
        return self._section("grid")

    @property
    def vertices(self) -> list[dict[str, Any]]:
        return list(self.data.get("vertices") or [])

    @property
    def warnings(self) -> list[str]:
        return list(self.data.get("warnings") or [])

    @property
    def lesion(self) -> dict[str, Any]:
        return self._section("lesion")

    @property
    def lesion_measurements(self) -> dict[str, Any]:
        value = self.lesion.get("measurements")
        return value if isinstance(value, dict) else {}

    @property
    def size_rules(self) -> list[dict[str, Any]]:
        return list(self.lesion.get("size_rules") or [])

    @property
    def dose_proxy(self) -> dict[str, Any] | None:
        value = self.data.get("dose_proxy")
        return value if isinstance(value, dict) and value else None

    @property
    def stv(self) -> dict[str, Any] | None:
        value = self.data.get("stv")
        return value if isinstance(value, dict) else None

    @property
    def objectives(self) -> dict[str, Any]:
        """The TPS optimisation objectives (empty in plans made before them)."""
        return self._section("objectives")

    @property
    def rois(self) -> list[dict[str, Any]]:
        """The ROIs of rtstruct.dcm: name, default name, type, colour (empty if none)."""
        value = self.data.get("rois")
        return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []

    @property
    def verification(self) -> dict[str, Any]:
        return self._section("verification")

    @property
    def search(self) -> dict[str, Any]:
        return self._section("search")

    @property
    def lattice_version(self) -> str | None:
        """The lattice version that wrote the plan."""
        value = self.data.get("lattice_version")
        return None if value is None else str(value)

    @property
    def world_frame(self) -> Any:
        """Each coordinate's frame and the input route (a mapping), or in older plans one
        string; None when absent."""
        return self.data.get("world_frame")


@functools.lru_cache(maxsize=1)
def plan_schema() -> dict[str, Any]:
    """The JSON Schema of plan.json (``lattice/io/plan.schema.json``)."""
    from importlib.resources import files

    return json.loads(files("lattice.io").joinpath(SCHEMA_NAME).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(plan_schema())


def validate_plan_document(doc: Any, source: str | Path) -> dict[str, Any]:
    """``doc`` when it is a plan document by :func:`plan_schema`, else one clear error.

    NaN and infinite numbers (which Python's JSON reader accepts, and the schema cannot
    exclude) are refused first.

    Raises
    ------
    InputFileError
        The first problem, by its JSON path: ``'plan.json': $.vertices[2].depth_mm is the
        string 'NaN', expected number or null; ...``.
    """
    where = f"'{source}'" if isinstance(source, Path) else str(source)
    bad = _non_finite(doc, "$")
    if bad is not None:
        raise InputFileError(
            f"{where} is not a plan document: {bad} is NaN or infinite (JSON "
            "has no such numbers); fix it or write the plan again with "
            "`lattice plan`"
        )
    errors = list(_validator().iter_errors(doc))
    if not errors:
        return doc
    import jsonschema

    first = min(errors, key=lambda e: [str(p) for p in e.absolute_path])
    if first.context:  # oneOf/anyOf: the most relevant alternative
        first = jsonschema.exceptions.best_match(first.context) or first
    raise InputFileError(
        f"{where} is not a plan document: {_problem(first)}; fix it or write "
        "the plan again with `lattice plan` (the schema: "
        f"lattice/io/{SCHEMA_NAME})"
    )


def _non_finite(value: Any, at: str) -> str | None:
    """JSON path of the first NaN or infinite number in ``value``, else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else at
    if isinstance(value, dict):
        items: Any = ((f"{at}.{k}", v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{at}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for path, v in items:
        found = _non_finite(v, path)
        if found is not None:
            return found
    return None


def _problem(error: Any) -> str:
    """One schema error as ``$.path what is wrong``, the value shortened."""
    path = error.json_path
    value = error.instance
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return (
            f"{path} is {' '.join(filter(None, (_kind(value), _shown(value))))}, expected "
            f"{expected}"
        )
    if error.validator == "required":
        missing = next((k for k in error.validator_value if k not in value), "?")
        return f"{path} lacks the required key '{missing}'"
    if error.validator == "additionalProperties":
        extra = sorted(set(value) - set(error.schema.get("properties", {})))
        return (
            f"{path} has the key{'s' * (len(extra) > 1)} {', '.join(map(repr, extra))}, "
            "which lattice does not know as a plan parameter (a rule it would not check)"
        )
    if error.validator in ("minItems", "maxItems"):
        return f"{path} has {len(value)} items, expected {_items(error)}"
    text = f"{path}: {_shown(value)} {error.message.removeprefix(repr(value)).strip()}"
    return text if len(text) <= 4 * _SHOWN_CHARS else text[: 4 * _SHOWN_CHARS - 3] + "..."


def _items(error: Any) -> str:
    schema = error.schema
    lo, hi = schema.get("minItems"), schema.get("maxItems")
    return f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"at least {lo}"


def _kind(value: Any) -> str:
    return {
        bool: "the boolean",
        str: "the string",
        int: "the integer",
        float: "the number",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }.get(type(value), "a value")


def _shown(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


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


#: What to do when the plan folder's files and the inputs it records are on other grids.
PLAN_FILES_FIX = (
    "the plan folder or the inputs it records changed after planning: restore them, or plan again"
)


def load_plan_volumes(folder: str | Path) -> PlanVolumes:
    """The CT, masks and vertices of a written plan (see the module docstring).

    Raises
    ------
    InputFileError
        A recorded input that is gone or unreadable (the message names it).
    GridMismatchError
        Files that are no longer on the plan's grid.
    """
    from .nifti import load_image, load_mask

    folder = Path(folder)
    doc = read_plan_document(folder)
    inputs = doc.get("inputs") or {}
    ct_entry = inputs.get("ct") or {}
    ct_dicom = ct_entry.get("dicom_folder")
    if inputs.get("rtstruct"):
        from .dicom import load_dicom_case

        oar_entries = list(inputs.get("oars") or [])
        if not ct_dicom or not Path(str(ct_dicom)).is_dir():
            raise InputFileError(
                f"the CT series folder '{ct_dicom}' recorded in plan.json is "
                "gone; restore it to draw the plan"
            )
        case = load_dicom_case(
            str(ct_dicom),
            _existing(inputs["rtstruct"]["path"], "RTSTRUCT"),
            gtv_name=str((inputs.get("gtv") or {}).get("roi")),
            oar_names=[str(e.get("roi") or e.get("name")) for e in oar_entries],
            series_uid=ct_entry.get("series_instance_uid"),
        )
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
            raise InputFileError(
                f"the CT recorded in '{folder / 'plan.json'}' ('{ct_path}') "
                "is gone; restore it to draw the plan"
            )
        gtv_entry = inputs.get("gtv") or {}
        gtv = load_mask(_existing(gtv_entry.get("path"), "GTV mask"), label=gtv_entry.get("label"))
        oars = {
            str(e.get("name")): load_mask(_existing(e.get("path"), "OAR mask"))
            for e in inputs.get("oars") or []
        }
    grid = np.asarray((doc.get("grid") or {}).get("affine"), dtype=float)
    target = load_mask(_existing(folder / "lattice_target.nii.gz", "LATTICE target"))
    from .dicom import on_grid

    # A DICOM series may store the axes in another order than the plan's grid: reorder.
    where = {"grid_name": "the plan's lattice_target.nii.gz", "fix": PLAN_FILES_FIX}
    ct = on_grid(ct, target, name="CT", **where)
    gtv = on_grid(gtv, target, name="GTV", **where)
    oars = {n: on_grid(m, target, name=f"OAR '{n}'", **where) for n, m in oars.items()}
    if grid.shape == (4, 4) and not np.allclose(grid, target.affine, atol=1e-3):
        raise InputFileError(
            f"lattice_target.nii.gz in '{folder}' is not on the grid "
            "plan.json records; the folder was changed after planning"
        )
    stv_path = folder / "stv.nii.gz"
    stv = load_mask(stv_path) if stv_path.is_file() else None
    centers = np.array([v["center_ras_mm"] for v in doc["vertices"]], dtype=float).reshape(-1, 3)
    return PlanVolumes(
        document=doc,
        ct=ct,
        gtv=gtv,
        lattice_target=target,
        oars=oars,
        stv=stv,
        centers_ras_mm=centers,
        diameter_mm=float(doc["parameters"]["diameter_mm"]),
    )


def _existing(path: Any, what: str) -> Path:
    if not path or not Path(str(path)).is_file():
        raise InputFileError(
            f"the {what} '{path}' recorded in plan.json is gone; restore it to draw the plan"
        )
    return Path(str(path))
