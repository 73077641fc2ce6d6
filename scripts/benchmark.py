"""Time the planner end to end on a full-size synthetic CT (512 x 512 x 300, 1.4 L GTV).

Generates the benchmark case once into a cache folder (``--workdir``, reused when the files
are there), then reports:

- load floor: reading the four NIfTI files with nibabel, the least any planner must spend;
- plan wall time (min and median over ``--repeat`` runs) of the console command
  ``python -m lattice_cli plan ...`` run as a subprocess, and the child's peak RSS;
- the number of vertices, from ``OUT/plan.json`` (``summary.n_vertices``).

Usage: ``python scripts/benchmark.py [--workdir DIR] [--pattern hcp] [--repeat 3]``.
Needs the package installed (``pip install -e .``) so that ``lattice_cli`` is importable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib.util import find_spec
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from lattice.phantoms import make_benchmark_case, write_phantom  # noqa: E402

CASE_FILES = ("ct", "gtv", "cord", "bowel")
#: Bump when the generated case changes, so stale caches are rebuilt rather than reused.
CASE_VERSION = "1"


def ensure_case(workdir: Path, *, seed: int) -> dict[str, Path]:
    """The benchmark case's files in a versioned folder of ``workdir``, generated if missing."""
    folder = workdir / f"case-v{CASE_VERSION}-seed{seed}"
    paths = {name: folder / f"{name}.nii.gz" for name in CASE_FILES}
    if all(p.is_file() for p in paths.values()):
        print(f"reusing benchmark case in {folder}")
        return paths
    t0 = time.perf_counter()
    phantom = make_benchmark_case(seed=seed)
    t1 = time.perf_counter()
    written = write_phantom(phantom, folder)
    t2 = time.perf_counter()
    gtv = phantom.gtv
    print(
        f"generated benchmark case in {folder}: {gtv.shape} grid, "
        f"GTV {gtv.array.sum() * gtv.voxel_volume_cc:.0f} cc "
        f"(build {t1 - t0:.1f} s, write {t2 - t1:.1f} s)"
    )
    return {name: written[name] for name in CASE_FILES}


def load_floor(paths: dict[str, Path], *, repeat: int) -> float:
    """Fastest of ``repeat`` wall times (s) to read every file fully with nibabel."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for path in paths.values():
            img = nib.load(path)
            np.asanyarray(img.dataobj)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
    return min(times)


def _tree_rss_mb(pid: int) -> float:
    """Resident memory (MB) of a process and all its descendants, from /proc (Linux)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += float(line.split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def run_plan(
    command: list[str],
) -> tuple[float, float, float, subprocess.CompletedProcess[str] | None]:
    """Run ``command``; return wall time (s), peak RSS (MB) of the main process, peak summed
    RSS (MB) of the process tree (the planner draws its picture in a child process), and a
    failure record.

    ``os.wait4`` on the child's pid gives that process's peak alone, unlike
    ``getrusage(RUSAGE_CHILDREN)``, which is the maximum over every child so far. The tree
    total is sampled from /proc every 5 ms (0 where /proc does not exist).
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tree_peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            tree_peak[0] = max(tree_peak[0], _tree_rss_mb(proc.pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # Drain the pipes in threads so a chatty child cannot block on a full pipe.
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=lambda: out.append(proc.stdout.read())),  # type: ignore[union-attr]
        threading.Thread(target=lambda: err.append(proc.stderr.read())),  # type: ignore[union-attr]
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    rss_mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    failed = None
    if proc.returncode != 0:
        failed = subprocess.CompletedProcess(command, proc.returncode, "".join(out), "".join(err))
    return wall, rss_mb, tree_peak[0], failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "lattice-benchmark",
        help="cache folder for the generated case and the plan output "
        "(default: <tmp>/lattice-benchmark)",
    )
    parser.add_argument("--pattern", default="hcp", help="lattice pattern to plan (default hcp)")
    parser.add_argument("--repeat", type=int, default=3, help="plan runs to time (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the case's CT noise")
    parser.add_argument(
        "--plan-args",
        default="",
        help="extra options for lattice plan, e.g. '--no-dicom --mesh-format "
        "none' to time the plan without its DICOM and mesh exports",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")

    paths = ensure_case(args.workdir, seed=args.seed)
    floor = load_floor(paths, repeat=args.repeat)

    if find_spec("lattice_cli") is None:
        print(
            "lattice_cli is not importable; install the package (pip install -e .) "
            "to time the planner",
            file=sys.stderr,
        )
        return 1
    out = args.workdir / f"plan-{args.pattern}"
    command = [
        sys.executable,
        "-m",
        "lattice_cli",
        "plan",
        "--ct",
        str(paths["ct"]),
        "--gtv",
        str(paths["gtv"]),
        "--out",
        str(out),
        "--diameter-mm",
        "15",
        "--spacing-mm",
        "30",
        "--gtv-margin-mm",
        "5",
        "--oar",
        f"{paths['cord']}:10",
        "--oar",
        f"{paths['bowel']}:10",
        "--pattern",
        args.pattern,
        "--force",
        *args.plan_args.split(),
    ]
    walls, rss, trees = [], [], []
    for i in range(args.repeat):
        wall, rss_mb, tree_mb, failed = run_plan(command)
        if failed is not None:
            print(f"run {i + 1} failed with exit code {failed.returncode}:", file=sys.stderr)
            print(" ".join(command), file=sys.stderr)
            print(failed.stdout, failed.stderr, sep="\n", file=sys.stderr)
            return 1
        walls.append(wall)
        rss.append(rss_mb)
        trees.append(tree_mb)
        print(
            f"run {i + 1}/{args.repeat}: {wall:.2f} s, peak RSS {rss_mb:.0f} MB "
            f"(all processes together: {tree_mb:.0f} MB)"
        )

    plan = json.loads((out / "plan.json").read_text())
    n_vertices = plan["summary"]["n_vertices"]
    rows = [
        ("load floor (nibabel, 4 files)", f"{floor:.2f} s"),
        (f"plan wall, min of {args.repeat}", f"{min(walls):.2f} s"),
        (f"plan wall, median of {args.repeat}", f"{statistics.median(walls):.2f} s"),
        ("plan peak RSS (max over runs)", f"{max(rss):.0f} MB"),
        ("  with the picture process, summed", f"{max(trees):.0f} MB"),
        ("vertices", str(n_vertices)),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\nbenchmark: {paths['ct'].parent}, pattern {args.pattern}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
