"""DICOM RTSTRUCT of a plan, for a treatment planning system to import beside its CT.

Follows the checklist of ``docs/dicom.md`` ("An RTSTRUCT a TPS will accept"): the structure
set references the CT series (patient and study attributes, FrameOfReferenceUID, a
ContourImageSequence per contour), gets new Series and SOP Instance UIDs on every export,
writes every decimal string in at most 16 characters, and holds CLOSED_PLANAR contours of at
least 3 points, each on a CT slice plane.

Vertex spheres are written as analytic circles where each slice plane cuts the sphere
(:data:`CIRCLE_POINTS` points on the circle: the polygon's area is 0.16 % below the
circle's); other structures are traced from their voxel masks (marching squares at the
voxel-centre level, in world coordinates).
"""

from __future__ import annotations

import colorsys
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import __version__
from ..errors import LatticeError
from ..grid import Grid
from ..planning.plan import Plan
from ..volume import Volume
from .dicom import ImageSeries, on_grid, quiet_pydicom
from .dicom_series import (
    MANUFACTURER,
    check_written_strings,
    dicom_string_problem,
    ds_list,
    fit_dicom_string,
    now_da_tm,
)
from .rtstruct_contours import Contour, keyhole_contours, mask_contours, sphere_contours
from .rtstruct_read import RTSTRUCT_SOP_CLASS

#: Longest ROI name Eclipse accepts.
MAX_NAME_LENGTH = 16
#: Patient and study attributes copied from the CT (type 2 ones are written empty if absent).
PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "ReferringPhysicianName",
    "AccessionNumber",
)
OPTIONAL_COPIED = ("IssuerOfPatientID", "OtherPatientIDs", "PatientAge", "StudyDescription")
#: Vertex ROIs written: one combined ROI, one per vertex, or both.
VERTEX_ROI_CHOICES = ("both", "combined", "each")
#: How LATTICE_VALLEY holds the vertex holes: inner contours (read with the even-odd rule,
#: as Eclipse and RayStation do), or keyhole polygons (each hole joined to its outline by a
#: zero-width cut: one polygon per outline, for readers that OR contours, e.g. plastimatch).
VALLEY_CONTOUR_CHOICES = ("holes", "keyhole")


@dataclass(frozen=True)
class RoiSpec:
    """One ROI to write: its contours on the series' slices."""

    name: str
    interpreted_type: str
    color: tuple[int, int, int]
    contours: list[Contour]
    description: str = ""
    #: The name it was made under, when renamed (:mod:`lattice.io.roi_names`).
    default_name: str = ""


def _colors(n: int, *, start: float) -> list[tuple[int, int, int]]:
    return [
        tuple(
            int(round(255 * c)) for c in colorsys.hsv_to_rgb((start + i / max(n, 1)) % 1, 0.85, 1.0)
        )  # type: ignore
        for i in range(n)
    ]


#: Colours of the structure ROIs (vertices get hues of their own).
COLORS = {
    "LATTICE_VTX": (255, 0, 0),
    "LATTICE_TARGET": (0, 200, 255),
    "LATTICE_VALLEY": (40, 90, 255),
    "LATTICE_STV": (255, 0, 255),
    "GTV": (255, 255, 0),
}


def _vertex_rois(plan: Plan, circles: list[list[Contour]], vertex_rois: str) -> list[RoiSpec]:
    """``LATTICE_VTX`` (every vertex) and/or ``VTX_01``... (one per vertex), as asked."""
    rois = []
    if vertex_rois in ("both", "combined") and plan.n_vertices:
        rois.append(
            RoiSpec(
                "LATTICE_VTX",
                "PTV",
                COLORS["LATTICE_VTX"],
                [c for per in circles for c in per],
                f"all {plan.n_vertices} LATTICE vertices, D {plan.parameters.diameter_mm:g} mm",
            )
        )
    if vertex_rois in ("both", "each"):
        for record, per, color in zip(
            plan.vertex_records(), circles, _colors(plan.n_vertices, start=0.02)
        ):
            rois.append(
                RoiSpec(
                    record["name"],
                    "PTV",
                    color,
                    per,
                    f"LATTICE vertex {record['id']}, D {plan.parameters.diameter_mm:g} mm",
                )
            )
    return rois


