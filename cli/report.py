"""``lattice report PLAN_DIR``: write report.html again from a plan folder (no re-planning)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lattice.errors import EXIT_OK


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to the ``add_subparsers()`` object of the main parser."""
    p = subparsers.add_parser(
        "report",
        help="write report.html for a plan folder",
        description="Write the one-page report (inputs and checksums, parameters, warnings, "
        "lesion measurements, summary metrics, per-vertex table, cold spheres, the pictures "
        "embedded, and the dose evaluation once `lattice evaluate` has run) from a plan "
        "folder written by `lattice plan`, without planning again.",
    )
    p.add_argument("plan", type=Path, metavar="PLAN_DIR", help="plan folder")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="report file (default PLAN_DIR/report.html)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing report")
    p.set_defaults(func=cmd_report)
    return p


def cmd_report(args: argparse.Namespace) -> int:
    from lattice.io.folder import refuse_existing, write_text_file
    from lattice.io.planfolder import PlanDocument
    from lattice.render.report import folder_pictures, report_of_folder

    PlanDocument.read(args.plan)  # a folder without a valid plan.json: named first
    target = args.out if args.out is not None else args.plan / "report.html"
    refuse_existing(target, force=args.force)  # before the work, not only after it
    pictures = folder_pictures(args.plan)
    text = report_of_folder(args.plan, pictures)
    write_text_file(target, text, force=args.force, what="report")
    print(f"wrote {target} ({len(pictures)} picture{'s' * (len(pictures) != 1)} embedded)")
    return EXIT_OK
