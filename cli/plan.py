"""``lattice plan``: place vertices in a GTV and write a plan folder.

The options other than the inputs and the output come from one table,
:data:`lattice.plan_options.PLAN_OPTIONS` (flags, help text with defaults and ranges); the
command builds a :class:`lattice.PlanRequest` from them, calls :func:`lattice.run_plan` and
prints the outcome.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from lattice.errors import EXIT_OK, ParameterError
from lattice.plan_options import PLAN_OPTIONS, PlanOption
from lattice_cli.options import number, ranged, whole

#: The dose proxy's argument group: its title and description.
_DOSE_GROUP = (
    "dose proxy",
    "a geometric proxy to rank layouts, not a dose calculation: "
    "spheres at the peak level blurred by a Gaussian over a valley floor "
    "(lattice/dose.py); computed only when one of these is given",
)


def _oar_arg(text: str) -> tuple[str, Path, float | None]:
    """``[NAME=]PATH[:MM]`` -> (name, path, clearance or None: the protocol's), read by
    :func:`lattice.planning.parameters.parse_oar_spec`: an existing file always wins, and ``NAME=``
    is a name only when NAME holds no path separator."""
    from lattice.planning.parameters import parse_oar_spec

    try:
        spec = parse_oar_spec(text)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--oar {text!r}: ")) from None
    return spec.name, spec.path, spec.clearance_mm


def _oar_name_arg(text: str) -> str:
    """``NAME[:MM]``, kept as typed: read against the RTSTRUCT's ROI names (an ROI named
    ``Lung:5`` wins over ``Lung`` with 5 mm) by :func:`_resolve_oar_names`."""
    from lattice.planning.parameters import parse_roi_spec

    try:
        parse_roi_spec(text)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_option(p: Any, option: PlanOption, *, help: str | None = None) -> None:
    """Add one option of :data:`~lattice.plan_options.PLAN_OPTIONS` to a parser or group.

    Every option defaults to None (not given; a flag to False unless a protocol may set it),
    so the protocol's value, then the library's default, applies."""
    kw: dict[str, Any] = {"help": help if help is not None else option.help_text()}
    if option.metavar:
        kw["metavar"] = option.metavar
    if option.kind == "flag":
        kw.update(action="store_true", default=None if option.protocol else False)
    elif option.kind == "list":
        kw.update(action="append", default=None)
    else:
        kw["default"] = None
        if option.kind in ("number", "whole"):
            kw["type"] = number if option.kind == "number" else whole
        if option.kind == "choice":
            valid = option.choice_values()
            kw["choices"] = sorted(valid) if option.name == "protocol" else list(valid)
            if option.upper:
                kw["type"] = str.upper
    p.add_argument(option.flag, **kw)


def add_plan_parameters(p: argparse.ArgumentParser) -> None:
    """The planning and output options of ``lattice plan`` (also the defaults of ``batch``),
    from :data:`~lattice.plan_options.PLAN_OPTIONS`; the ``input`` ones are added beside the
    inputs."""
    groups: dict[str, Any] = {}
    for option in PLAN_OPTIONS:
        if option.group == "input":
            continue
        if option.group == "stv" and "stv" not in groups:
            groups["stv"] = p.add_mutually_exclusive_group()
        if option.group == "dose" and "dose" not in groups:
            groups["dose"] = p.add_argument_group(*_DOSE_GROUP)
        add_option(groups[option.group] if option.group else p, option)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``plan`` subcommand."""
    p = subparsers.add_parser(
        "plan",
        help="place vertices in a GTV and write a plan folder",
        description="Erode the GTV into the LATTICE target and place spherical vertices on a "
        "lattice whose pose is searched for the most vertices.",
    )
    nifti = p.add_argument_group("NIfTI input")
    nifti.add_argument("--ct", type=Path, help="CT image (NIfTI)")
    nifti.add_argument("--gtv", type=Path, help="GTV mask on the CT grid (NIfTI)")
    nifti.add_argument(
        "--oar",
        type=_oar_arg,
        action="append",
        default=[],
        metavar="[NAME=]PATH:MM",
        help="organ at risk mask and its clearance from vertex surfaces; "
        "repeatable (PATH alone takes the protocol's clearance); an existing "
        "file always wins, NAME= is a name only without a path separator "
        "(/data/run=1/cord.nii.gz is a path); clearance "
        + ranged("", "oar_clearance_mm").removeprefix("; "),
    )
    for option in PLAN_OPTIONS:
        if option.group == "input":
            add_option(nifti, option)
    nifti.add_argument(
        "--reference-ct-dicom",
        type=Path,
        default=None,
        metavar="DIR",
        help="the DICOM series the NIfTI CT was converted from: rtstruct.dcm "
        "references it (the grids must match); without it a DICOM CT series "
        "derived from the NIfTI is written to ct_dicom/",
    )
    dicom = p.add_argument_group("DICOM input")
    dicom.add_argument(
        "--ct-dicom",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder holding the CT series (instead of --ct)",
    )
    dicom.add_argument(
        "--ct-series",
        default=None,
        metavar="UID",
        help="SeriesInstanceUID to read when the folder holds several series",
    )
    dicom.add_argument(
        "--rtstruct",
        type=Path,
        default=None,
        metavar="RS.dcm",
        help="structure set drawn on that CT",
    )
    dicom.add_argument(
        "--gtv-name",
        default=None,
        metavar="NAME",
        help="name of the GTV's ROI in --rtstruct (list them: lattice rois)",
    )
    dicom.add_argument(
        "--oar-name",
        type=_oar_name_arg,
        action="append",
        default=[],
        metavar="NAME[:MM]",
        help="organ at risk ROI in --rtstruct and its clearance; repeatable; "
        "an ROI named NAME:MM itself wins",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_plan_parameters(p)
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_plan)
    return p