def plan_rois(
    plan: Plan,
    grid: Grid | Volume,
    *,
    vertex_rois: str = "both",
    stv: Volume | None = None,
    gtv: bool = False,
    valley_contours: str = "holes",
    gtv_contours: Sequence[Contour] | None = None,
) -> list[RoiSpec]:
    """The ROIs of a plan on the slices of ``grid`` (the plan's masks must be on it).

    Parameters
    ----------
    vertex_rois : {'both', 'combined', 'each'}
        ``LATTICE_VTX`` holding every vertex, ``VTX_01``... one per vertex, or both.
    stv : Volume, optional
        The SCART target, written as ``LATTICE_STV``.
    gtv : bool
        Also write the GTV (when the TPS has no structure set with it).
    valley_contours : {'holes', 'keyhole'}
        ``LATTICE_VALLEY`` as an outline with inner contours, or as keyhole polygons
        (:func:`keyhole_contours`).
    gtv_contours : sequence of Contour, optional
        :func:`~lattice.io.rtstruct_contours.mask_contours` of the GTV on ``grid``, when
        already traced (the picture worker traces them while the plan is made).
    """
    if vertex_rois not in VERTEX_ROI_CHOICES:
        raise ValueError(f"vertex_rois must be one of {VERTEX_ROI_CHOICES}")
    if valley_contours not in VALLEY_CONTOUR_CHOICES:
        raise ValueError(f"valley_contours must be one of {VALLEY_CONTOUR_CHOICES}")
    radius = plan.parameters.diameter_mm / 2.0
    circles = [sphere_contours(c, radius, grid) for c in plan.centers_lps_mm]
    rois = _vertex_rois(plan, circles, vertex_rois)
    # Masks are traced on the series' own slices: a NIfTI grid may store the same voxels in
    # another axis order.
    gtv_mask = on_grid(plan.gtv, grid, name="GTV", grid_name="the DICOM series")
    rois.append(
        RoiSpec(
            "LATTICE_TARGET",
            "CONTROL",
            COLORS["LATTICE_TARGET"],
            mask_contours(on_grid(plan.lattice_target, grid)),
            f"GTV eroded by {plan.parameters.gtv_margin_mm:g} mm",
        )
    )
    if stv is not None:
        rois.append(
            RoiSpec(
                "LATTICE_STV",
                "PTV",
                COLORS["LATTICE_STV"],
                mask_contours(on_grid(stv, grid)),
                "SCART target (contracted GTV)",
            )
        )
    gtv_contours = list(mask_contours(gtv_mask) if gtv_contours is None else gtv_contours)
    # The valley is the GTV outline with the vertex circles as holes (even-odd), exact, when
    # every circle clears the traced outline: the outline runs within half an in-plane voxel
    # diagonal of a voxel centre outside the GTV, and circles stay the margin away from those.
    in_plane = float(np.hypot(*grid.voxel_size_mm[:2])) / 2.0
    if plan.parameters.gtv_margin_mm > in_plane:
        valley = sorted(gtv_contours + [c for per in circles for c in per], key=lambda c: c[0])
    else:
        from .masks import sphere_label_map

        spheres = sphere_label_map(
            gtv_mask, plan.centers_ras_mm, diameter_mm=plan.parameters.diameter_mm
        )
        valley = mask_contours(gtv_mask.with_array(gtv_mask.array & (spheres.array == 0)))
    if valley_contours == "keyhole":
        valley = keyhole_contours(valley, grid)
    rois.append(
        RoiSpec(
            "LATTICE_VALLEY",
            "AVOIDANCE",
            COLORS["LATTICE_VALLEY"],
            valley,
            "GTV minus the vertex spheres",
        )
    )
    if gtv:
        rois.append(RoiSpec("GTV", "GTV", COLORS["GTV"], gtv_contours, "GTV the plan was made for"))
    _check_names(rois)
    return rois


