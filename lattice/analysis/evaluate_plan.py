"""``lattice evaluate``: a TPS dose evaluated on a written plan folder.

The plan folder gives the structures: the CT grid, the GTV and the OARs from the inputs
``plan.json`` records (read as ``lattice show`` reads them, :func:`load_plan_volumes`), and
the vertex spheres from ``vertices.nii.gz`` (label ``i + 1`` = vertex ``i`` of
``plan.json``). The dose file is read (:func:`lattice.io.rtdose.read_dose`), checked
against the plan's frame of reference, resampled onto the CT grid and evaluated
(:func:`lattice.analysis.evaluate.evaluate_dose_volume`); ``evaluation.json`` and
``evaluation.png`` are written into the folder, each atomically, and ``report.html`` is
written again (atomically) with a dose-evaluation section.

Why report.html is replaced without ``--force``: it is a derived view of plan.json, the
pictures and evaluation.json (``lattice report`` makes the same page from them), not an
output of its own; keeping the old page would leave a report that contradicts the files
beside it. ``--force`` guards the evaluation itself. The evaluation records the sha256 of
the plan.json it was made on, so a report never shows it for another plan.

Frame of reference: ``plan.json``'s ``frame_of_reference_uid`` (since 0.2: the CT frame
``rtstruct.dcm`` is written in, the DICOM series' own or, for a NIfTI CT, the one derived for
``ct_dicom/``). Plans written before it was recorded are read from the folder's
``rtstruct.dcm``, else from the first file of ``ct_dicom/``. A folder with none of them
(``--no-dicom``) cannot be checked: the dose is then placed by its grid's world coordinates
alone, and ``evaluation.json`` says so (``plan.frame_checked`` false, and a warning).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lattice.analysis.evaluate import EvaluationMasks, evaluate_dose_volume
from lattice.errors import InputFileError, OutputExistsError, OutputWriteError
from lattice.io.folder import publish, write_json

__all__ = [
    "EVALUATION_NAMES",
    "PlanEvaluation",
    "evaluate_plan_folder",
    "plan_frame_of_reference_uid",
]

#: The files ``lattice evaluate`` writes into the plan folder (the JSON last).
EVALUATION_NAMES = ("evaluation.png", "evaluation.json")


@dataclass(frozen=True)
class PlanEvaluation:
    """What :func:`evaluate_plan_folder` computed and wrote.

    Attributes
    ----------
    result : dict
        The evaluation.json document.
    written : list of Path
        The files written, in the plan folder.
    frame_checked : bool
        Whether the dose's FrameOfReferenceUID was compared with the plan's.
    """

    result: dict[str, Any]
    written: list[Path]
    frame_checked: bool

    @property
    def warnings(self) -> list[str]:
        return list(self.result.get("warnings") or [])


def plan_frame_of_reference_uid(
    folder: str | Path, document: Mapping[str, Any] | None = None
) -> str | None:
    """The plan CT's FrameOfReferenceUID, or None.

    ``document`` (plan.json)'s ``frame_of_reference_uid`` when recorded; else the folder's
    ``rtstruct.dcm`` (its FrameOfReferenceUID, else its first referenced frame), else the
    first file of ``ct_dicom/``.
    """
    if document is not None and document.get("frame_of_reference_uid"):
        return str(document["frame_of_reference_uid"])
    for ds in _plan_dicom_headers(Path(folder)):
        uid = ds.get("FrameOfReferenceUID")
        refs = ds.get("ReferencedFrameOfReferenceSequence") or []
        if not uid and refs:
            uid = refs[0].get("FrameOfReferenceUID")
        if uid:
            return str(uid)
    return None


def plan_patient_id(folder: str | Path) -> str | None:
    """The PatientID of the plan folder's ``rtstruct.dcm`` (else of the first file of
    ``ct_dicom/``), or None: the patient the TPS received with the plan."""
    for ds in _plan_dicom_headers(Path(folder)):
        patient = str(ds.get("PatientID", "") or "").strip()
        if patient:
            return patient
    return None


def _plan_dicom_headers(folder: Path) -> Iterator[Any]:
    """The headers of the plan folder's ``rtstruct.dcm`` and first ``ct_dicom/`` file, those
    that exist, in that order.

    Raises
    ------
    InputFileError
        One of them exists and cannot be read.
    """
    import pydicom

    candidates = [folder / "rtstruct.dcm"]
    if (folder / "ct_dicom").is_dir():
        candidates += sorted(p for p in (folder / "ct_dicom").iterdir() if p.is_file())[:1]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            yield pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise InputFileError(
                f"cannot read '{path}' ({exc}); restore the plan folder or plan again"
            ) from exc


def _patient_warnings(folder: Path, dose: Any) -> list[str]:
    """A warning when an RT Dose names another patient (PatientID) than the plan's DICOM
    files. Only a warning: its frame of reference was checked, and a TPS that took in the
    derived CT may have filed it under the patient's own ID."""
    dose_patient = dose.info.patient_id
    if dose.info.file_format != "RTDOSE" or not dose_patient:
        return []
    plan_patient = plan_patient_id(folder)
    if not plan_patient or plan_patient == dose_patient:
        return []
    return [
        f"RT Dose '{dose.info.path}' is of patient '{dose_patient}' (PatientID), the plan's "
        f"DICOM files of patient '{plan_patient}'; it is in the plan's frame of reference, so "
        "it was evaluated: check that it is this patient's dose"
    ]


