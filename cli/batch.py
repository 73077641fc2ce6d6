"""``lattice batch MANIFEST.csv --out OUT``: every case x parameter set, in parallel processes
or on a Dask cluster, resumable, with a tidy summary.csv (see lattice/batch.py)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lattice.errors import EXIT_JOBS_FAILED
from lattice_cli.options import ranged, whole


def register(
    subparsers: Any, add_plan_parameters: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    """Add the ``batch`` subcommand; ``add_plan_parameters`` adds the options of ``plan``."""
    p = subparsers.add_parser(
        "batch",
        help="plan every case of a manifest (x a parameter grid), in parallel",
        description="Plan every case of MANIFEST.csv (columns case, ct, gtv, optional oars "
        "'[NAME=]PATH:MM;...' and parameter columns named like the plan options, e.g. "
        "diameter_mm) for every parameter set of --grid. The plan options below are the "
        "defaults of every case. Each job is a `lattice plan` run in a worker process; a "
        "failing case is recorded and the others go on; running the command again skips "
        "finished plans. Writes OUT/<case>[/<parameter set>]/ and OUT/summary.csv.",
    )
    p.add_argument(
        "manifest",
        type=Path,
        metavar="MANIFEST.csv",
        help="CSV with the columns case, ct, gtv[, oars][, plan parameters]; "
        "relative paths are taken from its folder",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder of the batch")
    p.add_argument(
        "--grid",
        nargs="+",
        default=[],
        metavar="NAME=V1,V2",
        help="parameter sweep, e.g. --grid spacing_mm=20,25,30 diameter_mm=10,15 "
        "(every combination)",
    )
    p.add_argument(
        "--workers",
        type=whole,
        default=None,
        help=ranged(
            "plans run at once on this machine (default: the cores this process may use)",
            "workers",
        ),
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="run the plans on this Dask distributed cluster instead (pip install "
        "'lattice-sfrt[dask]'; the paths must be reachable from its workers)",
    )
    p.add_argument(
        "--gtv-label",
        type=whole,
        default=None,
        metavar="N",
        help=ranged("label of the GTV when the gtv files are label maps", "gtv_label"),
    )
    add_plan_parameters(p)
    p.add_argument(
        "--force", action="store_true", help="plan every job again, replacing finished plans"
    )
    p.set_defaults(func=cmd_batch)
    return p


def cmd_batch(args: argparse.Namespace) -> int:
    from lattice.batch import (
        PLAN_PARAMETERS,
        expand_grid,
        make_jobs,
        parse_grid,
        read_manifest,
        sweep,
    )
    from lattice.errors import ParameterError

    t0 = time.perf_counter()
    from lattice.forking import usable_cpus
    from lattice.planning.parameters import MAX_WORKERS, check_range

    # By default one worker per usable core, at most as many as --workers accepts.
    workers = args.workers if args.workers is not None else min(usable_cpus(), MAX_WORKERS)
    workers = check_range("workers", workers, label="--workers")
    if args.scheduler is not None and args.workers is not None:
        raise ParameterError(
            "--workers and --scheduler exclude each other: the cluster's workers run the plans"
        )
    defaults = _explicit_options(args, PLAN_PARAMETERS)
    cases = read_manifest(args.manifest)
    grid = expand_grid(parse_grid(args.grid))
    jobs = make_jobs(cases, args.out, grid=grid, defaults=defaults)
    _check_jobs(jobs)

    bar = _progress_bar(len(jobs))
    counts = {"ok": 0, "failed": 0}

    def progress(row: dict, done: int, total: int) -> None:
        counts[row["status"]] += 1
        if row["status"] != "ok":
            message = f"lattice: {_job_label(row, grid)} failed: {row['error']}"
            (bar.write if bar is not None else print)(message, file=sys.stderr)
        if bar is not None:
            bar.update(done - bar.n)

    try:
        rows = sweep(
            jobs,
            workers=workers,
            scheduler=args.scheduler,
            force=args.force,
            summary=args.out / "summary.csv",
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    resumed = sum(1 for r in rows if r["resumed"])
    print(
        f"{len(rows)} plans: {counts['ok']} ok, {counts['failed']} failed "
        f"({resumed} done before, skipped); {time.perf_counter() - t0:.1f} s; "
        f"summary: {args.out / 'summary.csv'}"
    )
    return EXIT_JOBS_FAILED if counts["failed"] else 0


def _explicit_options(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The plan options given on the command line: every option of
    :data:`~lattice.plan_options.PLAN_OPTIONS` is None or False when not given (see
    :func:`lattice_cli.plan.add_option`)."""
    given = {n: getattr(args, n) for n in names}
    return {n: v for n, v in given.items() if v is not None and v is not False}  # 0 is given


def _check_jobs(jobs: list) -> None:
    """Read and check every job's plan as ``lattice plan`` would (syntax, every range, the
    rules between options, OAR clearances), so a bad manifest or grid value (``nan``,
    ``1e30``) stops the batch before anything runs."""
    from lattice.batch import job_request
    from lattice.errors import ParameterError
    from lattice.pipeline import check_request
    from lattice.plan_options import OPTION_NAMES

    for job in jobs:
        values = ", ".join(f"{k}={v}" for k, v in job.parameters.items()) or "defaults"
        try:
            check_request(job_request(job))
        except ParameterError as exc:
            message = " ".join(exc.render(OPTION_NAMES).split())
            raise ParameterError(f"case {job.case} ({values}): {message}") from None


def _job_label(row: dict, grid: list[dict]) -> str:
    axes = list(grid[0]) if grid and grid[0] else []
    values = ", ".join(f"{k}={row.get(k)}" for k in axes)
    return f"case {row['case']}" + (f" ({values})" if values else "")


def _progress_bar(total: int):
    """A progress bar on a terminal; None when stderr is not one (logs get one line per
    failed job and the final count)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    # No monitor thread: the batch forks its workers after the bar is made (lattice.batch).
    tqdm.monitor_interval = 0
    return tqdm(total=total, unit="plan", file=sys.stderr, dynamic_ncols=True)