def _check_names(rois: Sequence[RoiSpec]) -> None:
    names = [r.name for r in rois]
    if (
        len({n.casefold() for n in names}) != len(names)
        or any(len(n) > MAX_NAME_LENGTH for n in names)
        or any(dicom_string_problem(n, "LO") or n != n.strip() for n in names)
    ):
        raise ValueError(
            f"ROI names must be unique (without regard to case), valid DICOM LO values and <= "
            f"{MAX_NAME_LENGTH} characters: {names}"
        )


def rtstruct_dataset(
    series: ImageSeries, rois: Sequence[RoiSpec], *, label: str = "LATTICE", description: str = ""
) -> Any:
    """The RTSTRUCT dataset referencing ``series`` (new Series and SOP Instance UIDs)."""
    from pydicom.sequence import Sequence as DicomSequence

    _check_names(rois)
    ds, multi = _structure_set_header(series, label=label, description=description)
    image_uids = [(sl.sop_class_uid, sl.sop_instance_uid) for sl in series.slices]
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_referenced_frame(series, image_uids)])
    set_rois, contours, observations = _roi_items(rois, series.frame_of_reference_uid, image_uids)
    ds.StructureSetROISequence = DicomSequence(set_rois)
    ds.ROIContourSequence = DicomSequence(contours)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    # Declares the encoding the file will have, so that pydicom writes the raw Contour
    # Sequences as they are: otherwise it parses them back to check for ambiguous VRs (there
    # are none in an RTSTRUCT) and encodes every item again, most of the export's time.
    # (An item's own character set is the default one until it is written in its parent;
    # the raw values are ASCII.)
    for dataset in (ds, *contours):
        dataset.set_original_encoding(False, True, dataset._character_set)
    # The contours (and the image references) are made here from constants, numbers and
    # UIDs of the CT; thousands of them would take 0.1 s to walk. The tests walk them too.
    check_written_strings(
        ds, what="rtstruct.dcm", multi_ok=multi, skip=(CONTOUR_SEQUENCE, CONTOUR_IMAGE_SEQUENCE)
    )
    return ds


def _structure_set_header(
    series: ImageSeries, *, label: str, description: str
) -> tuple[Any, set[str]]:
    """The dataset with its file meta, the attributes copied from the CT and the structure
    set's own; and the copied attributes that may hold several values."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    header = series.header
    date, time = now_da_tm()
    ds = Dataset()
    ds.SpecificCharacterSet = str(header.get("SpecificCharacterSet", "ISO_IR 192") or "ISO_IR 192")
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(RTSTRUCT_SOP_CLASS)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    copied, _, multi = copied_attributes(header)
    for key, value in copied.items():
        setattr(ds, key, value)
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 902
    ds.SeriesDescription = fit_dicom_string(description or "lattice vertices", "LO")
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.OperatorsName = ""
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = fit_dicom_string(__version__, "LO")
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.StructureSetLabel = fit_dicom_string(label, "SH")
    ds.StructureSetName = fit_dicom_string(label, "LO")
    ds.StructureSetDescription = fit_dicom_string(description, "ST")
    ds.StructureSetDate, ds.StructureSetTime = date, time
    return ds, multi


def _referenced_frame(series: ImageSeries, image_uids: Sequence[tuple[str, str]]) -> Any:
    """The ReferencedFrameOfReferenceSequence item: frame, study, series and every image."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    def image_ref(k: int) -> Dataset:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = image_uids[k]
        return item

    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    study_ref.ReferencedSOPInstanceUID = series.study_instance_uid
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = series.series_instance_uid
    series_ref.ContourImageSequence = DicomSequence(
        [image_ref(k) for k in range(len(series.slices))]
    )
    study_ref.RTReferencedSeriesSequence = DicomSequence([series_ref])
    frame = Dataset()
    frame.FrameOfReferenceUID = series.frame_of_reference_uid
    frame.RTReferencedStudySequence = DicomSequence([study_ref])
    return frame


