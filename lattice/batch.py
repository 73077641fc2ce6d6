"""Batch runs: every case of a manifest x every parameter set, each planned as ``lattice plan``
plans it.

A job is one :class:`~lattice.pipeline.PlanRequest` run by :func:`~lattice.pipeline.run_plan`,
the function behind the ``lattice plan`` command, so a batch writes exactly what the command
writes. Jobs run in parallel worker processes on this machine (``workers``; each worker,
forked from the batch where the platform has ``fork``, imports everything once and runs one
plan after another; a failing case is recorded and the others go on, and a case that crashes
its worker is run again alone in a process of its own so that only it fails), or on the
workers of an existing Dask distributed cluster
(``scheduler``; the paths must then be readable and the output folder writable by them).

Output folder::

    OUT/summary.csv                       one row per case x parameter set (tidy)
    OUT/<case>/<parameter set>/           the plan folder of that job (plan.json last)
    OUT/runs/<case>--<parameter set>.json that job's row, written when it ends

The ``<parameter set>`` level appears only with a grid (e.g. ``diameter_mm-10_spacing_mm-20``).
A job whose row says ``ok``, whose plan folder is complete and whose input files still hold
the bytes plan.json records is skipped when the batch is run again with the same parameters;
failed jobs are run again. The folder holds one batch, written by one run at a time
(:mod:`lattice.batch_folder`).

>>> from lattice.batch import read_manifest, expand_grid, make_jobs, sweep
>>> cases = read_manifest("cohort.csv")                              # doctest: +SKIP
>>> jobs = make_jobs(cases, "out", grid=expand_grid({"spacing_mm": [20, 30]}),
...                  defaults={"no_dicom": True})                   # doctest: +SKIP
>>> rows = sweep(jobs, workers=2)                                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .batch_folder import batch_lock, check_one_batch, is_done, pending_jobs
from .batch_rows import (  # noqa: F401 - SUMMARY_METRICS, write_summary: re-exported
    SUMMARY_METRICS,
    job_row,
    read_row,
    write_row,
    write_summary,
)
from .errors import (
    EXIT_INTERRUPTED,
    ParameterError,
    exit_status,
)
from .forking import FORK_ENV, usable_cpus
from .io.lock import remove_stale_lock
from .io.plan_writer import remove_stale_stages
from .manifest import (  # noqa: F401 - the manifest's names, re-exported
    MANIFEST_COLUMNS,
    OAR_COLUMN,
    PLAN_PARAMETERS,
    RUNS_FOLDER,
    SUMMARY_NAME,
    Case,
    check_parameter_name,
    expand_grid,
    folder_name,
    parameter_text,
    parse_grid,
    plan_argv,
    read_manifest,
)
from .pipeline import PlanRequest
from .plan_options import OPTION_NAMES, option_value, request_from_options
from .planning.parameters import check_range, parse_oar_spec

#: Seconds to wait for a Dask scheduler to answer before giving up with an error.
DASK_CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Job:
    """One ``lattice plan`` run: a case with one parameter set, writing ``out_dir``.

    Attributes
    ----------
    case : str
    parameters : mapping of str to str
        Every parameter set for this job (defaults, manifest columns, grid values), by
        :data:`PLAN_PARAMETERS` name.
    argv : tuple of str
        The same plan as ``lattice plan`` arguments (recorded in its row: a rerun with
        other arguments is another job).
    out_dir : Path
        The plan folder.
    row_path : Path
        Where the job's summary row is kept.
    source : Case, optional
        The manifest row (its inputs).
    """

    case: str
    parameters: Mapping[str, str]
    argv: tuple[str, ...]
    out_dir: Path
    row_path: Path
    source: Case | None = None

    @property
    def name(self) -> str:
        return self.row_path.stem


def make_jobs(
    cases: Sequence[Case],
    out_dir: str | Path,
    *,
    grid: Sequence[Mapping[str, str]] = ({},),
    defaults: Mapping[str, Any] | None = None,
) -> list[Job]:
    """One job per case x grid point: defaults, then the case's columns, then the grid values.

    Parameters
    ----------
    cases : sequence of Case
    out_dir : path
        The batch's output folder.
    grid : sequence of mapping
        Parameter sets (:func:`expand_grid`); the default ``({},)`` is one set, the defaults.
    defaults : mapping, optional
        Parameters for every job, by :data:`PLAN_PARAMETERS` name; a value of None or False
        leaves the parameter unset.

    Raises
    ------
    ParameterError
        A parameter is both a manifest column and a grid axis, or is unknown.
    """
    out = Path(os.path.abspath(out_dir))
    base = {}
    for name, value in (defaults or {}).items():
        check_parameter_name(name, "default")
        if value is None or value is False:
            continue
        base[name] = (
            ";".join(map(parameter_text, value))
            if isinstance(value, list | tuple)
            else parameter_text(value)
        )
    axes = set().union(*(g.keys() for g in grid)) if grid else set()
    jobs = []
    for case in cases:
        both = sorted(axes & set(case.parameters))
        if both:
            raise ParameterError(
                f"case {case.name}: {', '.join(both)} is both a manifest "
                "column and a grid axis; drop one of them"
            )
        for point in grid:
            folder = out / case.name / folder_name(point) if point else out / case.name
            name = f"{case.name}--{folder_name(point)}" if point else case.name
            parameters = {**base, **case.parameters, **point}
            jobs.append(
                Job(
                    case.name,
                    parameters,
                    tuple(plan_argv(case, parameters, folder)),
                    folder,
                    out / RUNS_FOLDER / f"{name}.json",
                    case,
                )
            )
    seen: dict[str, Job] = {}
    for job in jobs:
        key = str(job.out_dir).casefold()
        if key in seen:
            raise ParameterError(
                f"case {job.case}: parameter sets {dict(seen[key].parameters)} and "
                f"{dict(job.parameters)} would share the folder '{job.out_dir}'; use grid "
                "values that differ in letters or digits"
            )
        seen[key] = job
    return jobs


def job_request(job: Job, *, force: bool = False) -> PlanRequest:
    """The job's plan as a :class:`~lattice.pipeline.PlanRequest`: its case's inputs and its
    parameters read as ``lattice plan`` reads them.

    Raises
    ------
    ParameterError
        A value that is not of its parameter's kind, or out of range (the ``{name}`` field
        of the error is the parameter).
    """
    case = job.source
    if case is None:
        raise ParameterError(f"job {job.name} has no case inputs; make it with make_jobs")
    values: dict[str, Any] = {
        name: option_value(name, text) for name, text in job.parameters.items()
    }
    values.update(
        ct=case.ct,
        gtv=case.gtv,
        out=job.out_dir,
        force=force,
        oar=[parse_oar_spec(o) for o in case.oars],
    )
    return request_from_options(values)


def run_job(job: Job, *, force: bool = False) -> dict[str, Any]:
    """Run one job in this process and return its row; the row is also written to
    ``job.row_path``. Never raises for a failing case: the failure is the row's ``status``,
    ``exit_code`` and ``error``. (Dask workers run jobs this way.)

    ``force`` replaces the job's plan folder (see :func:`_start` for when the batch replaces
    a folder of its own without it)."""
    replace, foreign = _start(job, force)
    t0 = time.perf_counter()
    code, error, warnings = 0, "", 0
    try:
        warnings = len(run_plan_of(job, force=replace).warnings)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the row records it
        code, error = exit_status(exc, option_names=OPTION_NAMES)
    row = job_row(job, code, error, time.perf_counter() - t0, foreign, warnings=warnings)
    write_row(row, job.row_path)
    return row


def run_plan_of(job: Job, *, force: bool = False) -> Any:
    """:func:`~lattice.pipeline.run_plan` of the job (its :class:`PlanOutcome`)."""
    from .pipeline import run_plan

    return run_plan(job_request(job, force=force))


def _start(job: Job, force: bool) -> tuple[bool, bool]:
    """Whether the job replaces its folder, and whether the folder is foreign; records the
    job as running.

    The folder is replaced when asked, or when it is this batch's own: a row of this job
    from an earlier attempt exists that did not find the folder there already (the batch
    was stopped after the plan was written, or while a forced replacement ran). A folder
    that was there before the batch ever ran the job is foreign and never replaced without
    ``force`` (the plan then fails: output exists).
    """
    row = read_row(job.row_path)
    ours = row is not None and row.get("argv") == list(job.argv) and not row.get("foreign")
    exists = job.out_dir.exists()
    foreign = exists and not force and not ours
    write_row(
        {
            "case": job.case,
            "status": "running",
            "argv": list(job.argv),
            "plan_dir": str(job.out_dir),
            "foreign": foreign,
        },
        job.row_path,
    )
    return force or (ours and exists), foreign


def sweep(
    jobs: Sequence[Job],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    force: bool = False,
    summary: str | Path | None = None,
    progress: Callable[[dict[str, Any], int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the jobs not yet done and return every job's row, in job order.

    Parameters
    ----------
    jobs : sequence of Job
        From :func:`make_jobs`.
    workers : int
        Jobs run at once on this machine (each in its own process).
    scheduler : str, optional
        Address of a Dask distributed scheduler (``tcp://HOST:PORT``): the jobs run on its
        workers instead (needs ``pip install lattice-sfrt[dask]``).
    force : bool
        Run jobs again that are already done.
    summary : path, optional
        Write the rows as this CSV (``summary.csv``) when the sweep ends, also when it is
        interrupted (then with the rows finished so far).
    progress : callable(row, done, total), optional
        Called after each job (also for the jobs skipped as done).

    Returns
    -------
    list of dict
        One row per job: ``case``, the job's parameters, ``status`` (``ok`` or ``failed``),
        ``exit_code``, ``error``, the plan's counts and metrics, ``seconds``, ``plan_dir``,
        ``resumed`` (True for a job done by an earlier run and skipped).
        ``pandas.DataFrame(rows)`` makes a table of them.

    Raises
    ------
    ParameterError
        ``workers`` < 1.
    OutputLockedError
        Another batch (or ``lattice plan``) is writing the output folder.
    OutputExistsError
        The folder holds another batch's jobs (:func:`~lattice.batch_folder.check_one_batch`),
        or a finished job's parameters or input files changed
        (:func:`~lattice.batch_folder.pending_jobs`).
    """
    workers = check_range("workers", workers)
    with batch_lock(jobs):
        check_one_batch(jobs)
        return _sweep(
            jobs,
            workers=workers,
            scheduler=scheduler,
            force=force,
            summary=summary,
            progress=progress,
        )


