"""Drawing ``overview.png`` (and writing a derived DICOM CT series) in a worker process on
the second core.

matplotlib needs ~0.8 s to import and the picture ~0.6 s to draw, both holding the
interpreter lock. A :class:`PictureWorker` starts a one-process
:class:`~concurrent.futures.ProcessPoolExecutor` (fork context) before the plan is made: the
child imports matplotlib and loads (or inherits) the CT while the parent plans; after
planning the parent submits a :class:`PictureJob` (the vertex centres and the masks cropped
around the GTV), and the child draws while the parent writes the NIfTI files, then sends a
:class:`PictureResult` back. The worker also writes the DICOM CT series derived from a NIfTI
CT when one is asked for, since it holds the CT's voxels.

The same work runs in this process, when the job is submitted, where there is no ``fork``,
where ``LATTICE_PICTURE_PROCESS=0`` and in daemonic processes (Dask workers, for one), which
multiprocessing does not let start children.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.measure import LesionMeasurements
from ..errors import LatticeError, OutputWriteError
from ..forking import may_start_process
from ..geometry.margins import bounding_box
from ..io.dicom import ImageSeries, SliceRef, keeps_array
from ..planning.plan import Plan
from ..volume import Volume
from .layout import DEFAULT_CONTEXT_MM
from .pictures import MONTAGE_NAME, THREE_D_NAME, draw_plan_pictures

#: viewer.html, written beside the pictures (lattice.render.viewer.VIEWER_NAME; that module
#: is imported in the worker only).
VIEWER_NAME = "viewer.html"

#: Margin (mm) around the GTV that the picture shows (the renderers' default); they crop to
#: the GTV and its vertices plus this margin. The worker receives masks cropped 1 mm wider.
CONTEXT_MM = DEFAULT_CONTEXT_MM


@dataclass(frozen=True)
class CtSeriesJob:
    """A DICOM CT series to write from the worker's CT: the series' header and slice
    references (its grid is a placeholder the size of the CT, so it is not sent) and the
    folder to write it into."""

    header: Any
    slices: tuple[SliceRef, ...]
    folder: Path


@dataclass(frozen=True)
class PictureJob:
    """What the worker is asked to do for one plan, masks cropped to the GTV plus the
    context margin (see :func:`picture_job`).

    Attributes
    ----------
    path : Path or None
        Where ``overview.png`` goes (the 3-D picture and the montage beside it); None draws
        nothing.
    title : str
    box : tuple of 3 slices
        The crop of the CT's grid the masks are on.
    centers_ras_mm : (n, 3) ndarray of float
    diameter_mm : float
    gtv, target : Volume
        Boolean GTV and LATTICE target, cropped.
    oars : mapping of name to Volume
        Boolean OAR masks, cropped.
    stv : Volume or None
        A SCART target, cropped.
    cold : Volume or None
        The cold spheres' label map, cropped (``--cold-spheres``).
    shells : Volume or None
        The support shells' label map, cropped (``--shells-mm``).
    cold_centers_ras_mm : (m, 3) ndarray of float, optional
    cold_diameter_mm : float, optional
        The same cold spheres (for the 3-D picture).
    measure : bool
        Measure the GTV (:func:`~lattice.analysis.measure.measure_lesion`).
    viewer_info : mapping or None
        With the pictures, write :data:`VIEWER_NAME` beside them showing this
        (:func:`~lattice.render.viewer.viewer_info`); None: no viewer.
    ct_series : CtSeriesJob or None
        Write the CT as this DICOM series.
    """

    path: Path | None
    title: str
    box: tuple[slice, slice, slice]
    centers_ras_mm: np.ndarray
    diameter_mm: float
    gtv: Volume
    target: Volume
    oars: Mapping[str, Volume] = field(default_factory=dict)
    stv: Volume | None = None
    cold: Volume | None = None
    shells: Volume | None = None
    cold_centers_ras_mm: np.ndarray | None = None
    cold_diameter_mm: float | None = None
    measure: bool = False
    viewer_info: Mapping[str, Any] | None = None
    ct_series: CtSeriesJob | None = None

    def output_names(self) -> list[str]:
        """The names of the files and folders the job writes (beside ``path``)."""
        names = [] if self.path is None else [self.path.name, THREE_D_NAME]
        if self.path is not None and len(self.centers_ras_mm):
            names.append(MONTAGE_NAME)
        if self.path is not None and self.viewer_info is not None:
            names.append(VIEWER_NAME)
        if self.ct_series is not None:
            names.append(self.ct_series.folder.name)
        return names


@dataclass(frozen=True)
class PictureResult:
    """What comes back from a :class:`PictureJob`.

    Attributes
    ----------
    written : tuple of str
        The names of the files and folders written.
    lesion : LesionMeasurements or None
        The GTV's measurements, when the job asked for them.
    ct_warnings : tuple of str
        What the worker's ``check_ct`` said of the whole CT (see :class:`PictureWorker`).
    """

    written: tuple[str, ...]
    lesion: LesionMeasurements | None = None
    ct_warnings: tuple[str, ...] = ()


def picture_job(
    plan: Plan,
    path: Path | None,
    *,
    title: str,
    oars: Mapping[str, Volume] | None = None,
    stv: Volume | None = None,
    measure: bool = False,
    ct_series: CtSeriesJob | None = None,
    shells: Volume | None = None,
    viewer_info: Mapping[str, Any] | None = None,
    box: tuple[slice, slice, slice] | None = None,
) -> PictureJob:
    """The job for ``plan``: its masks cropped to the GTV plus :data:`CONTEXT_MM` (+1 mm)
    (``box``: :func:`job_box` of ``plan.gtv``, when known)."""
    box = job_box(plan.gtv) if box is None else box

    def cut(v: Volume) -> Volume:
        return _cut(v, box)

    return PictureJob(
        path=path,
        title=title,
        box=box,
        centers_ras_mm=plan.centers_ras_mm,
        diameter_mm=plan.parameters.diameter_mm,
        gtv=cut(plan.gtv),
        target=cut(plan.lattice_target),
        oars={n: cut(m) for n, m in (oars or {}).items()},
        stv=None if stv is None else cut(stv),
        cold=None if plan.cold is None else cut(_cold_labels(plan)),
        shells=None if shells is None else cut(shells),
        cold_centers_ras_mm=None if plan.cold is None else plan.cold.centers_ras_mm,
        cold_diameter_mm=None if plan.cold is None else float(plan.cold.diameter_mm),
        measure=measure,
        viewer_info=viewer_info,
        ct_series=ct_series,
    )


def _cold_labels(plan: Plan) -> Volume:
    from ..io.cold_outputs import cold_label_map

    return cold_label_map(plan)


def job_box(gtv: Volume) -> tuple[slice, slice, slice]:
    """The box a picture job crops every mask to: the GTV plus :data:`CONTEXT_MM` (+1 mm)."""
    pad = np.ceil((CONTEXT_MM + 1.0) / gtv.voxel_size_mm).astype(int)
    return bounding_box(gtv.array, pad_vox=pad)


def _cut(v: Volume, box: tuple[slice, slice, slice]) -> Volume:
    c = v.crop(box)
    return c.with_array(np.array(c.array, order="K"))  # same layout: a fast copy


def measure_crop(gtv_crop: Volume, first_slice: int) -> LesionMeasurements:
    """The GTV's measurements from its job crop, the axial slice index shifted back to the
    full grid (``first_slice``: the crop's first k)."""
    from ..analysis.measure import measure_lesion

    m = measure_lesion(gtv_crop)
    return dataclasses.replace(m, axial_slice_index=m.axial_slice_index + first_slice)


class PictureWorker:
    """Draws the overview picture of a plan, possibly in a worker process.

    Parameters
    ----------
    load_ct : callable returning Volume
        Reads the CT. Called in the worker process (or, without one, when the job is
        submitted). Errors it raises (an unreadable CT, say) are raised again by :meth:`wait`.
    early : callable taking the CT, optional
        Work that needs only the CT, done as soon as it is loaded, while the parent plans
        (writing the derived DICOM series); its errors are raised again by :meth:`wait`.

    Create it while no other thread is running (it may fork). Use it as a context manager, or
    call :meth:`close`, so the worker process never outlives the run.
    """

    def __init__(
        self,
        load_ct: Callable[[], Volume],
        early: Callable[[Volume], None] | None = None,
        check_ct: Callable[[Volume], list[str]] | None = None,
    ) -> None:
        self._load_ct = load_ct
        self._early = early
        self._check_ct = check_ct
        self._pool: ProcessPoolExecutor | None = None
        self._future: Future[PictureResult] | None = None
        self._result: PictureResult | None = None
        self._lesion_future: Future[LesionMeasurements] | None = None
        self._viewer_future: Future[None] | None = None
        self._contours_future: Future[list[Any]] | None = None
        self._box: tuple[np.ndarray, tuple[slice, slice, slice]] | None = None
        #: Measurements of the GTV after :meth:`wait`, when asked for.
        self.lesion: LesionMeasurements | None = None
        #: What ``check_ct`` said of the whole CT, after :meth:`wait`.
        self.ct_warnings: tuple[str, ...] = ()
        if may_start_process():
            # Fork: the initializer's arguments (closures, the CT) are inherited, not pickled.
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=mp.get_context("fork"),
                initializer=_prepare,
                initargs=(load_ct, early, check_ct),
            )
            # The executor forks on its first submit: now, so the child loads the CT and
            # imports matplotlib while this process plans.
            self._pool.submit(_started)

    def measure_early(self, gtv: Volume) -> None:
        """Measure ``gtv`` on the worker's core now, while this process plans, instead of
        after :meth:`submit` (``measure=True`` then reuses it): the same crop as the job's,
        so the same numbers. In-process, the job measures as before."""
        if self._pool is None:
            return
        box = self._job_box(gtv)
        self._lesion_future = self._pool.submit(_measure_in_worker, _cut(gtv, box), box)

    def prepare_viewer(self, gtv: Volume, oars: Mapping[str, Volume]) -> None:
        """Pack the viewer's CT, GTV and OAR data on the worker's core now, while this
        process plans (the slow part of viewer.html: compressing the CT, the surfaces); the
        job then adds what the plan made. In-process, the job packs everything."""
        if self._pool is None:
            return
        box = self._job_box(gtv)
        self._viewer_future = self._pool.submit(
            _prepare_viewer_in_worker,
            _cut(gtv, box),
            {n: _cut(m, box) for n, m in oars.items()},
            box,
        )

    def trace_gtv_early(self, gtv: Volume, series: ImageSeries | None) -> bool:
        """Trace the GTV's RTSTRUCT contours on the worker's core now, while this process
        plans: :func:`~lattice.io.rtstruct_contours.mask_contours` of ``gtv`` on the slices
        of ``series``, from the job's crop, so the same numbers; :meth:`gtv_contours` collects
        them. Only for a boolean GTV whose axes the series keeps (:func:`keeps_array`), with a
        worker process; returns whether they are traced."""
        if self._pool is None or series is None or gtv.array.dtype != bool:
            return False
        if not keeps_array(gtv, series.grid):
            return False
        box = self._job_box(gtv)
        start = (box[0].start, box[1].start, box[2].start)
        self._contours_future = self._pool.submit(
            _trace_in_worker, np.array(gtv.array[box]), start, series.grid.lps_affine
        )
        return True

    def gtv_contours(self) -> list[Any] | None:
        """The contours :meth:`trace_gtv_early` asked for (waiting for them), or None when
        none were asked for or the worker could not trace them (the caller traces them)."""
        future, self._contours_future = self._contours_future, None
        if future is None:
            return None
        try:
            return future.result()
        except Exception:  # noqa: BLE001 - a broken worker is reported by wait()
            return None

    def submit(
        self,
        plan: Plan,
        path: str | Path | None,
        *,
        title: str,
        oars: Mapping[str, Volume] | None = None,
        ct_series: ImageSeries | None = None,
        ct_series_dir: str | Path | None = None,
        measure: bool = False,
        stv: Volume | None = None,
        shells: Volume | None = None,
        viewer_info: Mapping[str, Any] | None = None,
    ) -> None:
        """Ask for the picture of ``plan`` at ``path`` (None: no picture), with
        ``ct_series`` for the CT written as that series into ``ct_series_dir``, and with
        ``measure`` for the GTV's :class:`~lattice.analysis.measure.LesionMeasurements`,
        and ``viewer_info`` for viewer.html beside the pictures; :meth:`wait` collects the
        result, :attr:`lesion` the measurements."""
        if self._lesion_future is not None:
            measure = False  # measured already (measure_early)
        series = None
        if ct_series is not None:
            assert ct_series_dir is not None
            series = CtSeriesJob(ct_series.header, ct_series.slices, Path(ct_series_dir))
        job = picture_job(
            plan,
            None if path is None else Path(path),
            title=title,
            oars=oars,
            stv=stv,
            measure=measure,
            ct_series=series,
            shells=shells,
            viewer_info=viewer_info,
            box=self._job_box(plan.gtv),
        )
        if self._pool is None:
            ct = self._load_ct()
            checked = tuple(self._check_ct(ct)) if self._check_ct is not None else ()
            if self._early is not None:
                self._early(ct)
            try:
                result = run_picture_job(ct, job)
            except Exception as exc:  # as the worker process reports it: never "free space"
                raise _reported(exc) from exc
            self._result = dataclasses.replace(result, ct_warnings=checked)
        else:
            # Pickled and sent by the executor's threads: this process goes on writing files,
            # and holds the cropped masks only until they are sent. The queue's feeder
            # thread keeps the last message it sent until the next one: a no-op call after
            # the job lets it drop the job's bytes (tens of MB) while this process works on.
            self._future = self._pool.submit(_run_in_worker, _Handover(job))
            self._pool.submit(_started)

    def _job_box(self, gtv: Volume) -> tuple[slice, slice, slice]:
        """:func:`job_box` of ``gtv``, found once for the same array (~0.05 s a time on the
        benchmark GTV, before the plan is made)."""
        if self._box is None or self._box[0] is not gtv.array:
            self._box = (gtv.array, job_box(gtv))
        return self._box[1]

    def wait(self) -> list[str]:
        """Wait for the picture; return the file names written (empty if none was asked)."""
        lesion_future, self._lesion_future = self._lesion_future, None
        viewer_future, self._viewer_future = self._viewer_future, None
        try:
            if viewer_future is not None:  # its error, if any, is the first one
                viewer_future.result()
            if self._future is not None:
                future, self._future = self._future, None
                self._result = future.result()
            if lesion_future is not None:  # measure_early
                self.lesion = lesion_future.result()
        except BrokenProcessPool:
            raise OutputWriteError(
                "the picture worker stopped unexpectedly; rerun, or "
                "pass --no-picture to skip the picture"
            ) from None
        result, self._result = self._result, None
        if result is None:
            return []
        if lesion_future is None:  # measured with the job, if asked
            self.lesion = result.lesion
        self.ct_warnings = result.ct_warnings
        return list(result.written)

    def close(self) -> None:
        """Stop the worker process once it has finished what it was doing."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> PictureWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_picture_job(
    ct: Volume, job: PictureJob, *, cropped: bool = False, fork_3d: bool = False
) -> PictureResult:
    """Do ``job`` with the full ``ct`` in this process (``cropped``: ``ct`` is already its
    crop to ``job.box``, and the job writes no CT series; ``fork_3d``: see
    :func:`~lattice.render.pictures.draw_plan_pictures`)."""
    if cropped and job.ct_series is not None:
        raise ValueError("writing the CT series needs the full CT, not its crop")
    ct_crop = ct if cropped else ct.crop(job.box)
    lesion = measure_crop(job.gtv, job.box[2].start) if job.measure else None
    if job.path is not None:
        _draw(ct_crop, job, job.path, fork_3d=fork_3d)
        if job.viewer_info is not None:
            _write_viewer(ct_crop, job, job.path.with_name(VIEWER_NAME))
    if job.ct_series is not None:
        from ..io.dicom_series import write_series

        s = job.ct_series
        write_series(ImageSeries(grid=ct, slices=s.slices, header=s.header), ct, s.folder)
    return PictureResult(written=tuple(job.output_names()), lesion=lesion)


def _draw(ct_crop: Volume, job: PictureJob, path: Path, *, fork_3d: bool = False) -> None:
    draw_plan_pictures(
        path,
        ct=ct_crop,
        gtv=job.gtv,
        lattice_target=job.target,
        centers_ras_mm=job.centers_ras_mm,
        diameter_mm=job.diameter_mm,
        oars=job.oars,
        stv=job.stv,
        cold=job.cold,
        shells=job.shells,
        title=job.title,
        context_mm=CONTEXT_MM,
        cold_centers_ras_mm=job.cold_centers_ras_mm,
        cold_diameter_mm=job.cold_diameter_mm,
        fork_3d=fork_3d,
    )


def _write_viewer(ct_crop: Volume, job: PictureJob, path: Path) -> None:
    from .viewer import base_of, viewer_html, write_viewer
    from .viewer_data import viewer_payload

    early = _WORKER_STATE.pop("viewer", None)
    if early is not None and early[0] == job.box:
        base = early[1]
    else:
        base = base_of(ct_crop, job.gtv, job.oars, job.box)
    assert job.viewer_info is not None
    meta, blobs = viewer_payload(
        base, target=job.target, stv=job.stv, info=job.viewer_info, shells=job.shells
    )
    write_viewer(path, viewer_html(meta, blobs))


def _reported(exc: BaseException) -> BaseException:
    """A failure of the picture or the derived CT as the plan reports it: lattice's own
    errors and file-system errors as they are, anything else named as the drawing's."""
    if isinstance(exc, (LatticeError, OSError)):
        return exc
    return OutputWriteError(
        f"drawing overview.png or writing the DICOM CT failed "
        f"({type(exc).__name__}: {exc}); nothing was written; rerun with "
        "--no-picture (or --no-dicom) to skip it, and report it"
    )


