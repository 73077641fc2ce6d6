"""A batch's output folder: one batch writes it at a time, it holds one batch, and a rerun goes
on from what an earlier run left there (see :mod:`lattice.batch`).

A batch holds the lock of its output folder (``.OUT.lock`` beside it, as ``lattice plan``
does: :func:`~lattice.io.lock.output_lock`) while it runs, so a second batch into the same
folder stops at once instead of rewriting ``summary.csv`` with its own jobs alone.

A job is done, and skipped, when its row (``runs/<job>.json``) says ``ok``, was made with the
same arguments, its plan folder still holds ``plan.json``, and every input file that plan.json
records (``inputs``: the CT, the GTV, each OAR, a body mask, by path and sha256) still holds
the bytes it was planned from. The batch refuses to go on (:class:`OutputExistsError`, exit 6)
rather than report a plan of other inputs: when a job's arguments changed (a path, a
parameter), when a done job's input file changed or is gone, and when the folder holds rows
of jobs that are not this batch's (another manifest or grid), since ``summary.csv`` lists
this batch's jobs and would leave theirs out. ``force`` plans every job again, but never
drops another batch's jobs from the folder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from .batch_rows import read_row
from .errors import InputFileError, OutputExistsError

if TYPE_CHECKING:
    from .batch import Job

#: Hex digits of a sha256 shown in a message: enough to tell two files apart by eye.
SHOWN_DIGEST_CHARS = 12
#: Jobs of another batch named in a message before "and N more".
SHOWN_JOBS = 3


@contextlib.contextmanager
def batch_lock(jobs: Sequence[Job]) -> Iterator[None]:
    """Hold the lock of the jobs' output folder (of each, for jobs of several batches).

    Raises
    ------
    OutputLockedError
        Another run (a batch, ``lattice plan``) is writing the folder; the message names it.
    OutputWriteError
        The folder cannot be made or locked (a file, a dangling link, no permission).
    """
    from .io.folder import resolve_output_folder
    from .io.lock import output_lock

    folders = sorted({resolve_output_folder(job.row_path.parent.parent) for job in jobs})
    with contextlib.ExitStack() as stack:
        for folder in folders:
            stack.enter_context(output_lock(folder, command="lattice batch"))
        yield


def pending_jobs(jobs: Sequence[Job], *, force: bool = False) -> tuple[list[Job], list[dict]]:
    """Split jobs into those to run and the rows of those already done.

    A job is done when its row says ``ok``, was made with the same arguments, its plan
    folder still holds ``plan.json``, and the input files that plan.json records still hold
    the bytes recorded (their sha256). With ``force`` every job is to run.

    Raises
    ------
    OutputExistsError
        The output folder holds results of the same jobs with other arguments, or a done
        job's input file has changed or is gone since it was planned.
    """
    todo, done = [], []
    digests: dict[Path, str | OSError] = {}  # one read per file: grid points share inputs
    for job in jobs:
        row = read_row(job.row_path)
        if row is None or force:
            todo.append(job)
            continue
        if row.get("argv") != list(job.argv):
            before, now = list(row.get("argv") or []), list(job.argv)
            was = " ".join(t for t in before if t not in now) or "-"
            becomes = " ".join(t for t in now if t not in before) or "-"
            raise OutputExistsError(
                f"'{job.row_path}' records job {job.name} with other parameters (then: {was}; "
                f"now: {becomes}); pass --force to plan it again or choose another --out "
                "folder"
            )
        if is_done(row, job) and _inputs_unchanged(job, digests):
            done.append(row)
        else:
            todo.append(job)
    return todo, done


def is_done(row: dict | None, job: Job) -> TypeGuard[dict]:
    """Whether ``row`` records ``job`` (these arguments) as planned, its folder complete."""
    return (
        row is not None
        and row.get("argv") == list(job.argv)
        and row.get("status") == "ok"
        and (job.out_dir / "plan.json").is_file()
    )


def check_one_batch(jobs: Sequence[Job]) -> None:
    """Refuse an output folder whose ``runs/`` holds rows of jobs other than ``jobs``.

    Raises
    ------
    OutputExistsError
        A row of another batch (another manifest, or another grid) is there: this batch's
        ``summary.csv`` would leave it out.
    """
    by_folder: dict[Path, set[str]] = {}
    for job in jobs:
        by_folder.setdefault(job.row_path.parent, set()).add(job.row_path.name)
    for runs, names in by_folder.items():
        others = sorted(
            p.stem
            for p in (runs.glob("*.json") if runs.is_dir() else ())
            if not p.name.startswith(".") and p.name not in names
        )
        if not others:
            continue
        one = len(others) == 1
        shown = ", ".join(others[:SHOWN_JOBS])
        if len(others) > SHOWN_JOBS:
            shown += f" and {len(others) - SHOWN_JOBS} more"
        them = "it" if one else "them"
        raise OutputExistsError(
            f"'{runs.parent}' holds the batch of another manifest or grid: "
            f"{'job' if one else 'jobs'} {shown} (in '{runs}') {'is' if one else 'are'} not "
            f"one of this batch's jobs, and its summary.csv would leave {them} out; run a "
            f"manifest and --grid that include {them}, or choose another --out folder"
        )


def _inputs_unchanged(job: Job, digests: dict[Path, str | OSError]) -> bool:
    """Whether the files ``job``'s plan.json records still hold the bytes recorded; False
    when plan.json cannot be read (the job is planned again).

    Raises
    ------
    OutputExistsError
        An input file changed or is gone (the message names it, with how to go on).
    """
    from .io.nifti import sha256_file
    from .io.planfolder import PlanDocument

    try:
        recorded = PlanDocument.read(job.out_dir).inputs
    except InputFileError:
        return False
    for what, path, then in _recorded_files(recorded, job):
        if path not in digests:
            try:
                digests[path] = sha256_file(path)
            except OSError as exc:
                digests[path] = exc
        now = digests[path]
        if now == then:
            continue
        where = f"job {job.name} (plan.json in '{job.out_dir}')"
        if isinstance(now, OSError):
            gone = isinstance(now, FileNotFoundError)
            problem = "is gone" if gone else f"cannot be read ({now.strerror})"
            remedy = "put it back" if gone else "make it readable"
            raise OutputExistsError(
                f"{what} '{path}' {problem} since {where} was planned from it; {remedy}, "
                "pass --force to plan the batch again, or choose another --out folder"
            )
        raise OutputExistsError(
            f"{what} '{path}' has changed since {where} was planned from it (sha256 then "
            f"{then[:SHOWN_DIGEST_CHARS]}..., now {now[:SHOWN_DIGEST_CHARS]}...); pass --force "
            "to plan the batch again from the files as they are, or choose another --out folder"
        )
    return True


def _recorded_files(inputs: Mapping[str, Any], job: Job) -> Iterator[tuple[str, Path, str]]:
    """``(what, path, sha256 recorded)`` of each input file in plan.json's ``inputs``.

    The CT, GTV and OARs are read from the paths the manifest gives now (a link there may
    point elsewhere than the file recorded, which is the link's target); other files (a body
    mask) from the recorded path.
    """
    from .planning.parameters import parse_oar_spec

    case = job.source
    now: dict[str, Path] = {}
    if case is not None:
        now = {"ct": case.ct, "gtv": case.gtv}
        now.update({f"OAR '{o.name}'": Path(o.path) for o in map(parse_oar_spec, case.oars)})
    for key, entry in inputs.items():
        entries = entry if isinstance(entry, list) else [entry]
        for item in entries:
            if not (isinstance(item, Mapping) and "path" in item and "sha256" in item):
                continue
            what = f"OAR '{item.get('name')}'" if key == "oars" else key
            path = now.get(what, Path(str(item["path"])))
            yield (_LABELS.get(what, what), path, str(item["sha256"]))


_LABELS = {"ct": "CT", "gtv": "GTV mask", "body": "body mask"}