def _plan_masks(folder: Path) -> tuple[EvaluationMasks, Any, list[Any]]:
    """The evaluation masks on the plan's grid, the grid's volume and the vertex ids."""
    from lattice.io.cold_outputs import cold_labels_of_document
    from lattice.io.dicom import on_grid
    from lattice.io.nifti import load_image
    from lattice.io.planfolder import PLAN_FILES_FIX, load_plan_volumes

    volumes = load_plan_volumes(folder)
    target = volumes.lattice_target
    path = folder / "vertices.nii.gz"
    if not path.is_file():
        raise InputFileError(f"'{path}' is missing; plan again to write the vertex label map")
    labels = on_grid(
        load_image(path),
        target,
        name="vertices.nii.gz",
        grid_name="the plan's lattice_target.nii.gz",
        fix=PLAN_FILES_FIX,
    )
    masks = EvaluationMasks(
        gtv=np.asarray(volumes.gtv.array, dtype=bool),
        vertex_labels=np.rint(np.asarray(labels.array)).astype(np.int32),
        oars={name: np.asarray(v.array, dtype=bool) for name, v in volumes.oars.items()},
        cold_labels=cold_labels_of_document(volumes.document, target),
    )
    ids = [v.get("id", i + 1) for i, v in enumerate(volumes.document["vertices"])]
    return masks, volumes, ids


def _check_not_there(folder: Path, force: bool) -> None:
    clash = [n for n in EVALUATION_NAMES if (folder / n).exists()]
    if clash and not force:
        raise OutputExistsError(
            f"'{folder}' already holds {', '.join(clash)}; pass --force to replace "
            f"{'them' if len(clash) > 1 else 'it'}"
        )


def _write_outputs(folder: Path, result: dict[str, Any], title: str) -> list[Path]:
    """evaluation.png then evaluation.json, each written beside itself and renamed in."""
    from lattice.render.evaluation import draw_evaluation

    temporary: list[str] = []
    try:
        for name in EVALUATION_NAMES:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{name}.", suffix=f".part{Path(name).suffix}", dir=folder
            )
            os.close(fd)
            temporary.append(tmp)
        draw_evaluation(result, temporary[0], title=title)
        write_json(result, temporary[1])
        return [publish(tmp, folder / name) for tmp, name in zip(temporary, EVALUATION_NAMES)]
    except OSError as exc:
        raise OutputWriteError(
            f"writing the evaluation into '{folder}' failed ({exc.strerror or exc}); "
            "free space or check the folder's permissions"
        ) from exc
    finally:
        for tmp in temporary:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _write_report(folder: Path) -> Path:
    """report.html again, with the evaluation just written (see the module notes)."""
    from lattice.render.report import write_report

    try:
        return write_report(folder)
    except OSError as exc:
        raise OutputWriteError(
            f"the evaluation is written, but report.html in '{folder}' could not be "
            f"({exc.strerror or exc}); run `lattice report {folder} --force`"
        ) from exc


