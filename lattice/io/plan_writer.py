"""Writing a plan folder: which files it holds and how they are assembled, one module per
output format (masks, tables, meshes, markups, DICOM, pictures).

A plan folder is written into a temporary folder beside the target first and moved into
place only when every file is complete, ``plan.json`` last, so an interrupted run leaves no
half-written plan. Existing output files are never replaced unless ``force`` is set. Those
mechanics (the temporary folders, the renames, the path checks and the lock taken before
any work) are in :mod:`lattice.io.folder`.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analysis.measure import LesionMeasurements, SizeRule
from ..memory import release_freed_memory
from ..planning.plan import Plan
from ..render.viewer import plan_viewer_info
from ..render.worker import PictureWorker
from ..volume import Volume
from . import folder
from .cold_outputs import cold_roi, write_cold_files
from .dicom import ImageSeries
from .folder import (
    STAGE_KINDS,
    make_stage,
    publish,
    remove_stale_stages,
    stage_prefix,
    write_json,
    write_staged,
)
from .lock import output_lock
from .masks import sphere_label_map
from .nifti import save_volume
from .roi_names import RoiNaming
from .support_outputs import SUPPORT_FILES, support_rois, write_support_files
from .tables import write_vertices_csv
from .tps_outputs import OBJECTIVE_FILES, write_objectives

__all__ = [
    "CT_DICOM_FOLDER",
    "MESH_FORMATS",
    "PLAN_FILES",
    "STAGE_KINDS",
    "DicomOutput",
    "check_output_folder",
    "make_stage",
    "output_lock",
    "publish",
    "remove_stale_stages",
    "stage_prefix",
    "write_json",
    "write_plan_folder",
    "write_staged",
]

#: Surface mesh formats (trimesh writers); meshes are in LPS mm.
MESH_FORMATS = ("stl", "ply", "obj")
#: Files (and the ``ct_dicom`` folder) a plan folder may hold, in the order they are moved
#: into place (plan.json last). Files of this list that a run does not write are removed from
#: a folder it replaces.
PLAN_FILES = (
    "lattice_target.nii.gz",
    "vertices.nii.gz",
    "stv.nii.gz",
    "vertices.csv",
    "overview.png",
    "overview3d.png",
    "vertices.png",
    "viewer.html",
    "rtstruct.dcm",
    "ct_dicom",
    "vertices.mrk.json",
    "cold.csv",
    "cold.mrk.json",
    "cold.nii.gz",
    *SUPPORT_FILES,
    *OBJECTIVE_FILES,
    "report.html",
    "evaluation.png",  # lattice evaluate's: a new plan makes them stale, so they go
    "evaluation.json",
    *(f"{name}.{fmt}" for fmt in MESH_FORMATS for name in ("vertices", "gtv", "cold")),
    "plan.json",
)
#: Folder of the DICOM CT series derived from a NIfTI CT.
CT_DICOM_FOLDER = "ct_dicom"


@dataclass(frozen=True, eq=False)
class DicomOutput:
    """What the DICOM export of a plan refers to.

    Attributes
    ----------
    series : ImageSeries
        The CT series the RTSTRUCT references (read from DICOM, or from
        :func:`~lattice.io.dicom_series.derived_series`).
    write_ct : bool
        Also write ``series`` (derived from the NIfTI CT) into ``ct_dicom/``.
    written_ct : Path, optional
        A folder already holding that series (written while planning); it is moved into the
        plan folder as ``ct_dicom/`` once the worker that wrote it has finished.
    vertex_rois : {'both', 'combined', 'each'}
        See :func:`~lattice.io.rtstruct_write.plan_rois`.
    cold_rois : {'combined', 'each', 'both'}
        See :func:`~lattice.io.cold_outputs.cold_roi`.
    stv : Volume, optional
        SCART target to include.
    gtv_roi : bool
        Include the GTV (when no other structure set holds it).
    valley_contours : {'holes', 'keyhole'}
        How ``LATTICE_VALLEY`` holds the vertex holes; see
        :func:`~lattice.io.rtstruct_write.plan_rois`.
    naming : RoiNaming, optional
        The ROIs' final names (:mod:`lattice.io.roi_names`; None: the default names).
    gtv_contours : callable, optional
        Gives the GTV's contours on ``series.grid`` already traced (by the picture worker,
        :meth:`~lattice.render.worker.PictureWorker.gtv_contours`), or None: traced here.
    """

    series: ImageSeries
    write_ct: bool = False
    written_ct: Path | None = None
    vertex_rois: str = "both"
    cold_rois: str = "combined"
    stv: Volume | None = None
    gtv_roi: bool = False
    valley_contours: str = "holes"
    naming: RoiNaming | None = None
    gtv_contours: Callable[[], Sequence[Any] | None] | None = None


def check_output_folder(
    out_dir: str | Path,
    *,
    force: bool,
    names: Sequence[str] = PLAN_FILES,
    inputs: Iterable[tuple[str, str | Path | None]] = (),
) -> Path:
    """:func:`lattice.io.folder.check_output_folder`, for a plan folder by default
    (``names``: :data:`PLAN_FILES`); the resolved folder."""
    return folder.check_output_folder(out_dir, force=force, names=names, inputs=inputs)


def write_plan_folder(
    plan: Plan,
    out_dir: str | Path,
    *,
    ct: Volume | None = None,
    oars: Mapping[str, Volume] | None = None,
    inputs: Mapping[str, Any] | None = None,
    force: bool = False,
    picture: bool = True,
    viewer: bool = True,
    worker: PictureWorker | None = None,
    document: Callable[[], Mapping[str, Any]] | None = None,
    dicom: DicomOutput | None = None,
    mesh_format: str | None = "stl",
    markups: bool = True,
    stv: Volume | None = None,
    size_rules: Sequence[SizeRule] | None = None,
    support: Any = None,
    lesion: Callable[[Volume], LesionMeasurements | None] | None = None,
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
    picture, viewer : bool
        Write ``overview.png`` and the other pictures; with them ``viewer.html`` if ``viewer``.
    worker : PictureWorker, optional
        A worker already loading the picture's inputs (the CLI starts one before planning);
        otherwise one is started here from ``ct`` and ``oars``.
    document : callable returning a mapping, optional
        Makes the ``plan.json`` document (default ``plan.to_dict(inputs=inputs)``), e.g. with
        a verification record added. Called after the masks are written, while the picture
        is drawn; an error it raises leaves nothing written.
    dicom : DicomOutput, optional
        Write ``rtstruct.dcm`` referencing this series (and the series itself into
        ``ct_dicom/`` when it is derived from the NIfTI CT; that needs ``ct`` or a worker).
    mesh_format : {'stl', 'ply', 'obj'} or None
        Write ``vertices.<fmt>`` and ``gtv.<fmt>`` (LPS mm); None writes no meshes.
    markups : bool
        Write ``vertices.mrk.json`` (3D Slicer markups, LPS).
    stv : Volume, optional
        A SCART target planned with the vertices, written as ``stv.nii.gz`` (put it in
        ``dicom.stv`` too for the RTSTRUCT).
    size_rules : sequence of SizeRule, optional
        Measure the GTV (:func:`~lattice.analysis.measure.measure_lesion`, by the worker when there
        is one) and record the measurements and these rules' verdicts as ``lesion`` in
        plan.json.
    support : SupportRings, optional
        Helper rings (:mod:`lattice.planning.support`): their label maps and ROIs.
    lesion : callable, optional
        With ``size_rules`` and no worker: the GTV's measurements made elsewhere (called with
        ``plan.gtv`` after the masks are written; None from it: measured here).

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
    if mesh_format is not None and mesh_format not in MESH_FORMATS:
        raise ValueError(f"mesh_format must be one of {MESH_FORMATS} or None")
    write_ct = dicom is not None and dicom.write_ct
    if write_ct and worker is None and ct is None:
        raise ValueError("writing the derived DICOM CT needs the CT (ct=...) or a worker")

    def write(stage: Path) -> list[str]:
        by_worker = []
        early_ct = dicom is not None and dicom.written_ct is not None
        measure = size_rules is not None
        use_worker = worker is not None and (picture or write_ct or early_ct or measure)
        if use_worker:
            assert worker is not None
            worker.submit(
                plan,
                stage / "overview.png" if picture else None,
                title=_title(plan),
                oars=oars,
                ct_series=dicom.series if write_ct and dicom else None,
                ct_series_dir=stage / CT_DICOM_FOLDER,
                measure=measure,
                stv=stv,
                shells=None if support is None else support.shells,
                viewer_info=plan_viewer_info(plan) if picture and viewer else None,
            )
        try:
            names = _write_masks(plan, stage, stv)
            if dicom is not None:
                written, rois = _write_dicom(
                    plan, dicom, stage, ct=ct if worker is None else None, support=support
                )
                names += written
                # The RTSTRUCT's heap (~75 MB on the benchmark case), and below the meshes'
                # (~85 MB): returned while the picture worker and its 3-D child draw, the
                # run's peak of memory.
                release_freed_memory()
            names += _write_shapes(plan, stage, mesh_format, markups)
            if mesh_format is not None:
                release_freed_memory()
            names.append(write_vertices_csv(plan, stage / "vertices.csv").name)
            names += write_cold_files(plan, stage)
            names += write_support_files(support, stage)
            doc = _plan_document(plan, document, inputs, dicom, rois if dicom else None)
            names += write_objectives(doc, stage)
        except BaseException:
            if worker is not None:
                with contextlib.suppress(Exception):
                    worker.wait()  # the first error is the one to report
            raise
        measured = None
        if use_worker:
            assert worker is not None
            release_freed_memory()  # the writers' heap (~200 MB) while the pictures are drawn
            by_worker = worker.wait()
            measured = worker.lesion
            doc["warnings"] = [*doc["warnings"], *worker.ct_warnings]
        elif measure and lesion is not None:
            measured = lesion(plan.gtv)
        if measure:
            doc["lesion"] = _lesion_section(plan, measured, size_rules)
        if early_ct:
            assert dicom is not None and dicom.written_ct is not None
            shutil.move(dicom.written_ct, stage / CT_DICOM_FOLDER)
            by_worker.append(CT_DICOM_FOLDER)
        _write_report_and_plan(doc, stage, by_worker)
        return [*names, *by_worker, "report.html", "plan.json"]

    try:
        return write_staged(out_dir, write, owned=PLAN_FILES, force=force)
    finally:
        if own_worker is not None:
            own_worker.close()


def _write_masks(plan: Plan, stage: Path, stv: Volume | None) -> list[str]:
    """The plan's NIfTI masks (and the STV's) in ``stage``; their names."""
    names = ["lattice_target.nii.gz", "vertices.nii.gz"]
    save_volume(plan.lattice_target, stage / names[0])
    # A whole-grid array (78 MB on the benchmark CT): freed once written, before the
    # RTSTRUCT and the verification make their own.
    labels = sphere_label_map(
        plan.gtv, plan.centers_ras_mm, diameter_mm=plan.parameters.diameter_mm
    )
    save_volume(labels, stage / names[1])
    del labels
    release_freed_memory()  # the planner's and the mask writer's heap, ~90 MB
    if stv is not None:
        names.append(save_volume(stv, stage / "stv.nii.gz").name)
    return names


def _plan_document(
    plan: Plan,
    document: Callable[[], Mapping[str, Any]] | None,
    inputs: Mapping[str, Any] | None,
    dicom: DicomOutput | None,
    rois: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """plan.json: ``document()`` (default ``plan.to_dict``), with the ROIs written and the
    values of the CT that rtstruct.dcm changed to fit their VR."""
    doc = dict(
        document()
        if document is not None
        else plan.to_dict(
            inputs=dict(inputs or {}), slice_grid=dicom.series.grid if dicom else None
        )
    )
    if dicom is not None:
        from .rtstruct_write import header_warnings

        doc["rois"] = rois
        doc["warnings"] = [*doc.get("warnings", []), *header_warnings(dicom.series)]
    return doc


def _write_shapes(plan: Plan, stage: Path, mesh_format: str | None, markups: bool) -> list[str]:
    """The meshes and the Slicer markups of the plan, as asked; their names."""
    names: list[str] = []
    if mesh_format is not None:
        from .meshes import write_meshes  # trimesh is imported only when used

        names += write_meshes(plan, stage, fmt=mesh_format)
    if markups and plan.n_vertices:
        from .markups import write_markups

        names.append(write_markups(plan, stage / "vertices.mrk.json").name)
    return names


def _lesion_section(
    plan: Plan, lesion: LesionMeasurements | None, size_rules: Sequence[SizeRule] | None
) -> dict[str, Any]:
    """plan.json's ``lesion``: the GTV's measurements (measured here unless the worker did)
    and the size rules evaluated on them."""
    from ..analysis.measure import evaluate_rules, measure_lesion

    lesion = lesion if lesion is not None else measure_lesion(plan.gtv)
    return {
        "measurements": lesion.to_dict(),
        "size_rules": evaluate_rules(lesion, list(size_rules or [])),
    }


def _write_report_and_plan(doc: Mapping[str, Any], stage: Path, by_worker: Sequence[str]) -> None:
    """report.html (with the pictures the worker drew), then plan.json."""
    from ..render.report import PICTURES, render_report

    pictures = {n: (stage / n).read_bytes() for n, _ in PICTURES if n in by_worker}
    (stage / "report.html").write_text(render_report(doc, pictures), encoding="utf-8")
    write_json(doc, stage / "plan.json")


def _write_dicom(
    plan: Plan, dicom: DicomOutput, stage: Path, *, ct: Volume | None, support: Any = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """Write rtstruct.dcm (and the derived CT when no worker does); the names written and
    plan.json's ``rois``."""
    from .dicom_series import write_series
    from .roi_names import roi_records
    from .rtstruct_write import plan_rois, write_rtstruct

    names = []
    if dicom.write_ct and ct is not None:  # no worker: written here
        write_series(dicom.series, ct, stage / CT_DICOM_FOLDER)
        names.append(CT_DICOM_FOLDER)
    rois = plan_rois(
        plan,
        dicom.series.grid,
        vertex_rois=dicom.vertex_rois,
        stv=dicom.stv,
        gtv=dicom.gtv_roi,
        valley_contours=dicom.valley_contours,
        gtv_contours=None if dicom.gtv_contours is None else dicom.gtv_contours(),
    )
    rois += cold_roi(plan, dicom.series.grid, cold_rois=dicom.cold_rois)
    rois += support_rois(support, dicom.series.grid, valley_contours=dicom.valley_contours)
    rois = (dicom.naming or RoiNaming()).rename(rois)  # last: every ROI is in the list
    p = plan.parameters
    write_rtstruct(
        stage / "rtstruct.dcm",
        dicom.series,
        rois,
        label="LATTICE",
        description=f"lattice {plan.n_vertices} vertices {p.pattern} D "
        f"{p.diameter_mm:g} S {p.min_spacing_mm:g} M {p.gtv_margin_mm:g} mm",
    )
    return ["rtstruct.dcm", *names], roi_records(rois)


def _title(plan: Plan) -> str:
    p = plan.parameters
    return (
        f"LATTICE {p.pattern.upper()} {p.mode}, spacing {p.min_spacing_mm:g} mm, "
        f"GTV margin {p.gtv_margin_mm:g} mm"
    )