def _check_inputs(args: argparse.Namespace) -> None:
    """One input route: NIfTI (--ct, --gtv, --oar) or DICOM (--ct-dicom, --rtstruct, ...)."""
    nifti = {
        "--ct": args.ct,
        "--gtv": args.gtv,
        "--oar": args.oar or None,
        "--gtv-label": args.gtv_label,
        "--reference-ct-dicom": args.reference_ct_dicom,
    }
    dicom = {
        "--ct-dicom": args.ct_dicom,
        "--rtstruct": args.rtstruct,
        "--gtv-name": args.gtv_name,
        "--oar-name": args.oar_name or None,
        "--ct-series": args.ct_series,
    }
    if args.ct_dicom is None and args.ct is None:
        raise ParameterError(
            "give the CT: --ct CT.nii.gz (with --gtv) or --ct-dicom DIR (with "
            "--rtstruct and --gtv-name)"
        )
    patient = [
        k
        for k, v in (
            ("--patient-id", args.patient_id),
            ("--patient-name", args.patient_name),
            ("--patient-position", args.patient_position),
        )
        if v is not None
    ]
    if patient and (args.ct_dicom is not None or args.reference_ct_dicom is not None):
        raise ParameterError(
            f"{', '.join(patient)} set the patient of the derived DICOM CT, "
            "which is not written with --ct-dicom or --reference-ct-dicom: "
            "rtstruct.dcm takes the patient of that series; drop them"
        )
    if args.ct_dicom is not None:
        mixed = [k for k, v in nifti.items() if v is not None]
        if mixed:
            raise ParameterError(
                f"{', '.join(mixed)} cannot be combined with --ct-dicom; "
                "name the ROIs of --rtstruct with --gtv-name and --oar-name"
            )
        missing = [k for k in ("--rtstruct", "--gtv-name") if dicom[k] is None]
        if missing:
            raise ParameterError(
                f"--ct-dicom needs {' and '.join(missing)} (list the ROIs of "
                "a structure set with: lattice rois RS.dcm)"
            )
    else:
        mixed = [k for k, v in dicom.items() if v is not None]
        if mixed:
            raise ParameterError(
                f"{', '.join(mixed)} need --ct-dicom (DICOM input); with "
                "--ct give the masks as NIfTI with --gtv and --oar"
            )
        if args.gtv is None:
            raise ParameterError("--ct needs --gtv GTV.nii.gz (the GTV mask on the CT grid)")


