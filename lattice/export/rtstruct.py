"""DICOM RTSTRUCT of a plan, for a treatment planning system to import beside its CT.

Follows the checklist of ``docs/domain.md``: the structure set references the CT series
(patient and study attributes, FrameOfReferenceUID, a ContourImageSequence per contour),
gets new Series and SOP Instance UIDs on every export, writes every decimal string in at
most 16 characters, and holds CLOSED_PLANAR contours of at least 3 points, each on a CT
slice plane.

Vertex spheres are written as analytic circles where each slice plane cuts the sphere
(:data:`CIRCLE_POINTS` points on the circle: the polygon's area is 0.16 % below the
circle's); other structures are traced from their voxel masks (marching squares at the
voxel-centre level, in world coordinates).
"""

from __future__ import annotations

import colorsys
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import __version__
from ..dicom import RTSTRUCT_SOP_CLASS, ImageSeries, on_grid, quiet_pydicom
from ..plan import Plan
from ..volume import Volume
from .dicom_series import MANUFACTURER, ds_list, lps_affine, now_da_tm

#: Points per vertex circle. A regular N-gon inscribed in a circle has area
#: N sin(2 pi / N) / (2 pi) of it: 0.9984 for 64.
CIRCLE_POINTS = 64
#: Longest ROI name Eclipse accepts.
MAX_NAME_LENGTH = 16
#: Patient and study attributes copied from the CT (type 2 ones are written empty if absent).
PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                 "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                 "ReferringPhysicianName", "AccessionNumber")
OPTIONAL_COPIED = ("IssuerOfPatientID", "OtherPatientIDs", "PatientAge", "StudyDescription")
#: Vertex ROIs written: one combined ROI, one per vertex, or both.
VERTEX_ROI_CHOICES = ("both", "combined", "each")

Contour = tuple[int, NDArray[np.float64]]  # slice index, (m, 3) LPS mm


@dataclass(frozen=True)
class RoiSpec:
    """One ROI to write: its contours on the series' slices."""

    name: str
    interpreted_type: str
    color: tuple[int, int, int]
    contours: list[Contour]
    description: str = ""


def slice_planes(grid: Volume) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                        NDArray[np.float64], NDArray[np.float64]]:
    """Origins (K, 3), unit normal, and unit in-plane axes u (along i), v (along j), LPS."""
    lps = lps_affine(grid)
    size = grid.voxel_size_mm
    origins = lps[:3, 3] + np.arange(grid.shape[2])[:, None] * lps[:3, 2]
    return origins, lps[:3, 2] / size[2], lps[:3, 0] / size[0], lps[:3, 1] / size[1]


def sphere_contours(center_lps_mm: NDArray[np.float64], radius_mm: float,
                    grid: Volume, *, points: int = CIRCLE_POINTS) -> list[Contour]:
    """Exact circles where the slice planes of ``grid`` cut a sphere (every plane that does)."""
    origins, normal, u, v = slice_planes(grid)
    c = np.asarray(center_lps_mm, dtype=np.float64)
    theta = 2.0 * np.pi * np.arange(points) / points
    ring = np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * v
    out = []
    for k, d in enumerate((c - origins) @ normal):
        if abs(d) < radius_mm:
            rho = float(np.sqrt(radius_mm**2 - d**2))
            out.append((k, (c - d * normal) + rho * ring))
    return out


def mask_contours(mask: Volume) -> list[Contour]:
    """Closed contours of a boolean mask on each of its k slices, LPS mm.

    Marching squares at level 0.5 on the padded slice gives closed polygons through the
    midpoints between inside and outside voxel centres; holes come out as separate contours,
    which readers fill with the even-odd rule. Collinear points are dropped.
    """
    from skimage.measure import find_contours

    from ..margins import bounding_box

    lps = lps_affine(mask)
    out: list[Contour] = []
    if not mask.array.any():
        return out
    box = bounding_box(mask.array, pad_vox=1)  # contours of the crop: same, much faster
    array = mask.array[box]
    offset = np.array([box[0].start, box[1].start], dtype=np.float64)
    for kk in np.flatnonzero(array.any(axis=(0, 1))):
        k = int(kk) + box[2].start
        padded = np.pad(array[:, :, kk], 1).astype(np.float32)
        for line in find_contours(padded, 0.5):
            # Closed: the repeated end point dropped; -1 undoes the padding.
            line = _drop_collinear(line[:-1]) - 1.0 + offset
            if len(line) < 3:
                continue
            ijk = np.column_stack([line, np.full(len(line), float(k))])
            out.append((k, ijk @ lps[:3, :3].T + lps[:3, 3]))
    return out


def _drop_collinear(ring: NDArray[np.float64]) -> NDArray[np.float64]:
    """A closed polygon without its points that lie on a straight line between neighbours."""
    before = ring - np.roll(ring, 1, axis=0)
    after = np.roll(ring, -1, axis=0) - ring
    turn = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return ring[np.abs(turn) > 1e-9]


