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
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nibabel.affines import apply_affine
from numpy.typing import NDArray

from .. import __version__
from ..dicom import ImageSeries, on_grid, quiet_pydicom
from ..errors import LatticeError
from ..grid import Grid
from ..plan import Plan
from ..rtstruct_read import RTSTRUCT_SOP_CLASS
from ..volume import Volume
from .dicom_series import (
    MANUFACTURER,
    check_written_strings,
    dicom_string_problem,
    ds_list,
    fit_dicom_string,
    now_da_tm,
)

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
#: How LATTICE_VALLEY holds the vertex holes: inner contours (read with the even-odd rule,
#: as Eclipse and RayStation do), or keyhole polygons (each hole joined to its outline by a
#: zero-width cut: one polygon per outline, for readers that OR contours, e.g. plastimatch).
VALLEY_CONTOUR_CHOICES = ("holes", "keyhole")

Contour = tuple[int, NDArray[np.float64]]  # slice index, (m, 3) LPS mm


@dataclass(frozen=True)
class RoiSpec:
    """One ROI to write: its contours on the series' slices."""

    name: str
    interpreted_type: str
    color: tuple[int, int, int]
    contours: list[Contour]
    description: str = ""


def slice_planes(grid: Grid | Volume) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                        NDArray[np.float64], NDArray[np.float64]]:
    """Origins (K, 3), unit normal, and unit in-plane axes u (along i), v (along j), LPS."""
    lps = grid.lps_affine
    size = grid.voxel_size_mm
    origins = lps[:3, 3] + np.arange(grid.shape[2])[:, None] * lps[:3, 2]
    return origins, lps[:3, 2] / size[2], lps[:3, 0] / size[0], lps[:3, 1] / size[1]


def sphere_contours(center_lps_mm: NDArray[np.float64], radius_mm: float,
                    grid: Grid | Volume, *, points: int = CIRCLE_POINTS) -> list[Contour]:
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


def contour_volume_mm3(contours: Sequence[Contour], grid: Grid | Volume) -> float:
    """The volume a TPS rebuilds from contours on the slices of ``grid``: the sum of the
    polygon areas (shoelace, in the slice plane) x the slice gap."""
    origins, _, u, v = slice_planes(grid)
    total = 0.0
    for k, points in contours:
        x, y = (points - origins[k]) @ u, (points - origins[k]) @ v
        total += 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))
    return total * float(grid.voxel_size_mm[2])


def sphere_tps_volume_mm3(center_lps_mm: NDArray[np.float64], radius_mm: float,
                          grid: Grid | Volume) -> float:
    """The volume a TPS rebuilds from the circles :func:`sphere_contours` exports."""
    return contour_volume_mm3(sphere_contours(center_lps_mm, radius_mm, grid), grid)


def mask_contours(mask: Volume) -> list[Contour]:
    """Closed contours of a boolean mask on each of its k slices, LPS mm.

    Marching squares at level 0.5 on the padded slice gives closed polygons through the
    midpoints between inside and outside voxel centres; holes come out as separate contours,
    which readers fill with the even-odd rule. Collinear points are dropped.
    """
    from skimage.measure import find_contours

    from ..margins import bounding_box

    lps = mask.lps_affine
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
            out.append((k, apply_affine(lps, ijk)))
    return out


def _drop_collinear(ring: NDArray[np.float64]) -> NDArray[np.float64]:
    """A closed polygon without its points that lie on a straight line between neighbours."""
    before = ring - np.roll(ring, 1, axis=0)
    after = np.roll(ring, -1, axis=0) - ring
    turn = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return ring[np.abs(turn) > 1e-9]


def keyhole_contours(contours: Sequence[Contour], grid: Grid | Volume) -> list[Contour]:
    """The same region without inner contours: on each slice, every hole is joined to the
    outline around it by a zero-width cut, so each outer outline becomes one polygon.

    The contours of a slice must not cross one another (nested is fine, as traced outlines
    and the vertex circles are). Nesting is read with the even-odd rule: a contour inside an
    odd number of others is a hole of the innermost one around it; one inside an even number
    (an island in a hole) is an outline of its own, with its own holes. Each cut joins a
    vertex of a hole to a vertex of the outline (or of a hole already joined to it) that it
    sees without crossing or touching any edge, the shortest such pair first; the polygon
    runs out along the cut, around the hole and back. No point is moved or added, so every
    contour stays exactly on its slice plane, and the polygon is simple apart from the cut,
    whose two sides coincide.
    """
    origins, _, u, v = slice_planes(grid)
    by_slice: dict[int, list[NDArray[np.float64]]] = {}
    for k, points in contours:
        by_slice.setdefault(k, []).append(points)
    out: list[Contour] = []
    for k in sorted(by_slice):
        rings = by_slice[k]
        flat = [np.column_stack([(r - origins[k]) @ u, (r - origins[k]) @ v]) for r in rings]
        points = np.concatenate(rings)
        for polygon in _keyhole_slice(flat):
            out.append((k, points[polygon]))
    return out