def _roi_items(
    rois: Sequence[RoiSpec], frame_uid: str, image_uids: Sequence[tuple[str, str]]
) -> tuple[list[Any], list[Any], list[Any]]:
    """Per ROI: its StructureSetROISequence, ROIContourSequence (the Contour Sequence
    pre-encoded) and RTROIObservationsSequence items."""
    from pydicom.dataset import Dataset

    set_rois, contours, observations = [], [], []
    encoded = _encoded_contours(rois)
    for number, roi in enumerate(rois, start=1):
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = frame_uid
        item.ROIName = roi.name
        if roi.description:
            item.ROIDescription = fit_dicom_string(roi.description, "ST")
        item.ROIGenerationAlgorithm = "AUTOMATIC"
        set_rois.append(item)
        roi_contour = Dataset()
        roi_contour.ROIDisplayColor = list(roi.color)
        if roi.contours:  # type 3: left out for an ROI with nothing on the slices
            # Encoded here, whole: thousands of contour items, which pydicom would build
            # and walk element by element for most of the export's time.
            roi_contour[CONTOUR_SEQUENCE] = _raw_bytes(
                CONTOUR_SEQUENCE, "SQ", _contour_items(roi.contours, image_uids, encoded)
            )
        roi_contour.ReferencedROINumber = number
        contours.append(roi_contour)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = roi.interpreted_type
        obs.ROIInterpreter = ""
        observations.append(obs)
    return set_rois, contours, observations


#: Tags of the contour items' elements written pre-encoded.
CONTOUR_TYPE, CONTOUR_POINTS, CONTOUR_NUMBER, CONTOUR_DATA = (
    0x30060042,
    0x30060046,
    0x30060048,
    0x30060050,
)
#: Tags of the Contour Sequence and of the Contour Image Sequence.
CONTOUR_SEQUENCE, CONTOUR_IMAGE_SEQUENCE = 0x30060040, 0x30060016


def _decimal_strings(values: NDArray[np.float64]) -> str:
    """Values to 1e-6 (mm) as a DS multi-value, every number at most 16 characters."""
    flat = np.ravel(values)
    if np.all(np.abs(flat) < FIXED_LIMIT):  # one format for all
        return "\\".join(map("{:.6f}".format, flat.tolist()))
    return "\\".join(ds_list(flat))


#: Values below this magnitude are written as ``'{:.6f}'``, others by ``ds_list``: 16
#: characters at most (17 only within 5e-7 mm of 1e8 mm, which rounds up to 9 digits; no
#: image is 100 km across).
FIXED_LIMIT = 1e8
_INT_POWERS = (10 ** np.arange(8, -1, -1)).astype(np.uint32)  # 1e8 .. 1
_FRACTION_POWERS = (10 ** np.arange(5, -1, -1)).astype(np.uint32)  # 1e5 .. 1