def _sweep(
    jobs: Sequence[Job],
    *,
    workers: int,
    scheduler: str | None,
    force: bool,
    summary: str | Path | None,
    progress: Callable[[dict[str, Any], int, int], None] | None,
) -> list[dict[str, Any]]:
    """:func:`sweep` of jobs whose output folder this run holds."""
    todo, done = pending_jobs(jobs, force=force)
    # Every row has every parameter column of the sweep, in the order first given.
    columns = list(dict.fromkeys(k for job in jobs for k in job.parameters))

    def tidy(row: dict[str, Any], resumed: bool) -> dict[str, Any]:
        head = {"case": row["case"], **{k: row.get(k) for k in columns}}
        return {**head, **{k: v for k, v in row.items() if k not in head}, "resumed": resumed}

    rows = {row["plan_dir"]: tidy(row, True) for row in done}
    total = len(jobs)
    for row in rows.values():
        if progress is not None:
            progress(row, len(rows), total)
    try:
        for row in _run(todo, workers=workers, scheduler=scheduler, force=force):
            rows[row["plan_dir"]] = row = tidy(row, False)
            if progress is not None:
                progress(row, len(rows), total)
    finally:
        for job in jobs:  # finished in a worker but not reported before an interrupt
            if str(job.out_dir) not in rows:
                kept = read_row(job.row_path)
                if is_done(kept, job) or (
                    kept is not None
                    and kept.get("status") == "failed"
                    and kept.get("argv") == list(job.argv)
                ):
                    rows[str(job.out_dir)] = tidy(kept, False)
        ordered = [rows[str(j.out_dir)] for j in jobs if str(j.out_dir) in rows]
        if summary is not None and ordered:
            write_summary(ordered, summary)
    return ordered