def _signed_area(xy: NDArray[np.float64]) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _inside(points: NDArray[np.float64], ring: NDArray[np.float64]) -> bool:
    """Whether most of ``points`` lie inside the closed polygon ``ring`` (crossing number;
    most, so that a point a ring shares with another, as touching circles do, is outvoted)."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = ring[None, :, 0], ring[None, :, 1]
    x1, y1 = np.roll(x0, -1, axis=1), np.roll(y0, -1, axis=1)
    straddle = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    odd = np.count_nonzero(straddle & (at > x), axis=1) % 2 == 1
    return 2 * int(np.count_nonzero(odd)) > len(points)


def _keyhole_slice(rings: Sequence[NDArray[np.float64]]) -> list[NDArray[np.intp]]:
    """Keyhole polygons of one slice's rings (2-D), as indices into their concatenation."""
    starts = np.cumsum([0, *(len(r) for r in rings)])
    n = len(rings)
    inside = np.zeros((n, n), dtype=bool)  # inside[i, j]: ring j lies inside ring i
    for i in range(n):
        for j in range(n):
            if i != j:
                inside[i, j] = _inside(rings[j], rings[i])
    depth = inside.sum(axis=0)
    xy = np.concatenate(rings)
    polygons = []
    for o in (int(v) for v in np.flatnonzero(depth % 2 == 0)):
        holes = [j for j in range(n) if inside[o, j] and depth[j] == depth[o] + 1]
        outline = np.arange(starts[o], starts[o + 1])
        if not holes:
            polygons.append(outline)
            continue
        if _signed_area(rings[o]) < 0:  # outlines anticlockwise, holes clockwise
            outline = outline[::-1]
        hole_rings = [np.arange(starts[j], starts[j + 1]) for j in holes]
        hole_rings = [h if _signed_area(xy[h]) < 0 else h[::-1] for h in hole_rings]
        polygons.append(_join_holes(xy, outline, hole_rings))
    return polygons


def _join_holes(xy: NDArray[np.float64], outline: NDArray[np.intp],
                holes: list[NDArray[np.intp]]) -> NDArray[np.intp]:
    """One polygon: ``outline`` (anticlockwise) with every hole (clockwise) joined to it."""
    merged = list(outline)
    remaining = list(holes)
    scale = float(np.ptp(xy[outline], axis=0).max()) or 1.0
    eps = 1e-9 * scale
    while remaining:
        joined = False
        for hole in list(remaining):
            others = [h for h in remaining if h is not hole]
            bridge = _find_bridge(xy, np.asarray(merged), hole, others, eps)
            if bridge is None:
                continue
            t, a = bridge
            loop = [int(hole[(a + j) % len(hole)]) for j in range(len(hole))]
            merged = merged[:t + 1] + loop + [int(hole[a])] + merged[t:]
            remaining = [h for h in remaining if h is not hole]
            joined = True
        if not joined:
            raise ValueError("cannot join a hole of LATTICE_VALLEY to its outline (contours "
                             "that touch or cross); write it with valley_contours='holes'")
    return np.asarray(merged, dtype=np.intp)


def _cross(o: Any, a: Any, b: Any) -> Any:
    return ((a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1])
            - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0]))


def _in_wedge(apex: NDArray, before: NDArray, after: NDArray, target: NDArray) -> bool:
    """Whether the direction apex -> target points into the polygon at ``apex`` (interior to
    the left: between apex -> after and apex -> before, turning anticlockwise)."""
    def angle(p: NDArray) -> float:
        d, ref = p - apex, after - apex
        return float(np.arctan2(ref[0] * d[1] - ref[1] * d[0], ref @ d) % (2 * np.pi))

    a = angle(target)
    return 0.0 < a < (angle(before) or 2 * np.pi)