class _Handover:
    """A job handed to the worker once: the reference is dropped when it is pickled (sent),
    so this process does not keep the masks while the worker draws (the executor keeps a
    submitted call's arguments until its result arrives)."""

    def __init__(self, job: PictureJob) -> None:
        self._job: PictureJob | None = job

    def __reduce__(self) -> tuple[Callable[[PictureJob], PictureJob], tuple[PictureJob]]:
        job, self._job = self._job, None
        assert job is not None, "a picture job is sent once"
        return _received, (job,)


def _received(job: PictureJob) -> PictureJob:  # pragma: no cover - runs in the child
    return job


# -- in the worker process ------------------------------------------------------------------

#: The worker process's CT, or why it has none (set once by :func:`_prepare`); once the
#: job's box is known (:meth:`PictureWorker.measure_early`, :meth:`~PictureWorker.prepare_viewer`)
#: only the CT's crop to it ("ct", "box"), and how to read the CT again ("load_ct").
_WORKER_STATE: dict[str, Any] = {}


def _prepare(
    load_ct: Callable[[], Volume],
    early: Callable[[Volume], None] | None,
    check_ct: Callable[[Volume], list[str]] | None,
) -> None:  # pragma: no cover - a child
    """The executor's initializer: load and check the CT, do the early work, import the
    renderer."""
    try:
        ct = load_ct()
        _WORKER_STATE["ct_warnings"] = tuple(check_ct(ct)) if check_ct is not None else ()
        if early is not None:
            early(ct)
        from . import montage, slices, three_d  # noqa: F401 - slow; done while the parent plans

        _WORKER_STATE["ct"] = ct
        _WORKER_STATE["load_ct"] = load_ct
    except BaseException as exc:  # noqa: BLE001 - reported when the job arrives
        _WORKER_STATE["error"] = exc


