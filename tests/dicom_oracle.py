"""Independent DICOM reading and writing for the tests: pydicom and numpy only, no lattice code.

``read_series_geometry`` rebuilds a CT series' geometry from its headers, ``read_structures``
the contours of an RTSTRUCT, ``polygon_area_centroid`` measures a planar polygon (shoelace in
the slice plane), and ``write_series`` writes a small synthetic CT series (any orientation,
shuffled file names, rescale) so the reader can be tested against files it did not make.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


def read_series_geometry(folder) -> dict:
    """Slices of a series sorted by position along the normal: positions, UIDs, axes."""
    items = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue
        if "ImagePositionPatient" not in ds:
            continue
        items.append(ds)
    iop = np.array(items[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    items.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=float), normal)))
    return {
        "positions": np.array([d.ImagePositionPatient for d in items], dtype=float),
        "uids": [str(d.SOPInstanceUID) for d in items],
        "row_dir": iop[:3],
        "col_dir": iop[3:],
        "normal": normal,
        "pixel_spacing": np.array(items[0].PixelSpacing, dtype=float),
        "headers": items,
    }


def read_structures(path) -> dict[str, list[dict]]:
    """ROI name -> its contours: points (m, 3) LPS, referenced SOP UIDs, raw DS strings."""
    ds = pydicom.dcmread(path)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    out: dict[str, list[dict]] = {n: [] for n in names.values()}
    for item in ds.ROIContourSequence:
        name = names[int(item.ReferencedROINumber)]
        for c in item.get("ContourSequence", []):
            data = c.ContourData
            out[name].append(
                {
                    "points": np.array([float(v) for v in data]).reshape(-1, 3),
                    "n_points": int(c.NumberOfContourPoints),
                    "n_values": len(data),
                    "type": str(c.ContourGeometricType),
                    "refs": [str(r.ReferencedSOPInstanceUID) for r in c.ContourImageSequence],
                    "strings": [getattr(v, "original_string", str(v)) for v in data],
                }
            )
    return out


def polygon_area_centroid(
    points: np.ndarray, u: np.ndarray, v: np.ndarray
) -> tuple[float, np.ndarray]:
    """Area (mm^2) and centroid (3-D) of a planar polygon, measured in the (u, v) plane."""
    x, y = points @ u, points @ v
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2.0
    cx = ((x + np.roll(x, -1)) * cross).sum() / (6.0 * area)
    cy = ((y + np.roll(y, -1)) * cross).sum() / (6.0 * area)
    offset = points.mean(axis=0)
    offset = offset - (offset @ u) * u - (offset @ v) * v  # the plane's offset along its normal
    return abs(float(area)), offset + cx * u + cy * v


def sphere_from_contours(contours: list[dict], geometry: dict) -> tuple[np.ndarray, float]:
    """Centre (area-weighted centroid) and volume (slab rule: area x slice gap) of an ROI."""
    u, v, n = geometry["row_dir"], geometry["col_dir"], geometry["normal"]
    along = geometry["positions"] @ n
    gap = float(np.median(np.diff(along)))
    areas, centres = [], []
    for c in contours:
        a, centre = polygon_area_centroid(c["points"], u, v)
        areas.append(a)
        centres.append(centre)
    areas_arr = np.array(areas)
    centre = (areas_arr[:, None] * np.array(centres)).sum(axis=0) / areas_arr.sum()
    return centre, float(areas_arr.sum() * gap)


def write_series(
    folder,
    values: np.ndarray,
    *,
    row_dir,
    col_dir,
    origin_lps,
    spacing_ij,
    gap_mm,
    slope: float = 1.0,
    intercept: float = 0.0,
    patient_id: str = "TEST01",
) -> list[str]:
    """Write values[i, j, k] as a CT series (i along rows, j down columns), files named in
    shuffled order. Returns the SOP Instance UIDs by k."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    row_dir, col_dir = np.asarray(row_dir, float), np.asarray(col_dir, float)
    normal = np.cross(row_dir, col_dir)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    uids = []
    order = np.random.default_rng(7).permutation(values.shape[2])
    for k in range(values.shape[2]):
        uid = generate_uid()
        uids.append(uid)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CT_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CT_STORAGE, uid
        ds.PatientName, ds.PatientID = "Test^Phantom", patient_id
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyID = "1"
        ds.Modality = "CT"
        ds.ImageOrientationPatient = [f"{x:.8f}" for x in np.concatenate([row_dir, col_dir])]
        pos = np.asarray(origin_lps, float) + k * gap_mm * normal
        ds.ImagePositionPatient = [f"{x:.6f}" for x in pos]
        ds.PixelSpacing = [f"{spacing_ij[1]:.6f}", f"{spacing_ij[0]:.6f}"]
        ds.SliceThickness = f"{gap_mm:.6f}"
        ds.Rows, ds.Columns = values.shape[1], values.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        stored = np.rint((values[:, :, k] - intercept) / slope).astype(np.int16)
        ds.PixelData = np.ascontiguousarray(stored.T).tobytes()
        ds.save_as(folder / f"IMG{order[k]:04d}.dcm", enforce_file_format=True)
    return uids


def write_structure_set(
    path, series_folder, rois: dict[str, list[np.ndarray]], *, frame_uid: str | None = None
) -> None:
    """A minimal RTSTRUCT with closed planar contours (LPS points) per ROI name."""
    geometry = read_series_geometry(series_folder)
    head = geometry["headers"][0]
    ds = Dataset()
    uid = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTSTRUCT_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = RTSTRUCT_STORAGE, uid, "RTSTRUCT"
    ds.PatientID, ds.StudyInstanceUID = head.PatientID, head.StudyInstanceUID
    frame = frame_uid or head.FrameOfReferenceUID
    ref = Dataset()
    ref.FrameOfReferenceUID = frame
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref])
    set_rois, contours = [], []
    for number, (name, polys) in enumerate(rois.items(), start=1):
        item = Dataset()
        item.ROINumber, item.ROIName, item.ReferencedFrameOfReferenceUID = number, name, frame
        set_rois.append(item)
        rc = Dataset()
        rc.ReferencedROINumber = number
        seq = []
        for poly in polys:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(poly)
            c.ContourData = [f"{x:.5f}" for x in np.ravel(poly)]
            seq.append(c)
        rc.ContourSequence = Sequence(seq)
        contours.append(rc)
    ds.StructureSetROISequence = Sequence(set_rois)
    ds.ROIContourSequence = Sequence(contours)
    ds.save_as(path, enforce_file_format=True)
