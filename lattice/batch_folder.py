"""A batch's output folder: what a rerun goes on from (see :mod:`lattice.batch`).

A job is done, and skipped, when its row (``runs/<job>.json``) says ``ok``, was made with the
same arguments, its plan folder still holds ``plan.json``, and every input file that plan.json
records (``inputs``: the CT, the GTV, each OAR, a body mask, by path and sha256) still holds
the bytes it was planned from. The batch refuses to go on (:class:`OutputExistsError`, exit 6)
rather than report a plan of other inputs: when a job's arguments changed (a path, a
parameter), and when a done job's input file changed or is gone. ``force`` plans every job
again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from .batch_rows import read_row
from .errors import InputFileError, OutputExistsError

if TYPE_CHECKING:
    from .batch import Job

#: Hex digits of a sha256 shown in a message: enough to tell two files apart by eye.
SHOWN_DIGEST_CHARS = 12


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
