"""Writing a plan folder: one module per output format, and the folder logic here.

A plan folder is written into a temporary folder beside the target first and moved into
place only when every file is complete, ``plan.json`` last, so an interrupted run leaves no
half-written plan. Existing output files are never replaced unless ``force`` is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import OutputExistsError, OutputWriteError
from ..io import save_volume
from ..plan import Plan
from ..volume import Volume
from .masks import sphere_label_map

#: Files a plan folder holds, in the order they are moved into place (plan.json last).
PLAN_FILES = ("lattice_target.nii.gz", "vertices.nii.gz", "overview.png", "plan.json")


def check_output_folder(out_dir: str | Path, *, force: bool,
                        names: Sequence[str] = PLAN_FILES) -> Path:
    """Fail early if the folder cannot be written or would lose files without ``force``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputWriteError(f"output path '{out}' is a file; pass a folder with --out")
    if out.is_dir() and not force:
        clash = [n for n in names if (out / n).exists()]
        if clash:
            raise OutputExistsError(
                f"'{out}' already holds {', '.join(clash)}; pass --force to replace them or "
                "choose another --out folder")
    parent = out if out.is_dir() else _existing_parent(out)
    if not os.access(parent, os.W_OK):
        raise OutputWriteError(f"cannot write to '{parent}' (permission denied); "
                               "choose another --out folder")
    return out


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def write_plan_json(plan: Plan, path: str | Path, *, inputs: Mapping[str, Any] | None = None
                    ) -> Path:
    """Write ``plan.to_dict()`` as indented JSON."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(plan.to_dict(inputs=dict(inputs or {})), fh, indent=2, allow_nan=False)
        fh.write("\n")
    return Path(path)


def write_plan_folder(plan: Plan, out_dir: str | Path, *, ct: Volume | None = None,
                      oars: Mapping[str, Volume] | None = None,
                      inputs: Mapping[str, Any] | None = None, force: bool = False,
                      picture: bool = True) -> dict[str, Path]:
    """Write every output of a plan into ``out_dir`` atomically.

    Parameters
    ----------
    plan : Plan
    out_dir : path
        Created if missing.
    ct : Volume, optional
        The CT, for the overview picture (skipped without it).
    oars : mapping of name to boolean Volume, optional
        Drawn in the overview picture.
    inputs : mapping, optional
        Input file descriptions recorded in ``plan.json``.
    force : bool
        Replace existing output files.
    picture : bool
        Write ``overview.png``.

    Returns
    -------
    dict of str to Path
        Output name -> final path.

    Raises
    ------
    OutputExistsError, OutputWriteError
    """
    out = check_output_folder(out_dir, force=force)
    parent = out.parent if not out.is_dir() else out
    parent.mkdir(parents=True, exist_ok=True)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    except OSError as exc:
        raise OutputWriteError(f"cannot create a folder in '{parent}' ({exc.strerror}); "
                               "choose another --out folder") from exc
    try:
        labels = sphere_label_map(plan.gtv, plan.centers_ras_mm,
                                  diameter_mm=plan.parameters.diameter_mm)
        # The picture is drawn in a forked child on the second core while this process
        # compresses the NIfTI files; both hold their interpreter lock most of the time.
        wait_picture = (_draw_in_background(plan, stage, ct, oars) if picture and ct is not None
                        else list)
        try:
            _save_all([(plan.lattice_target, stage / "lattice_target.nii.gz"),
                       (labels, stage / "vertices.nii.gz")])
        except BaseException:
            with contextlib.suppress(Exception):
                wait_picture()  # reap the child; the first error is the one to report
            raise
        written = wait_picture()
        written = ["lattice_target.nii.gz", "vertices.nii.gz", *written]
        write_plan_json(plan, stage / "plan.json", inputs=inputs)
        written.append("plan.json")
        return _move_into_place(stage, out, written)
    except OSError as exc:
        raise OutputWriteError(f"writing the plan to '{out}' failed ({exc}); nothing was "
                               "written; free space or choose another --out folder") from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _save_all(items: Sequence[tuple[Volume, Path]]) -> None:
    for volume, path in items:
        save_volume(volume, path)


def _draw_in_background(plan: Plan, stage: Path, ct: Volume,
                        oars: Mapping[str, Volume] | None) -> Callable[[], list[str]]:
    """Start drawing overview.png; return a function that waits and returns the file names.

    Uses ``os.fork`` where available (the child shares the arrays copy-on-write and exits
    with ``os._exit``); elsewhere the picture is drawn right away in this process. Call it
    only when no other thread is running.
    """
    from .. import render  # noqa: F401 - imported before forking, so the child need not

    if not hasattr(os, "fork"):
        names = _draw(plan, stage, ct, oars)
        return lambda: names
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: draw, report, and leave without running the parent's code
        code = 1
        try:
            os.close(read_fd)
            _draw(plan, stage, ct, oars)
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(write_fd, f"{type(exc).__name__}: {exc}".encode()[:4000])
        finally:
            os._exit(code)
    os.close(write_fd)

    def wait() -> list[str]:
        with os.fdopen(read_fd, "rb") as fh:
            message = fh.read().decode(errors="replace")
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise OutputWriteError(f"drawing overview.png failed ({message or 'killed'}); "
                                   "nothing was written; rerun with --no-picture to skip it")
        return ["overview.png"]

    return wait


def _draw(plan: Plan, stage: Path, ct: Volume, oars: Mapping[str, Volume] | None) -> list[str]:
    from ..render import render_overview  # matplotlib is imported only to draw

    p = plan.parameters
    render_overview(stage / "overview.png", ct=ct, gtv=plan.gtv,
                    lattice_target=plan.lattice_target, centers_ras_mm=plan.centers_ras_mm,
                    diameter_mm=p.diameter_mm, oars=dict(oars or {}),
                    title=f"LATTICE {p.pattern.upper()}  D {p.diameter_mm:g} mm  "
                          f"S {p.min_spacing_mm:g} mm  margin {p.gtv_margin_mm:g} mm")
    return ["overview.png"]


def _move_into_place(stage: Path, out: Path, names: Sequence[str]) -> dict[str, Path]:
    if not out.exists():
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)  # mkdtemp made it private
        os.rename(stage, out)  # atomic: the folder appears complete
        stage.mkdir()  # so the caller's cleanup has something to remove
        return {n: out / n for n in names}
    # The old plan.json goes first: from here until the new one lands the folder holds no
    # plan.json, i.e. no complete plan. Files of the old plan this run does not write go too.
    (out / "plan.json").unlink(missing_ok=True)
    for stale in set(PLAN_FILES) - set(names):
        (out / stale).unlink(missing_ok=True)
    for n in names:  # plan.json is last, so a complete plan.json means complete outputs
        os.replace(stage / n, out / n)
    return {n: out / n for n in names}
