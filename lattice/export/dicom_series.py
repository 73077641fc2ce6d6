"""A DICOM CT series derived from a NIfTI image, so that an RTSTRUCT has a CT to sit on.

When the planning CT exists only as NIfTI, a treatment planning system has nothing to attach
a structure set to. :func:`derived_series` describes a new series on the NIfTI grid (new
UIDs, image type DERIVED\\SECONDARY) and :func:`write_series` writes its slices. Slice k of
the NIfTI array is image k: position ``affine @ (0, 0, k)`` in LPS, rows along the array's j
axis and columns along i, so a reader that sorts by position finds the same grid.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import __version__
from ..dicom import LPS_TO_RAS, ImageSeries, SliceRef, quiet_pydicom
from ..errors import MaskError
from ..volume import Volume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: Value of Manufacturer in every object lattice writes.
MANUFACTURER = "lattice (open-source SFRT planner)"


def ds_text(value: float) -> str:
    """A decimal string (VR DS) of at most 16 characters, as precise as that allows (at most
    12 decimals, trailing zeros dropped).

    pydicom writes up to 19 characters for some floats; Eclipse refuses them.
    """
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"cannot write {value} as a DICOM decimal string")
    magnitude = abs(value)
    if magnitude >= 1e10:
        from pydicom.valuerep import format_number_as_ds

        return str(format_number_as_ds(value))
    digits = int(np.floor(np.log10(magnitude))) + 1 if magnitude >= 1 else 1
    decimals = min(12, 16 - (value < 0) - digits - 1)
    text = f"{value:.{decimals}f}"
    if len(text) > 16:  # rounding added a digit (9.99... -> 10.0)
        text = f"{value:.{decimals - 1}f}"
    text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def ds_list(values: Any) -> list[str]:
    """:func:`ds_text` of each value (vectorised: contours hold hundreds of thousands)."""
    array = np.ravel(np.asarray(values, dtype=np.float64))
    magnitude = np.abs(array)
    if not np.all(magnitude < 1e10):  # also catches NaN and inf
        return [ds_text(v) for v in array]
    with np.errstate(divide="ignore"):
        digits = np.where(magnitude >= 1, np.floor(np.log10(np.maximum(magnitude, 1))) + 1, 1)
    decimals = np.minimum(12, 16 - (array < 0) - digits - 1).astype(int)
    out = []
    for value, d in zip(array.tolist(), decimals.tolist()):
        text = f"{value:.{d}f}"
        if len(text) > 16:
            text = ds_text(value)
        else:
            text = text.rstrip("0").rstrip(".")  # always has a point: d >= 4
            if text in ("-0", ""):
                text = "0"
        out.append(text)
    return out


def lps_affine(grid: Volume) -> NDArray[np.float64]:
    """Voxel index -> LPS mm."""
    return LPS_TO_RAS @ grid.affine  # the same matrix both ways (its own inverse)


def now_da_tm() -> tuple[str, str]:
    """Today's date and time as DICOM DA and TM strings."""
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def derived_series(grid: Volume, *, patient_name: str, patient_id: str,
                   study_uid: str | None = None, frame_of_reference_uid: str | None = None,
                   description: str = "lattice: CT derived from NIfTI") -> ImageSeries:
    """Describe a new CT series on ``grid`` (new Series and SOP Instance UIDs).

    ``study_uid`` and ``frame_of_reference_uid`` are new unless given (pass UIDs derived
    from the CT file so that repeated exports of one CT share them).
    """
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    grid.check_not_sheared(name="CT grid")
    date, time = now_da_tm()
    header = Dataset()
    header.SpecificCharacterSet = "ISO_IR 192"
    header.PatientName = patient_name
    header.PatientID = patient_id
    header.PatientBirthDate = ""
    header.PatientSex = ""
    header.StudyInstanceUID = study_uid or generate_uid()
    header.StudyDate = date
    header.StudyTime = time
    header.StudyID = "LATTICE"
    header.ReferringPhysicianName = ""
    header.AccessionNumber = ""
    header.StudyDescription = "lattice SFRT geometry"
    header.Modality = "CT"
    header.SeriesInstanceUID = generate_uid()
    header.SeriesNumber = 901
    header.SeriesDescription = description[:64]
    header.SeriesDate = date
    header.SeriesTime = time
    header.FrameOfReferenceUID = frame_of_reference_uid or generate_uid()
    slices = tuple(SliceRef(CT_IMAGE_STORAGE, generate_uid()) for _ in range(grid.shape[2]))
    return ImageSeries(grid=grid, slices=slices, header=header)


def _pixel_encoding(data: NDArray) -> tuple[NDArray, float, float, int]:
    """Stored values, slope, intercept and pixel representation for the image values."""
    values = np.asarray(data)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise MaskError("the CT holds NaN or infinite values; they cannot be written as "
                        "DICOM (fix the image, or pass --no-dicom)")
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    integral = values.dtype.kind in "biu" or bool(np.all(values == np.round(values)))
    if integral and -32768 <= lo and hi <= 32767:
        return values.astype(np.int16, copy=False), 1.0, 0.0, 1
    # Real-valued (or out-of-range) images: 16-bit unsigned with a rescale.
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    stored = np.rint((values - lo) / slope).astype(np.uint16)
    return stored, slope, lo, 0


def write_series(series: ImageSeries, image: Volume, folder: str | Path) -> list[Path]:
    """Write the CT ``image`` as the slices of ``series`` (from :func:`derived_series`).

    Returns the files written (``CT_0000.dcm``, ...).
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    grid = series.grid
    if image.shape != grid.shape or not np.allclose(image.affine, grid.affine, atol=1e-6):
        raise ValueError("the image is not on the series grid")
    stored, slope, intercept, signed = _pixel_encoding(image.array)
    lps = lps_affine(grid)
    size = grid.voxel_size_mm
    row_dir = lps[:3, 0] / size[0]
    col_dir = lps[:3, 1] / size[1]
    date, time = now_da_tm()
    # One dataset for every slice: what differs between slices is set in the loop.
    with quiet_pydicom():
        ds = _copy(series.header)
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.DerivationDescription = "resampled to DICOM from a NIfTI image by lattice"
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = __version__
    ds.PatientPosition = ""
    ds.Laterality = ""
    ds.PositionReferenceIndicator = ""
    ds.AcquisitionNumber = ""
    ds.KVP = ""
    ds.ContentDate, ds.ContentTime = date, time
    ds.PatientOrientation = ""
    ds.ImageOrientationPatient = ds_list(np.concatenate([row_dir, col_dir]))
    ds.PixelSpacing = ds_list([size[1], size[0]])  # between rows, between columns
    ds.SliceThickness = ds_text(size[2])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = grid.shape[1], grid.shape[0]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = signed
    ds.RescaleIntercept = ds_text(intercept)
    ds.RescaleSlope = ds_text(slope)
    ds.RescaleType = "HU"
    paths = []
    for k, ref in enumerate(series.slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(ref.sop_class_uid)
        meta.MediaStorageSOPInstanceUID = UID(ref.sop_instance_uid)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.SOPClassUID = ref.sop_class_uid
        ds.SOPInstanceUID = ref.sop_instance_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = ds_list(lps[:3, 3] + k * lps[:3, 2])
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        path = folder / f"CT_{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _copy(header: Any) -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    for elem in header:
        if elem.tag.group != 0x0002 and elem.tag != 0x7FE00010:
            ds.add(elem)
    return ds
