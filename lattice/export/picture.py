"""Drawing ``overview.png`` (and writing a derived DICOM CT series) in a worker process on
the second core.

matplotlib needs ~0.8 s to import and the picture ~0.6 s to draw, both holding the
interpreter lock. A :class:`PictureWorker` forks before the plan is made: the child imports
matplotlib and loads (or inherits) the CT while the parent plans; after planning the parent
sends the vertex centres and the masks cropped around the GTV, and the child draws while the
parent writes the NIfTI files. The worker also writes the DICOM CT series derived from a
NIfTI CT when one is asked for, since it holds the CT's voxels. Where ``os.fork`` does not
exist the same work runs in this process when the job is sent.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

import numpy as np

from ..dicom import ImageSeries
from ..errors import LatticeError, OutputWriteError
from ..margins import bounding_box
from ..measure import LesionMeasurements
from ..plan import Plan
from ..volume import Volume

#: Margin (mm) around the GTV that the picture shows; passed to the renderer, which crops to
#: the GTV and its vertices plus this margin. The worker receives masks cropped 1 mm wider.
CONTEXT_MM = 25.0
#: The 3-D picture, written beside overview.png.
THREE_D_NAME = "overview3d.png"
#: The montage of axial slices through the vertex centres.
MONTAGE_NAME = "vertices.png"


#: Set to "0" to draw in the planning process itself (no fork): ``lattice batch`` does so
#: when every core already runs a plan of its own.
FORK_ENV = "LATTICE_PICTURE_PROCESS"


class PictureWorker:
    """Draws the overview picture of a plan, possibly in a forked child.

    Parameters
    ----------
    load_ct : callable returning Volume
        Reads the CT. Called in the child (or, without ``fork``, when the job is sent).
        Errors it raises (an unreadable CT, say) are raised again by :meth:`wait`.
    early : callable taking the CT, optional
        Work that needs only the CT, done as soon as it is loaded, while the parent plans
        (writing the derived DICOM series); its errors are raised again by :meth:`wait`.
    oars : mapping of name to Volume
        Boolean OAR masks to draw (cropped and sent with the job).

    Create it while no other thread is running (it may fork). Use it as a context manager, or
    call :meth:`close`, so the child never outlives the run.
    """

    def __init__(self, load_ct: Callable[[], Volume],
                 early: Callable[[Volume], None] | None = None) -> None:
        self._load_ct = load_ct
        self._early = early
        self._pid: int | None = None
        self._conn: Connection | None = None
        self._pending: list[str] | None = None
        self._sender: threading.Thread | None = None
        #: Measurements of the GTV after :meth:`wait`, when asked for.
        self.lesion: LesionMeasurements | None = None
        if hasattr(os, "fork") and os.environ.get(FORK_ENV, "1") != "0":
            parent_end, child_end = Pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which leaves via os._exit
                parent_end.close()
                _child(child_end, load_ct, early)
            child_end.close()
            self._pid, self._conn = pid, parent_end

    def submit(self, plan: Plan, path: str | Path | None, *, title: str,
               oars: Mapping[str, Volume] | None = None, ct_series: ImageSeries | None = None,
               ct_series_dir: str | Path | None = None, measure: bool = False,
               stv: Volume | None = None) -> None:
        """Ask for the picture of ``plan`` at ``path`` (None: no picture), with
        ``ct_series`` for the CT written as that series into ``ct_series_dir``, and with
        ``measure`` for the GTV's :class:`~lattice.measure.LesionMeasurements`;
        :meth:`wait` collects the result, :attr:`lesion` the measurements."""
        job = _job(plan, None if path is None else Path(path), title, oars or {}, stv)
        job["measure"] = measure
        names = [] if path is None else [Path(path).name, THREE_D_NAME]
        if path is not None and plan.n_vertices:
            names.append(MONTAGE_NAME)
        if ct_series is not None:
            assert ct_series_dir is not None
            # The series' grid is a placeholder the size of the CT: send only what rebuilds it.
            job["ct_series"] = (ct_series.header, ct_series.slices, Path(ct_series_dir))
            names.append(Path(ct_series_dir).name)
        if self._conn is None:
            ct = self._load_ct()
            if self._early is not None:
                self._early(ct)
            try:
                self.lesion = _run(ct, job)
            except Exception as exc:  # as the forked worker reports it: never "free space"
                raise _reported(exc) from exc
        else:
            # The child may still be importing; sending from a thread lets this process go
            # on writing files instead of blocking on a full pipe.
            self._sender = threading.Thread(target=self._conn.send, args=(job,), daemon=True)
            self._sender.start()
        self._pending = names

    def wait(self) -> list[str]:
        """Wait for the picture; return the file names written (empty if none was asked)."""
        if self._conn is not None and self._pending is not None:
            if self._sender is not None:
                self._sender.join()
            try:
                result = self._conn.recv()
            except EOFError:
                result = OutputWriteError("the picture worker stopped unexpectedly; rerun, or "
                                          "pass --no-picture to skip the picture")
            self._reap()
            if isinstance(result, BaseException):
                raise result
            self.lesion = result
        names, self._pending = self._pending or [], None
        return names

    def close(self) -> None:
        """Stop the child if it is still waiting or drawing."""
        if self._sender is not None:
            self._sender.join()
        if self._conn is not None and self._pid is not None:
            if self._pending is None:
                try:
                    self._conn.send(None)
                except OSError:
                    pass
            self._reap()

    def _reap(self) -> None:
        if self._pid is not None:
            os.waitpid(self._pid, 0)
            self._pid = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PictureWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _job(plan: Plan, path: Path | None, title: str, oars: Mapping[str, Volume],
         stv: Volume | None = None) -> dict[str, Any]:
    """Everything the picture needs, masks cropped to the GTV plus the context margin."""
    gtv = plan.gtv
    pad = np.ceil((CONTEXT_MM + 1.0) / gtv.voxel_size_mm).astype(int)
    box = bounding_box(gtv.array, pad_vox=pad)

    def cut(v: Volume) -> Volume:
        c = v.crop(box)
        return c.with_array(np.array(c.array, order="K"))  # same layout: a fast copy

    return {"path": path, "title": title, "box": box, "centers_ras_mm": plan.centers_ras_mm,
            "diameter_mm": plan.parameters.diameter_mm, "gtv": cut(gtv),
            "target": cut(plan.lattice_target), "oars": {n: cut(m) for n, m in oars.items()},
            "stv": None if stv is None else cut(stv)}


def _run(ct: Volume, job: Mapping[str, Any]) -> LesionMeasurements | None:
    lesion = None
    if job.get("measure"):
        from ..measure import measure_lesion

        m = measure_lesion(job["gtv"])  # on the crop: shift its slice index back
        lesion = dataclasses.replace(m, axial_slice_index=m.axial_slice_index
                                     + job["box"][2].start)
    if job["path"] is not None:
        _draw(ct, job)
    if job.get("ct_series") is not None:
        from .dicom_series import write_series

        header, slices, folder = job["ct_series"]
        write_series(ImageSeries(grid=ct, slices=slices, header=header), ct, folder)
    return lesion


def _draw(ct: Volume, job: Mapping[str, Any]) -> None:
    from ..render import render_3d, render_overview, render_vertex_montage

    render_overview(job["path"], ct=ct.crop(job["box"]), gtv=job["gtv"],
                    lattice_target=job["target"], centers_ras_mm=job["centers_ras_mm"],
                    diameter_mm=job["diameter_mm"], oars=job["oars"], title=job["title"],
                    context_mm=CONTEXT_MM, stv=job.get("stv"))
    render_3d(job["path"].with_name(THREE_D_NAME), gtv=job["gtv"],
              centers_ras_mm=job["centers_ras_mm"], diameter_mm=job["diameter_mm"],
              oars=job["oars"], title=job["title"])
    render_vertex_montage(job["path"].with_name(MONTAGE_NAME), ct=ct.crop(job["box"]),
                          gtv=job["gtv"], lattice_target=job["target"],
                          centers_ras_mm=job["centers_ras_mm"],
                          diameter_mm=job["diameter_mm"], oars=job["oars"],
                          stv=job.get("stv"), title=job["title"], context_mm=CONTEXT_MM)


def _reported(exc: BaseException) -> BaseException:
    """A failure of the picture or the derived CT as the plan reports it: lattice's own
    errors and file-system errors as they are, anything else named as the drawing's."""
    if isinstance(exc, (LatticeError, OSError)):
        return exc
    return OutputWriteError(f"drawing overview.png or writing the DICOM CT failed "
                            f"({type(exc).__name__}: {exc}); nothing was written; rerun with "
                            "--no-picture (or --no-dicom) to skip it, and report it")


def _child(conn: Connection, load_ct: Callable[[], Volume],
           early: Callable[[Volume], None] | None) -> None:  # pragma: no cover
    code = 1
    try:
        try:
            loaded = load_ct()
            ct: Volume | None = loaded
            if early is not None:
                early(loaded)
            from .. import render  # noqa: F401 - the slow import, done while the parent plans

            error: BaseException | None = None
        except BaseException as exc:  # noqa: BLE001 - reported when the job arrives
            ct, error = None, exc
        job = conn.recv()
        if job is None:
            code = 0
            return
        if error is not None:
            raise error
        assert ct is not None
        conn.send(_run(ct, job))
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        try:
            conn.send(_reported(exc))
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)
