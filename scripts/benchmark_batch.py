#!/usr/bin/env python3
"""Benchmark ``lattice batch``: the five ../shared/data STS cases x 2 spacings x 2 diameters
with 1 worker and with 2 workers (fresh output folders), optionally also on a Dask
LocalCluster; prints wall and CPU times (user + sys of the batch's process tree), the
2-worker / 1-worker ratios and whether the counts agree.

    python scripts/benchmark_batch.py [--data ../shared/data] [--workdir /tmp/batchbench]
                                      [--pairs N] [--dask] [-- extra plan options]

With ``--pairs N`` the two runs alternate N times (1, 2, 2, 1, 1, 2, ...: a shared machine's
load then weighs on both alike) and the median of the N ratios is printed as well; the load
average before each pair is shown, since other work on the machine inflates the wall times.

The CT and GTV files are the cases' own; one extra case whose GTV is truncated on purpose
checks that a failing case is recorded and the rest go on.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ("STS_001", "STS_002", "STS_013", "STS_035", "STS_044")


def run(
    manifest: Path, out: Path, extra: list[str], *, fresh: bool = True, quiet: bool = False
) -> tuple[float, float]:
    """Wall and CPU time (s; user + sys of the batch and every process it waited for) of
    ``lattice batch`` on ``manifest`` into ``out`` (emptied first when ``fresh``); ``quiet``
    drops its output."""
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


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
    parser.add_argument("--pairs", type=int, default=1, help="1- and 2-worker runs, alternating")
    parser.add_argument("--dask", action="store_true", help="also run on a LocalCluster")
    parser.add_argument("extra", nargs="*", help="plan options for every case (after --)")
    args = parser.parse_args()
    manifest = write_manifest(args.data, args.workdir)
    ratios, same = [], True
    for i in range(args.pairs):
        load = os.getloadavg()[0]
        order = (1, 2) if i % 2 == 0 else (2, 1)
        times = {
            n: run(
                manifest,
                args.workdir / f"w{n}",
                [*args.extra, "--workers", str(n)],
                quiet=args.pairs > 1,
            )
            for n in order
        }
        (wall1, cpu1), (wall2, cpu2) = times[1], times[2]
        ratios.append((wall2 / wall1, cpu2 / cpu1))
        print(
            f"load {load:.2f}: 1 worker {wall1:.1f} s (CPU {cpu1:.1f} s), 2 workers "
            f"{wall2:.1f} s (CPU {cpu2:.1f} s), ratio {wall2 / wall1:.2f} (CPU "
            f"{cpu2 / cpu1:.2f})",
            flush=True,
        )
        same = same and counts(args.workdir / "w1") == counts(args.workdir / "w2")
    if args.pairs > 1:
        print(
            f"median of {args.pairs} pairs: ratio {statistics.median(r for r, _ in ratios):.2f} "
            f"(CPU {statistics.median(c for _, c in ratios):.2f})"
        )
    print(f"counts equal between 1 and 2 workers: {same}")
    t0 = time.perf_counter()
    run(manifest, args.workdir / "w2", [*args.extra, "--workers", "2"], fresh=False, quiet=True)
    print(f"rerun of the 2-worker batch (finished rows skipped): {time.perf_counter() - t0:.1f} s")
    if args.dask:
        from distributed import LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
            t, _ = run(
                manifest, args.workdir / "dask", [*args.extra, "--scheduler", c.scheduler_address]
            )
        print(
            f"Dask LocalCluster (2 workers) {t:.1f} s; counts equal to local: "
            f"{counts(args.workdir / 'dask') == counts(args.workdir / 'w2')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
