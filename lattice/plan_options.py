"""The options of ``lattice plan``, defined once: :data:`PLAN_OPTIONS`.

Each :class:`PlanOption` is a parameter of the command other than its inputs and output: its
name (``--spacing-mm`` is ``spacing_mm``, also the ``lattice batch`` manifest column, grid
axis and default), how it is read from text, the :class:`~lattice.planning.plan.PlanParameters`
field it sets (whose default is the option's), whether a protocol may set it, its range
(:data:`lattice.planning.parameters.RANGES`) and its ``--help`` text. The command line builds its
options from this table, ``lattice batch`` reads its columns with it, and
:func:`request_from_options` turns the values into a :class:`~lattice.pipeline.PlanRequest`.

>>> PLAN_OPTION["spacing_mm"].field, PLAN_OPTION["spacing_mm"].default
('min_spacing_mm', 30.0)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .errors import ParameterError
from .plan_options_cold import COLD_OPTION_ROWS
from .plan_options_support import SUPPORT_OPTION_ROWS, support_options
from .plan_options_tps import TPS_OPTION_ROWS, tps_options
from .planning.parameters import OarSpec, check_range, range_text, read_number

if TYPE_CHECKING:
    from .pipeline import PlanRequest

OptionKind = Literal["number", "whole", "flag", "choice", "text", "list"]


@dataclass(frozen=True)
class PlanOption:
    """One parameter of ``lattice plan`` other than its inputs and output: the command's
    option ``--NAME`` (``-`` for ``_``), a ``lattice batch`` manifest column, grid axis and
    default, and (``field``) the :class:`~lattice.planning.plan.PlanParameters` field it sets.

    Attributes
    ----------
    name : str
        The option's name (``spacing_mm`` for ``--spacing-mm``).
    kind : {'number', 'whole', 'flag', 'choice', 'text', 'list'}
        How the value is read from text (a ``list`` is ``;``-separated in a manifest and a
        repeated option on the command line).
    help : str
        The ``--help`` text; ``{default}`` is the default value, and the range (``range``)
        is appended.
    field : str, optional
        The :class:`~lattice.planning.plan.PlanParameters` field (None: an option of the output).
    protocol : bool
        A protocol (:mod:`lattice.planning.protocols`) may set it; the explicit option wins.
    range : str, optional
        Its key in :data:`RANGES`.
    choices : str, optional
        ``module:NAME`` of the tuple (or mapping) of valid words, read when needed.
    metavar, group : str, optional
        How ``--help`` shows the value; ``'input'`` (beside the inputs), ``'stv'`` (one of),
        ``'dose'`` (the dose proxy's group).
    upper : bool
        The word is read in upper case.
    """

    name: str
    kind: OptionKind
    help: str
    field: str | None = None
    protocol: bool = False
    range: str | None = None
    choices: str | None = None
    metavar: str | None = None
    group: str | None = None
    upper: bool = False

    @property
    def flag(self) -> str:
        """The command-line option, ``--spacing-mm``."""
        return "--" + self.name.replace("_", "-")

    @property
    def default(self) -> Any:
        """The value when the option is not given (and no protocol sets it): the default of
        its :class:`~lattice.planning.plan.PlanParameters`, :class:`~lattice.pipeline.PlanOptions`
        or :class:`~lattice.analysis.dose.DoseProxyParameters` field."""
        from dataclasses import MISSING, fields

        from .analysis.dose import DoseProxyParameters
        from .pipeline import PlanOptions
        from .planning.plan import PlanParameters

        for cls, name in (
            (PlanParameters, self.field),
            (PlanOptions, self.name),
            (DoseProxyParameters, self.name.removeprefix("dose_")),
        ):
            for f in fields(cls):
                if f.name == name and f.default is not MISSING:
                    return f.default
        return None

    def choice_values(self) -> tuple[str, ...]:
        """The valid words of a ``choice``."""
        if self.choices is None:
            return ()
        module, _, attr = self.choices.partition(":")
        return tuple(getattr(importlib.import_module(module), attr))

    def help_text(self) -> str:
        """``help`` with its default and range, as ``--help`` prints it."""
        text = self.help.format(default=_shown(self.default), **_help_fields(self.help))
        return f"{text}; {range_text(self.range)}" if self.range else text


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _help_fields(text: str) -> dict[str, str]:
    """The other ``{fields}`` a help text may hold, read only when it does."""
    out = {}
    if "{protocols}" in text:
        from .planning.protocols import PROTOCOLS

        out["protocols"] = "; ".join(
            f"{k}: {v.description} [{v.source}]" for k, v in PROTOCOLS.items()
        )
    if "{positions}" in text or "{anonymous}" in text:
        from .io import dicom_series as ds

        out["positions"] = ", ".join(f"{k} {v}" for k, v in ds.PATIENT_POSITIONS.items())
        out["position"] = ds.DEFAULT_PATIENT_POSITION
        out["anonymous"] = ds.ANONYMOUS_PATIENT_NAME
    return out


_OPTION = PlanOption
#: Every parameter of ``lattice plan`` other than its inputs and output, in ``--help`` order.
PLAN_OPTIONS: tuple[PlanOption, ...] = (
    _OPTION(
        "gtv_label",
        "whole",
        "label of the GTV when --gtv is a label map",
        range="gtv_label",
        metavar="N",
        group="input",
    ),
    _OPTION(
        "protocol",
        "choice",
        "start from a named protocol's parameters (explicit options override them): {protocols}",
        field="protocol",
        choices="lattice.planning.protocols:PROTOCOLS",
    ),
    _OPTION(
        "diameter_mm",
        "number",
        "vertex diameter ({default})",
        field="diameter_mm",
        protocol=True,
        range="diameter_mm",
    ),
    _OPTION(
        "spacing_mm",
        "number",
        "minimum centre-to-centre distance between vertices ({default}), at least the diameter",
        field="min_spacing_mm",
        protocol=True,
        range="min_spacing_mm",
    ),
    _OPTION(
        "gtv_margin_mm",
        "number",
        "minimum distance from vertex surface to GTV surface ({default})",
        field="gtv_margin_mm",
        protocol=True,
        range="gtv_margin_mm",
    ),
    _OPTION(
        "pattern",
        "choice",
        "lattice ({default}), or max: an irregular maximal packing "
        "started from the best lattice (more vertices, less regular)",
        field="pattern",
        protocol=True,
        choices="lattice.planning.plan:PLACEMENTS",
    ),
    _OPTION(
        "time_budget_s",
        "number",
        "time budget of --pattern max ({default})",
        field="time_budget_s",
        range="time_budget_s",
    ),
    _OPTION(
        "mode",
        "choice",
        "fill: vertices throughout the LATTICE target; shell: along its "
        "edge, centres at depth margin + D/2 .. + --shell-width-mm ({default})",
        field="mode",
        choices="lattice.planning.plan:MODES",
    ),
    _OPTION(
        "shell_width_mm",
        "number",
        "shell width for --mode shell (default D/2)",
        field="shell_width_mm",
        range="shell_width_mm",
    ),
    _OPTION(
        "snap_to_slices",
        "flag",
        "put every vertex centre on a CT slice plane",
        field="snap_to_slices",
        protocol=True,
    ),
    _OPTION(
        "max_vertices",
        "whole",
        "keep at most N vertices (those with the most room)",
        field="max_vertices",
        range="max_vertices",
        metavar="N",
    ),
    _OPTION(
        "coplanar_mm",
        "number",
        "co-planar rule: centres closer than this in z "
        "(superior-inferior) must be --coplanar-spacing-mm apart (Mayo: 20; 0 turns it "
        "off)",
        field="coplanar_mm",
        protocol=True,
        range="coplanar_mm",
    ),
    _OPTION(
        "coplanar_spacing_mm",
        "number",
        "distance required by the co-planar rule (Mayo: 80)",
        field="coplanar_spacing_mm",
        protocol=True,
        range="coplanar_spacing_mm",
    ),
    _OPTION(
        "count",
        "whole",
        "place exactly N vertices, as far apart as possible (at least --spacing-mm)",
        field="count",
        range="count",
        metavar="N",
    ),
    _OPTION(
        "cold_spheres",
        "flag",
        "also place cold (valley) spheres at the holes between the vertices, inside the "
        "GTV by the margin: cold.csv, cold.mrk.json, cold.nii.gz, the LATTICE_COLD ROI and "
        "plan.json cold_spheres",
        field="cold_spheres",
    ),
    _OPTION(
        "cold_diameter_mm",
        "number",
        "cold sphere diameter with --cold-spheres (default D)",
        field="cold_diameter_mm",
        range="cold_diameter_mm",
    ),
    _OPTION(
        "cold_gap_mm",
        "number",
        "least gap from a cold sphere's surface to every vertex sphere's surface with "
        "--cold-spheres ({default}: one 6 MV penumbra at depth with a margin)",
        field="cold_gap_mm",
        range="cold_gap_mm",
    ),
    _OPTION(
        "min_vertices",
        "whole",
        "fail (exit 2, nothing written) if fewer than N vertices fit",
        field="min_vertices",
        range="min_vertices",
        metavar="N",
    ),
    _OPTION(
        "allow_empty",
        "flag",
        "write the plan even when no vertex fits (by default that "
        "is an error, exit 2, nothing written), e.g. to record 0 in a parameter sweep",
    ),
    _OPTION(
        "orientations",
        "choice",
        "orientation search: about the superior-inferior axis, or also tilted ({default})",
        field="orientation_search",
        choices="lattice.planning.plan:ORIENTATION_SEARCHES",
    ),
    _OPTION(
        "rotation_step_deg",
        "number",
        "angle step of the orientation search ({default})",
        field="rotation_step_deg",
        range="rotation_step_deg",
    ),
    _OPTION(
        "no_picture",
        "flag",
        "skip the pictures (overview.png, vertices.png, overview3d.png) and viewer.html",
    ),
    _OPTION("no_viewer", "flag", "skip viewer.html (lattice view writes it later)"),
    _OPTION(
        "stv_margin_mm",
        "number",
        "also contract the GTV into a SCART target (STV) by "
        "this margin: stv.nii.gz and the LATTICE_STV ROI (see lattice scart)",
        range="stv_margin_mm",
        metavar="MM",
        group="stv",
    ),
    _OPTION(
        "stv_fraction",
        "number",
        "the same, to this fraction of the GTV volume",
        range="stv_fraction",
        metavar="F",
        group="stv",
    ),
    *(_OPTION(**row) for row in SUPPORT_OPTION_ROWS),
    _OPTION(
        "size_rule",
        "list",
        "lesion size rule recorded in plan.json, e.g. "
        "'short_axis_mm>30' or a trial id (see lattice measure); repeatable (default "
        "NCT06987370)",
        metavar="RULE",
    ),
    _OPTION(
        "dose_peak_gy",
        "number",
        "peak level ({default}), above the valley",
        range="dose_peak_gy",
        group="dose",
    ),
    _OPTION(
        "dose_valley_gy", "number", "valley floor ({default})", range="dose_valley_gy", group="dose"
    ),
    _OPTION(
        "dose_falloff_mm",
        "number",
        "standard deviation of the Gaussian fall-off, mm ({default})",
        range="dose_falloff_mm",
        group="dose",
    ),
    _OPTION("no_dicom", "flag", "skip rtstruct.dcm (and the derived CT series)"),
    _OPTION(
        "vertex_rois",
        "choice",
        "vertex ROIs in rtstruct.dcm: one combined LATTICE_VTX, "
        "one VTX_nn per vertex, or both ({default})",
        choices="lattice.io.rtstruct_write:VERTEX_ROI_CHOICES",
    ),
    *(_OPTION(**row) for row in COLD_OPTION_ROWS),
    _OPTION(
        "mesh_format",
        "choice",
        "format of vertices.* and gtv.* surface meshes, LPS mm ({default})",
        choices="lattice.plan_options:MESH_CHOICES",
    ),
    _OPTION(
        "valley_contours",
        "choice",
        "LATTICE_VALLEY in rtstruct.dcm: the GTV outline with "
        "the vertex circles as inner contours (holes: Eclipse, RayStation), or each hole "
        "joined to its outline by a zero-width cut, one polygon per outline (keyhole: "
        "readers that OR contours, e.g. plastimatch) ({default})",
        choices="lattice.io.rtstruct_write:VALLEY_CONTOUR_CHOICES",
    ),
    *(_OPTION(**row) for row in TPS_OPTION_ROWS),
    _OPTION(
        "patient_id",
        "text",
        "PatientID of the derived DICOM CT, at most 64 characters, "
        "no backslash (default: LAT + the CT file's hash)",
    ),
    _OPTION(
        "patient_name",
        "text",
        "PatientName of the derived DICOM CT, a DICOM person name "
        "FAMILY^GIVEN (default: {anonymous}, clearly not a real patient)",
    ),
    _OPTION(
        "patient_position",
        "choice",
        "PatientPosition of the derived DICOM CT, a DICOM defined term: {positions} ({position})",
        metavar="POS",
        upper=True,
        choices="lattice.io.dicom_series:PATIENT_POSITIONS",
    ),
)
#: The options by name.
PLAN_OPTION: dict[str, PlanOption] = {o.name: o for o in PLAN_OPTIONS}


def __getattr__(name: str) -> Any:
    if name == "MESH_CHOICES":  # read when asked: lattice.io.plan_writer imports much
        from .io.plan_writer import MESH_FORMATS

        return (*MESH_FORMATS, "none")
    raise AttributeError(name)


#: The ``lattice plan`` option of each parameter a :class:`~lattice.errors.ParameterError`
#: may name (its ``{name}`` fields), for messages in the words of the command line.
OPTION_NAMES: dict[str, str] = {
    **{o.name: o.flag for o in PLAN_OPTIONS},
    **{o.field: o.flag for o in PLAN_OPTIONS if o.field},
    **{o.range: o.flag for o in PLAN_OPTIONS if o.range},
    "peak_gy": "--dose-peak-gy",
    "valley_gy": "--dose-valley-gy",
    "falloff_mm": "--dose-falloff-mm",
    "size_rules": "--size-rule",
    "ct": "--ct",
    "gtv": "--gtv",
    "oar": "--oar",
    "reference_ct_dicom": "--reference-ct-dicom",
    "ct_dicom": "--ct-dicom",
    "rtstruct": "--rtstruct",
    "gtv_name": "--gtv-name",
    "oar_name": "--oar-name",
    "ct_series": "--ct-series",
}


def option_value(name: str, text: str) -> Any:
    """An option's value from its text (a manifest cell, a grid value, a default), read as
    ``lattice plan`` reads it.

    Raises
    ------
    ParameterError
        Not of the option's kind (its ``{name}`` field is the option).
    """
    option = PLAN_OPTION[name]
    try:
        if option.kind == "number":
            return float(read_number(text))
        if option.kind == "whole":
            return int(read_number(text, integer=True))
    except ValueError as exc:
        raise ParameterError(f"argument {{{name}}}: {exc}", parameters=[name]) from None
    if option.kind == "flag":
        if text.lower() not in TRUE_WORDS | FALSE_WORDS:
            raise ParameterError(
                f"{{{name}}} is an on/off flag; write true or false, not {text!r}",
                parameters=[name],
            )
        return text.lower() in TRUE_WORDS
    if option.kind == "list":
        return [t.strip() for t in text.split(";")]
    word = text.upper() if option.upper else text
    valid = option.choice_values()
    if valid and word not in valid:
        raise ParameterError(
            f"argument {{{name}}}: invalid choice: {word!r} (choose from "
            f"{', '.join(map(repr, valid))})",
            parameters=[name],
        )
    return word


#: The words of an on/off flag in a manifest, a grid or a default.
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "off", ""})


def check_option_ranges(values: Mapping[str, Any]) -> None:
    """Every numeric option given (None: not given) and every OAR clearance in its range,
    before the rules between options are checked.

    Raises
    ------
    ParameterError
    """
    for option in PLAN_OPTIONS:
        if option.range and values.get(option.name) is not None:
            check_range(option.range, values[option.name])
    for oar in (*(values.get("oar") or ()), *(values.get("oar_name") or ())):
        name, _, clearance = (
            (oar.name, oar.path, oar.clearance_mm) if isinstance(oar, OarSpec) else oar
        )
        if clearance is not None:
            check_range("oar_clearance_mm", clearance, label=f"clearance for OAR '{name}'")


def request_from_options(values: Mapping[str, Any]) -> PlanRequest:
    """A request from the options of ``lattice plan``, by name (:data:`PLAN_OPTIONS`, and
    the inputs ``ct``, ``gtv``, ``oar`` (name, path, clearance), ``gtv_label``,
    ``reference_ct_dicom``, or ``ct_dicom``, ``rtstruct``, ``gtv_name``, ``oar_name``
    (name, name, clearance), ``ct_series``; ``out``, ``force``). None or absent: not given.
    Every range is checked first (:func:`check_option_ranges`), then the rules.

    Raises
    ------
    ParameterError
    """
    from .analysis.dose import DoseProxyParameters
    from .pipeline import DicomInputs, Inputs, NiftiInputs, PlanOptions, PlanRequest
    from .planning.cold_plan import check_cold_options
    from .planning.plan import PlanParameters

    check_option_ranges(values)
    v = {k: val for k, val in values.items() if val is not None}
    check_cold_options(bool(v.get("cold_spheres")), v)
    parameters = PlanParameters.from_protocol(
        v.get("protocol"),
        **{
            o.field: _given(o, v.get(o.name))
            for o in PLAN_OPTIONS
            if o.field and o.field != "protocol"
        },
    )
    dose = {k: v[f"dose_{k}"] for k in ("peak_gy", "valley_gy", "falloff_mm") if f"dose_{k}" in v}
    output: dict[str, Any] = {
        k: v[k]
        for k in (
            "vertex_rois",
            "cold_rois",
            "valley_contours",
            "patient_id",
            "patient_name",
            "patient_position",
            "stv_margin_mm",
            "stv_fraction",
        )
        if k in v
    }
    if "mesh_format" in v:
        output["mesh_format"] = None if v["mesh_format"] == "none" else v["mesh_format"]
    if v.get("size_rule"):
        output["size_rules"] = v["size_rule"]
    options = PlanOptions(
        allow_empty=bool(v.get("allow_empty")),
        picture=not v.get("no_picture"),
        viewer=not v.get("no_viewer"),
        dicom=not v.get("no_dicom"),
        dose=DoseProxyParameters(**dose) if dose else None,
        support=support_options(v),
        tps=tps_options(v),
        **output,
    )
    inputs: Inputs
    if "ct_dicom" in v:
        inputs = DicomInputs(
            v["ct_dicom"],
            v["rtstruct"],
            v["gtv_name"],
            oars=[(n, mm) for n, _, mm in v.get("oar_name", ())],
            series_uid=v.get("ct_series"),
        )
    else:
        inputs = NiftiInputs(
            v["ct"],
            v["gtv"],
            oars=[o if isinstance(o, OarSpec) else OarSpec(*o) for o in v.get("oar", ())],
            gtv_label=v.get("gtv_label"),
            reference_ct_dicom=v.get("reference_ct_dicom"),
        )
    return PlanRequest(inputs, v["out"], parameters, options, force=bool(v.get("force")))


def _given(option: PlanOption, value: Any) -> Any:
    """An option's value for :meth:`PlanParameters.from_protocol`: None when not given (a
    flag that is off leaves the protocol's value)."""
    return None if option.kind == "flag" and not value else value