def _run(
    jobs: Sequence[Job], *, workers: int, scheduler: str | None, force: bool
) -> Iterable[dict]:
    if not jobs:
        return
    if scheduler is not None:
        yield from _run_dask(jobs, scheduler, force=force)
        return
    # Plans run in worker processes that have imported everything once (a fresh interpreter
    # per plan spends ~1 s importing). A plan draws its pictures in a process of its own only
    # when there are more cores than workers: the cores this process may run on (a cpuset or
    # taskset gives fewer than the machine has).
    fork = usable_cpus() > workers
    before = set(mp.active_children())
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_worker_context(),
        initializer=_warm_up,
        initargs=(fork,),
    )
    crashed: list[Job] = []
    processes: list[Any] = []
    started = time.time()
    try:
        futures = {pool.submit(_run_in_worker, job, force): job for job in jobs}
        # Kept now: a broken pool forgets its processes, and one may still be running a plan.
        processes = [p for p in mp.active_children() if p not in before]
        for future in as_completed(futures):
            job = futures[future]
            try:
                yield future.result()
            except BrokenProcessPool:
                crashed.append(job)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        _stop(processes)
        pool.shutdown(wait=True)
        for job in jobs:  # what a stopped worker could not clean up (its pid is dead now)
            remove_stale_stages(job.out_dir)
            remove_stale_lock(job.out_dir)
    # A plan that crashed its worker took the pool down with it: the jobs that had not
    # finished run again, each alone in a process of its own, so only the culprit fails.
    rerun = []
    for job in crashed:
        row = read_row(job.row_path)
        if is_done(row, job) and job.row_path.stat().st_mtime >= started:
            yield row  # it had finished before the crash
        else:
            rerun.append(job)
    with ThreadPoolExecutor(max_workers=workers) as threads:
        yield from threads.map(lambda j: _run_alone(j, force=force, fork=fork), rerun)