def _colors(n: int, *, start: float) -> list[tuple[int, int, int]]:
    return [tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb((start + i / max(n, 1)) % 1,
                                                                   0.85, 1.0))  # type: ignore
            for i in range(n)]


#: Colours of the structure ROIs (vertices get hues of their own).
COLORS = {"LATTICE_VTX": (255, 0, 0), "LATTICE_TARGET": (0, 200, 255),
          "LATTICE_VALLEY": (40, 90, 255), "LATTICE_STV": (255, 0, 255),
          "GTV": (255, 255, 0)}


def plan_rois(plan: Plan, grid: Volume, *, vertex_rois: str = "both",
              stv: Volume | None = None, gtv: bool = False) -> list[RoiSpec]:
    """The ROIs of a plan on the slices of ``grid`` (the plan's masks must be on it).

    Parameters
    ----------
    vertex_rois : {'both', 'combined', 'each'}
        ``LATTICE_VTX`` holding every vertex, ``VTX_01``... one per vertex, or both.
    stv : Volume, optional
        The SCART target, written as ``LATTICE_STV``.
    gtv : bool
        Also write the GTV (when the TPS has no structure set with it).
    """
    if vertex_rois not in VERTEX_ROI_CHOICES:
        raise ValueError(f"vertex_rois must be one of {VERTEX_ROI_CHOICES}")
    radius = plan.parameters.diameter_mm / 2.0
    circles = [sphere_contours(c, radius, grid) for c in plan.centers_lps_mm]
    rois = []
    if vertex_rois in ("both", "combined") and plan.n_vertices:
        rois.append(RoiSpec("LATTICE_VTX", "PTV", COLORS["LATTICE_VTX"],
                            [c for per in circles for c in per],
                            f"all {plan.n_vertices} LATTICE vertices, D "
                            f"{plan.parameters.diameter_mm:g} mm"))
    if vertex_rois in ("both", "each"):
        for record, per, color in zip(plan.vertex_records(), circles,
                                      _colors(plan.n_vertices, start=0.02)):
            rois.append(RoiSpec(record["name"], "PTV", color, per,
                                f"LATTICE vertex {record['id']}, D "
                                f"{plan.parameters.diameter_mm:g} mm"))
    # Masks are traced on the series' own slices: a NIfTI grid may store the same voxels in
    # another axis order.
    gtv_mask = on_grid(plan.gtv, grid, name="GTV", grid_name="the DICOM series")
    rois.append(RoiSpec("LATTICE_TARGET", "CONTROL", COLORS["LATTICE_TARGET"],
                        mask_contours(on_grid(plan.lattice_target, grid)),
                        f"GTV eroded by {plan.parameters.gtv_margin_mm:g} mm"))
    if stv is not None:
        rois.append(RoiSpec("LATTICE_STV", "PTV", COLORS["LATTICE_STV"],
                            mask_contours(on_grid(stv, grid)), "SCART target (contracted GTV)"))
    gtv_contours = mask_contours(gtv_mask)
    # The valley is the GTV outline with the vertex circles as holes (even-odd), exact, when
    # every circle clears the traced outline: the outline runs within half an in-plane voxel
    # diagonal of a voxel centre outside the GTV, and circles stay the margin away from those.
    in_plane = float(np.hypot(*grid.voxel_size_mm[:2])) / 2.0
    if plan.parameters.gtv_margin_mm > in_plane:
        valley = sorted(gtv_contours + [c for per in circles for c in per], key=lambda c: c[0])
    else:
        from .masks import sphere_label_map

        spheres = sphere_label_map(gtv_mask, plan.centers_ras_mm,
                                   diameter_mm=plan.parameters.diameter_mm)
        valley = mask_contours(gtv_mask.with_array(gtv_mask.array & (spheres.array == 0)))
    rois.append(RoiSpec("LATTICE_VALLEY", "AVOIDANCE", COLORS["LATTICE_VALLEY"], valley,
                        "GTV minus the vertex spheres"))
    if gtv:
        rois.append(RoiSpec("GTV", "GTV", COLORS["GTV"], gtv_contours,
                            "GTV the plan was made for"))
    _check_names(rois)
    return rois


def _check_names(rois: Sequence[RoiSpec]) -> None:
    names = [r.name for r in rois]
    if len(set(names)) != len(names) or any(len(n) > MAX_NAME_LENGTH for n in names):
        raise ValueError(f"ROI names must be unique and <= {MAX_NAME_LENGTH} characters: "
                         f"{names}")


