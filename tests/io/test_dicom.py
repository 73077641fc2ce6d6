"""DICOM input: CT series geometry and values, RTSTRUCT rasterisation, errors.

Series and structure sets are written by ``tests/dicom_oracle.py`` with pydicom directly, so
the reader is checked against files it did not make; world coordinates are checked against
the positions written into the headers.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rotation_about_axis
from dicom_oracle import write_series, write_structure_set

from lattice.errors import GridMismatchError, InputFileError, MaskError
from lattice.io.dicom import (
    LPS_TO_RAS,
    load_dicom_case,
    load_series,
    on_grid,
)
from lattice.io.rtstruct_read import list_rois, read_rtstruct
from lattice.volume import Volume

SHAPE = (20, 16, 12)
SPACING_IJ = (0.8, 1.1)
GAP = 2.5


def _axes(kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == "axial":
        return np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    if kind == "flipped":  # rows to the patient's right, columns to anterior
        return np.array([-1.0, 0, 0]), np.array([0, -1.0, 0])
    rot = rotation_about_axis([1.0, 2.0, 3.0], 25.0)
    return rot @ np.array([1.0, 0, 0]), rot @ np.array([0, 1.0, 0])


@pytest.fixture(params=["axial", "flipped", "oblique"])
def series_case(request, tmp_path):
    row, col = _axes(request.param)
    rng = np.random.default_rng(3)
    values = rng.integers(-1000, 1500, size=SHAPE).astype(float)
    origin = np.array([-40.0, 12.5, -300.0])
    uids = write_series(
        tmp_path / "ct",
        values,
        row_dir=row,
        col_dir=col,
        origin_lps=origin,
        spacing_ij=SPACING_IJ,
        gap_mm=GAP,
        slope=1.0,
        intercept=-1024.0,
    )
    return {
        "folder": tmp_path / "ct",
        "values": values,
        "row": row,
        "col": col,
        "origin": origin,
        "uids": uids,
        "tmp": tmp_path,
    }


def _world_lps(c, i, j, k):
    normal = np.cross(c["row"], c["col"])
    return (
        c["origin"] + i * SPACING_IJ[0] * c["row"] + j * SPACING_IJ[1] * c["col"] + k * GAP * normal
    )


def test_series_geometry_and_values(series_case):
    s = load_series(series_case["folder"])
    grid = s.grid
    assert grid.shape == SHAPE
    np.testing.assert_array_equal(grid.array, series_case["values"])  # rescale applied
    for ijk in [(0, 0, 0), (19, 0, 0), (0, 15, 0), (0, 0, 11), (7, 3, 5)]:
        lps = _world_lps(series_case, *ijk)
        ras = lps * np.array([-1, -1, 1])
        np.testing.assert_allclose(grid.ijk_to_ras(np.array([ijk], float))[0], ras, atol=1e-4)
    assert [r.sop_instance_uid for r in s.slices] == series_case["uids"]  # sorted, not by name


def test_rasterise_even_odd_and_z_matching(series_case):
    c = series_case
    k = 6

    def square(lo, hi, kk, dz=0.0):
        """Voxels lo..hi: edges half-way between voxel centres (no boundary ties)."""
        a, b = lo - 0.5, hi + 0.5
        pts = [(a, a), (b, a), (b, b), (a, b)]
        return np.array(
            [_world_lps(c, i, j, kk) + dz * np.cross(c["row"], c["col"]) for i, j in pts]
        )

    # Outer square 2..15 with a hole 6..10 on slice k; a contour 0.4 gap off slice k+2 still
    # belongs to it (matched by position, not by UID: this file references no UID at all).
    write_structure_set(
        c["tmp"] / "rs.dcm",
        c["folder"],
        {
            "ring": [square(2, 15, k), square(6, 10, k)],
            "shifted": [square(3, 8, k + 2, dz=0.4 * GAP)],
            "far": [square(3, 8, 40)],
        },
    )
    case = load_dicom_case(
        c["folder"], c["tmp"] / "rs.dcm", gtv_name="ring", oar_names=["SHIFTED"], pixels=False
    )
    m = case.gtv.array
    assert m[:, :, k].sum() == 14 * 14 - 5 * 5
    assert m[8, 8, k] == 0 and m[3, 3, k] == 1 and m.sum() == m[:, :, k].sum()
    assert case.oars["SHIFTED"].array[:, :, k + 2].sum() == 36
    with pytest.raises(MaskError, match="no contour on the slices"):
        load_dicom_case(c["folder"], c["tmp"] / "rs.dcm", gtv_name="far", pixels=False)


def test_unknown_roi_lists_names(series_case):
    c = series_case
    pts = np.array([_world_lps(c, i, j, 3) for i, j in [(2, 2), (8, 2), (8, 8)]])
    write_structure_set(c["tmp"] / "rs.dcm", c["folder"], {"GTV_1": [pts], "Cord": [pts]})
    with pytest.raises(MaskError, match=r"no ROI named 'GTV'.*'GTV_1', 'Cord'"):
        load_dicom_case(c["folder"], c["tmp"] / "rs.dcm", gtv_name="GTV")
    assert [r["name"] for r in list_rois(c["tmp"] / "rs.dcm")] == ["GTV_1", "Cord"]


def test_other_frame_of_reference_is_refused(series_case):
    c = series_case
    pts = np.array([_world_lps(c, i, j, 3) for i, j in [(2, 2), (8, 2), (8, 8)]])
    write_structure_set(c["tmp"] / "rs.dcm", c["folder"], {"GTV": [pts]}, frame_uid="1.2.3.4")
    with pytest.raises(GridMismatchError, match="frame of reference"):
        load_dicom_case(c["folder"], c["tmp"] / "rs.dcm", gtv_name="GTV")


def test_bad_series_and_files(tmp_path):
    with pytest.raises(InputFileError, match="folder not found"):
        load_series(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not dicom")
    with pytest.raises(InputFileError, match="no DICOM image series"):
        load_series(tmp_path / "empty")
    with pytest.raises(InputFileError, match="not a DICOM file"):
        read_rtstruct(tmp_path / "empty" / "notes.txt")
    values = np.zeros((6, 5, 4))
    row, col = _axes("axial")
    write_series(
        tmp_path / "two" / "a",
        values,
        row_dir=row,
        col_dir=col,
        origin_lps=(0, 0, 0),
        spacing_ij=(1, 1),
        gap_mm=2,
    )
    write_series(
        tmp_path / "two" / "b",
        values,
        row_dir=row,
        col_dir=col,
        origin_lps=(0, 0, 0),
        spacing_ij=(1, 1),
        gap_mm=2,
    )
    with pytest.raises(InputFileError, match="holds 2 image series"):
        load_series(tmp_path / "two")
    files = sorted((tmp_path / "two" / "a").iterdir())
    with pytest.raises(InputFileError, match="not an RTSTRUCT"):
        read_rtstruct(files[0])
    # A missing slice: uneven gaps.
    geometry_files = sorted((tmp_path / "two" / "b").iterdir())
    import pydicom

    positions = {f: float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in geometry_files}
    middle = sorted(geometry_files, key=positions.get)[1]
    middle.unlink()
    with pytest.raises(MaskError, match="not evenly spaced"):
        load_series(tmp_path / "two" / "b")


def test_on_grid_reorders_flipped_axes(make_volume):
    vol = make_volume((7, 6, 5), (0.9, 1.2, 2.5), "oblique")
    rng = np.random.default_rng(0)
    data = rng.random(vol.shape) > 0.5
    a = Volume(data, vol.affine)
    # The same voxels stored with j reversed and i, k swapped.
    flipped = np.flip(data, axis=1).transpose(2, 1, 0)
    affine = np.eye(4)
    affine[:3, 0] = vol.affine[:3, 2]
    affine[:3, 1] = -vol.affine[:3, 1]
    affine[:3, 2] = vol.affine[:3, 0]
    affine[:3, 3] = vol.ijk_to_ras(np.array([[0.0, 5.0, 0.0]]))[0]
    b = Volume(flipped, affine)
    back = on_grid(b, a)
    np.testing.assert_array_equal(back.array, data)
    moved = affine.copy()
    moved[0, 3] += 0.5
    shifted = Volume(flipped, moved)
    with pytest.raises(GridMismatchError, match="differ by up to 0.500 mm"):
        on_grid(shifted, a)


def test_lps_matrix_is_its_own_inverse():
    np.testing.assert_array_equal(LPS_TO_RAS @ LPS_TO_RAS, np.eye(4))


@pytest.mark.parametrize("case", ["STS_001", "STS_002"])
def test_real_rtstruct_gives_the_nifti_gtv(shared_data, case):
    """The IBSI sarcomas' RS.dcm reference SOP UIDs that are not in their series: contours
    are matched by position. The rasterised GTV equals the published NIfTI mask."""
    import nibabel as nib

    folder = shared_data / case / "dicom"
    structures = read_rtstruct(folder / "mask" / "RS.dcm")
    name = structures.names()[0]
    dcase = load_dicom_case(
        folder / "image", folder / "mask" / "RS.dcm", gtv_name=name, pixels=False
    )
    img = nib.load(shared_data / case / "gtv.nii.gz")
    truth = Volume(np.asarray(img.dataobj) > 0, img.affine)
    mask = on_grid(dcase.gtv, truth).array  # same voxels whatever the axis order
    dice = 2 * (mask & truth.array).sum() / (mask.sum() + truth.array.sum())
    assert dice >= 0.99, dice


@pytest.mark.parametrize("case", ["STS_001", "STS_002", "lung_phantom_nc"])
def test_real_series_equals_its_nifti(shared_data, case):
    """The CT read from DICOM has the voxels and world grid of the published NIfTI image."""
    import nibabel as nib

    img = nib.load(shared_data / case / "image.nii.gz")
    nifti = Volume(np.asarray(img.dataobj), img.affine)
    series = load_series(shared_data / case / "dicom" / "image")
    same = on_grid(series.grid, nifti)  # raises unless the voxel centres agree (0.01 mm)
    np.testing.assert_array_equal(same.array, nifti.array)


def _small_series(folder, n_slices):
    """An axial series of 6 x 5 x ``n_slices`` zeros at 1 mm pixels and 2 mm slices."""
    row, col = _axes("axial")
    write_series(
        folder, np.zeros((6, 5, n_slices)), row_dir=row, col_dir=col, origin_lps=(0, 0, 0),
        spacing_ij=(1, 1), gap_mm=2,
    )  # fmt: skip
    return folder


def _damage(path, how):
    """Damage one slice file as an export or a copy can: emptied, cut short before its image
    plane, or with an attribute the reader needs deleted."""
    import pydicom

    if how == "empty":
        path.write_bytes(b"")
    elif how == "cut short":
        data = path.read_bytes()
        # Cut where SOPClassUID is in and the image plane not yet (the file's element order).
        cut = next(
            n for n in range(200, len(data), 16) if "ImagePositionPatient" not in _parsed(data[:n])
        )
        path.write_bytes(data[:cut])
    else:
        ds = pydicom.dcmread(path)
        delattr(ds, how)
        ds.save_as(path)


def _parsed(data):
    import io

    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - too short to parse: "nothing of the plane" either
        return {}


@pytest.mark.parametrize("position", ["first", "middle", "last"])
@pytest.mark.parametrize(
    "how", ["empty", "cut short", "ImagePositionPatient", "PixelSpacing", "SOPClassUID"]
)
def test_a_damaged_slice_is_refused_not_skipped(tmp_path, position, how):
    """A slice that lost its image plane (or its identity) was skipped as "not an image": the
    series lost its first or last slice without a word (or, mid-series, failed with a gap that
    named no file). Now the file is named, and the series is refused."""
    import pydicom

    folder = _small_series(tmp_path / "ct", 5)
    (folder / "notes.txt").write_text("an export's notes: not DICOM, skipped")
    files = sorted(
        folder.glob("*.dcm"), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2])
    )
    assert load_series(folder).grid.shape == (6, 5, 5)
    victim = files[{"first": 0, "middle": 2, "last": -1}[position]]
    _damage(victim, how)
    with pytest.raises(InputFileError, match="export the series again") as err:
        load_series(folder, pixels=False)
    assert str(victim) in str(err.value)


def test_an_invalid_image_plane_is_shown_as_dicom_values_with_a_fix(tmp_path):
    import pydicom

    folder = _small_series(tmp_path / "ct", 4)
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.PixelSpacing = [0, 0.9]
        ds.save_as(f)
    with pytest.raises(InputFileError) as err:
        load_series(folder)
    message = str(err.value)
    assert "PixelSpacing 0\\0.9, ImageOrientationPatient 1\\0\\0\\0\\1\\0" in message
    assert "np.float64" not in message and message.endswith("export the series again")


def _with(path, *, patient_id=None, drawn_on=None):
    """The structure set at ``path`` with another PatientID and/or an RTReferencedSeries."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(path)
    if patient_id is not None:
        ds.PatientID = patient_id
    if drawn_on is not None:
        series = Dataset()
        series.SeriesInstanceUID = drawn_on
        study = Dataset()
        study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        study.ReferencedSOPInstanceUID = ds.StudyInstanceUID
        study.RTReferencedSeriesSequence = Sequence([series])
        ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence = Sequence([study])
    out = path.with_name(f"rs_{patient_id}_{drawn_on}.dcm")
    ds.save_as(out)
    return out


