"""Drawing ``overview.png`` in a worker process on the second core.

matplotlib needs ~0.8 s to import and the picture ~0.6 s to draw, both holding the
interpreter lock. A :class:`PictureWorker` forks before the plan is made: the child imports
matplotlib and loads (or inherits) the CT and masks, cropped around the GTV, while the parent
plans; after planning the parent sends the vertex centres and the LATTICE target's box, and
the child draws while the parent writes the NIfTI files. Where ``os.fork`` does not exist the
same work runs in this process when the job is sent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LatticeError, OutputWriteError
from ..margins import bounding_box
from ..plan import Plan
from ..volume import Volume

#: What a worker needs besides the plan: CT, boolean GTV, boolean OARs by name.
Inputs = tuple[Volume, Volume, Mapping[str, Volume]]


class PictureWorker:
    """Draws the overview picture of a plan, possibly in a forked child.

    Parameters
    ----------
    load : callable returning (ct, gtv, oars)
        Called in the child (or, without ``fork``, when the job is sent). Errors it raises
        (an unreadable CT, say) are raised again by :meth:`wait`.

    Create it while no other thread is running (it may fork). Use it as a context manager, or
    call :meth:`close`, so the child never outlives the run.
    """

    def __init__(self, load: Callable[[], Inputs]) -> None:
        self._load = load
        self._pid: int | None = None
        self._conn: Connection | None = None
        self._pending: list[str] | None = None
        if hasattr(os, "fork"):
            parent_end, child_end = Pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which leaves via os._exit
                parent_end.close()
                _child(child_end, load)
            child_end.close()
            self._pid, self._conn = pid, parent_end

    def submit(self, plan: Plan, path: str | Path, *, title: str) -> None:
        """Ask for the picture of ``plan`` at ``path``; :meth:`wait` collects the result."""
        job = _job(plan, Path(path), title)
        if self._conn is None:
            _draw(_crop(self._load()), job)
        else:
            self._conn.send(job)
        self._pending = [Path(path).name]

    def wait(self) -> list[str]:
        """Wait for the picture; return the file names written (empty if none was asked)."""
        if self._conn is not None and self._pending is not None:
            try:
                result = self._conn.recv()
            except EOFError:
                result = OutputWriteError("the picture worker stopped unexpectedly; rerun, or "
                                          "pass --no-picture to skip the picture")
            self._reap()
            if isinstance(result, BaseException):
                raise result
        names, self._pending = self._pending or [], None
        return names

    def close(self) -> None:
        """Stop the child if it is still waiting or drawing."""
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


def _job(plan: Plan, path: Path, title: str) -> dict[str, Any]:
    target = plan.lattice_target
    box = bounding_box(target.array) if target.array.any() else None
    return {
        "path": path, "title": title, "centers_ras_mm": plan.centers_ras_mm,
        "diameter_mm": plan.parameters.diameter_mm,
        "target_lo": None if box is None else [s.start for s in box],
        "target": None if box is None else np.ascontiguousarray(target.array[box]),
    }


def _crop(inputs: Inputs) -> tuple[Inputs, tuple[slice, slice, slice]]:
    """Copies of the inputs cropped to what the picture can show: the GTV (which holds every
    vertex) plus the context margin. The picture is the same; the arrays are small."""
    from ..render import DEFAULT_CONTEXT_MM

    ct, gtv, oars = inputs
    pad = np.ceil((DEFAULT_CONTEXT_MM + 1.0) / gtv.voxel_size_mm).astype(int)
    box = bounding_box(gtv.array, pad_vox=pad)

    def cut(v: Volume) -> Volume:
        c = v.crop(box)
        return c.with_array(np.array(c.array))

    return (cut(ct), cut(gtv), {name: cut(m) for name, m in oars.items()}), box


def _draw(cropped: tuple[Inputs, tuple[slice, slice, slice]], job: Mapping[str, Any]) -> None:
    from ..render import render_overview

    (ct, gtv, oars), box = cropped
    target = np.zeros(gtv.shape, dtype=bool)
    if job["target"] is not None:
        lo = np.array(job["target_lo"]) - [s.start for s in box]
        sub = job["target"]
        target[tuple(slice(a, a + n) for a, n in zip(lo, sub.shape))] = sub
    render_overview(job["path"], ct=ct, gtv=gtv, lattice_target=gtv.with_array(target),
                    centers_ras_mm=job["centers_ras_mm"], diameter_mm=job["diameter_mm"],
                    oars=oars, title=job["title"])


def _child(conn: Connection, load: Callable[[], Inputs]) -> None:  # pragma: no cover
    code = 1
    try:
        try:
            from .. import render  # noqa: F401 - the slow import, done while the parent plans

            cropped = _crop(load())  # the full-size arrays are freed here
            error: BaseException | None = None
        except BaseException as exc:  # noqa: BLE001 - reported when the job arrives
            cropped, error = None, exc
        job = conn.recv()
        if job is None:
            code = 0
            return
        if error is not None:
            raise error
        assert cropped is not None
        _draw(cropped, job)
        conn.send(None)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        try:
            conn.send(exc if isinstance(exc, LatticeError) else OutputWriteError(
                f"drawing overview.png failed ({type(exc).__name__}: {exc}); rerun with "
                "--no-picture to skip it"))
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)