def rtstruct_dataset(series: ImageSeries, rois: Sequence[RoiSpec], *,
                     label: str = "LATTICE", description: str = "") -> Any:
    """The RTSTRUCT dataset referencing ``series`` (new Series and SOP Instance UIDs)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    _check_names(rois)
    header = series.header
    date, time = now_da_tm()
    ds = Dataset()
    ds.SpecificCharacterSet = str(header.get("SpecificCharacterSet", "ISO_IR 192") or
                                  "ISO_IR 192")
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(RTSTRUCT_SOP_CLASS)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    for key in PATIENT_STUDY:
        setattr(ds, key, _fit_vr(key, header.get(key, "") or ""))
    for key in OPTIONAL_COPIED:
        if header.get(key):
            setattr(ds, key, _fit_vr(key, header.get(key)))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 902
    ds.SeriesDescription = (description or "lattice vertices")[:64]
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.OperatorsName = ""
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = __version__
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = _fit_vr("PositionReferenceIndicator",
                                            header.get("PositionReferenceIndicator", "") or "")
    ds.StructureSetLabel = label[:16]
    ds.StructureSetName = label[:64]
    ds.StructureSetDescription = description[:1024]
    ds.StructureSetDate, ds.StructureSetTime = date, time

    @functools.cache
    def image_ref(k: int) -> Dataset:  # one item per slice, shared by its contours
        item = Dataset()
        item.ReferencedSOPClassUID = series.slices[k].sop_class_uid
        item.ReferencedSOPInstanceUID = series.slices[k].sop_instance_uid
        return item

    frame_uid = series.frame_of_reference_uid
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    study_ref.ReferencedSOPInstanceUID = series.study_instance_uid
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = series.series_instance_uid
    series_ref.ContourImageSequence = DicomSequence([image_ref(k)
                                                     for k in range(len(series.slices))])
    study_ref.RTReferencedSeriesSequence = DicomSequence([series_ref])
    frame = Dataset()
    frame.FrameOfReferenceUID = frame_uid
    frame.RTReferencedStudySequence = DicomSequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])

    set_rois, contours, observations = [], [], []
    for number, roi in enumerate(rois, start=1):
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = frame_uid
        item.ROIName = roi.name
        if roi.description:
            item.ROIDescription = roi.description[:1024]
        item.ROIGenerationAlgorithm = "AUTOMATIC"
        set_rois.append(item)
        roi_contour = Dataset()
        roi_contour.ROIDisplayColor = list(roi.color)
        sequence = []
        for n, (k, points) in enumerate(roi.contours, start=1):
            c = Dataset()
            c.ContourImageSequence = DicomSequence([image_ref(k)])
            # Already encoded (see below): thousands of contours, pydicom's conversions of
            # each value would take most of the export's time.
            c[CONTOUR_TYPE] = _raw(CONTOUR_TYPE, "CS", "CLOSED_PLANAR")
            c[CONTOUR_POINTS] = _raw(CONTOUR_POINTS, "IS", str(len(points)))
            c[CONTOUR_NUMBER] = _raw(CONTOUR_NUMBER, "IS", str(n))
            c[CONTOUR_DATA] = _raw(CONTOUR_DATA, "DS", _decimal_strings(points))
            sequence.append(c)
        if sequence:  # type 3: left out for an ROI with nothing on the slices
            roi_contour.ContourSequence = DicomSequence(sequence)
        roi_contour.ReferencedROINumber = number
        contours.append(roi_contour)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = roi.interpreted_type
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = DicomSequence(set_rois)
    ds.ROIContourSequence = DicomSequence(contours)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    for roi_contour in contours:
        for c in roi_contour.get("ContourSequence", []):
            # Declares the raw ContourData already encoded as it will be written, so pydicom
            # copies the bytes instead of parsing and re-formatting every number (10x faster).
            c.set_original_encoding(False, True, c._character_set)
    return ds


#: Tags of the contour items' elements written pre-encoded.
CONTOUR_TYPE, CONTOUR_POINTS, CONTOUR_NUMBER, CONTOUR_DATA = (
    0x30060042, 0x30060046, 0x30060048, 0x30060050)


def _decimal_strings(values: NDArray[np.float64]) -> str:
    """Values to 1e-6 (mm) as a DS multi-value, every number at most 16 characters."""
    flat = np.ravel(values)
    if np.all(np.abs(flat) < 1e8):  # one format for all
        return "\\".join(map("{:.6f}".format, flat.tolist()))
    return "\\".join(ds_list(flat))


def _raw(tag: int, vr: str, text: str) -> Any:
    """An element already encoded as explicit VR little endian bytes (padded to even)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    data = text.encode("ascii")
    if len(data) % 2:
        data += b" "
    return RawDataElement(Tag(tag), vr, len(data), data, 0, False, True)


#: Longest value of the string VRs that copied attributes may have.
VR_MAX_LENGTH = {"SH": 16, "CS": 16, "AE": 16, "LO": 64, "DA": 8, "TM": 16}


def _fit_vr(key: str, value: Any) -> Any:
    """A copied value cut to its VR's length (some exports hold over-long Study IDs)."""
    from pydicom.datadict import dictionary_VR

    limit = VR_MAX_LENGTH.get(dictionary_VR(key))
    if limit is not None and isinstance(value, str) and len(value) > limit:
        return value[:limit]
    return value


def write_rtstruct(path: str | Path, series: ImageSeries, rois: Sequence[RoiSpec], *,
                   label: str = "LATTICE", description: str = "") -> Path:
    """Write an RTSTRUCT (see :func:`rtstruct_dataset`) to ``path``."""
    with quiet_pydicom():
        ds = rtstruct_dataset(series, rois, label=label, description=description)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)
