"""``lattice`` command line. Parses arguments, calls the library, prints, returns an exit code.

Exit codes (README "Exit codes" has the catalogue): 0 success (an empty plan only with
--allow-empty); 1 internal error; 2 bad parameters or usage (also: no vertex fits); 3 unreadable
input file; 4 unusable mask; 5 grids differ; 6 output exists (use --force); 7 output cannot be
written; 8 lattice verify found a violation; 9 lattice batch finished with failed jobs; 130
interrupted (Ctrl-C, SIGTERM); 141 stdout closed (a pipe).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from lattice import __version__
from lattice.errors import LatticeError, OutputWriteError, ParameterError
from lattice.export import MESH_FORMATS
from lattice.export.dicom_series import (
    ANONYMOUS_PATIENT_NAME,
    DEFAULT_PATIENT_POSITION,
    PATIENT_POSITIONS,
)
from lattice.export.rtstruct import VALLEY_CONTOUR_CHOICES, VERTEX_ROI_CHOICES
from lattice.options import OPTION_NAMES
from lattice.plan import MODES, ORIENTATION_SEARCHES, PLACEMENTS
from lattice.protocols import PROTOCOLS, get_protocol
from lattice_cli import batch, measure, report, rois, scart, show, verify
from lattice_cli.options import number, ranged, whole

_IMPORTED_AT = time.perf_counter()


def _oar_arg(text: str) -> tuple[str, Path, float | None]:
    """``[NAME=]PATH[:MM]`` -> (name, path, clearance or None: the protocol's), read by
    :func:`lattice.options.parse_oar_spec`: an existing file always wins, and ``NAME=`` is a
    name only when NAME holds no path separator."""
    from lattice.options import parse_oar_spec

    try:
        spec = parse_oar_spec(text)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--oar {text!r}: ")) from None
    return spec.name, spec.path, spec.clearance_mm


def _oar_name_arg(text: str) -> str:
    """``NAME[:MM]``, kept as typed: read against the RTSTRUCT's ROI names (an ROI named
    ``Lung:5`` wins over ``Lung`` with 5 mm) by :func:`_resolve_oar_names`."""
    from lattice.options import parse_roi_spec

    try:
        parse_roi_spec(text)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"lattice: error: {message} (see {self.prog} --help)\n")


def add_plan_parameters(p: argparse.ArgumentParser) -> None:
    """The planning and output options of ``lattice plan`` (also the defaults of ``batch``)."""
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default=None,
                   help="start from a named protocol's parameters (explicit options override "
                   "them): " + "; ".join(f"{k}: {v.description} [{v.source}]"
                                        for k, v in PROTOCOLS.items()))
    p.add_argument("--diameter-mm", type=number, default=None,
                   help=ranged("vertex diameter (15)", "diameter_mm"))
    p.add_argument("--spacing-mm", type=number, default=None,
                   help=ranged("minimum centre-to-centre distance between vertices (30), at "
                               "least the diameter", "min_spacing_mm"))
    p.add_argument("--gtv-margin-mm", type=number, default=None,
                   help=ranged("minimum distance from vertex surface to GTV surface (5)",
                               "gtv_margin_mm"))
    p.add_argument("--pattern", choices=PLACEMENTS, default=None,
                   help="lattice (hcp), or max: an irregular maximal packing started from the "
                   "best lattice (more vertices, less regular)")
    p.add_argument("--time-budget-s", type=number, default=5.0,
                   help=ranged("time budget of --pattern max (5)", "time_budget_s"))
    p.add_argument("--mode", choices=MODES, default="fill",
                   help="fill: vertices throughout the LATTICE target; shell: along its edge, "
                   "centres at depth margin + D/2 .. + --shell-width-mm (fill)")
    p.add_argument("--shell-width-mm", type=number, default=None,
                   help=ranged("shell width for --mode shell (default D/2)", "shell_width_mm"))
    p.add_argument("--snap-to-slices", action="store_true", default=None,
                   help="put every vertex centre on a CT slice plane")
    p.add_argument("--max-vertices", type=whole, default=None, metavar="N",
                   help=ranged("keep at most N vertices (those with the most room)",
                               "max_vertices"))
    p.add_argument("--coplanar-mm", type=number, default=None,
                   help=ranged("co-planar rule: centres closer than this in z "
                               "(superior-inferior) must be --coplanar-spacing-mm apart (Mayo: "
                               "20; 0 turns it off)", "coplanar_mm"))
    p.add_argument("--coplanar-spacing-mm", type=number, default=None,
                   help=ranged("distance required by the co-planar rule (Mayo: 80)",
                               "coplanar_spacing_mm"))
    p.add_argument("--count", type=whole, default=None, metavar="N",
                   help=ranged("place exactly N vertices, as far apart as possible (at least "
                               "--spacing-mm)", "count"))
    p.add_argument("--min-vertices", type=whole, default=None, metavar="N",
                   help=ranged("fail (exit 2, nothing written) if fewer than N vertices fit",
                               "min_vertices"))
    p.add_argument("--allow-empty", action="store_true",
                   help="write the plan even when no vertex fits (by default that is an "
                   "error, exit 2, nothing written), e.g. to record 0 in a parameter sweep")
    p.add_argument("--orientations", choices=ORIENTATION_SEARCHES, default="axial",
                   help="orientation search: about the superior-inferior axis, or also "
                   "tilted (axial)")
    p.add_argument("--rotation-step-deg", type=number, default=5.0,
                   help=ranged("angle step of the orientation search (5)", "rotation_step_deg"))
    p.add_argument("--no-picture", action="store_true",
                   help="skip the pictures (overview.png, vertices.png, overview3d.png)")
    stv = p.add_mutually_exclusive_group()
    stv.add_argument("--stv-margin-mm", type=number, default=None, metavar="MM",
                     help=ranged("also contract the GTV into a SCART target (STV) by this "
                                 "margin: stv.nii.gz and the LATTICE_STV ROI (see lattice "
                                 "scart)", "stv_margin_mm"))
    stv.add_argument("--stv-fraction", type=number, default=None, metavar="F",
                     help=ranged("the same, to this fraction of the GTV volume",
                                 "stv_fraction"))
    p.add_argument("--size-rule", action="append", default=None, metavar="RULE",
                   help="lesion size rule recorded in plan.json, e.g. 'short_axis_mm>30' or a "
                   "trial id (see lattice measure); repeatable (default NCT06987370)")
    dose = p.add_argument_group(
        "dose proxy", "a geometric proxy to rank layouts, not a dose calculation: spheres at "
        "the peak level blurred by a Gaussian over a valley floor (lattice/dose.py); computed "
        "only when one of these is given")
    dose.add_argument("--dose-peak-gy", type=number, default=None,
                      help=ranged("peak level (15), above the valley", "dose_peak_gy"))
    dose.add_argument("--dose-valley-gy", type=number, default=None,
                      help=ranged("valley floor (3)", "dose_valley_gy"))
    dose.add_argument("--dose-falloff-mm", type=number, default=None,
                      help=ranged("standard deviation of the Gaussian fall-off, mm (3)",
                                  "dose_falloff_mm"))
    p.add_argument("--no-dicom", action="store_true",
                   help="skip rtstruct.dcm (and the derived CT series)")
    p.add_argument("--vertex-rois", choices=VERTEX_ROI_CHOICES, default="both",
                   help="vertex ROIs in rtstruct.dcm: one combined LATTICE_VTX, one VTX_nn per "
                   "vertex, or both (both)")
    p.add_argument("--mesh-format", choices=(*MESH_FORMATS, "none"), default="stl",
                   help="format of vertices.* and gtv.* surface meshes, LPS mm (stl)")
    p.add_argument("--valley-contours", choices=VALLEY_CONTOUR_CHOICES, default="holes",
                   help="LATTICE_VALLEY in rtstruct.dcm: the GTV outline with the vertex "
                   "circles as inner contours (holes: Eclipse, RayStation), or each hole "
                   "joined to its outline by a zero-width cut, one polygon per outline "
                   "(keyhole: readers that OR contours, e.g. plastimatch) (holes)")
    p.add_argument("--patient-id", default=None,
                   help="PatientID of the derived DICOM CT, at most 64 characters, no "
                   "backslash (default: LAT + the CT file's hash)")
    p.add_argument("--patient-name", default=None,
                   help="PatientName of the derived DICOM CT, a DICOM person name "
                   f"FAMILY^GIVEN (default: {ANONYMOUS_PATIENT_NAME}, clearly not a real "
                   "patient)")
    p.add_argument("--patient-position", type=str.upper, default=None,
                   choices=list(PATIENT_POSITIONS), metavar="POS",
                   help="PatientPosition of the derived DICOM CT, a DICOM defined term: "
                   + ", ".join(f"{k} {v}" for k, v in PATIENT_POSITIONS.items())
                   + f" ({DEFAULT_PATIENT_POSITION})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lattice", description="LATTICE / SFRT vertex geometry planner.")
    parser.add_argument("--version", action="version", version=f"lattice {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="place vertices in a GTV and write a plan folder",
                       description="Erode the GTV into the LATTICE target and place spherical "
                       "vertices on a lattice whose pose is searched for the most vertices.")
    nifti = p.add_argument_group("NIfTI input")
    nifti.add_argument("--ct", type=Path, help="CT image (NIfTI)")
    nifti.add_argument("--gtv", type=Path, help="GTV mask on the CT grid (NIfTI)")
    nifti.add_argument("--oar", type=_oar_arg, action="append", default=[],
                       metavar="[NAME=]PATH:MM",
                       help="organ at risk mask and its clearance from vertex surfaces; "
                       "repeatable (PATH alone takes the protocol's clearance); an existing "
                       "file always wins, NAME= is a name only without a path separator "
                       "(/data/run=1/cord.nii.gz is a path); clearance "
                       + ranged("", "oar_clearance_mm").removeprefix("; "))
    nifti.add_argument("--gtv-label", type=whole, default=None, metavar="N",
                       help=ranged("label of the GTV when --gtv is a label map", "gtv_label"))
    nifti.add_argument("--reference-ct-dicom", type=Path, default=None, metavar="DIR",
                       help="the DICOM series the NIfTI CT was converted from: rtstruct.dcm "
                       "references it (the grids must match); without it a DICOM CT series "
                       "derived from the NIfTI is written to ct_dicom/")
    dicom = p.add_argument_group("DICOM input")
    dicom.add_argument("--ct-dicom", type=Path, default=None, metavar="DIR",
                       help="folder holding the CT series (instead of --ct)")
    dicom.add_argument("--ct-series", default=None, metavar="UID",
                       help="SeriesInstanceUID to read when the folder holds several series")
    dicom.add_argument("--rtstruct", type=Path, default=None, metavar="RS.dcm",
                       help="structure set drawn on that CT")
    dicom.add_argument("--gtv-name", default=None, metavar="NAME",
                       help="name of the GTV's ROI in --rtstruct (list them: lattice rois)")
    dicom.add_argument("--oar-name", type=_oar_name_arg, action="append", default=[],
                       metavar="NAME[:MM]",
                       help="organ at risk ROI in --rtstruct and its clearance; repeatable; "
                       "an ROI named NAME:MM itself wins")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_plan_parameters(p)
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_plan)
    verify.register(sub)
    scart.register(sub)
    rois.register(sub)
    measure.register(sub)
    report.register(sub)
    show.register(sub)
    batch.register(sub, add_plan_parameters)
    for command in sub.choices.values():
        # SUPPRESS: an absent flag after the command must not undo one given before it.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks on errors")
    return parser


def _check_inputs(args: argparse.Namespace) -> None:
    """One input route: NIfTI (--ct, --gtv, --oar) or DICOM (--ct-dicom, --rtstruct, ...)."""
    nifti = {"--ct": args.ct, "--gtv": args.gtv, "--oar": args.oar or None,
             "--gtv-label": args.gtv_label, "--reference-ct-dicom": args.reference_ct_dicom}
    dicom = {"--ct-dicom": args.ct_dicom, "--rtstruct": args.rtstruct,
             "--gtv-name": args.gtv_name, "--oar-name": args.oar_name or None,
             "--ct-series": args.ct_series}
    if args.ct_dicom is None and args.ct is None:
        raise ParameterError("give the CT: --ct CT.nii.gz (with --gtv) or --ct-dicom DIR (with "
                             "--rtstruct and --gtv-name)")
    patient = [k for k, v in (("--patient-id", args.patient_id),
                              ("--patient-name", args.patient_name),
                              ("--patient-position", args.patient_position)) if v is not None]
    if patient and (args.ct_dicom is not None or args.reference_ct_dicom is not None):
        raise ParameterError(f"{', '.join(patient)} set the patient of the derived DICOM CT, "
                             "which is not written with --ct-dicom or --reference-ct-dicom: "
                             "rtstruct.dcm takes the patient of that series; drop them")
    if args.ct_dicom is not None:
        mixed = [k for k, v in nifti.items() if v is not None]
        if mixed:
            raise ParameterError(f"{', '.join(mixed)} cannot be combined with --ct-dicom; "
                                 "name the ROIs of --rtstruct with --gtv-name and --oar-name")
        missing = [k for k in ("--rtstruct", "--gtv-name") if dicom[k] is None]
        if missing:
            raise ParameterError(f"--ct-dicom needs {' and '.join(missing)} (list the ROIs of "
                                 "a structure set with: lattice rois RS.dcm)")
    else:
        mixed = [k for k, v in dicom.items() if v is not None]
        if mixed:
            raise ParameterError(f"{', '.join(mixed)} need --ct-dicom (DICOM input); with "
                                 "--ct give the masks as NIfTI with --gtv and --oar")
        if args.gtv is None:
            raise ParameterError("--ct needs --gtv GTV.nii.gz (the GTV mask on the CT grid)")


def cmd_plan(args: argparse.Namespace) -> int:
    from lattice.pipeline import run_plan

    t0 = args.started if getattr(args, "started", None) is not None else time.perf_counter()
    _check_inputs(args)
    check_parameters(args)  # every range and rule before any output or worker
    outcome = run_plan(plan_request(args))
    _print_outcome(outcome, args.out, time.perf_counter() - t0)
    return 0


def plan_request(args: argparse.Namespace):
    """The :class:`lattice.pipeline.PlanRequest` of parsed ``lattice plan`` arguments."""
    from lattice.options import request_from_options

    _resolve_oar_names(args)
    return request_from_options(vars(args))


def _print_outcome(outcome, out: Path, seconds: float) -> None:
    """The warnings (stderr), then the plan, the lesion and the dose proxy in a few lines."""
    doc, plan = outcome.document, outcome.plan
    for warning in outcome.warnings:  # the inputs', the plan's and the exports' warnings
        print(f"lattice: warning: {warning}", file=sys.stderr)
    s = plan.summary()
    p = plan.parameters
    nearest = s["nearest_vertex_min_mm"]
    spacing = (f"spacing {p.min_spacing_mm:g} mm" if nearest is None or p.count is None
               else f"spread to {nearest:g} mm apart")
    print(f"{s['n_vertices']} {'vertex' if s['n_vertices'] == 1 else 'vertices'} "
          f"({p.pattern}, D {p.diameter_mm:g} mm, "
          f"{spacing}, margin {p.gtv_margin_mm:g} mm) in a "
          f"{s['gtv_cc']:.1f} cc GTV; LATTICE target {s['lattice_target_cc']:.1f} cc; "
          f"{seconds:.2f} s")
    lesion = doc["lesion"]["measurements"]
    rules = "; ".join(f"{r['rule']}: {'met' if r['met'] else 'NOT met'}"
                      for r in doc["lesion"]["size_rules"])
    print(f"GTV long axis {lesion['long_axis_mm']:.1f} mm, short axis "
          f"{lesion['short_axis_mm']:.1f} mm (axial slice {lesion['axial_slice_index']}), 3-D "
          f"maximum {lesion['max_diameter_3d_mm']:.1f} mm; {rules}")
    if "dose_proxy" in doc:
        d = doc["dose_proxy"]
        print(f"dose proxy (not a dose calculation): GTV D10 {d['gtv_d10_gy']:g}, D90 "
              f"{d['gtv_d90_gy']:g}, D10/D90 {d['d10_over_d90']}, mean peak/valley "
              f"{d['mean_peak_over_mean_valley']}")
    print(f"wrote {', '.join(sorted(outcome.files))} to {out}")


#: Built-in values of the options a protocol may set.
DEFAULTS = {"diameter_mm": 15.0, "min_spacing_mm": 30.0, "gtv_margin_mm": 5.0,
            "pattern": "hcp", "snap_to_slices": False, "coplanar_mm": None,
            "coplanar_spacing_mm": None}


def _resolve(args: argparse.Namespace) -> tuple[dict, dict[str, float]]:
    """Planning settings and OAR clearances: explicit options, else protocol, else defaults."""
    protocol = get_protocol(args.protocol) if args.protocol else None
    explicit = {"diameter_mm": args.diameter_mm, "min_spacing_mm": args.spacing_mm,
                "gtv_margin_mm": args.gtv_margin_mm, "pattern": args.pattern,
                "snap_to_slices": args.snap_to_slices, "coplanar_mm": args.coplanar_mm,
                "coplanar_spacing_mm": args.coplanar_spacing_mm}
    preset = protocol.parameters if protocol else {}
    settings = {k: v if v is not None else preset.get(k, DEFAULTS[k])
                for k, v in explicit.items()}
    clearances = {}
    for name, path, clearance in args.oar or args.oar_name:
        if clearance is None:
            if protocol is None or protocol.oar_clearance_mm is None:
                raise ParameterError(f"--oar '{path}' has no clearance; write --oar "
                                     f"{path}:MM (e.g. {path}:10) or choose a --protocol "
                                     "that sets one")
            clearance = protocol.oar_clearance_mm
        clearances[name] = clearance
    return settings, clearances


def _resolve_oar_names(args: argparse.Namespace) -> None:
    """``--oar-name`` texts -> (name, name, clearance): an ROI of --rtstruct named as typed
    (``Lung:5``) wins over the ROI before the last ':' with that clearance."""
    from lattice.options import parse_roi_spec

    if not args.oar_name or not all(isinstance(t, str) for t in args.oar_name):
        return
    roi_names = None
    if any(":" in t for t in args.oar_name) and args.rtstruct is not None:
        from lattice.rtstruct_read import list_rois

        roi_names = [r["name"] for r in list_rois(args.rtstruct)]
    specs = [parse_roi_spec(t, roi_names) for t in args.oar_name]
    args.oar_name = [(name, Path(name), mm) for name, mm in specs]


#: The numeric options of ``lattice plan`` (attribute -> range name in lattice.options.RANGES).
_RANGED = {"diameter_mm": "diameter_mm", "spacing_mm": "min_spacing_mm",
           "gtv_margin_mm": "gtv_margin_mm", "shell_width_mm": "shell_width_mm",
           "coplanar_mm": "coplanar_mm", "coplanar_spacing_mm": "coplanar_spacing_mm",
           "rotation_step_deg": "rotation_step_deg", "time_budget_s": "time_budget_s",
           "max_vertices": "max_vertices", "count": "count", "min_vertices": "min_vertices",
           "gtv_label": "gtv_label", "stv_margin_mm": "stv_margin_mm",
           "stv_fraction": "stv_fraction", "dose_peak_gy": "dose_peak_gy",
           "dose_valley_gy": "dose_valley_gy", "dose_falloff_mm": "dose_falloff_mm"}


def check_parameters(args: argparse.Namespace) -> None:
    """Every numeric plan option in its range (:data:`lattice.options.RANGES`) and the
    options consistent, as ``plan_vertices`` will check them, but before any work.

    Raises
    ------
    ParameterError
    """
    from lattice.dose import DoseProxyParameters
    from lattice.options import check_range
    from lattice.plan import PlanParameters
    from lattice_cli.options import check_options

    _resolve_oar_names(args)
    check_options(args, _RANGED)  # every range first, then the rules between options
    for name, _, clearance in args.oar or args.oar_name:
        if clearance is not None:
            check_range("oar_clearance_mm", clearance, label=f"clearance for OAR '{name}'")
    settings, clearances = _resolve(args)
    off = settings["coplanar_mm"] == 0  # 0 turns the co-planar rule off, as in plan_vertices
    PlanParameters(
        **{**settings, "coplanar_mm": None if off else settings["coplanar_mm"],
           "coplanar_spacing_mm": None if off else settings["coplanar_spacing_mm"]},
        oar_clearance_mm=clearances, max_vertices=args.max_vertices,
        min_vertices=args.min_vertices, count=args.count, time_budget_s=args.time_budget_s,
        orientation_search=args.orientations, rotation_step_deg=args.rotation_step_deg,
        mode=args.mode, shell_width_mm=args.shell_width_mm, protocol=args.protocol).validate()
    dose = {"peak_gy": args.dose_peak_gy, "valley_gy": args.dose_valley_gy,
            "falloff_mm": args.dose_falloff_mm}
    if any(v is not None for v in dose.values()):
        DoseProxyParameters(**{k: v for k, v in dose.items() if v is not None}).validate()


#: Library parameter names (in error messages) -> the options a command-line user typed.
_OPTION_NAMES = {k: v for k, v in OPTION_NAMES.items() if k in (
    "min_spacing_mm", "diameter_mm", "gtv_margin_mm", "rotation_step_deg", "time_budget_s",
    "snap_to_slices", "shell_width_mm", "max_vertices", "min_vertices", "coplanar_mm",
    "coplanar_spacing_mm", "patient_id", "peak_gy", "valley_gy", "falloff_mm", "patient_name",
    "patient_position")}
_OPTION_PATTERN = re.compile(r"\b(" + "|".join(_OPTION_NAMES) + r")\b(?!-)")


def _option_names(message: str) -> str:
    """A parameter error in the words of the command line (``--spacing-mm``, not
    ``min_spacing_mm``)."""
    return _OPTION_PATTERN.sub(lambda m: _OPTION_NAMES[m.group(1)], message)


def _one_line(exc: BaseException) -> str:
    """An error message on one line (library messages quoted from nibabel may hold newlines)."""
    return " ".join(str(exc).split())


def _skip_final_collection() -> None:
    gc.disable()
    gc.freeze()


def _process_start() -> float:
    """``time.perf_counter()`` reading at the start of this process, so that a run time
    includes interpreter start-up and imports.

    Linux: the process's start in clock ticks since boot (/proc/self/stat, field 22; 10 ms
    resolution) against CLOCK_BOOTTIME, the clock it is counted on. Elsewhere, or if that
    fails or gives an age that start-up cannot explain (more than 30 s before this module
    was imported): now, i.e. start-up and imports are not counted.
    """
    now = time.perf_counter()
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # after the command name
        age = (time.clock_gettime(time.CLOCK_BOOTTIME)
               - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - age if 0.0 <= age <= now - _IMPORTED_AT + 30.0 else now


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (never raises for expected errors).

    The run time ``plan`` prints counts from the process's start when called as the
    command (``argv`` None), from this call otherwise (tests, lattice batch's workers).
    """
    if argv is None:  # the command itself
        started = _process_start()
        # At exit, skip the interpreter's last searches of every object for reference cycles
        # (0.1-0.3 s after a plan, after the printed time); the OS reclaims the memory.
        atexit.register(_skip_final_collection)
    else:
        started = time.perf_counter()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started = started
    try:
        from lattice.errors import terminate_as_interrupt

        with terminate_as_interrupt():
            return int(args.func(args))
    except LatticeError as exc:
        if args.debug:
            raise
        message = _one_line(exc)
        if isinstance(exc, ParameterError) and args.command == "plan":
            message = _option_names(" ".join(exc.render(OPTION_NAMES).split()))
        print(f"lattice: error: {message}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `lattice ... | head`: the reader left; say nothing more
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command stopped by SIGPIPE
    except KeyboardInterrupt:
        done = ("finished plans and summary.csv are kept; run the same command again to go "
                "on" if args.command == "batch" else "no output was written")
        print(f"lattice: interrupted; {done}", file=sys.stderr)
        return 130
    except MemoryError:
        print("lattice: error: out of memory; crop the CT around the GTV", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI must end with one line, not a traceback
        import errno

        if args.debug:
            raise
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # A full disk or quota outside the staged writes (a temporary folder, say).
            where = f" ('{exc.filename}')" if exc.filename else ""
            print(f"lattice: error: writing failed: {exc.strerror}{where}; nothing was "
                  "written; free space or choose another --out folder", file=sys.stderr)
            return OutputWriteError.exit_code
        print(f"lattice: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with "
              "--debug and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
