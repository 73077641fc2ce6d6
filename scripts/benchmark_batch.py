#!/usr/bin/env python3
"""Benchmark ``lattice batch``: the five ../shared/data STS cases x 2 spacings x 2 diameters
with 1 worker and with 2 workers (fresh output folders), optionally also on a Dask
LocalCluster; prints wall times, the 2-worker / 1-worker ratio and whether the counts agree.

    python scripts/benchmark_batch.py [--data ../shared/data] [--workdir /tmp/batchbench]
                                      [--dask] [-- extra plan options]

The CT and GTV files are the cases' own; one extra case whose GTV is truncated on purpose
checks that a failing case is recorded and the rest go on.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ("STS_001", "STS_002", "STS_013", "STS_035", "STS_044")


def run(
    manifest: Path, out: Path, extra: list[str], *, fresh: bool = True, quiet: bool = False
) -> float:
    """Wall time (s) of ``lattice batch`` on ``manifest`` into ``out`` (emptied first when
    ``fresh``); ``quiet`` drops its output."""
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "lattice_cli",
            "batch",
            str(manifest),
            "--out",
            str(out),
            "--grid",
            "spacing_mm=25,30",
            "diameter_mm=10,15",
            *extra,
        ],
        check=False,
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.DEVNULL if quiet else None,
    )
    return time.perf_counter() - t0


def counts(out: Path) -> list[tuple[str, ...]]:
    with open(out / "summary.csv", newline="") as fh:
        return [
            (r["case"], r["spacing_mm"], r["diameter_mm"], r["status"], r["n_vertices"])
            for r in csv.DictReader(fh)
        ]


def write_manifest(data: Path, workdir: Path) -> Path:
    """The sweep's manifest in ``workdir``: the STS cases of ``data`` and one case whose GTV
    file is truncated on purpose."""
    workdir.mkdir(parents=True, exist_ok=True)
    broken = workdir / "broken_gtv.nii.gz"
    gtv = (data / "STS_001" / "gtv.nii.gz").read_bytes()
    broken.write_bytes(gtv[: len(gtv) // 2])
    manifest = workdir / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case", "ct", "gtv"])
        for case in CASES:
            writer.writerow([case, data / case / "image.nii.gz", data / case / "gtv.nii.gz"])
        writer.writerow(["BROKEN", data / "STS_001" / "image.nii.gz", broken])
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/batchbench"))
    parser.add_argument("--dask", action="store_true", help="also run on a LocalCluster")
    parser.add_argument("extra", nargs="*", help="plan options for every case (after --)")
    args = parser.parse_args()
    manifest = write_manifest(args.data, args.workdir)
    one = run(manifest, args.workdir / "w1", [*args.extra, "--workers", "1"])
    two = run(manifest, args.workdir / "w2", [*args.extra, "--workers", "2"])
    print(f"1 worker {one:.1f} s, 2 workers {two:.1f} s, ratio {two / one:.2f}")
    same = counts(args.workdir / "w1") == counts(args.workdir / "w2")
    print(f"counts equal between 1 and 2 workers: {same}")
    t0 = time.perf_counter()
    run(manifest, args.workdir / "w2", [*args.extra, "--workers", "2"], fresh=False)
    print(f"rerun of the 2-worker batch (finished rows skipped): {time.perf_counter() - t0:.1f} s")
    if args.dask:
        from distributed import LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
            t = run(
                manifest, args.workdir / "dask", [*args.extra, "--scheduler", c.scheduler_address]
            )
        print(
            f"Dask LocalCluster (2 workers) {t:.1f} s; counts equal to local: "
            f"{counts(args.workdir / 'dask') == counts(args.workdir / 'w2')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
