"""``lattice show PLAN_DIR``: draw a written plan's pictures again (another window, another
folder) from the plan folder and its recorded inputs, without planning again."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from lattice.errors import EXIT_OK
from lattice.planning.parameters import range_text
from lattice.render.style import CT_WINDOWS_HU

#: Named CT windows (level, width) in HU.
WINDOWS = CT_WINDOWS_HU


def _window(text: str) -> tuple[float, float]:
    """A named window, or LEVEL,WIDTH in HU, each in its range
    (lattice.planning.parameters.RANGES)."""
    from lattice.errors import ParameterError
    from lattice.planning.parameters import check_range, read_number

    if text in WINDOWS:
        return WINDOWS[text]
    try:
        level, width = (float(read_number(v)) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"window must be one of {', '.join(WINDOWS)} or LEVEL,WIDTH in HU (e.g. 40,400), "
            f"got {text!r}"
        ) from None
    try:
        return (
            check_range("window_level_hu", level, label="window level"),
            check_range("window_width_hu", width, label="window width"),
        )
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``show`` subcommand to the ``add_subparsers()`` object of the main parser."""
    p = subparsers.add_parser(
        "show",
        help="draw a written plan's pictures again",
        description="Draw overview.png (axial, coronal, sagittal), overview3d.png and "
        "vertices.png (every axial slice through a vertex centre) for a plan folder written "
        "by `lattice plan`, from plan.json and the input files it records; nothing is planned "
        "again.",
    )
    p.add_argument("plan", type=Path, metavar="PLAN_DIR", help="plan folder")
    p.add_argument(
        "--window",
        type=_window,
        default=WINDOWS["soft"],
        metavar="NAME|LEVEL,WIDTH",
        help=f"CT window: {', '.join(WINDOWS)}, or LEVEL,WIDTH in HU (soft: 40,400); "
        f"level {range_text('window_level_hu')}, width "
        f"{range_text('window_width_hu')}",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for the pictures (default PLAN_DIR)",
    )
    p.add_argument("--force", action="store_true", help="replace existing pictures")
    p.set_defaults(func=cmd_show)
    return p


def cmd_show(args: argparse.Namespace) -> int:
    from lattice.errors import OutputExistsError, OutputWriteError
    from lattice.io.cold_outputs import cold_centers_of_document, cold_labels_of_document
    from lattice.io.planfolder import PlanDocument, load_plan_volumes
    from lattice.io.support_outputs import shells_of_folder
    from lattice.render.pictures import PICTURE_NAMES, draw_plan_pictures

    out = args.out if args.out is not None else args.plan
    clash = [n for n in PICTURE_NAMES if (out / n).exists()]
    if clash and not args.force:
        raise OutputExistsError(
            f"'{out}' already holds {', '.join(clash)}; pass --force to "
            "replace them or choose another --out folder"
        )
    v = load_plan_volumes(args.plan)
    cold = cold_labels_of_document(v.document, v.ct)  # None: the plan has no cold spheres
    shells = shells_of_folder(args.plan, v.lattice_target)  # None: no support shells
    cold_centers, cold_diameter = cold_centers_of_document(v.document)
    p = PlanDocument(v.document).parameters
    title = (
        f"LATTICE {str(p.get('pattern', '')).upper()} {p.get('mode', '')}, spacing "
        f"{p.get('min_spacing_mm')} mm, GTV margin {p.get('gtv_margin_mm')} mm"
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".show-", dir=out))
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write to '{out}' ({exc.strerror}); choose another --out folder"
        ) from exc
    try:
        draw_plan_pictures(
            stage / PICTURE_NAMES[0],
            ct=v.ct,
            gtv=v.gtv,
            lattice_target=v.lattice_target,
            centers_ras_mm=v.centers_ras_mm,
            diameter_mm=v.diameter_mm,
            oars=v.oars,
            stv=v.stv,
            cold=None if cold is None else v.ct.with_array(cold),
            shells=shells,
            title=title,
            window=args.window,
            cold_centers_ras_mm=cold_centers,
            cold_diameter_mm=cold_diameter,
        )
        written = [n for n in PICTURE_NAMES if (stage / n).exists()]
        for name in written:  # each picture appears whole
            os.replace(stage / name, out / name)
    finally:
        for leftover in stage.iterdir():
            leftover.unlink()
        stage.rmdir()
    print(
        f"wrote {', '.join(written)} to {out} (window L {args.window[0]:g} / W {args.window[1]:g})"
    )
    if out == args.plan and (out / "report.html").exists():
        print(f"run `lattice report {args.plan} --force` to put them in report.html")
    return EXIT_OK
