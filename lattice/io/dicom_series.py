"""A DICOM CT series derived from a NIfTI image, so that an RTSTRUCT has a CT to sit on.

When the planning CT exists only as NIfTI, a treatment planning system has nothing to attach
a structure set to. :func:`derived_series` describes a new series on the NIfTI grid (new
UIDs, image type DERIVED\\SECONDARY) and :func:`write_series` writes its slices. Slice k of
the NIfTI array is image k: position ``affine @ (0, 0, k)`` in LPS, rows along the array's j
axis and columns along i, so a reader that sorts by position finds the same grid.

Every string written into a DICOM object passes through this module's rules for its value
representation (:func:`dicom_string_problem`): values a user gives (patient name and ID) are
refused with a :class:`~lattice.errors.ParameterError` naming the rule they break, values
lattice makes or copies are fitted by :func:`fit_dicom_string`, the one truncation used for
the CT series and the RTSTRUCT alike.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import __version__
from ..errors import LatticeError, MaskError, ParameterError
from ..grid import Grid
from ..volume import Volume
from .dicom import ImageSeries, SliceRef, quiet_pydicom
from .slice_writer import SliceWriter, copy_header

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: Value of Manufacturer in every object lattice writes.
MANUFACTURER = "lattice (open-source SFRT planner)"
#: PatientName of a derived CT series unless one is given: clearly not a real patient.
ANONYMOUS_PATIENT_NAME = "ANONYMOUS^LATTICE"
#: Patient Position (0018,5100) defined terms, PS3.3 C.7.3.1.1.2.
PATIENT_POSITIONS = {
    "HFS": "head first-supine",
    "HFP": "head first-prone",
    "HFDR": "head first-decubitus right",
    "HFDL": "head first-decubitus left",
    "FFS": "feet first-supine",
    "FFP": "feet first-prone",
    "FFDR": "feet first-decubitus right",
    "FFDL": "feet first-decubitus left",
    "LFP": "left first-prone",
    "LFS": "left first-supine",
    "RFP": "right first-prone",
    "RFS": "right first-supine",
    "AFDR": "anterior first-decubitus right",
    "AFDL": "anterior first-decubitus left",
    "PFDR": "posterior first-decubitus right",
    "PFDL": "posterior first-decubitus left",
}
#: Patient Position of a derived CT series unless one is given.
DEFAULT_PATIENT_POSITION = "HFS"

#: Longest value of each string VR in characters (PS3.5 table 6.2-1; PN: per component group).
VR_MAX_LENGTH = {
    "AE": 16,
    "AS": 4,
    "CS": 16,
    "DA": 8,
    "DS": 16,
    "DT": 26,
    "IS": 12,
    "LO": 64,
    "LT": 10240,
    "PN": 64,
    "SH": 16,
    "ST": 1024,
    "TM": 14,
    "UI": 64,
}
#: Names of the VRs, for messages.
VR_NAMES = {
    "AE": "Application Entity",
    "AS": "Age String",
    "CS": "Code String",
    "DA": "Date",
    "DS": "Decimal String",
    "DT": "Date Time",
    "IS": "Integer String",
    "LO": "Long String",
    "LT": "Long Text",
    "PN": "Person Name",
    "SH": "Short String",
    "ST": "Short Text",
    "TM": "Time",
    "UC": "Unlimited Characters",
    "UI": "UID",
    "UT": "Unlimited Text",
}
#: Text VRs: single-valued, a backslash is text, and CR, LF, FF and TAB are allowed.
TEXT_VRS = frozenset({"LT", "ST", "UT"})
#: String VRs (values checked by :func:`dicom_string_problem`).
STRING_VRS = frozenset(VR_NAMES)
_FORMATS = {
    "CS": re.compile(r"[A-Z0-9 _]*"),
    "UI": re.compile(r"((0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*)?"),
    "DA": re.compile(r"(\d{8})?"),
    "TM": re.compile(r"(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?"),
    "AS": re.compile(r"(\d{3}[DWMY])?"),
    "IS": re.compile(r"( *[+-]?\d+ *)?"),
    "DS": re.compile(r"( *[+-]?(\d+|\d+\.\d*|\.\d+)([eE][+-]?\d+)? *)?"),
}


def _control(c: str, vr: str) -> bool:
    """Whether ``c`` is a control character not allowed in VR ``vr`` (ESC included: lattice
    writes UTF-8, ISO_IR 192, which needs no escape sequences)."""
    o = ord(c)
    return (o < 0x20 or 0x7F <= o < 0xA0) and not (vr in TEXT_VRS and c in "\t\n\f\r")


def dicom_string_problem(value: str, vr: str) -> str | None:
    """What makes ``value`` invalid as one value of a string VR, or None if it is valid.

    Checked: control characters (CR, LF, FF and TAB are allowed in the text VRs LT, ST, UT);
    a backslash (the value separator) outside the text VRs; the length in characters (PN: at
    most 3 ``=``-separated component groups of at most 5 ``^``-separated components and 64
    characters each); the characters and form of CS, UI, DA, TM, AS, IS and DS.
    """
    bad = next((c for c in value if _control(c, vr)), None)
    if bad is not None:
        return f"it holds the control character {bad!r}"
    if "\\" in value and vr not in TEXT_VRS:
        return (
            "it holds a backslash, which DICOM reads as the separator between two values "
            f"(VR {vr}, {VR_NAMES.get(vr, vr)}, holds one value here)"
        )
    if vr == "PN":
        groups = value.split("=")
        if len(groups) > 3:
            return (
                f"it has {len(groups)} '='-separated component groups (a person name has "
                "at most 3: alphabetic, ideographic, phonetic)"
            )
        for group in groups:
            if group.count("^") > 4:
                return (
                    f"'{group}' has {group.count('^') + 1} '^'-separated components (at "
                    "most 5: family^given^middle^prefix^suffix)"
                )
            if len(group) > VR_MAX_LENGTH["PN"]:
                return (
                    f"it is {len(group)} characters long; a person name (component "
                    f"group) has at most {VR_MAX_LENGTH['PN']}"
                )
        return None
    limit = VR_MAX_LENGTH.get(vr)
    if limit is not None and len(value) > limit:
        return (
            f"it is {len(value)} characters long; VR {vr} ({VR_NAMES.get(vr, vr)}) allows "
            f"at most {limit}"
        )
    form = _FORMATS.get(vr)
    if form is not None and not form.fullmatch(value):
        allowed = (
            "upper-case letters, digits, space and underscore"
            if vr == "CS"
            else "the form the standard gives"
        )
        return f"VR {vr} ({VR_NAMES[vr]}) allows only {allowed}"
    return None


def check_dicom_string(value: str, vr: str, *, what: str) -> str:
    """``value`` if it is valid for ``vr`` as a value a user gives, else
    :class:`~lattice.errors.ParameterError` naming ``what`` and the rule (also refused:
    leading or trailing spaces, which DICOM readers drop)."""
    field = _field(what)
    if not isinstance(value, str):
        raise ParameterError(f"{field} must be text, got {value!r}", parameters=[what])
    problem = dicom_string_problem(value, vr)
    if problem is None and value != value.strip():
        problem = "it has leading or trailing spaces, which DICOM readers drop"
    if problem is not None:
        shown = f"'{value}'" if value.isprintable() else repr(value)
        raise ParameterError(
            f"{field} {shown} cannot be written to DICOM: {problem}; choose another value",
            parameters=[what],
        )
    return value


def _field(what: str) -> str:
    """``what`` as a :class:`~lattice.errors.ParameterError` field when it is a parameter
    name (the caller renders it, e.g. as a command-line option), else as it is."""
    return "{" + what + "}" if what.isidentifier() else what


def fit_dicom_string(value: Any, vr: str) -> str:
    """``value`` made valid for ``vr``: the one truncation lattice applies, in the CT series
    and in the RTSTRUCT alike, to the strings it makes or copies.

    Control characters become spaces, backslashes ``/`` (outside the text VRs); a CS value is
    upper-cased and its other characters become ``_``; a PN value keeps 3 component groups
    of 5 components, each group cut to 64 characters; any other value is cut to the VR's
    length (:data:`VR_MAX_LENGTH`), counted in characters.
    """
    text = "".join(" " if _control(c, vr) else c for c in str(value))
    if vr not in TEXT_VRS:
        text = text.replace("\\", "/")
    if vr == "CS":
        text = re.sub(r"[^A-Z0-9 _]", "_", text.upper())
    if vr == "PN":
        groups = []
        for group in text.split("=")[:3]:
            parts = group.split("^")
            group = "^".join([*parts[:4], " ".join(parts[4:])] if len(parts) > 5 else parts)
            groups.append(group[: VR_MAX_LENGTH["PN"]])
        return "=".join(groups)
    limit = VR_MAX_LENGTH.get(vr)
    return text[:limit] if limit is not None else text


def string_problems(
    ds: Any, *, skip: Iterable[int] = (), multi_ok: Iterable[str] = ()
) -> list[str]:
    """Every string value of a pydicom dataset (sequences included) that breaks its VR's
    rules (:func:`dicom_string_problem`), or its value multiplicity, as ``'Keyword: why'``.

    ``skip``: tags not looked at (ContourData: written by a formatter of its own);
    ``multi_ok``: keywords whose several values are copied unchanged from a source object.
    """
    from pydicom.datadict import dictionary_VM, keyword_for_tag
    from pydicom.dataelem import RawDataElement
    from pydicom.multival import MultiValue

    skip, multi_ok = set(skip), set(multi_ok)
    problems: list[str] = []

    def walk(dataset: Any) -> None:
        for elem in dataset.elements():  # raw (pre-encoded) elements stay raw
            if elem.tag in skip:
                continue
            if elem.VR == "SQ":
                for item in dataset[elem.tag].value:
                    walk(item)
                continue
            if elem.VR not in STRING_VRS:
                continue
            name = keyword_for_tag(elem.tag) or str(elem.tag)
            value = elem.value
            if isinstance(elem, RawDataElement):
                value = (value or b"").decode("utf-8", "replace").rstrip(" \x00")
            if value is None or value == "":
                values = []
            elif elem.VR in TEXT_VRS:
                values = [str(value)]
            elif isinstance(value, str):
                values = value.split("\\")
            elif isinstance(value, (MultiValue, list, tuple)):
                values = [str(v) for v in value]
            else:
                values = [str(value)]
            vm = dictionary_VM(elem.tag) if keyword_for_tag(elem.tag) else "1-n"
            if len(values) > 1 and vm == "1" and name not in multi_ok:
                problems.append(f"{name}: {len(values)} values where DICOM allows one")
            for v in values:
                problem = dicom_string_problem(
                    v.rstrip("\x00" if elem.VR == "UI" else " "), elem.VR
                )
                if problem is not None:
                    problems.append(f"{name} {v!r}: {problem}")

    walk(ds)
    return problems


def check_written_strings(
    ds: Any, *, what: str, skip: Iterable[int] = (), multi_ok: Iterable[str] = ()
) -> None:
    """Raise a :class:`~lattice.errors.LatticeError` (a bug: every value should have been
    checked or fitted) if a dataset about to be written holds an invalid string."""
    problems = string_problems(ds, skip=skip, multi_ok=multi_ok)
    if problems:
        raise LatticeError(
            f"{what} would hold invalid DICOM values ({'; '.join(problems[:3])})"
            "; nothing was written; please report this as a bug"
        )


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


def now_da_tm() -> tuple[str, str]:
    """Today's date and time as DICOM DA and TM strings."""
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def check_patient_position(value: str, *, what: str = "patient_position") -> str:
    """``value`` (any case) as a Patient Position defined term, else a
    :class:`~lattice.errors.ParameterError` listing them."""
    term = str(value).strip().upper()
    if term not in PATIENT_POSITIONS:
        listing = ", ".join(f"{k} ({v})" for k, v in PATIENT_POSITIONS.items())
        raise ParameterError(
            f"{_field(what)} {value!r} is not a DICOM patient position; choose one of {listing}",
            parameters=[what],
        )
    return term


