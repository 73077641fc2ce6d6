"""Write the synthetic sample phantom (CT, GTV, cord, bowel) as NIfTI files.

Usage: ``python sample_data/make_phantom.py [OUTPUT_FOLDER]`` (default ``sample_data/phantom``).
The result is the same on every run, so the committed files can be regenerated and compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

from lattice.phantoms import make_phantom, write_phantom  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "output",
        nargs="?",
        type=Path,
        default=REPO / "sample_data" / "phantom",
        help="output folder (default: sample_data/phantom)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the CT noise (default 0)")
    args = parser.parse_args(argv)
    phantom = make_phantom(seed=args.seed)
    paths = write_phantom(phantom, args.output)
    gtv = phantom.gtv
    print(f"GTV {gtv.array.sum() * gtv.voxel_volume_cc:.1f} cc on a {gtv.shape} grid")
    for name, path in paths.items():
        print(f"{name:>6}: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