def cmd_plan(args: argparse.Namespace) -> int:
    from lattice.pipeline import check_request, run_plan

    t0 = args.started if getattr(args, "started", None) is not None else time.perf_counter()
    _check_inputs(args)
    request = plan_request(args)  # every range, then the rules between options
    check_request(request)  # the OAR clearances (given or the protocol's), before any work
    outcome = run_plan(request)
    _print_outcome(outcome, args.out, time.perf_counter() - t0)
    return EXIT_OK


def plan_request(args: argparse.Namespace) -> Any:
    """The :class:`lattice.pipeline.PlanRequest` of parsed ``lattice plan`` arguments."""
    from lattice.plan_options import request_from_options

    _resolve_oar_names(args)
    return request_from_options(vars(args))


def _resolve_oar_names(args: argparse.Namespace) -> None:
    """``--oar-name`` texts -> (name, name, clearance): an ROI of --rtstruct named as typed
    (``Lung:5``) wins over the ROI before the last ':' with that clearance."""
    from lattice.planning.parameters import parse_roi_spec

    if not args.oar_name or not all(isinstance(t, str) for t in args.oar_name):
        return
    roi_names = None
    if any(":" in t for t in args.oar_name) and args.rtstruct is not None:
        from lattice.io.rtstruct_read import list_rois

        roi_names = [r["name"] for r in list_rois(args.rtstruct)]
    specs = [parse_roi_spec(t, roi_names) for t in args.oar_name]
    args.oar_name = [(name, Path(name), mm) for name, mm in specs]


def _print_outcome(outcome: Any, out: Path, seconds: float) -> None:
    """The warnings (stderr), then the plan, the lesion and the dose proxy in a few lines."""
    doc, plan = outcome.document, outcome.plan
    for warning in outcome.warnings:  # the inputs', the plan's and the exports' warnings
        print(f"lattice: warning: {warning}", file=sys.stderr)
    s = plan.summary()
    p = plan.parameters
    nearest = s["nearest_vertex_min_mm"]
    spacing = (
        f"spacing {p.min_spacing_mm:g} mm"
        if nearest is None or p.count is None
        else f"spread to {nearest:g} mm apart"
    )
    print(
        f"{s['n_vertices']} {'vertex' if s['n_vertices'] == 1 else 'vertices'} "
        f"({p.pattern}, D {p.diameter_mm:g} mm, "
        f"{spacing}, margin {p.gtv_margin_mm:g} mm) in a "
        f"{s['gtv_cc']:.1f} cc GTV; LATTICE target {s['lattice_target_cc']:.1f} cc; "
        f"{seconds:.2f} s"
    )
    lesion = doc["lesion"]["measurements"]
    rules = "; ".join(
        f"{r['rule']}: {'met' if r['met'] else 'NOT met'}" for r in doc["lesion"]["size_rules"]
    )
    print(
        f"GTV long axis {lesion['long_axis_mm']:.1f} mm, short axis "
        f"{lesion['short_axis_mm']:.1f} mm (axial slice {lesion['axial_slice_index']}), 3-D "
        f"maximum {lesion['max_diameter_3d_mm']:.1f} mm; {rules}"
    )
    if "dose_proxy" in doc:
        d = doc["dose_proxy"]
        print(
            f"dose proxy (not a dose calculation): GTV D10 {d['gtv_d10_gy']:g}, D90 "
            f"{d['gtv_d90_gy']:g}, D10/D90 {d['d10_over_d90']}, mean peak/valley "
            f"{d['mean_peak_over_mean_valley']}"
        )
    if "cold_spheres" in doc:
        n, q = len(doc["cold_spheres"]), doc["parameters"]
        print(
            f"{n} cold sphere{'s' * (n != 1)} (D {q['cold_diameter_mm']:g} mm, at least "
            f"{q['cold_gap_mm']:g} mm from every vertex sphere)"
        )
    print(f"wrote {', '.join(sorted(outcome.files))} to {out}")
