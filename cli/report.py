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
    from lattice.errors import OutputExistsError, OutputWriteError
    from lattice.io.folder import atomic_open
    from lattice.io.planfolder import PlanDocument
    from lattice.render.report import folder_pictures, report_of_folder

    PlanDocument.read(args.plan)  # a folder without a valid plan.json: named first
    target = args.out if args.out is not None else args.plan / "report.html"
    if target.exists() and not args.force:
        raise OutputExistsError(f"'{target}' exists; pass --force to replace it")
    pictures = folder_pictures(args.plan)
    text = report_of_folder(args.plan, pictures)
    try:  # written beside the target and renamed: never a half-written report
        with atomic_open(target) as fh:
            fh.write(text)
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write '{target}' ({exc.strerror}); choose another --out"
        ) from exc
    print(f"wrote {target} ({len(pictures)} picture{'s' * (len(pictures) != 1)} embedded)")
    return EXIT_OK