def _square_set(c):
    corners = [(1.5, 1.5), (9.5, 1.5), (9.5, 9.5), (1.5, 9.5)]  # no voxel centre on an edge
    pts = np.array([_world_lps(c, i, j, 3) for i, j in corners])
    write_structure_set(c["tmp"] / "rs.dcm", c["folder"], {"GTV": [pts]})
    return c["tmp"] / "rs.dcm"


def test_a_structure_set_of_another_patient_is_refused(series_case):
    """Same frame of reference (copied UIDs, a phantom), another PatientID: a TPS refuses it."""
    import pydicom

    c = series_case
    ct_patient = str(pydicom.dcmread(next(c["folder"].iterdir())).PatientID)
    rs = _with(_square_set(c), patient_id="OTHER-7")
    with pytest.raises(GridMismatchError) as err:
        load_dicom_case(c["folder"], rs, gtv_name="GTV", pixels=False)
    assert "patient 'OTHER-7'" in str(err.value) and f"patient '{ct_patient}'" in str(err.value)
    # No PatientID in the structure set: nothing to compare, used as before.
    case = load_dicom_case(c["folder"], _with(rs, patient_id=""), gtv_name="GTV", pixels=False)
    assert case.gtv.array.sum() == 64 and case.warnings == ()


def test_contours_drawn_on_another_series_of_the_frame_are_used_with_a_warning(series_case):
    import pydicom

    c = series_case
    rs = _square_set(c)
    ct_series = str(pydicom.dcmread(next(c["folder"].iterdir())).SeriesInstanceUID)
    plain = load_dicom_case(c["folder"], rs, gtv_name="GTV", pixels=False)
    same = load_dicom_case(c["folder"], _with(rs, drawn_on=ct_series), gtv_name="GTV", pixels=False)
    other = load_dicom_case(
        c["folder"], _with(rs, drawn_on="1.2.3.9"), gtv_name="GTV", pixels=False
    )
    assert plain.warnings == same.warnings == ()
    assert len(other.warnings) == 1
    assert "drawn on the image series 1.2.3.9" in other.warnings[0]
    assert f"({ct_series})" in other.warnings[0]
    np.testing.assert_array_equal(other.gtv.array, plain.gtv.array)
    assert plain.gtv.array.sum() == 64  # voxels 2..9 x 2..9 on one slice
