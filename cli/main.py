"""``lattice`` command line. Parses arguments, calls the library, prints, returns an exit code.

Exit codes: 0 success (also an empty plan, with a warning); 1 internal error; 2 bad
parameters or usage; 3 unreadable input file; 4 unusable mask; 5 grids differ; 6 output exists
(use --force); 7 output cannot be written; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from lattice import __version__
from lattice.errors import LatticeError, ParameterError
from lattice.plan import MODES, ORIENTATION_SEARCHES, PLACEMENTS
from lattice.protocols import PROTOCOLS, get_protocol
from lattice_cli import scart, verify


def _oar_arg(text: str) -> tuple[str, Path, float | None]:
    """``[NAME=]PATH:MM`` -> (name, path, clearance); ``[NAME=]PATH`` leaves the clearance to
    the protocol (None)."""
    name = None
    if "=" in text.split(":")[0]:
        name, text = text.split("=", 1)
    path, sep, mm = text.rpartition(":")
    clearance: float | None = None
    if not sep:
        path = text
    elif not path:
        raise argparse.ArgumentTypeError(
            f"expected PATH:CLEARANCE_MM (e.g. cord.nii.gz:10), got {text!r}")
    else:
        try:
            clearance = float(mm)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"OAR clearance must be a number of mm, got {mm!r} in {text!r}") from None
    p = Path(path)
    if name is None:
        name = p.name.removesuffix(".gz").removesuffix(".nii")
    return name, p, clearance


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lattice", description="LATTICE / SFRT vertex geometry planner.")
    parser.add_argument("--version", action="version", version=f"lattice {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="place vertices in a GTV and write a plan folder",
                       description="Erode the GTV into the LATTICE target and place spherical "
                       "vertices on a lattice whose pose is searched for the most vertices.")
    p.add_argument("--ct", type=Path, required=True, help="CT image (NIfTI)")
    p.add_argument("--gtv", type=Path, required=True, help="GTV mask on the CT grid (NIfTI)")
    p.add_argument("--gtv-label", type=int, default=None, metavar="N",
                   help="label of the GTV when --gtv is a label map")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default=None,
                   help="start from a named protocol's parameters (explicit options override "
                   "them): " + "; ".join(f"{k}: {v.description} [{v.source}]"
                                        for k, v in PROTOCOLS.items()))
    p.add_argument("--diameter-mm", type=float, default=None, help="vertex diameter (15)")
    p.add_argument("--spacing-mm", type=float, default=None,
                   help="minimum centre-to-centre distance between vertices (30)")
    p.add_argument("--gtv-margin-mm", type=float, default=None,
                   help="minimum distance from vertex surface to GTV surface (5)")
    p.add_argument("--oar", type=_oar_arg, action="append", default=[],
                   metavar="[NAME=]PATH:MM",
                   help="organ at risk mask and its clearance from vertex surfaces; repeatable "
                   "(PATH alone takes the protocol's clearance)")
    p.add_argument("--pattern", choices=PLACEMENTS, default=None,
                   help="lattice (hcp), or max: an irregular maximal packing started from the "
                   "best lattice (more vertices, less regular)")
    p.add_argument("--time-budget-s", type=float, default=5.0,
                   help="time budget of --pattern max (5)")
    p.add_argument("--mode", choices=MODES, default="fill",
                   help="fill: vertices throughout the LATTICE target; shell: along its edge, "
                   "centres at depth margin + D/2 .. + --shell-width-mm (fill)")
    p.add_argument("--shell-width-mm", type=float, default=None,
                   help="shell width for --mode shell (default D/2)")
    p.add_argument("--snap-to-slices", action="store_true", default=None,
                   help="put every vertex centre on a CT slice plane")
    p.add_argument("--max-vertices", type=_positive_int, default=None, metavar="N",
                   help="keep at most N vertices (those with the most room)")
    p.add_argument("--coplanar-mm", type=float, default=None,
                   help="co-planar rule: centres closer than this in z (superior-inferior) "
                   "must be --coplanar-spacing-mm apart (Mayo: 20; 0 turns it off)")
    p.add_argument("--coplanar-spacing-mm", type=float, default=None,
                   help="distance required by the co-planar rule (Mayo: 80)")
    p.add_argument("--count", type=_positive_int, default=None, metavar="N",
                   help="place exactly N vertices, as far apart as possible (at least "
                   "--spacing-mm)")
    p.add_argument("--min-vertices", type=_positive_int, default=None, metavar="N",
                   help="fail (exit 2, nothing written) if fewer than N vertices fit")
    p.add_argument("--orientations", choices=ORIENTATION_SEARCHES, default="axial",
                   help="orientation search: about the superior-inferior axis, or also "
                   "tilted (axial)")
    p.add_argument("--rotation-step-deg", type=float, default=5.0,
                   help="angle step of the orientation search (5)")
    p.add_argument("--no-picture", action="store_true", help="skip overview.png")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_plan)
    verify.register(sub)
    scart.register(sub)
    for command in sub.choices.values():
        # SUPPRESS: an absent flag after the command must not undo one given before it.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks on errors")
    return parser


def cmd_plan(args: argparse.Namespace) -> int:
    from lattice.export import check_output_folder
    from lattice.export.picture import PictureWorker
    from lattice.io import load_image

    t0 = time.perf_counter()
    check_output_folder(args.out, force=args.force)
    oar_paths = {name: path for name, path, _ in args.oar}

    # Started first, before any thread: it forks, and loads the CT and imports matplotlib on
    # the other core while this process plans.
    with contextlib.ExitStack() as stack:
        worker = (None if args.no_picture
                  else stack.enter_context(PictureWorker(lambda: load_image(args.ct))))
        # scipy takes ~0.4 s to import: let it run while the masks are decompressed.
        importer = threading.Thread(target=importlib.import_module,
                                    args=("lattice.placement",), daemon=True)
        importer.start()
        return _plan_and_write(args, oar_paths, worker, t0)


def _plan_and_write(args: argparse.Namespace, oar_paths: dict, worker, t0: float) -> int:
    from lattice.export import write_plan_folder
    from lattice.io import load_case, sha256_file
    from lattice.placement import plan_vertices
    from lattice.rules import Oar
    from lattice.verify import verify_plan

    names = [name for name, _, _ in args.oar]
    if len(set(names)) != len(names):
        raise ParameterError(f"OAR names repeat ({', '.join(names)}); name them with "
                             "--oar NAME=PATH:MM")
    settings, clearances = _resolve(args)
    # The picture worker reads the CT's voxels (and reports a corrupt file); without it they
    # are read here, so a truncated CT is never accepted.
    case = load_case(args.ct, args.gtv, gtv_label=args.gtv_label, oar_paths=oar_paths,
                     ct_data=worker is None)
    oars = [Oar(name, case.oars[name], clearances[name]) for name, _, _ in args.oar]
    plan = plan_vertices(
        case.gtv, oars=oars, max_vertices=args.max_vertices, min_vertices=args.min_vertices,
        count=args.count, time_budget_s=args.time_budget_s,
        orientation_search=args.orientations, rotation_step_deg=args.rotation_step_deg,
        mode=args.mode, shell_width_mm=args.shell_width_mm, protocol=args.protocol,
        **settings)

    def describe(path: Path) -> dict[str, str]:
        return {"path": str(path.resolve()), "sha256": sha256_file(path)}

    inputs = {"ct": describe(args.ct), "gtv": {**describe(args.gtv), "label": args.gtv_label},
              "oars": [{"name": n, **describe(p), "clearance_mm": clearances[n]}
                       for n, p, _ in args.oar]}
    def verified_document() -> dict:
        """plan.json, checked by the independent verifier before it is written."""
        document = plan.to_dict(inputs=inputs)
        report = verify_plan(document, gtv=case.gtv, oars=case.oars,
                             check_reported_depth=False)
        if not report.ok:
            raise LatticeError("the plan failed its own independent verification ("
                               + "; ".join(v.message for v in report.violations[:3])
                               + "); nothing was written; please report this as a bug")
        document["verification"] = {"ok": True, "by": "lattice.verify (independent "
                                    "recomputation from the masks)",
                                    "checks": list(report.checks)}
        return document

    written = write_plan_folder(plan, args.out, oars=case.oars, inputs=inputs, force=args.force,
                                picture=worker is not None, worker=worker,
                                document=verified_document)
    for warning in plan.warnings:
        print(f"lattice: warning: {warning}", file=sys.stderr)
    s = plan.summary()
    p = plan.parameters
    nearest = s["nearest_vertex_min_mm"]
    spacing = (f"spacing {p.min_spacing_mm:g} mm" if nearest is None or p.count is None
               else f"spread to {nearest:g} mm apart")
    print(f"{s['n_vertices']} vertices ({p.pattern}, D {p.diameter_mm:g} mm, "
          f"{spacing}, margin {p.gtv_margin_mm:g} mm) in a "
          f"{s['gtv_cc']:.1f} cc GTV; LATTICE target {s['lattice_target_cc']:.1f} cc; "
          f"{time.perf_counter() - t0:.2f} s")
    print(f"wrote {', '.join(sorted(written))} to {args.out}")
    return 0


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
    for name, path, clearance in args.oar:
        if clearance is None:
            if protocol is None or protocol.oar_clearance_mm is None:
                raise ParameterError(f"--oar '{path}' has no clearance; write --oar "
                                     f"{path}:MM (e.g. {path}:10) or choose a --protocol "
                                     "that sets one")
            clearance = protocol.oar_clearance_mm
        clearances[name] = clearance
    return settings, clearances


def _one_line(exc: BaseException) -> str:
    """An error message on one line (library messages quoted from nibabel may hold newlines)."""
    return " ".join(str(exc).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (never raises for expected errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except LatticeError as exc:
        if args.debug:
            raise
        print(f"lattice: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lattice: interrupted; no output was written", file=sys.stderr)
        return 130
    except MemoryError:
        print("lattice: error: out of memory; crop the CT around the GTV", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI must end with one line, not a traceback
        if args.debug:
            raise
        print(f"lattice: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with "
              "--debug and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
