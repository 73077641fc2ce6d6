"""Write a dose grid as a DICOM RT Dose file (the inverse of :func:`lattice.io.rtdose.read_rtdose`).

The geometry conventions are those of :mod:`lattice.io.rtdose`: the array is ``(I, J, K)``
with ``i`` along a row, ``j`` along a column and ``k`` along the frames, the affine maps
voxel index to RAS mm, and LPS appears only in the written header.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from lattice.io.rtdose import (
    DIRECTION_TOL,
    DS_MAX_CHARS,
    LPS_TO_RAS,
    RT_DOSE_STORAGE,
    RT_PLAN_STORAGE,
    WRITER_BITS,
    DoseError,
)

__all__ = ["write_rtdose"]


def _ds(value: float) -> str:
    """A DS string of at most 16 characters (the most digits that fit)."""
    value = 0.0 if abs(value) < 1e-12 else float(value)
    for digits in range(12, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= DS_MAX_CHARS:
            return text
    raise DoseError(f"cannot write {value!r} as a DICOM DS value")  # pragma: no cover


def _lps_geometry(affine_ras: NDArray[np.float64], source: str) -> dict[str, Any]:
    """ImageOrientationPatient, PixelSpacing, ImagePositionPatient and the frame step."""
    affine_lps = LPS_TO_RAS @ np.asarray(affine_ras, dtype=np.float64)
    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise DoseError(f"{source}: the affine has a zero column; pass an invertible affine")
    row_dir, col_dir = affine_lps[:3, 0] / spacing[0], affine_lps[:3, 1] / spacing[1]
    normal = np.cross(row_dir, col_dir)
    step = float(affine_lps[:3, 2] @ normal)
    if (
        abs(row_dir @ col_dir) > DIRECTION_TOL
        or np.linalg.norm(affine_lps[:3, 2] - step * normal) > DIRECTION_TOL * spacing[2]
    ):
        raise DoseError(
            f"{source}: an RT Dose grid needs orthogonal axes with frames along "
            "the plane normal; resample the dose to such a grid first"
        )
    return {
        "orientation": np.concatenate([row_dir, col_dir]),
        "normal": normal,
        "pixel_spacing_mm": np.array([spacing[1], spacing[0]]),
        "step_mm": step,
        "position_lps_mm": affine_lps[:3, 3],
    }


def write_rtdose(
    path: str | Path,
    dose_gy: NDArray[np.floating[Any]],
    affine_ras: NDArray[np.float64],
    *,
    frame_of_reference_uid: str,
    offsets: Literal["relative", "absolute"] = "relative",
    scaling: float | None = None,
    bits: Literal[16, 32] = 16,
    summation_type: str = "PLAN",
    study_instance_uid: str | None = None,
) -> Path:
    """Write a dose as a minimal valid RT Dose (for tests and round trips).

    Parameters
    ----------
    path : str or Path
    dose_gy : (I, J, K) ndarray of float
        Non-negative dose in Gy; ``i`` along the rows, ``j`` down the columns, ``k`` frames.
    affine_ras : (4, 4) ndarray of float
        Voxel index to RAS mm; the axes orthogonal, the third along the plane normal (either
        sign).
    frame_of_reference_uid : str
        The CT's frame of reference.
    offsets : {"relative", "absolute"}
        GridFrameOffsetVector convention; ``"absolute"`` needs axial planes.
    scaling : float, optional
        DoseGridScaling (Gy per stored unit); default: the maximum dose over 2**bits - 1.
    bits : {16, 32}
        BitsAllocated of the unsigned stored values (see :data:`WRITER_BITS`).
    summation_type : str
        DoseSummationType (a ReferencedRTPlanSequence to a new plan UID is written with it).
    study_instance_uid : str, optional
        New unless given.

    Returns
    -------
    Path

    Raises
    ------
    DoseError
        A negative or non-finite dose, a dose above what ``scaling`` can store, a bad
        ``offsets`` value, or an affine an RT Dose cannot express.
    """
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    dose = np.asarray(dose_gy, dtype=np.float64)
    if dose.ndim != 3 or not np.all(np.isfinite(dose)) or np.any(dose < 0):
        raise DoseError("write_rtdose: pass a 3-D, finite, non-negative dose in Gy")
    if offsets not in ("relative", "absolute"):
        raise DoseError(f"write_rtdose: offsets must be 'relative' or 'absolute', got {offsets!r}")
    if bits not in WRITER_BITS:
        raise DoseError(f"write_rtdose: bits must be one of {WRITER_BITS}, got {bits!r}")
    geometry = _lps_geometry(affine_ras, "write_rtdose")
    top = float(2**bits - 1)
    scaling_text = _ds(scaling if scaling is not None else max(dose.max(), 1e-6) / top)
    stored = np.rint(dose / float(scaling_text))
    if stored.max() > top:
        raise DoseError(
            f"write_rtdose: scaling {scaling_text} cannot store {dose.max():g} Gy "
            f"in {bits} bits; pass a larger scaling"
        )
    ds = _rtdose_dataset(geometry, dose.shape, offsets=offsets, bits=bits, source="write_rtdose")
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.StudyInstanceUID = study_instance_uid or generate_uid()
    ds.DoseGridScaling = scaling_text
    ds.DoseSummationType = summation_type
    plan = _item(ReferencedSOPClassUID=RT_PLAN_STORAGE, ReferencedSOPInstanceUID=generate_uid())
    from pydicom.sequence import Sequence

    ds.ReferencedRTPlanSequence = Sequence([plan])
    dtype = np.uint16 if bits == 16 else np.uint32
    ds.PixelData = np.transpose(stored.astype(dtype), (2, 1, 0)).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def _item(**attributes: Any) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _rtdose_dataset(
    geometry: dict[str, Any],
    shape: tuple[int, ...],
    *,
    offsets: Literal["relative", "absolute"],
    bits: int,
    source: str,
) -> Any:
    """Patient, study, series, frame, equipment, image plane and pixel modules."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, generate_uid

    normal, step = geometry["normal"], geometry["step_mm"]
    position = geometry["position_lps_mm"]
    if offsets == "absolute":
        if abs(abs(normal[2]) - 1) > DIRECTION_TOL:
            raise DoseError(
                f"{source}: absolute offsets need axial planes; pass offsets='relative'"
            )
        frame_offsets = position[2] + np.arange(shape[2]) * step * normal[2]
    else:
        frame_offsets = np.arange(shape[2]) * step
    now = _dt.datetime.now(_dt.timezone.utc)
    ds = _item(
        SOPClassUID=RT_DOSE_STORAGE,
        SOPInstanceUID=generate_uid(),
        Modality="RTDOSE",
        PatientName="Dose^Test",
        PatientID="DOSETEST",
        PatientBirthDate="",
        PatientSex="",
        StudyDate=now.strftime("%Y%m%d"),
        StudyTime=now.strftime("%H%M%S"),
        ReferringPhysicianName="",
        StudyID="1",
        AccessionNumber="",
        SeriesInstanceUID=generate_uid(),
        SeriesNumber=1,
        OperatorsName="",
        PositionReferenceIndicator="",
        Manufacturer="lattice",
        InstanceNumber=1,
        ContentDate=now.strftime("%Y%m%d"),
        ContentTime=now.strftime("%H%M%S"),
        ImageOrientationPatient=[_ds(v) for v in geometry["orientation"]],
        ImagePositionPatient=[_ds(v) for v in position],
        PixelSpacing=[_ds(v) for v in geometry["pixel_spacing_mm"]],
        SliceThickness=_ds(abs(step)),
        SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2",
        Rows=shape[1],
        Columns=shape[0],
        NumberOfFrames=shape[2],
        FrameIncrementPointer=0x3004000C,
        BitsAllocated=bits,
        BitsStored=bits,
        HighBit=bits - 1,
        PixelRepresentation=0,
        DoseUnits="GY",
        DoseType="PHYSICAL",
        GridFrameOffsetVector=[_ds(v) for v in frame_offsets],
    )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(RT_DOSE_STORAGE)
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = meta
    return ds
