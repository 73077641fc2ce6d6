"""``lattice evaluate PLAN_DIR --dose FILE``: the SFRT metrics of a TPS dose on a written plan.

Reads the dose (RT Dose or dose NIfTI), checks its frame of reference against the plan's,
resamples it onto the CT grid, and writes evaluation.json and evaluation.png into the plan
folder, and report.html again with the evaluation
(:func:`lattice.analysis.evaluate_plan.evaluate_plan_folder`). Errors become exit
codes in ``main()`` (3 an unreadable dose, a NaN, infinite or negative dose value, another
frame of reference, or a dose grid that misses the GTV; 6 an earlier evaluation without
--force); the evaluation's warnings (e.g. an all-zero or implausibly high dose) are printed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from lattice.errors import EXIT_OK


def _positive_gy(text: str) -> float:
    """argparse type: a finite dose in Gy above 0 (read as the other numeric options)."""
    from lattice.planning.parameters import read_number

    try:
        value = float(read_number(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite dose in Gy above 0, got {text!r}")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to the ``add_subparsers()`` object of the main parser."""
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a TPS dose (RT Dose or NIfTI) on a written plan",
        description="Resample a dose exported by the TPS onto the plan's CT grid and report "
        "the SFRT metrics (GTV D_x, PVDR, peaks, valley, ePVDR, per-vertex doses, onion "
        "shells, OARs, profiles between nearest vertices) as evaluation.json and "
        "evaluation.png in the plan folder, and write report.html again with the "
        "evaluation. An RT Dose must be in the plan's frame of reference.",
    )
    p.add_argument("plan", type=Path, metavar="PLAN_DIR", help="plan folder")
    p.add_argument(
        "--dose",
        type=Path,
        required=True,
        metavar="FILE",
        help="RT Dose file, or a dose NIfTI (.nii, .nii.gz) in Gy",
    )
    p.add_argument(
        "--relative-dose-gy",
        type=_positive_gy,
        default=None,
        metavar="X",
        help="dose in Gy of 1.0 for an RT Dose with DoseUnits RELATIVE",
    )
    p.add_argument("--force", action="store_true", help="replace an earlier evaluation")
    p.set_defaults(func=cmd_evaluate)
    return p


def _gy(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} Gy"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lattice.analysis.evaluate_plan import evaluate_plan_folder

    done = evaluate_plan_folder(
        args.plan, args.dose, relative_dose_gy=args.relative_dose_gy, force=args.force
    )
    r = done.result
    gtv, peaks, valley = r["gtv"], r["peaks"], r["valley"]
    print(
        f"GTV {r['gtv_cc']:.1f} cc: D95 {_gy(gtv['D95_gy'])}, D50 {_gy(gtv['D50_gy'])}, "
        f"mean {_gy(gtv['mean_gy'])}; PVDR (D10/D90) {_ratio(r['pvdr_d10_d90'])}"
    )
    print(
        f"{r['n_vertices']} vertices: peak mean {_gy(peaks['mean_gy'])}, valley mean "
        f"{_gy(valley['mean_gy'])}; ePVDR {_ratio(r['epvdr'])}"
    )
    for warning in done.warnings:
        print(f"lattice: warning: {warning}", file=sys.stderr)
    print(f"wrote {', '.join(p.name for p in done.written)} to {args.plan}")
    return EXIT_OK