def _find_bridge(xy: NDArray[np.float64], merged: NDArray[np.intp], hole: NDArray[np.intp],
                 others: list[NDArray[np.intp]], eps: float) -> tuple[int, int] | None:
    """(position in ``merged``, position in ``hole``) of the shortest cut between them that
    crosses and touches no edge and enters both at their vertices, or None."""
    rings = [merged, hole, *others]
    starts = np.concatenate([r for r in rings])
    ends = np.concatenate([np.roll(r, -1) for r in rings])
    e0, e1 = xy[starts], xy[ends]
    vertices = xy[np.unique(starts)]
    a_xy, b_xy = xy[hole], xy[merged]
    d2 = ((a_xy[:, None, :] - b_xy[None, :, :]) ** 2).sum(axis=-1)
    for flat in np.argsort(d2, axis=None, kind="stable"):
        a, t = divmod(int(flat), len(merged))
        p, q = a_xy[a], b_xy[t]
        if d2[a, t] <= eps * eps:
            continue
        # No edge crossed: edges with an end at p or q are left out (they meet the cut there).
        at_end = (np.all(np.abs(e0 - p) <= eps, axis=1) | np.all(np.abs(e1 - p) <= eps, axis=1)
                  | np.all(np.abs(e0 - q) <= eps, axis=1)
                  | np.all(np.abs(e1 - q) <= eps, axis=1))
        c1, c2 = _cross(p, q, e0), _cross(p, q, e1)
        c3, c4 = _cross(e0, e1, p), _cross(e0, e1, q)
        if np.any(~at_end & (c1 * c2 < 0) & (c3 * c4 < 0)):
            continue
        # No vertex on the cut (other than its ends).
        pq = q - p
        s = np.clip(((vertices - p) @ pq) / (pq @ pq), 0.0, 1.0)
        near = np.linalg.norm(vertices - (p + s[:, None] * pq), axis=1) <= eps
        ends_ = (np.linalg.norm(vertices - p, axis=1) <= eps) | (
            np.linalg.norm(vertices - q, axis=1) <= eps)
        if np.any(near & ~ends_):
            continue
        # Into the region at both ends; at a point the outline passes twice (an earlier cut),
        # the pass whose corner holds the cut.
        m = len(hole)
        if not _in_wedge(p, a_xy[(a - 1) % m], a_xy[(a + 1) % m], q):
            continue
        n = len(merged)
        for pos in np.flatnonzero(merged == merged[t]):
            if _in_wedge(q, b_xy[(pos - 1) % n], b_xy[(pos + 1) % n], p):
                return int(pos), a
    return None


def _colors(n: int, *, start: float) -> list[tuple[int, int, int]]:
    return [tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb((start + i / max(n, 1)) % 1,
                                                                   0.85, 1.0))  # type: ignore
            for i in range(n)]


#: Colours of the structure ROIs (vertices get hues of their own).
COLORS = {"LATTICE_VTX": (255, 0, 0), "LATTICE_TARGET": (0, 200, 255),
          "LATTICE_VALLEY": (40, 90, 255), "LATTICE_STV": (255, 0, 255),
          "GTV": (255, 255, 0)}


