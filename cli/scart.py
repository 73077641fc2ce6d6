"""``lattice scart``: contract the GTV into the SCART treatment volume (STV) and write it.

Writes ``stv.nii.gz`` (the STV mask on the CT grid) and ``scart.json`` into the output
folder with the same safety as ``lattice plan``: existing files are never replaced without
``--force``, and the files are written into a temporary folder beside the target and moved
into place when complete (``scart.json`` last), so an error or an interruption leaves nothing
behind. Errors are raised as :class:`lattice.errors.LatticeError`; ``lattice_cli.main.main``
turns them into the exit code and a one-line message.

Wired into the parser with ``scart.register(sub)`` in :func:`lattice_cli.main.build_parser`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lattice.errors import EXIT_OK
from lattice_cli.options import check_options, number, ranged, whole

if TYPE_CHECKING:
    from lattice.analysis.stv import StvResult
    from lattice.volume import Volume

#: Files ``lattice scart`` writes, in the order they are moved into place (scart.json last).
SCART_FILES = ("stv.nii.gz", "scart.json")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``scart`` subcommand to ``subparsers``; returns its parser."""
    p = subparsers.add_parser(
        "scart",
        help="contract the GTV into the SCART treatment volume (STV)",
        description="Contract the GTV about its core by an exact Euclidean erosion in mm: the "
        "STV is the GTV voxels deeper than a margin below the GTV surface. Give the margin, or "
        "the fraction of the GTV volume the STV should hold (the margin is then found).",
    )
    p.add_argument("--ct", type=Path, required=True, help="CT image (NIfTI); only its grid is read")
    p.add_argument("--gtv", type=Path, required=True, help="GTV mask on the CT grid (NIfTI)")
    p.add_argument(
        "--gtv-label",
        type=whole,
        default=None,
        metavar="N",
        help=ranged("label of the GTV when --gtv is a label map", "gtv_label"),
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument(
        "--stv-margin-mm",
        type=number,
        default=None,
        metavar="MM",
        help=ranged(
            "erosion margin: STV = GTV voxels more than MM below its surface", "stv_margin_mm"
        ),
    )
    size.add_argument(
        "--stv-fraction",
        type=number,
        default=None,
        metavar="F",
        help=ranged("STV volume / GTV volume (e.g. 0.3)", "stv_fraction"),
    )
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_scart)
    return p


def cmd_scart(args: argparse.Namespace) -> int:
    """Run ``lattice scart``; returns 0 or raises a LatticeError."""
    from lattice.analysis.stv import contract_gtv
    from lattice.io.nifti import load_case, sha256_file
    from lattice.io.plan_writer import check_output_folder

    t0 = time.perf_counter()
    check_options(
        args,
        {
            "gtv_label": "gtv_label",
            "stv_margin_mm": "stv_margin_mm",
            "stv_fraction": "stv_fraction",
        },
    )
    check_output_folder(args.out, force=args.force, names=SCART_FILES)
    case = load_case(args.ct, args.gtv, gtv_label=args.gtv_label, ct_data=False)
    result = contract_gtv(case.gtv, margin_mm=args.stv_margin_mm, fraction=args.stv_fraction)

    def describe(path: Path) -> dict[str, str]:
        return {"path": str(path.resolve()), "sha256": sha256_file(path)}

    document = scart_document(
        result,
        inputs={"ct": describe(args.ct), "gtv": {**describe(args.gtv), "label": args.gtv_label}},
        parameters={
            "stv_margin_mm": args.stv_margin_mm,
            "stv_fraction": args.stv_fraction,
            "gtv_label": args.gtv_label,
        },
    )
    document["warnings"] = [*case.warnings, *result.warnings]
    written = write_scart_folder(result.stv, document, args.out, force=args.force)

    for warning in (*case.warnings, *result.warnings):
        print(f"lattice: warning: {warning}", file=sys.stderr)
    how = (
        f"margin {result.margin_mm:g} mm"
        if result.method == "margin"
        else f"fraction {result.fraction_requested:g} -> margin {result.margin_mm:.2f} mm"
    )
    print(
        f"STV {result.stv_cc:.1f} cc = {100 * result.fraction:.1f} % of the "
        f"{result.gtv_cc:.1f} cc GTV ({how}; {result.n_components} piece"
        f"{'s' if result.n_components != 1 else ''}; surface distance "
        f"{result.surface_distance_min_mm:.1f}-{result.surface_distance_max_mm:.1f} mm); "
        f"wrote {', '.join(sorted(written))} to {args.out} in "
        f"{time.perf_counter() - t0:.2f} s"
    )
    return EXIT_OK


def scart_document(
    result: StvResult, *, inputs: Mapping[str, Any], parameters: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``scart.json`` document for a :class:`lattice.analysis.stv.StvResult`."""
    from lattice import __version__

    stv = result.stv
    return {
        "lattice_version": __version__,
        "world_frame": "RAS+ mm (NIfTI)",
        "inputs": dict(inputs),
        "parameters": dict(parameters),
        "grid": {
            "shape": list(stv.shape),
            "voxel_size_mm": [float(v) for v in stv.voxel_size_mm],
            "affine": [[float(v) for v in row] for row in stv.affine],
        },
        "summary": result.to_dict(),
    }


def write_scart_folder(
    stv: Volume, document: Mapping[str, Any], out_dir: str | Path, *, force: bool
) -> dict[str, Path]:
    """Write ``stv.nii.gz`` and ``scart.json`` into ``out_dir`` atomically.

    Staged in a temporary folder (beside ``out_dir``, or inside it when it exists, so the
    final moves stay on one file system) and moved into place when complete, ``scart.json``
    last: a ``scart.json`` in the folder always describes the ``stv.nii.gz`` beside it. Only
    these two files are touched; a plan in the same folder is left alone.

    Raises
    ------
    OutputExistsError, OutputWriteError
    """
    from lattice.io.nifti import save_volume
    from lattice.io.plan_writer import write_json, write_staged

    def write(stage: Path) -> list[str]:
        save_volume(stv, stage / "stv.nii.gz")
        write_json(document, stage / "scart.json")
        return list(SCART_FILES)

    return write_staged(out_dir, write, owned=SCART_FILES, force=force)