def evaluate_plan_folder(
    plan_dir: str | Path,
    dose_path: str | Path,
    *,
    relative_dose_gy: float | None = None,
    force: bool = False,
    n_shells: int = 5,
    profile_step_mm: float = 0.5,
) -> PlanEvaluation:
    """Evaluate a dose file on a plan folder, write evaluation.json and evaluation.png, and
    write report.html again with the evaluation.

    Parameters
    ----------
    plan_dir : str or Path
        A folder written by ``lattice plan``.
    dose_path : str or Path
        An RT Dose file, or a dose NIfTI (``.nii``, ``.nii.gz``) in Gy.
    relative_dose_gy : float, optional
        The dose in Gy of 1.0 for an RT Dose with DoseUnits RELATIVE.
    force : bool
        Replace an earlier evaluation.
    n_shells, profile_step_mm
        See :func:`lattice.analysis.evaluate.evaluate_dose`.

    Raises
    ------
    OutputExistsError
        An earlier evaluation is there and ``force`` is not set (checked first).
    DoseError
        An unreadable dose, a NaN, infinite or negative dose value, another frame of
        reference, a grid that misses the GTV. An all-zero or implausibly high dose is
        evaluated with a warning in ``result["warnings"]``.
    InputFileError, GridMismatchError
        The plan folder or its recorded inputs are gone or changed.
    OutputWriteError
        The outputs cannot be written.
    """
    from lattice.io.rtdose import read_dose

    folder = Path(plan_dir)
    if not (folder / "plan.json").is_file():
        raise InputFileError(f"'{folder}' holds no plan.json; pass a folder of `lattice plan`")
    _check_not_there(folder, force)
    dose = read_dose(dose_path, relative_to_gy=relative_dose_gy)
    from lattice.render.report_sections import plan_json_sha256

    plan_sha256 = plan_json_sha256(folder)
    masks, volumes, ids = _plan_masks(folder)
    frame_uid = plan_frame_of_reference_uid(folder, volumes.document)
    result = evaluate_dose_volume(
        dose,
        masks,
        ct_affine_ras=np.asarray(volumes.lattice_target.affine, dtype=float),
        ct_frame_of_reference_uid=frame_uid,
        vertex_centers_ras_mm=volumes.centers_ras_mm,
        vertex_ids=ids,
        n_shells=n_shells,
        profile_step_mm=profile_step_mm,
    )
    checked = bool(frame_uid) and dose.info.file_format == "RTDOSE"
    if not checked:
        result["warnings"] = [
            *result["warnings"],
            "the frame of reference was not checked (no FrameOfReferenceUID in the plan "
            "folder, or a NIfTI dose); the dose is placed by its grid's world coordinates",
        ]
    result["warnings"] = [*result["warnings"], *_patient_warnings(folder, dose)]
    result["plan"] = {
        "folder": str(folder),
        "plan_json_sha256": plan_sha256,
        "frame_of_reference_uid": frame_uid,
        "frame_checked": checked,
        "diameter_mm": volumes.diameter_mm,
    }
    title = f"Dose evaluation: {folder.name}, {Path(dose_path).name}"
    written = _write_outputs(folder, result, title)
    written.append(_write_report(folder))
    return PlanEvaluation(result=result, written=written, frame_checked=checked)