def derived_series(
    grid: Grid | Volume,
    *,
    patient_id: str,
    patient_name: str = ANONYMOUS_PATIENT_NAME,
    patient_position: str = DEFAULT_PATIENT_POSITION,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    description: str = "lattice: CT derived from NIfTI",
) -> ImageSeries:
    """Describe a new CT series on ``grid`` (new Series and SOP Instance UIDs).

    ``study_uid`` and ``frame_of_reference_uid`` are new unless given (pass UIDs derived
    from the CT file so that repeated exports of one CT share them). ``patient_name`` (VR PN)
    and ``patient_id`` (LO) must be valid DICOM values (:func:`check_dicom_string`);
    ``patient_position`` is one of :data:`PATIENT_POSITIONS`; ``description`` is fitted
    (:func:`fit_dicom_string`).

    Raises
    ------
    ParameterError
        A patient attribute DICOM cannot hold as given.
    """
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    patient_name = check_dicom_string(patient_name, "PN", what="patient_name")
    patient_id = check_dicom_string(patient_id, "LO", what="patient_id")
    patient_position = check_patient_position(patient_position)
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
    header.SeriesDescription = fit_dicom_string(description, "LO")
    header.SeriesDate = date
    header.SeriesTime = time
    header.PatientPosition = patient_position
    header.FrameOfReferenceUID = frame_of_reference_uid or generate_uid()
    check_written_strings(header, what="the derived CT series")
    slices = tuple(SliceRef(CT_IMAGE_STORAGE, generate_uid()) for _ in range(grid.shape[2]))
    return ImageSeries(grid=grid, slices=slices, header=header)