def plan_rois(plan: Plan, grid: Grid | Volume, *, vertex_rois: str = "both",
              stv: Volume | None = None, gtv: bool = False,
              valley_contours: str = "holes") -> list[RoiSpec]:
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
    """
    if vertex_rois not in VERTEX_ROI_CHOICES:
        raise ValueError(f"vertex_rois must be one of {VERTEX_ROI_CHOICES}")
    if valley_contours not in VALLEY_CONTOUR_CHOICES:
        raise ValueError(f"valley_contours must be one of {VALLEY_CONTOUR_CHOICES}")
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
    if valley_contours == "keyhole":
        valley = keyhole_contours(valley, grid)
    rois.append(RoiSpec("LATTICE_VALLEY", "AVOIDANCE", COLORS["LATTICE_VALLEY"], valley,
                        "GTV minus the vertex spheres"))
    if gtv:
        rois.append(RoiSpec("GTV", "GTV", COLORS["GTV"], gtv_contours,
                            "GTV the plan was made for"))
    _check_names(rois)
    return rois


def _check_names(rois: Sequence[RoiSpec]) -> None:
    names = [r.name for r in rois]
    if (len(set(names)) != len(names) or any(len(n) > MAX_NAME_LENGTH for n in names)
            or any(dicom_string_problem(n, "LO") or n != n.strip() for n in names)):
        raise ValueError(f"ROI names must be unique, valid DICOM LO values and <= "
                         f"{MAX_NAME_LENGTH} characters: {names}")


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

    image_uids = [(sl.sop_class_uid, sl.sop_instance_uid) for sl in series.slices]

    def image_ref(k: int) -> Dataset:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = image_uids[k]
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
            item.ROIDescription = fit_dicom_string(roi.description, "ST")
        item.ROIGenerationAlgorithm = "AUTOMATIC"
        set_rois.append(item)
        roi_contour = Dataset()
        roi_contour.ROIDisplayColor = list(roi.color)
        if roi.contours:  # type 3: left out for an ROI with nothing on the slices
            # Encoded here, whole: thousands of contour items, which pydicom would build
            # and walk element by element for most of the export's time.
            roi_contour[CONTOUR_SEQUENCE] = _raw_bytes(
                CONTOUR_SEQUENCE, "SQ", _contour_items(roi.contours, image_uids))
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
    # Declares the encoding the file will have, so that pydicom writes the raw Contour
    # Sequences as they are: otherwise it parses them back to check for ambiguous VRs (there
    # are none in an RTSTRUCT) and encodes every item again, most of the export's time.
    # (An item's own character set is the default one until it is written in its parent;
    # the raw values are ASCII.)
    for dataset in (ds, *contours):
        dataset.set_original_encoding(False, True, dataset._character_set)
    # The contours (and the image references) are made here from constants, numbers and
    # UIDs of the CT; thousands of them would take 0.1 s to walk. The tests walk them too.
    check_written_strings(ds, what="rtstruct.dcm", multi_ok=multi,
                          skip=(CONTOUR_SEQUENCE, CONTOUR_IMAGE_SEQUENCE))
    return ds


#: Tags of the contour items' elements written pre-encoded.
CONTOUR_TYPE, CONTOUR_POINTS, CONTOUR_NUMBER, CONTOUR_DATA = (
    0x30060042, 0x30060046, 0x30060048, 0x30060050)
#: Tags of the Contour Sequence and of the Contour Image Sequence.
CONTOUR_SEQUENCE, CONTOUR_IMAGE_SEQUENCE = 0x30060040, 0x30060016


def _decimal_strings(values: NDArray[np.float64]) -> str:
    """Values to 1e-6 (mm) as a DS multi-value, every number at most 16 characters."""
    flat = np.ravel(values)
    if np.all(np.abs(flat) < 1e8):  # one format for all
        return "\\".join(map("{:.6f}".format, flat.tolist()))
    return "\\".join(ds_list(flat))


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
        raise LatticeError(f"a contour of {len(value)} bytes does not fit a DICOM element "
                           "(at most 65534); please report this as a bug")
    return head + struct.pack("<H", len(value)) + value


def _item(content: bytes) -> bytes:
    """A sequence item of defined length."""
    return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(content)) + content


def _contour_items(contours: Sequence[Contour], image_uids: Sequence[tuple[str, str]]
                   ) -> bytes:
    """The Contour Sequence's items, encoded: per contour its image reference (one item of
    the Contour Image Sequence), CLOSED_PLANAR, the number of points, the contour number
    and the points to 1e-6 mm, elements in tag order."""
    refs: dict[int, bytes] = {}
    kind = _element(CONTOUR_TYPE, "CS", b"CLOSED_PLANAR")
    items = []
    for n, (k, points) in enumerate(contours, start=1):
        ref = refs.get(k)
        if ref is None:
            sop_class, sop_instance = image_uids[k]
            ref = refs[k] = _element(CONTOUR_IMAGE_SEQUENCE, "SQ", _item(
                _element(0x00081150, "UI", str(sop_class).encode("ascii"))
                + _element(0x00081155, "UI", str(sop_instance).encode("ascii"))))
        items.append(_item(
            ref + kind
            + _element(CONTOUR_POINTS, "IS", str(len(points)).encode("ascii"))
            + _element(CONTOUR_NUMBER, "IS", str(n).encode("ascii"))
            + _element(CONTOUR_DATA, "DS", _decimal_strings(points).encode("ascii"))))
    return b"".join(items)


def copied_attributes(header: Any) -> tuple[dict[str, Any], list[str], set[str]]:
    """The patient, study and frame attributes an RTSTRUCT copies from its CT's ``header``.

    Returns the values to write (:data:`PATIENT_STUDY` always, empty when absent;
    :data:`OPTIONAL_COPIED` and PositionReferenceIndicator when present), a warning for every
    value changed to fit its VR (:func:`~lattice.export.dicom_series.fit_dicom_string`, e.g.
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
                    warnings.append(f"the CT's {key} '{before}' breaks DICOM's rules: "
                                    f"{problem}; rtstruct.dcm holds '{after}' instead")
            if len(fitted) > 1 and dictionary_VM(key) == "1":
                multi.add(key)
                warnings.append(f"the CT's {key} holds {len(fitted)} values "
                                f"({chr(92).join(fitted)!r}) where DICOM allows one; copied "
                                "unchanged to rtstruct.dcm so that it matches its CT")
            values[key] = fitted if len(fitted) > 1 else fitted[0]
    return values, warnings, multi


def header_warnings(series: ImageSeries) -> list[str]:
    """What an RTSTRUCT on ``series`` will change or copy unusually from the CT
    (:func:`copied_attributes`), to report to the user."""
    return copied_attributes(series.header)[1]


def write_rtstruct(path: str | Path, series: ImageSeries, rois: Sequence[RoiSpec], *,
                   label: str = "LATTICE", description: str = "") -> Path:
    """Write an RTSTRUCT (see :func:`rtstruct_dataset`) to ``path``."""
    with quiet_pydicom():
        ds = rtstruct_dataset(series, rois, label=label, description=description)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)
