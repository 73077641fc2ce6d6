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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import OutputExistsError, OutputWriteError
from ..io import save_volume
from ..plan import Plan
from ..volume import Volume
from .masks import sphere_label_map
from .picture import PictureWorker
from .tables import write_vertices_csv

#: Files a plan folder holds, in the order they are moved into place (plan.json last).
PLAN_FILES = ("lattice_target.nii.gz", "vertices.nii.gz", "vertices.csv", "overview.png",
              "plan.json")


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
                      picture: bool = True, worker: PictureWorker | None = None
                      ) -> dict[str, Path]:
    """Write every output of a plan into ``out_dir`` atomically.

    Parameters
    ----------
    plan : Plan
    out_dir : path
        Created if missing.
    ct : Volume, optional
        The CT, for the overview picture (no picture without it or a worker).
    oars : mapping of name to boolean Volume, optional
        Drawn in the overview picture.
    inputs : mapping, optional
        Input file descriptions recorded in ``plan.json``.
    force : bool
        Replace existing output files.
    picture : bool
        Write ``overview.png``.
    worker : PictureWorker, optional
        A worker already loading the picture's inputs (the CLI starts one before planning);
        otherwise one is started here from ``ct`` and ``oars``.

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
    own_worker = None
    if picture and worker is None and ct is not None:
        own_worker = worker = PictureWorker(lambda: ct)
    try:
        labels = sphere_label_map(plan.gtv, plan.centers_ras_mm,
                                  diameter_mm=plan.parameters.diameter_mm)
        if picture and worker is not None:
            worker.submit(plan, stage / "overview.png", title=_title(plan), oars=oars)
        try:
            save_volume(plan.lattice_target, stage / "lattice_target.nii.gz")
            save_volume(labels, stage / "vertices.nii.gz")
        except BaseException:
            if worker is not None:
                with contextlib.suppress(Exception):
                    worker.wait()  # the first error is the one to report
            raise
        write_vertices_csv(plan, stage / "vertices.csv")
        pictures = worker.wait() if picture and worker is not None else []
        written = ["lattice_target.nii.gz", "vertices.nii.gz", "vertices.csv", *pictures]
        write_plan_json(plan, stage / "plan.json", inputs=inputs)
        written.append("plan.json")
        return _move_into_place(stage, out, written)
    except OSError as exc:
        raise OutputWriteError(f"writing the plan to '{out}' failed ({exc}); nothing was "
                               "written; free space or choose another --out folder") from exc
    finally:
        if own_worker is not None:
            own_worker.close()
        shutil.rmtree(stage, ignore_errors=True)


def _title(plan: Plan) -> str:
    p = plan.parameters
    return (f"LATTICE {p.pattern.upper()} {p.mode}, spacing {p.min_spacing_mm:g} mm, "
            f"GTV margin {p.gtv_margin_mm:g} mm")


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