def _pixel_encoding(data: NDArray) -> tuple[NDArray, float, float, int]:
    """Stored values, slope, intercept and pixel representation for the image values."""
    values = np.asarray(data)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise MaskError(
            "the CT holds NaN or infinite values; they cannot be written as "
            "DICOM (fix the image, or pass --no-dicom)"
        )
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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    grid = series.grid
    if image.shape != grid.shape or not np.allclose(image.affine, grid.affine, atol=1e-6):
        raise ValueError("the image is not on the series grid")
    stored, slope, intercept, signed = _pixel_encoding(image.array)
    lps = grid.lps_affine
    size = grid.voxel_size_mm
    row_dir = lps[:3, 0] / size[0]
    col_dir = lps[:3, 1] / size[1]
    date, time = now_da_tm()
    # One dataset for every slice: what differs between slices is set in the loop.
    with quiet_pydicom():
        ds = copy_header(series.header)
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.DerivationDescription = "resampled to DICOM from a NIfTI image by lattice"
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = fit_dicom_string(__version__, "LO")
    # Laterality (type 2C) is written empty: a NIfTI says nothing about the body part, so it
    # is unknown, which is what empty means. Left out, dciodvfy reports a missing attribute
    # (an error: it cannot tell that the part is unpaired); empty, it warns that empty is
    # only permitted when actually unknown, which is the case here.
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
    check_written_strings(ds, what="the derived CT series")
    writer = SliceWriter(ds, stored.dtype)
    paths = []
    for k, ref in enumerate(series.slices):
        path = folder / f"CT_{k:04d}.dcm"
        writer.write(
            path,
            ref,
            instance_number=k + 1,
            position=ds_list(lps[:3, 3] + k * lps[:3, 2]),
            pixels=np.ascontiguousarray(stored[:, :, k].T),
        )
        paths.append(path)
    return paths
