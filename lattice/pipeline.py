"""What ``lattice plan`` does, for Python: :class:`PlanRequest` -> :func:`run_plan` ->
:class:`PlanOutcome`.

A request names the inputs (NIfTI files, a DICOM CT series with its RTSTRUCT, or volumes in
memory), the planning parameters (:class:`~lattice.planning.plan.PlanParameters`), what else to
compute and write (:class:`PlanOptions`) and the output folder. :func:`run_plan` loads the
inputs, plans, measures the lesion, contracts the STV and computes the dose proxy when asked,
has the plan checked by the independent verifier, and writes the plan folder atomically
(``plan.json`` last); the command line and ``lattice batch`` call it and only print.

>>> from lattice import PlanRequest, run_plan
>>> from lattice.pipeline import NiftiInputs
>>> request = PlanRequest(NiftiInputs("ct.nii.gz", "gtv.nii.gz"), "out")  # doctest: +SKIP
>>> outcome = run_plan(request)                                          # doctest: +SKIP
>>> outcome.plan.n_vertices, outcome.folder                              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ParameterError
from .forking import may_fork
from .inputs import DicomInputs, Inputs, NiftiInputs, VolumeInputs, ct_check, ct_loader
from .planning.parameters import check_range
from .planning.plan import Plan, PlanParameters
from .volume import Volume

if TYPE_CHECKING:  # scipy-heavy modules, imported when used
    from .analysis.dose import DoseProxyParameters
    from .analysis.measure import SizeRule
    from .grid import Grid
    from .io.tps_outputs import TpsOptions
    from .planning.support import SupportOptions

#: The lesion size rules recorded in plan.json when none are asked for.
DEFAULT_SIZE_RULES = ("NCT06987370",)


@dataclass(frozen=True)
class PlanOptions:
    """What :func:`run_plan` computes and writes beside the plan.

    Attributes
    ----------
    allow_empty : bool
        Write the plan when no vertex fits (by default an error: nothing is written).
    picture, viewer : bool
        Draw overview.png, vertices.png and overview3d.png; with them viewer.html if viewer.
    dicom : bool
        Write rtstruct.dcm (and the derived DICOM CT series).
    vertex_rois, valley_contours : str
        See :func:`lattice.io.rtstruct_write.plan_rois`.
    cold_rois : {'combined', 'each', 'both'}
        The cold-sphere ROIs (:func:`lattice.io.cold_outputs.cold_roi`).
    mesh_format : {'stl', 'ply', 'obj'} or None
        Surface meshes of the vertices and the GTV (None: none).
    patient_id, patient_name, patient_position : str, optional
        The patient of the derived DICOM CT.
    stv_margin_mm, stv_fraction : float, optional
        Also contract the GTV into a SCART target (at most one of them).
    size_rules : sequence of str
        Lesion size rules recorded in plan.json (see
        :func:`lattice.analysis.measure.parse_size_rule`).
    dose : DoseProxyParameters, optional
        Compute the geometric dose proxy (:mod:`lattice.analysis.dose`).
    support : SupportOptions, optional
        Support shells and SCART rings (:mod:`lattice.planning.support`).
    tps : TpsOptions, optional
        ROI names and objective doses (:mod:`lattice.io.tps_outputs`; None: the defaults).
    """

    allow_empty: bool = False
    picture: bool = True
    viewer: bool = True
    dicom: bool = True
    vertex_rois: str = "both"
    cold_rois: str = "combined"
    mesh_format: str | None = "stl"
    valley_contours: str = "holes"
    patient_id: str | None = None
    patient_name: str | None = None
    patient_position: str | None = None
    stv_margin_mm: float | None = None
    stv_fraction: float | None = None
    size_rules: Sequence[str] = DEFAULT_SIZE_RULES
    dose: DoseProxyParameters | None = None
    support: SupportOptions | None = None
    tps: TpsOptions | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "size_rules", tuple(self.size_rules))
        for name in ("stv_margin_mm", "stv_fraction"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name))
        if self.dose is not None:
            self.dose.validate()

    def parsed_size_rules(self) -> list[SizeRule]:
        from .analysis.measure import parse_size_rule

        return [parse_size_rule(r) for r in self.size_rules]


@dataclass(frozen=True, eq=False)
class PlanRequest:
    """One plan to make: inputs, parameters, options, output folder.

    Attributes
    ----------
    inputs : NiftiInputs, DicomInputs or VolumeInputs
    out_dir : Path
        The plan folder (its parent is created when missing).
    parameters : PlanParameters
        The OAR clearances are taken from ``inputs`` (or the protocol), not from here.
    options : PlanOptions
    force : bool
        Replace an existing plan folder's files.
    """

    inputs: Inputs
    out_dir: Path
    parameters: PlanParameters = field(default_factory=PlanParameters)
    options: PlanOptions = field(default_factory=PlanOptions)
    force: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))


@dataclass(frozen=True, eq=False)
class PlanOutcome:
    """What :func:`run_plan` made.

    Attributes
    ----------
    plan : Plan
        The verified plan.
    document : dict
        plan.json as written (verification record, lesion, STV, dose proxy, warnings).
    lesion : dict or None
        The GTV's measurements and the size rules' verdicts (plan.json ``lesion``).
    warnings : tuple of str
        The inputs', the plan's and the exports' warnings (``document['warnings']``).
    folder : Path
        The plan folder written.
    files : dict of str to Path
        Output name -> path.
    """

    plan: Plan
    document: dict[str, Any]
    lesion: dict[str, Any] | None
    warnings: tuple[str, ...]
    folder: Path
    files: dict[str, Path]


def check_request(request: PlanRequest) -> tuple[PlanParameters, dict[str, float]]:
    """The request's parameters with the OAR clearances (given, else the protocol's), before
    any work.

    Raises
    ------
    ParameterError
        An OAR without a clearance and no protocol that sets one, repeated OAR names, the
        patient of a derived DICOM CT that is not written.
    """
    from .planning.protocols import protocol_clearance_mm

    p = request.parameters
    clearances: dict[str, float] = {}
    for name, shown, clearance in request.inputs.oar_clearances():
        clearances[name] = (
            protocol_clearance_mm(p.protocol, shown) if clearance is None else clearance
        )
    names = [name for name, _, _ in request.inputs.oar_clearances()]
    if len(set(names)) != len(names):
        raise ParameterError(
            f"OAR names repeat ({', '.join(names)}); name them with {{oar}} NAME=PATH:MM",
            parameters=["oar"],
        )
    from .io.tps_outputs import check_tps_request

    check_tps_request(request)
    return dataclasses.replace(p, oar_clearance_mm=clearances), clearances


def run_plan(request: PlanRequest) -> PlanOutcome:
    """Load the inputs, plan, analyse, verify and write the plan folder.

    Parameters
    ----------
    request : PlanRequest

    Returns
    -------
    PlanOutcome

    Raises
    ------
    ParameterError
        Bad or inconsistent parameters (before any work), or no vertex fits and
        ``options.allow_empty`` is not set (nothing is written).
    InputFileError, MaskError, GridMismatchError
        The inputs.
    OutputExistsError, OutputWriteError
        The output folder.
    LatticeError
        The plan failed its own independent verification (a bug; nothing is written).
    """
    from .io.plan_writer import check_output_folder, make_stage, output_lock
    from .render.worker import PictureWorker

    parameters, _ = check_request(request)
    opts = request.options
    inputs = request.inputs
    out = check_output_folder(request.out_dir, force=request.force, inputs=inputs.paths())
    derived_ct = _writes_derived_ct(request)
    # Started first, before any thread: it may fork, and loads the CT and imports matplotlib
    # on the other core while this process plans. A derived DICOM CT does not depend on the
    # plan: the worker writes it into a temporary folder as soon as it has the CT.
    with contextlib.ExitStack() as stack:
        stack.enter_context(output_lock(out, command="lattice plan"))  # makes out's parent
        derived = early = None
        if derived_ct:
            derived = _derived_series(request)
            # Beside the plan folder, where a later run finds it if this one is killed.
            folder = make_stage(out, "ct", out.parent)
            stack.callback(shutil.rmtree, folder, ignore_errors=True)  # after the worker ends
            derived["folder"] = folder

            def early(ct: Volume, series: Any = derived["series"], folder: Path = folder) -> None:
                from .io.dicom_series import write_series

                write_series(series, ct, folder)

        has_ct = not isinstance(inputs, VolumeInputs) or inputs.ct is not None
        worker = (
            None
            if (not opts.picture or not has_ct) and not derived_ct
            else stack.enter_context(
                PictureWorker(ct_loader(inputs), early=early, check_ct=ct_check(inputs))
            )
        )
        # Imported while the masks are read: scipy ~0.4 s; trimesh ~0.6 s, with a worker only.
        modules = ["lattice.planning.placement"]
        if opts.mesh_format is not None and worker is not None:
            modules.append("trimesh")
        importer = threading.Thread(
            target=lambda: [importlib.import_module(m) for m in modules], daemon=True
        )
        importer.start()
        return _plan_and_write(
            request, parameters, worker, derived=derived, stack=stack, importer=importer
        )


def _writes_derived_ct(request: PlanRequest) -> bool:
    """Whether the CT is written as a derived DICOM series: without DICOM input or a
    reference series (and with a CT to write)."""
    inputs = request.inputs
    if not request.options.dicom or isinstance(inputs, DicomInputs):
        return False
    if isinstance(inputs, VolumeInputs):
        return inputs.ct is not None
    return inputs.reference_ct_dicom is None


def _derived_series(request: PlanRequest) -> dict[str, Any]:
    """The DICOM series to derive from the CT (from its header and checksum)."""
    from pydicom.uid import generate_uid

    from .io import dicom_series as ds
    from .io.nifti import load_grid

    inputs = request.inputs
    record: dict[str, Any] | None
    grid: Volume | Grid
    if isinstance(inputs, VolumeInputs):
        assert inputs.ct is not None
        grid, name, record = inputs.ct, "the CT", None
        digest = _volume_digest(inputs.ct)
    else:
        assert isinstance(inputs, NiftiInputs)
        name = f"CT '{inputs.ct}'"
        grid = load_grid(inputs.ct, name=name)
        record = _describe(inputs.ct)
        digest = record["sha256"]
    grid.check_not_sheared(name=name)  # named here, before the series is made
    opts = request.options
    # Study and frame of reference follow from the CT: exports of one CT share them.
    series = ds.derived_series(
        grid,
        patient_name=opts.patient_name or ds.ANONYMOUS_PATIENT_NAME,
        patient_id=opts.patient_id or f"LAT{digest[:12].upper()}",
        patient_position=opts.patient_position or ds.DEFAULT_PATIENT_POSITION,
        study_uid=generate_uid(entropy_srcs=[digest, "study"]),
        frame_of_reference_uid=generate_uid(entropy_srcs=[digest, "frame"]),
    )
    return {"series": series, "ct_record": record}


def _volume_digest(volume: Volume) -> str:
    """SHA-256 of a volume's voxels and affine (the checksum of an in-memory CT)."""
    digest = hashlib.sha256(np.ascontiguousarray(volume.array).tobytes())
    digest.update(np.asarray(volume.affine, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _describe(path: Path) -> dict[str, str]:
    from .io.nifti import sha256_file

    return {"path": str(path.resolve()), "sha256": sha256_file(path)}


@dataclass(frozen=True, eq=False)
class _Loaded:
    """The inputs as volumes, and what plan.json records about them."""

    gtv: Volume
    oars: dict[str, Volume]
    ct: Any  # the CT Volume; None when the picture worker reads it, or none needs it
    record: dict[str, Any]
    series: Any  # ImageSeries the RTSTRUCT references, or None
    warnings: list[str]


def _load_inputs(
    request: PlanRequest,
    worker: Any,
    clearances: Mapping[str, float],
    *,
    derived: dict[str, Any] | None,
) -> _Loaded:
    inputs = request.inputs
    if isinstance(inputs, DicomInputs):
        return _load_dicom(inputs, worker, clearances)
    if isinstance(inputs, VolumeInputs):
        series = derived["series"] if derived is not None else None
        record: dict[str, Any] = {}
        if series is not None:
            record["derived_ct_dicom"] = _derived_record(series)
        return _Loaded(
            inputs.gtv,
            {o.name: o.mask for o in inputs.oars},
            inputs.ct if worker is None else None,
            record,
            series,
            [],
        )
    return _load_nifti(request, inputs, worker, clearances, derived=derived)


def _load_dicom(inputs: DicomInputs, worker: Any, clearances: Mapping[str, float]) -> _Loaded:
    from .io.dicom import load_dicom_case, series_checksum

    names = [n for n, _ in inputs.oars]
    # Without a worker the voxels are read here, so a corrupt slice is never accepted.
    dcase = load_dicom_case(
        inputs.ct_dicom,
        inputs.rtstruct,
        gtv_name=inputs.gtv_name,
        oar_names=names,
        series_uid=inputs.series_uid,
        pixels=worker is None,
    )
    series = dcase.series
    record = {
        "ct": {
            "dicom_folder": str(inputs.ct_dicom.resolve()),
            "series_instance_uid": series.series_instance_uid,
            "slices": len(series.slices),
            "sha256": series_checksum(series),
        },
        "rtstruct": _describe(inputs.rtstruct),
        "gtv": {"roi": dcase.gtv_name},
        "oars": [{"name": n, "roi": n, "clearance_mm": clearances[n]} for n in dcase.oars],
    }
    ct = series.grid if worker is None else None
    return _Loaded(dcase.gtv, dict(dcase.oars), ct, record, series, list(dcase.warnings))


def _load_nifti(
    request: PlanRequest,
    inputs: NiftiInputs,
    worker: Any,
    clearances: Mapping[str, float],
    *,
    derived: dict[str, Any] | None,
) -> _Loaded:
    from .io.nifti import load_case

    oar_paths = {o.name: o.path for o in inputs.oars}
    case = load_case(
        inputs.ct,
        inputs.gtv,
        gtv_label=inputs.gtv_label,
        oar_paths=oar_paths,
        ct_data="check" if worker is None else False,  # else the worker reads the voxels
    )
    record: dict[str, Any] = {
        "ct": derived["ct_record"] if derived else _describe(inputs.ct),
        "gtv": {**_describe(inputs.gtv), "label": inputs.gtv_label},
        "oars": [
            {"name": o.name, **_describe(o.path), "clearance_mm": clearances[o.name]}
            for o in inputs.oars
        ],
    }
    series = None
    ref = inputs.reference_ct_dicom
    if not request.options.dicom:
        pass
    elif ref is not None:
        from .io.dicom import load_series, on_grid

        series = load_series(ref, pixels=False)
        on_grid(
            case.ct, series.grid, name=f"CT '{inputs.ct}'", grid_name=f"the DICOM series in '{ref}'"
        )
        record["reference_ct_dicom"] = {
            "dicom_folder": str(ref.resolve()),
            "series_instance_uid": series.series_instance_uid,
        }
    elif derived is not None:
        series = derived["series"]
        record["derived_ct_dicom"] = _derived_record(series)
    return _Loaded(case.gtv, dict(case.oars), None, record, series, list(case.warnings))


def _derived_record(series: Any) -> dict[str, Any]:
    return {
        "series_instance_uid": series.series_instance_uid,
        "folder": "ct_dicom",
        "patient_position": str(series.header.PatientPosition),
    }


def _plan_and_write(
    request: PlanRequest,
    parameters: PlanParameters,
    worker: Any,
    *,
    derived: dict[str, Any] | None,
    stack: contextlib.ExitStack,
    importer: threading.Thread,
) -> PlanOutcome:
    from .io.plan_writer import write_plan_folder
    from .io.support_outputs import add_support, plan_support
    from .io.tps_outputs import add_tps_sections
    from .plan_document import Measuring, Verification, plan_document
    from .planning.placement import plan_vertices
    from .planning.rules import Oar

    opts = request.options
    size_rules = opts.parsed_size_rules()
    loaded = _load_inputs(request, worker, parameters.oar_clearance_mm, derived=derived)
    traced = worker is not None and _start_early_work(worker, loaded, opts, size_rules)
    # Without a picture worker the second core is idle: the lesion's measurements and the
    # verification go to forked children, once the importer is done (no thread then).
    if worker is None:
        importer.join()
    fork = worker is None and may_fork()
    measuring = Measuring(loaded.gtv, fork=fork and size_rules is not None)
    stack.callback(measuring.cancel)
    oars = [Oar(name, loaded.oars[name], parameters.oar_clearance_mm[name]) for name in loaded.oars]
    plan = plan_vertices(loaded.gtv, oars=oars, **_keywords(parameters))
    if plan.n_vertices == 0 and not opts.allow_empty:
        reason = plan.warnings[0] if plan.warnings else "no vertex fits"
        raise ParameterError(
            f"{reason}; nothing was written (pass {{allow_empty}} to write the empty plan)",
            parameters=["allow_empty"],
        )
    warnings = list(loaded.warnings)
    stv = None
    if opts.stv_margin_mm is not None or opts.stv_fraction is not None:
        from .analysis.stv import contract_gtv

        stv = contract_gtv(loaded.gtv, margin_mm=opts.stv_margin_mm, fraction=opts.stv_fraction)
        warnings += [f"STV: {w}" for w in stv.warnings]
    support = plan_support(opts.support, request.inputs, loaded, plan, stv)
    unverified = plan_document(
        plan,
        gtv=loaded.gtv,
        inputs=loaded.record,
        series=loaded.series,
        warnings=warnings,
        stv=stv,
        dose=opts.dose,
    )
    verification = Verification(unverified, gtv=loaded.gtv, oars=loaded.oars, fork=fork)
    stack.callback(verification.cancel)

    def document() -> dict[str, Any]:
        doc = add_support(verification.document(), support)
        return add_tps_sections(doc, plan, opts, stv=stv is not None)

    contours = worker.gtv_contours if traced and plan.gtv is loaded.gtv else None
    dicom = _dicom_output(opts, loaded.series, derived, stv, contours)
    written = write_plan_folder(
        plan,
        request.out_dir,
        ct=loaded.ct,
        oars=loaded.oars,
        inputs=loaded.record,
        force=request.force,
        picture=opts.picture,
        viewer=opts.viewer,
        worker=worker,
        document=document,
        dicom=dicom,
        mesh_format=opts.mesh_format,
        stv=None if stv is None else stv.stv,
        size_rules=size_rules,
        support=support,
        lesion=measuring.take,
    )
    doc = json.loads(written["plan.json"].read_text(encoding="utf-8"))
    return PlanOutcome(
        plan=plan,
        document=doc,
        lesion=doc.get("lesion"),
        warnings=tuple(doc["warnings"]),
        folder=written["plan.json"].parent,
        files=written,
    )


def _dicom_output(
    opts: PlanOptions,
    series: Any,
    derived: dict[str, Any] | None,
    stv: Any,
    gtv_contours: Any,
) -> Any:
    """What rtstruct.dcm is written with (a DicomOutput), or None without a series."""
    from .io.plan_writer import DicomOutput

    if series is None:
        return None
    return DicomOutput(
        series=series,
        written_ct=derived["folder"] if derived else None,
        vertex_rois=opts.vertex_rois,
        cold_rois=opts.cold_rois,
        gtv_roi=derived is not None,
        valley_contours=opts.valley_contours,
        stv=None if stv is None else stv.stv,
        naming=opts.tps.naming if opts.tps else None,
        gtv_contours=gtv_contours,
    )


def _start_early_work(worker: Any, loaded: _Loaded, opts: PlanOptions, size_rules: Any) -> bool:
    """Give the worker its jobs to do while this process plans (True: it traces the GTV)."""
    traced = bool(worker.trace_gtv_early(loaded.gtv, loaded.series))
    if size_rules is not None and loaded.gtv.array.dtype == bool:
        worker.measure_early(loaded.gtv)  # off the path to the end of the run
    if opts.picture and opts.viewer:
        worker.prepare_viewer(loaded.gtv, loaded.oars)
    return traced


def _keywords(p: PlanParameters) -> dict[str, Any]:
    """:func:`lattice.planning.placement.plan_vertices` keywords of ``p`` (its OARs aside)."""
    return {
        f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name != "oar_clearance_mm"
    }
