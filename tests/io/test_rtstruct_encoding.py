"""The RTSTRUCT's Contour Sequences are encoded by lattice itself (all contours' numbers at
once, by array operations). The decoded file must equal, element for element, what pydicom
writes from Datasets built the plain way, with Python's own ``'{:.6f}'`` numbers; UIDs and
timestamps apart."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from lattice.io.dicom_series import derived_series
from lattice.io.rtstruct_write import (
    CONTOUR_SEQUENCE,
    RoiSpec,
    _contour_data,
    plan_rois,
    rtstruct_dataset,
)
from lattice.planning.placement import plan_vertices
from lattice.volume import Volume

#: Differ between two exports by design.
NEW_EACH_TIME = {
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "MediaStorageSOPInstanceUID",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "SeriesDate",
    "SeriesTime",
    "StructureSetDate",
    "StructureSetTime",
}

#: Values where rounding to 6 decimals is delicate: exact ties (0.0078125 = 7812.5e-6),
#: near ties, negative zero and negatives that round to it, 9-digit and 8-digit parts.
HARD_VALUES = [
    0.0,
    -0.0,
    -1e-9,
    5e-7,
    -5e-7,
    2.5e-7,
    0.0078125,
    -0.0078125,
    1.0000005,
    0.9999995,
    123.4565,
    -512.0000005,
    99999999.9999995,
    99999999.9999996,
    12345678.123456,
    -99999999.99999,
]


def _plain_contour_items(contours, image_uids) -> list[Dataset]:
    """The Contour Sequence built the plain way: pydicom Datasets, numbers as ``{:.6f}``."""
    items = []
    for n, (k, points) in enumerate(contours, start=1):
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = image_uids[k]
        item = Dataset()
        item.ContourImageSequence = DicomSequence([ref])
        item.ContourGeometricType = "CLOSED_PLANAR"
        item.NumberOfContourPoints = len(points)
        item.ContourNumber = n
        item.ContourData = [f"{v:.6f}" for v in np.ravel(points).tolist()]
        items.append(item)
    return items


def _written(ds: Dataset) -> Dataset:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return pydicom.dcmread(BytesIO(out.getvalue()))


def _elements(ds: Dataset, path: str = "") -> list[tuple[str, str, str]]:
    """Every element, nested ones included: (path, VR, value as text), UIDs and times of
    :data:`NEW_EACH_TIME` left out."""
    found = []
    for elem in ds:
        if elem.keyword in NEW_EACH_TIME:
            continue
        where = f"{path}/{elem.tag}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                found += _elements(item, f"{where}[{i}]")
        else:
            value = elem.value
            text = "\\".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            if elem.VR == "DS" and elem.VM > 1:
                text = "\\".join(v.original_string for v in value)
            found.append((where, elem.VR, text))
    return found


@pytest.fixture(scope="module")
def phantom_rois(make_volume, ellipsoid_mask):
    grid = make_volume((60, 56, 30), (0.98, 0.98, 3.27), "oblique")
    gtv = Volume(ellipsoid_mask(grid, (-12.0, 25.0, 40.0), (27.0, 25.0, 40.0)), grid.affine)
    plan = plan_vertices(gtv, diameter_mm=15.0, min_spacing_mm=30.0, gtv_margin_mm=3.0)
    assert plan.n_vertices >= 3
    series = derived_series(grid, patient_name="Phantom", patient_id="ENC")
    rois = plan_rois(plan, series.grid, gtv=True)
    # One more ROI holding the delicate values (those of at most 16 characters either sign).
    fits = [v for v in HARD_VALUES if abs(v) < 99999999.9999995]
    hard = np.array(fits + fits[: -len(fits) % 3]).reshape(-1, 3)
    rois.append(RoiSpec("HARD", "CONTROL", (1, 2, 3), [(0, hard), (1, -hard[::-1])]))
    return series, rois


def test_decoded_rtstruct_equals_the_plain_encoding(phantom_rois):
    series, rois = phantom_rois
    ours = _written(rtstruct_dataset(series, rois))
    plain = rtstruct_dataset(series, rois)
    image_uids = [(s.sop_class_uid, s.sop_instance_uid) for s in series.slices]
    for roi, item in zip(rois, plain.ROIContourSequence):
        item[CONTOUR_SEQUENCE] = pydicom.DataElement(
            CONTOUR_SEQUENCE, "SQ", DicomSequence(_plain_contour_items(roi.contours, image_uids))
        )
    for dataset in (plain, *plain.ROIContourSequence):
        dataset._read_charset = dataset._character_set  # new elements: encode them all
        dataset.set_original_encoding(None, None, None)  # type: ignore[arg-type]
    reference = _written(plain)
    got, want = _elements(ours), _elements(reference)
    assert len(got) == len(want)
    assert got == want
    n_contours = sum(len(r.contours) for r in rois)
    assert sum(len(r.ContourSequence) for r in ours.ROIContourSequence) == n_contours > 100


def test_contour_numbers_are_pythons_format():
    rng = np.random.default_rng(5)
    contours = [
        (0, rng.normal(0.0, 300.0, size=(40, 3))),
        (1, np.array(HARD_VALUES[:15]).reshape(5, 3)),
        (2, np.round(rng.normal(0.0, 50.0, size=(30, 3)), 7)),  # many near ties
        (3, rng.integers(-4000, 4000, size=(20, 3)) / 2e6),  # exact halves of 1e-6
    ]
    data = _contour_data(contours)
    for (_, points), text in zip(contours, data):
        assert text == "\\".join(f"{v:.6f}" for v in np.ravel(points).tolist()).encode()
    # A value at or beyond 1e8 mm: every contour takes the general DS path, still valid.
    big = _contour_data([(0, np.array([[1e8, -2.5e9, 0.5]]))])[0].split(b"\\")
    assert all(len(v) <= 16 for v in big) and [float(v) for v in big] == [1e8, -2.5e9, 0.5]