def _started() -> None:  # pragma: no cover - runs in the child
    """Nothing: submitted so that the executor starts its process at once (and after a job,
    see :meth:`PictureWorker.submit`)."""


def _crop_worker_ct(box: tuple[slice, slice, slice]) -> Volume:  # pragma: no cover - a child
    """The worker's CT cropped to ``box``, the box every later job crops to: from then on
    the worker keeps only that crop (the full CT, ~150 MB on a 512 x 512 x 300 int16 CT, is
    freed once its early work is done)."""
    if "box" not in _WORKER_STATE:
        _WORKER_STATE["ct"] = _cut(_WORKER_STATE["ct"], box)
        _WORKER_STATE["box"] = box
    if _WORKER_STATE["box"] == box:
        return _WORKER_STATE["ct"]
    return _WORKER_STATE["load_ct"]().crop(box)  # not the job's box: read the CT again


def _measure_in_worker(
    gtv_crop: Volume, box: tuple[slice, slice, slice]
) -> LesionMeasurements:  # pragma: no cover
    try:
        if "error" not in _WORKER_STATE:
            _crop_worker_ct(box)
        return measure_crop(gtv_crop, box[2].start)
    except BaseException as exc:  # noqa: BLE001 - as a measurement with the job reports it
        raise _reported(exc) from None