def _fixed_decimals(flat: NDArray[np.float64]) -> tuple[bytes, NDArray[np.int64]]:
    """``'\\'.join('{:.6f}'.format(v) for v in flat)`` (+ a final backslash) as ASCII bytes,
    made by array operations, and the end offset of each value's text in it (after its
    backslash). Every ``|v|`` must be below :data:`FIXED_LIMIT`.

    ``'{:.6f}'`` rounds the exact binary value half to even. ``rint(|v| * 1e6)`` does the
    same except where the product's rounding error (at most ``|v| * 1e6 * 2**-53``) could
    move it across a half: those few values are rounded exactly with ``Fraction``.
    """
    from fractions import Fraction

    y = np.abs(flat) * 1e6
    scaled = np.rint(y).astype(np.int64)
    near_half = np.abs(y - np.floor(y) - 0.5) <= y * 1e-15 + 1e-9
    for i in np.flatnonzero(near_half):
        scaled[i] = round(Fraction(abs(float(flat[i]))) * 1_000_000)
    whole, fraction = np.divmod(scaled, 1_000_000)
    whole, fraction = whole.astype(np.uint32), fraction.astype(np.uint32)
    # One row of 18 characters per value: sign, 9 digits, point, 6 digits, backslash; the
    # sign (for a set sign bit, as '{:.6f}' writes '-0.000000') and leading zeros dropped.
    chars = np.empty((len(flat), 18), dtype=np.uint8)
    chars[:, 0] = ord("-")
    chars[:, 1:10] = (whole[:, None] // _INT_POWERS) % 10 + ord("0")
    chars[:, 10] = ord(".")
    chars[:, 11:17] = (fraction[:, None] // _FRACTION_POWERS) % 10 + ord("0")
    chars[:, 17] = ord("\\")
    keep = np.ones(chars.shape, dtype=bool)
    keep[:, 0] = np.signbit(flat)
    keep[:, 1:9] = whole[:, None] >= _INT_POWERS[:8]
    return chars[keep].tobytes(), np.cumsum(keep.sum(axis=1))


def _contour_data(contours: Sequence[Contour]) -> list[bytes]:
    """Each contour's points as the DS multi-value :func:`_decimal_strings` makes, encoded,
    for all contours at once (:func:`_fixed_decimals`) when every value allows it."""
    if not contours:
        return []
    flat = np.concatenate([np.ravel(points) for _, points in contours]).astype(np.float64)
    if not np.all(np.abs(flat) < FIXED_LIMIT):
        return [_decimal_strings(points).encode("ascii") for _, points in contours]
    text, ends = _fixed_decimals(flat)
    last = np.cumsum([np.size(points) for _, points in contours]) - 1  # each one's last value
    starts = np.concatenate([[0], ends[last[:-1]]])
    return [text[a : b - 1] for a, b in zip(starts.tolist(), ends[last].tolist())]


def _raw_bytes(tag: int, vr: str, value: bytes) -> Any:
    """An element whose value is already encoded as explicit VR little endian bytes."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    return RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def _element(tag: int, vr: str, value: bytes) -> bytes:
    """One explicit VR little endian data element (tag, VR, length, value padded to even:
    NUL for UI, space for text)."""
    if len(value) % 2:
        value += b"\0" if vr == "UI" else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr == "SQ":
        return head + b"\0\0" + struct.pack("<I", len(value)) + value
    if len(value) > 0xFFFE:
        raise LatticeError(
            f"a contour of {len(value)} bytes does not fit a DICOM element "
            "(at most 65534); please report this as a bug"
        )
    return head + struct.pack("<H", len(value)) + value


def _item(content: bytes) -> bytes:
    """A sequence item of defined length."""
    return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(content)) + content


def _encoded_contours(rois: Sequence[RoiSpec]) -> dict[int, bytes]:
    """Every contour's points as :func:`_contour_data` encodes them, by ``id`` of the points
    array, each array once: the vertex circles are in ``LATTICE_VTX``, in their own
    ``VTX_..`` and in ``LATTICE_VALLEY``, the GTV outline in the valley and in ``GTV``."""
    unique: dict[int, Contour] = {}
    for roi in rois:
        for contour in roi.contours:
            unique.setdefault(id(contour[1]), contour)
    return dict(zip(unique, _contour_data(list(unique.values()))))


def _contour_items(
    contours: Sequence[Contour],
    image_uids: Sequence[tuple[str, str]],
    encoded: dict[int, bytes] | None = None,
) -> bytes:
    """The Contour Sequence's items, encoded: per contour its image reference (one item of
    the Contour Image Sequence), CLOSED_PLANAR, the number of points, the contour number
    and the points to 1e-6 mm, elements in tag order. ``encoded``: the points already
    encoded (:func:`_encoded_contours`, which holds every contour here)."""
    refs: dict[int, bytes] = {}
    kind = _element(CONTOUR_TYPE, "CS", b"CLOSED_PLANAR")
    items = []
    data = (
        _contour_data(contours)
        if encoded is None
        else [encoded[id(points)] for _, points in contours]
    )
    for n, ((k, points), values) in enumerate(zip(contours, data), start=1):
        ref = refs.get(k)
        if ref is None:
            sop_class, sop_instance = image_uids[k]
            ref = refs[k] = _element(
                CONTOUR_IMAGE_SEQUENCE,
                "SQ",
                _item(
                    _element(0x00081150, "UI", str(sop_class).encode("ascii"))
                    + _element(0x00081155, "UI", str(sop_instance).encode("ascii"))
                ),
            )
        items.append(
            _item(
                ref
                + kind
                + _element(CONTOUR_POINTS, "IS", str(len(points)).encode("ascii"))
                + _element(CONTOUR_NUMBER, "IS", str(n).encode("ascii"))
                + _element(CONTOUR_DATA, "DS", values)
            )
        )
    return b"".join(items)


def copied_attributes(header: Any) -> tuple[dict[str, Any], list[str], set[str]]:
    """The patient, study and frame attributes an RTSTRUCT copies from its CT's ``header``.

    Returns the values to write (:data:`PATIENT_STUDY` always, empty when absent;
    :data:`OPTIONAL_COPIED` and PositionReferenceIndicator when present), a warning for every
    value changed to fit its VR (:func:`~lattice.io.dicom_series.fit_dicom_string`, e.g.
    a Study ID over 16 characters), and the attributes whose several values (where DICOM
    allows one) are copied unchanged, so that the structure set still matches its CT.
    """
    from pydicom.datadict import dictionary_VM, dictionary_VR
    from pydicom.multival import MultiValue

    values: dict[str, Any] = {}
    warnings: list[str] = []
    multi: set[str] = set()
    with quiet_pydicom():
        for key in (*PATIENT_STUDY, *OPTIONAL_COPIED, "PositionReferenceIndicator"):
            value = header.get(key, None)
            if key not in PATIENT_STUDY and key != "PositionReferenceIndicator" and not value:
                continue
            vr = dictionary_VR(key)
            if value is None or value == "":
                values[key] = ""
                continue
            items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
            fitted = [fit_dicom_string(v, vr) for v in items]
            for before, after in zip(items, fitted):
                if str(before) != after:
                    problem = dicom_string_problem(str(before), vr)
                    warnings.append(
                        f"the CT's {key} '{before}' breaks DICOM's rules: "
                        f"{problem}; rtstruct.dcm holds '{after}' instead"
                    )
            if len(fitted) > 1 and dictionary_VM(key) == "1":
                multi.add(key)
                warnings.append(
                    f"the CT's {key} holds {len(fitted)} values "
                    f"({chr(92).join(fitted)!r}) where DICOM allows one; copied "
                    "unchanged to rtstruct.dcm so that it matches its CT"
                )
            values[key] = fitted if len(fitted) > 1 else fitted[0]
    return values, warnings, multi


def header_warnings(series: ImageSeries) -> list[str]:
    """What an RTSTRUCT on ``series`` will change or copy unusually from the CT
    (:func:`copied_attributes`), to report to the user."""
    return copied_attributes(series.header)[1]


def write_rtstruct(
    path: str | Path,
    series: ImageSeries,
    rois: Sequence[RoiSpec],
    *,
    label: str = "LATTICE",
    description: str = "",
) -> Path:
    """Write an RTSTRUCT (see :func:`rtstruct_dataset`) to ``path``."""
    with quiet_pydicom():
        ds = rtstruct_dataset(series, rois, label=label, description=description)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)
