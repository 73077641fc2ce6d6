"""``lattice measure``: size and shape of a GTV, and whether it meets a size rule."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lattice.errors import EXIT_OK
from lattice_cli.options import check_options, ranged, whole


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``measure`` subcommand to the ``add_subparsers()`` object of the main parser."""
    p = subparsers.add_parser(
        "measure",
        help="measure a GTV: volume, RECIST-style diameters, sphericity",
        description="Measure a lesion mask: volume, the longest axial diameter and the longest "
        "chord perpendicular to it on the same slice (RECIST-style), the 3-D maximum diameter "
        "and the sphericity; check size rules (by default the seed trial's: shortest diameter "
        "> 30 mm).",
    )
    p.add_argument("--gtv", type=Path, default=None, help="GTV mask (NIfTI)")
    p.add_argument(
        "--gtv-label",
        type=whole,
        default=None,
        metavar="N",
        help=ranged("label of the GTV when --gtv is a label map", "gtv_label"),
    )
    p.add_argument(
        "--ct-dicom",
        type=Path,
        default=None,
        metavar="DIR",
        help="CT series folder, with --rtstruct and --gtv-name (instead of --gtv)",
    )
    p.add_argument("--rtstruct", type=Path, default=None, metavar="RS.dcm")
    p.add_argument("--gtv-name", default=None, metavar="NAME")
    p.add_argument(
        "--size-rule",
        action="append",
        default=None,
        metavar="RULE",
        help="METRIC OP NUMBER, e.g. 'short_axis_mm>30' or 'long_axis_mm>=50' "
        "(metrics: long_axis_mm, short_axis_mm, max_diameter_3d_mm, volume_cc), or "
        "a trial id (NCT06987370, NCT05602415); repeatable (default NCT06987370)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the measurements as JSON (not replaced without --force)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=cmd_measure)
    return p


def cmd_measure(args: argparse.Namespace) -> int:
    from lattice.analysis.measure import evaluate_rules, measure_lesion, parse_size_rule
    from lattice.errors import OutputExistsError, ParameterError

    check_options(args, {"gtv_label": "gtv_label"})
    rules = [parse_size_rule(r) for r in (args.size_rule or ["NCT06987370"])]
    if args.json is not None and args.json.exists() and not args.force:
        raise OutputExistsError(f"'{args.json}' exists; pass --force to replace it")
    if args.gtv is not None and args.ct_dicom is None:
        from lattice.io.nifti import header_warnings, load_mask

        gtv = load_mask(args.gtv, label=args.gtv_label)
        source = str(args.gtv)
        for warning in header_warnings(args.gtv, mask=True):  # accepted, but said
            print(f"lattice: warning: {warning}", file=sys.stderr)
    elif args.gtv is None and None not in (args.ct_dicom, args.rtstruct, args.gtv_name):
        from lattice.io.dicom import load_dicom_case

        case = load_dicom_case(args.ct_dicom, args.rtstruct, gtv_name=args.gtv_name, pixels=False)
        gtv, source = case.gtv, f"ROI '{case.gtv_name}' of {args.rtstruct}"
    else:
        raise ParameterError(
            "give the GTV as --gtv GTV.nii.gz, or as --ct-dicom DIR "
            "--rtstruct RS.dcm --gtv-name NAME"
        )
    m = measure_lesion(gtv)
    checks = evaluate_rules(m, rules)
    print(f"{source}:")
    print(f"  volume                {m.volume_cc:10.2f} cc")
    print(f"  long axis (axial)     {m.long_axis_mm:10.1f} mm   on slice k = {m.axial_slice_index}")
    print(f"  short axis (axial)    {m.short_axis_mm:10.1f} mm   perpendicular, same slice")
    print(f"  3-D maximum diameter  {m.max_diameter_3d_mm:10.1f} mm")
    print(f"  sphericity            {m.sphericity:10.3f}")
    for c in checks:
        print(
            f"  size rule {c['rule']}: {'met' if c['met'] else 'NOT met'} "
            f"({c['value']:g}; {c['source']})"
        )
    if args.json is not None:
        from lattice.io.plan_writer import write_json

        try:
            write_json(
                {"source": source, "measurements": m.to_dict(), "size_rules": checks}, args.json
            )
        except OSError as exc:
            from lattice.errors import OutputWriteError

            raise OutputWriteError(
                f"cannot write '{args.json}' ({exc.strerror}); choose another --json path"
            ) from exc
        print(f"wrote {args.json}", file=sys.stderr)
    return EXIT_OK