def _trace_in_worker(
    crop: np.ndarray, start: tuple[int, int, int], lps_affine: np.ndarray
) -> list[Any]:  # pragma: no cover - runs in the child
    from ..io.rtstruct_contours import crop_contours

    return crop_contours(crop, start, lps_affine)


def _prepare_viewer_in_worker(
    gtv_crop: Volume, oar_crops: Mapping[str, Volume], box: tuple[slice, slice, slice]
) -> None:  # pragma: no cover - runs in the child
    try:
        if "error" in _WORKER_STATE:
            return  # reported with the job
        from .viewer import base_of

        ct = _crop_worker_ct(box)
        _WORKER_STATE["viewer"] = (box, base_of(ct, gtv_crop, oar_crops, box))  # all crops
    except BaseException as exc:  # noqa: BLE001 - as the job reports it
        raise _reported(exc) from None


def _run_in_worker(job: PictureJob | _Handover) -> PictureResult:  # pragma: no cover
    assert isinstance(job, PictureJob)  # a _Handover arrives as its job
    try:
        if "error" in _WORKER_STATE:
            raise _WORKER_STATE["error"]
        result = _run_job_in_worker(job)
        return dataclasses.replace(result, ct_warnings=_WORKER_STATE["ct_warnings"])
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        raise _reported(exc) from None


def _run_job_in_worker(job: PictureJob) -> PictureResult:  # pragma: no cover - a child
    """:func:`run_picture_job` on the CT the worker keeps (or reads again)."""
    # The 3-D picture in a child of its own: the parent plans no more, so its core is free
    # for it while it writes the other outputs. This process runs no other thread.
    if "box" not in _WORKER_STATE:
        return run_picture_job(_WORKER_STATE["ct"], job, fork_3d=True)
    if _WORKER_STATE["box"] == job.box and job.ct_series is None:
        return run_picture_job(_WORKER_STATE["ct"], job, cropped=True, fork_3d=True)
    # not the box of the crop kept: the full CT, read again
    return run_picture_job(_WORKER_STATE["load_ct"](), job, fork_3d=True)
