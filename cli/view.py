"""``lattice view PLAN_DIR``: write a plan folder's interactive ``viewer.html`` again (from
plan.json and the inputs it records), and optionally open it in the default browser."""

from __future__ import annotations

import argparse
import webbrowser
from pathlib import Path
from typing import Any

from lattice.errors import EXIT_OK


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``view`` subcommand to the ``add_subparsers()`` object of the main parser."""
    p = subparsers.add_parser(
        "view",
        help="write (and open) a plan's interactive viewer.html",
        description="Write viewer.html for a plan folder written by `lattice plan`: one "
        "self-contained page (no network access) with the CT around the GTV, three linked "
        "slice views, a 3-D view and the vertex list, from plan.json and the input files it "
        "records; nothing is planned again.",
    )
    p.add_argument("plan", type=Path, metavar="PLAN_DIR", help="plan folder")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="where to write the page (default PLAN_DIR/viewer.html)",
    )
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--force", action="store_true", help="replace an existing page")
    p.set_defaults(func=cmd_view)
    return p


def cmd_view(args: argparse.Namespace) -> int:
    from lattice.io.folder import refuse_existing
    from lattice.render.viewer import VIEWER_NAME, plan_folder_viewer_html, write_viewer

    out = args.out if args.out is not None else args.plan / VIEWER_NAME
    refuse_existing(out, force=args.force)  # before the work, not only after it
    html = plan_folder_viewer_html(args.plan)
    path = write_viewer(out, html, force=args.force)
    print(f"wrote {path} ({len(html.encode('utf-8')) / 1e6:.1f} MB)")
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    return EXIT_OK
