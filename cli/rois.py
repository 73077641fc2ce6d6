"""``lattice rois RS.dcm``: list the ROIs of a structure set (names for --gtv-name, --oar-name)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lattice.errors import EXIT_OK


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``rois`` subcommand to the ``add_subparsers()`` object of the main parser."""
    p = subparsers.add_parser(
        "rois",
        help="list the ROIs of a DICOM RTSTRUCT",
        description="List each ROI of a structure set: number, name, interpreted type, and "
        "how many closed planar contours and points it holds. Use the names with "
        "`lattice plan --gtv-name` and `--oar-name`.",
    )
    p.add_argument("rtstruct", type=Path, metavar="RS.dcm", help="RTSTRUCT file")
    p.set_defaults(func=cmd_rois)
    return p


def cmd_rois(args: argparse.Namespace) -> int:
    from lattice.io.rtstruct_read import list_rois

    rows = list_rois(args.rtstruct)
    width = max([len(r["name"]) for r in rows] + [4])
    print(f"{'#':>3}  {'name':<{width}}  {'type':<10}  {'contours':>8}  {'points':>7}")
    for r in rows:
        print(
            f"{r['number']:>3}  {r['name']:<{width}}  {r['type'] or '-':<10}  "
            f"{r['contours']:>8}  {r['points']:>7}"
        )
    print(f"{len(rows)} ROI{'s' * (len(rows) != 1)} in {args.rtstruct}")
    return EXIT_OK
