"""``lattice verify PLAN``: recheck a written plan against its input masks.

Prints each rule checked with its worst slack and each violation on one line. Exit codes: 0
every rule holds; :data:`lattice.errors.EXIT_VIOLATION` (8) some rule is violated; the usual
:class:`~lattice.errors.LatticeError` codes (3 unreadable plan or mask, 4 unusable mask,
5 mask off the plan's grid) when the plan cannot be verified, turned into exit codes by
``main()``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lattice.errors import EXIT_OK, EXIT_VIOLATION


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``verify`` subcommand to the ``add_subparsers()`` object of the main parser."""
    p = subparsers.add_parser(
        "verify",
        help="recheck a written plan against its input masks",
        description="Recompute every rule of a plan (GTV margin, spacing, OAR clearances, "
        "slice planes, vertex count, co-planar and shell rules when set) from the GTV and OAR "
        "files recorded in plan.json and the written vertex centres, independently of the "
        "planner; check that the input files are unchanged and that the written per-vertex "
        f"values are right. Exit 0 when every rule holds, {EXIT_VIOLATION} otherwise.",
    )
    p.add_argument(
        "plan", type=Path, metavar="PLAN", help="plan.json, or the plan folder holding it"
    )
    p.set_defaults(func=cmd_verify)
    return p


def _slack(value: float | None) -> str:
    return "-" if value is None else f"{value + 0.0:+.3f} mm"  # + 0.0: no "-0.000"


def cmd_verify(args: argparse.Namespace) -> int:
    from lattice.analysis.verify import verify_plan_file

    report = verify_plan_file(args.plan)
    print(f"{args.plan}: {report.n_vertices} vertices")
    width = max([len(c["rule"]) for c in report.checks], default=0)
    for check in report.checks:
        print(
            f"  {check['rule']:<{width}}  worst slack {_slack(check['worst_slack_mm']):>12}"
            f"  {check['detail']}"
        )
    for v in report.violations:
        print(f"violation [{v.rule}]: {v.message}")
    for warning in report.warnings:
        print(f"lattice: warning: {warning}", file=sys.stderr)
    if report.ok:
        print(f"OK: every rule holds ({len(report.checks)} checks)")
        return EXIT_OK
    rules = report.violated_rules
    print(
        f"FAILED: {len(report.violations)} violation{'s' * (len(report.violations) != 1)} "
        f"of {', '.join(rules)}"
    )
    return EXIT_VIOLATION
