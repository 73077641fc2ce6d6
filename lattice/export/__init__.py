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


def write_json(document: Mapping[str, Any], path: str | Path) -> Path:
    """Write a JSON document, indented, refusing NaN/inf."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2, allow_nan=False)
        fh.write("\n")
    return Path(path)


def write_staged(out_dir: str | Path, write: Callable[[Path], Sequence[str]], *,
                 owned: Sequence[str], force: bool) -> dict[str, Path]:
    """Write an output folder atomically.

    ``write(stage)`` writes files into a temporary folder beside (or inside) ``out_dir`` and
    returns their names, the completeness marker (a JSON document) last. They are moved
    into place only when all are written: a new folder appears whole; in an existing one
    the old marker goes first and the marker lands last, so a marker always describes the
    files beside it. Files in ``owned`` that this run did not write are removed (a replaced
    output keeps nothing of the old one); other files in the folder are left alone.

    Raises
    ------
    OutputExistsError
        ``owned`` files exist and ``force`` is not set.
    OutputWriteError
        The folder cannot be created or written (nothing is left behind).
    """
    out = check_output_folder(out_dir, force=force, names=owned)
    parent = out if out.is_dir() else out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    except OSError as exc:
        raise OutputWriteError(f"cannot create a folder in '{parent}' ({exc.strerror}); "
                               "choose another --out folder") from exc
    try:
        names = list(write(stage))
        return _move_into_place(stage, out, names, owned)
    except OSError as exc:
        raise OutputWriteError(f"writing to '{out}' failed ({exc}); nothing was written; "
                               "free space or choose another --out folder") from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_plan_folder(plan: Plan, out_dir: str | Path, *, ct: Volume | None = None,
                      oars: Mapping[str, Volume] | None = None,
                      inputs: Mapping[str, Any] | None = None, force: bool = False,
                      picture: bool = True, worker: PictureWorker | None = None,
                      document: Callable[[], Mapping[str, Any]] | None = None
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
    document : callable returning a mapping, optional
        Makes the ``plan.json`` document (default ``plan.to_dict(inputs=inputs)``), e.g. with
        a verification record added. Called after the masks are written, while the picture
        is drawn; an error it raises leaves nothing written.

    Returns
    -------
    dict of str to Path
        Output name -> final path.

    Raises
    ------
    OutputExistsError, OutputWriteError
    """
    own_worker = None
    if picture and worker is None and ct is not None:
        own_worker = worker = PictureWorker(lambda: ct)

    def write(stage: Path) -> list[str]:
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
        try:
            doc = (document() if document is not None
                   else plan.to_dict(inputs=dict(inputs or {})))
        except BaseException:
            if worker is not None:
                with contextlib.suppress(Exception):
                    worker.wait()
            raise
        pictures = worker.wait() if picture and worker is not None else []
        write_json(doc, stage / "plan.json")
        return ["lattice_target.nii.gz", "vertices.nii.gz", "vertices.csv", *pictures,
                "plan.json"]

    try:
        return write_staged(out_dir, write, owned=PLAN_FILES, force=force)
    finally:
        if own_worker is not None:
            own_worker.close()


def _title(plan: Plan) -> str:
    p = plan.parameters
    return (f"LATTICE {p.pattern.upper()} {p.mode}, spacing {p.min_spacing_mm:g} mm, "
            f"GTV margin {p.gtv_margin_mm:g} mm")


def _move_into_place(stage: Path, out: Path, names: Sequence[str],
                     owned: Sequence[str]) -> dict[str, Path]:
    if not out.exists():
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)  # mkdtemp made it private
        os.rename(stage, out)  # atomic: the folder appears complete
        stage.mkdir()  # so the caller's cleanup has something to remove
        return {n: out / n for n in names}
    marker = names[-1]
    (out / marker).unlink(missing_ok=True)  # until the new marker lands: no complete output
    for stale in set(owned) - set(names):
        (out / stale).unlink(missing_ok=True)
    for n in names:  # the marker is last
        os.replace(stage / n, out / n)
    return {n: out / n for n in names}