def _worker_context() -> Any:
    """How the workers start: forked from this process where there is ``fork``, else spawned.

    A forked worker starts with what this process has imported already (the library, numpy,
    scipy: ~2 s that a spawned one spends again, each worker on the same two cores) and shares
    those pages until it writes to them. The executor forks every worker at its first submit,
    before it starts a thread of its own; the batch itself runs no other thread (the progress
    bar has no monitor thread), and buffered output is flushed first so that no worker writes
    it again when it exits.
    """
    if "fork" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return mp.get_context("fork")


def _stop(processes: Sequence[Any]) -> None:
    """Stop the processes still running (interrupted or broken: the plans clean up)."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join()


def _run_alone(job: Job, *, force: bool, fork: bool) -> dict[str, Any]:
    """Run one job in a new process of its own; a process that dies fails only this job
    (its row gives the process's exit code)."""
    t0 = time.perf_counter()
    process = mp.get_context("spawn").Process(target=_run_child, args=(job, force, fork))
    process.start()
    try:
        process.join()
    finally:
        _stop([process])
    row = read_row(job.row_path)
    if row is None or row.get("status") == "running":  # it died before writing its row
        foreign = bool(row and row.get("foreign"))
        row = job_row(job, process.exitcode or -1, "", time.perf_counter() - t0, foreign)
        write_row(row, job.row_path)
    return row


def _run_child(job: Job, force: bool, fork: bool) -> None:  # pragma: no cover - a child
    _warm_up(fork)
    _run_in_worker(job, force)


def _warm_up(fork: bool) -> None:  # pragma: no cover - runs in the worker processes
    """Import what a plan needs, once per worker process; leave interrupting to the batch.

    Ctrl-C in a terminal reaches the whole process group: the workers ignore it, and the
    batch stops them with SIGTERM (a running plan then cleans up, see ``_run_in_worker``).
    On Linux a worker also gets SIGTERM when the batch dies (kill -9), instead of running on
    as an orphan.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker inherits the batch's SIGTERM handler; between jobs SIGTERM just ends it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    os.environ[FORK_ENV] = "1" if fork else "0"
    import matplotlib

    matplotlib.use("Agg")
    for module in (
        "lattice.pipeline",
        "lattice.planning.placement",
        "lattice.render.slices",
        "lattice.render.montage",
        "lattice.render.three_d",
        "lattice.io.rtstruct_write",
        "lattice.io.meshes",
        "lattice.io.dicom_series",
        "lattice.analysis.measure",
        "matplotlib.pyplot",
    ):
        importlib.import_module(module)


def _run_in_worker(job: Job, force: bool) -> dict[str, Any]:
    """Run ``job`` in this (worker) process; its row. SIGTERM stops the plan as Ctrl-C
    would (its temporary folders are removed), and this worker takes no further job."""
    from .errors import terminate_as_interrupt

    with terminate_as_interrupt():
        row = run_job(job, force=force)
    if row["exit_code"] == EXIT_INTERRUPTED:
        os._exit(EXIT_INTERRUPTED)
    return row


def _run_dask(jobs: Sequence[Job], scheduler: str, *, force: bool) -> Iterable[dict]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise ParameterError(
            "--scheduler needs Dask distributed: pip install 'lattice-sfrt[dask]'"
        ) from None
    try:
        client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise ParameterError(
            f"cannot reach the Dask scheduler at {scheduler} ({exc}); check "
            "the address (tcp://HOST:PORT) and that the cluster is up"
        ) from None
    with client:
        futures = {client.submit(run_job, job, force=force, pure=False): job for job in jobs}
        try:
            for future in dask_completed(list(futures)):
                yield _result(future, futures[future])
        finally:
            client.cancel(list(futures))


def _result(future: Any, job: Job) -> dict[str, Any]:
    """The job's row; a job that could not run at all (its worker died, say) fails alone."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - recorded in the row, the batch goes on
        row = job_row(
            job, -1, f"lattice: error: the job did not run ({type(exc).__name__}: {exc})", 0.0
        )
        write_row(row, job.row_path)
        return row
