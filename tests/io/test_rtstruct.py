"""RTSTRUCT and derived CT export, read back with the independent reader of dicom_oracle.

Vertex spheres are recovered from the written contours (area-weighted centroid, slab volume:
polygon area x slice gap) and compared with the plan; traced ROIs are rasterised with
scikit-image and compared with the plan's masks; the checklist of docs/dicom.md is checked
on the written file (DS lengths, point counts, slice planes, references, UIDs).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from dicom_oracle import (
    polygon_area_centroid,
    read_series_geometry,
    read_structures,
    sphere_from_contours,
)
from skimage.draw import polygon2mask

from lattice.io.dicom_series import derived_series, ds_text, write_series
from lattice.io.rtstruct_write import plan_rois, write_rtstruct
from lattice.planning.placement import plan_vertices
from lattice.volume import Volume

GRIDS = {
    # name: (shape, voxel mm, affine kind, D mm, spacing mm, GTV semi-axes mm)
    "oblique-2mm-D10": ((64, 60, 44), (0.9, 1.1, 2.0), "oblique", 10.0, 20.0, (26.0, 24.0, 34.0)),
    # Margins measured to the TPS solid (half a 3.27 mm slice beyond the last inside
    # centre, not a whole one): a longer GTV than before keeps >= 3 vertices.
    "lps-3.27mm-D15": ((60, 56, 30), (0.98, 0.98, 3.27), "lps", 15.0, 30.0, (27.0, 25.0, 40.0)),
}


@pytest.fixture(scope="module", params=sorted(GRIDS))
def exported(request, make_volume, ellipsoid_mask, tmp_path_factory):
    shape, vox, kind, diameter, spacing, radii = GRIDS[request.param]
    grid = make_volume(shape, vox, kind)
    center = (-12.0, 25.0, 40.0)
    gtv = ellipsoid_mask(grid, center, radii)
    plan = plan_vertices(
        Volume(gtv, grid.affine), diameter_mm=diameter, min_spacing_mm=spacing, gtv_margin_mm=3.0
    )
    assert plan.n_vertices >= 3
    out = tmp_path_factory.mktemp(request.param)
    ct = Volume(np.where(gtv, 40, -800).astype(np.int16), grid.affine)
    series = derived_series(grid, patient_name="Phantom", patient_id="PH1")
    write_series(series, ct, out / "ct")
    rois = plan_rois(plan, series.grid, gtv=True)
    write_rtstruct(out / "rs.dcm", series, rois)
    return {"plan": plan, "out": out, "ct": ct, "name": request.param}


def test_derived_ct_is_the_nifti_grid(exported):
    geometry = read_series_geometry(exported["out"] / "ct")
    ct = exported["ct"]
    lps = np.diag([-1.0, -1, 1, 1]) @ ct.affine
    np.testing.assert_allclose(
        geometry["positions"], lps[:3, 3] + np.arange(ct.shape[2])[:, None] * lps[:3, 2], atol=1e-5
    )
    first = pydicom.dcmread(sorted((exported["out"] / "ct").iterdir())[0])
    assert list(first.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    pixels = first.pixel_array.T * float(first.RescaleSlope) + float(first.RescaleIntercept)
    k = int(
        round(
            float((np.array(first.ImagePositionPatient, float) - lps[:3, 3]) @ lps[:3, 2])
            / np.linalg.norm(lps[:3, 2]) ** 2
        )
    )
    np.testing.assert_array_equal(pixels, ct.array[:, :, k])
    for ds in geometry["headers"]:
        for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            assert all(len(getattr(v, "original_string", str(v))) <= 16 for v in ds[key].value)


def test_vertices_recovered_from_contours(exported):
    plan = exported["plan"]
    geometry = read_series_geometry(exported["out"] / "ct")
    structures = read_structures(exported["out"] / "rs.dcm")
    r = plan.parameters.diameter_mm / 2
    exact = 4.0 / 3.0 * np.pi * r**3
    for i, center in enumerate(plan.centers_ras_mm * np.array([-1, -1, 1])):
        contours = structures[f"VTX_{i + 1:02d}"]
        got_center, volume = sphere_from_contours(contours, geometry)
        assert np.linalg.norm(got_center - center) < 0.5
        assert abs(volume / exact - 1) < 0.05, (exported["name"], volume / exact)
        for c in contours:  # each contour a polygon on the circle: area within 0.5 %
            d = float((c["points"].mean(axis=0) - center) @ geometry["normal"])
            area, _ = polygon_area_centroid(c["points"], geometry["row_dir"], geometry["col_dir"])
            assert area == pytest.approx(np.pi * (r * r - d * d), rel=0.005)
            assert (
                np.abs(
                    np.linalg.norm(c["points"] - (center + d * geometry["normal"]), axis=1)
                    - np.sqrt(r * r - d * d)
                ).max()
                < 1e-4
            )
    combined = structures["LATTICE_VTX"]
    assert len(combined) == sum(len(structures[f"VTX_{i + 1:02d}"]) for i in range(plan.n_vertices))


def test_contours_follow_the_checklist(exported):
    geometry = read_series_geometry(exported["out"] / "ct")
    along = geometry["positions"] @ geometry["normal"]
    uid_at = dict(zip(geometry["uids"], along))
    structures = read_structures(exported["out"] / "rs.dcm")
    for name, contours in structures.items():
        assert len(name) <= 16
        assert contours, name
        for c in contours:
            assert c["type"] == "CLOSED_PLANAR"
            assert c["n_points"] >= 3 and c["n_points"] * 3 == c["n_values"]
            assert max(len(s) for s in c["strings"]) <= 16
            # On the plane of the slice it references (to the 1e-6 mm of the strings).
            (ref,) = c["refs"]
            offsets = c["points"] @ geometry["normal"] - uid_at[ref]
            assert np.abs(offsets).max() < 1e-5
    ds = pydicom.dcmread(exported["out"] / "rs.dcm")
    colors = [tuple(int(v) for v in item.ROIDisplayColor) for item in ds.ROIContourSequence]
    assert len(set(colors)) == len(colors)
    names = [r.ROIName for r in ds.StructureSetROISequence]
    assert len(set(names)) == len(names)
    ct = geometry["headers"][0]
    assert ds.FrameOfReferenceUID == ct.FrameOfReferenceUID
    assert ds.StudyInstanceUID == ct.StudyInstanceUID and ds.PatientID == ct.PatientID
    refs = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    series_ref = refs.RTReferencedSeriesSequence[0]
    assert series_ref.SeriesInstanceUID == ct.SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in series_ref.ContourImageSequence] == geometry["uids"]


def test_traced_rois_match_the_masks(exported):
    """LATTICE_TARGET, GTV and LATTICE_VALLEY rasterised from the file (skimage, even-odd)
    match the plan's masks and GTV minus the spheres."""
    plan = exported["plan"]
    structures = read_structures(exported["out"] / "rs.dcm")
    ras_to_ijk = np.linalg.inv(plan.gtv.affine) @ np.diag([-1.0, -1, 1, 1])
    # Valley: GTV voxels whose centres are outside every sphere (brute force).
    shape = plan.gtv.shape
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    world = ijk @ plan.gtv.affine[:3, :3].T + plan.gtv.affine[:3, 3]
    in_sphere = np.zeros(shape, dtype=bool)
    for c in plan.centers_ras_mm:
        in_sphere |= np.linalg.norm(world - c, axis=-1) <= plan.parameters.diameter_mm / 2
    valley = plan.gtv.array & ~in_sphere
    for name, mask in (
        ("LATTICE_TARGET", plan.lattice_target.array),
        ("GTV", plan.gtv.array),
        ("LATTICE_VALLEY", valley),
    ):
        got = np.zeros(mask.shape, dtype=bool)
        for c in structures[name]:
            ijk = c["points"] @ ras_to_ijk[:3, :3].T + ras_to_ijk[:3, 3]
            k = int(round(ijk[:, 2].mean()))
            got[:, :, k] ^= polygon2mask(mask.shape[:2], ijk[:, :2])
        dice = 2 * (got & mask).sum() / (got.sum() + mask.sum())
        assert dice > 0.97, (name, dice)


def test_every_export_gets_new_uids(exported, tmp_path):
    plan = exported["plan"]
    series = derived_series(plan.gtv, patient_name="P", patient_id="1")
    rois = plan_rois(plan, series.grid, vertex_rois="combined")
    a = pydicom.dcmread(write_rtstruct(tmp_path / "a.dcm", series, rois))
    b = pydicom.dcmread(write_rtstruct(tmp_path / "b.dcm", series, rois))
    assert a.SOPInstanceUID != b.SOPInstanceUID and a.SeriesInstanceUID != b.SeriesInstanceUID
    assert [r.ROIName for r in a.StructureSetROISequence][:1] == ["LATTICE_VTX"]
    assert not any(r.ROIName.startswith("VTX_") for r in a.StructureSetROISequence)


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy (Debian package dicom3tools) is not installed",
)
def test_dciodvfy_finds_no_errors(exported):
    """No error; the exact warnings: the name form of 'Phantom' (no '^') on both objects,
    and on the derived CT the empty Laterality (unknown for a NIfTI; left out dciodvfy
    reports a missing type 2C attribute, an error)."""
    name_form = (
        "Warning - Value dubious for this VR - (0x0010,0x0010) PN Patient's Name  PN "
        "[1] = <Phantom> - Retired Person Name form"
    )
    laterality = (
        "Warning - is only permitted to be empty when actually unknown; should be "
        "absent (not empty) if an unpaired body part, and have a value if a paired "
        "body part - attribute <Laterality>"
    )
    files = {
        "rs.dcm": (exported["out"] / "rs.dcm", {name_form}),
        "CT": (sorted((exported["out"] / "ct").iterdir())[0], {name_form, laterality}),
    }
    for name, (path, expected) in files.items():
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        found = {
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.startswith(("Error", "Warning"))
        }
        assert found == expected, (name, found)


def test_ds_text_is_short_and_exact():
    for value in (-881.32, 1 / 3, -12345.123456789, 0.0, -1e-9, 1e12, 98765432.1):
        text = ds_text(value)
        assert len(text) <= 16
        assert float(text) == pytest.approx(value, abs=1e-6, rel=1e-9)


def _plain_contour_sequences(series, rois):
    """The ROI Contour Sequence built the ordinary pydicom way (every element a DataElement,
    numbers formatted by the test): the reference for the writer's pre-encoded one."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    out = []
    for number, roi in enumerate(rois, start=1):
        item = Dataset()
        item.ROIDisplayColor = list(roi.color)
        contours = []
        for n, (k, points) in enumerate(roi.contours, start=1):
            ref = Dataset()
            ref.ReferencedSOPClassUID = series.slices[k].sop_class_uid
            ref.ReferencedSOPInstanceUID = series.slices[k].sop_instance_uid
            c = Dataset()
            c.ContourImageSequence = Sequence([ref])
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(points)
            c.ContourNumber = n
            c.ContourData = [f"{v:.6f}" for v in np.ravel(points)]
            contours.append(c)
        if contours:
            item.ContourSequence = Sequence(contours)
        item.ReferencedROINumber = number
        out.append(item)
    return out


def _decoded(dataset):
    """Nested (keyword, VR, value) of a dataset; numbers as floats, sequences as lists."""
    rows = []
    for elem in dataset:
        if elem.VR == "SQ":
            rows.append((elem.keyword, "SQ", [_decoded(item) for item in elem.value]))
        elif elem.VR in ("DS", "IS"):
            values = elem.value if elem.VM > 1 else [elem.value]
            rows.append((elem.keyword, elem.VR, [float(v) for v in values]))
        else:
            rows.append((elem.keyword, elem.VR, elem.value))
    return rows


def test_pre_encoded_contours_decode_to_the_plain_pydicom_dataset(exported, tmp_path):
    """The writer encodes the Contour Sequences itself (speed); read back with pydicom they
    equal, element by element, the sequences pydicom builds from the same contours."""
    plan = exported["plan"]
    series = derived_series(plan.gtv, patient_name="P", patient_id="1")
    rois = plan_rois(plan, series.grid, gtv=True)
    assert sum(len(r.contours) for r in rois) > 20
    written = pydicom.dcmread(write_rtstruct(tmp_path / "rs.dcm", series, rois))
    reference = _plain_contour_sequences(series, rois)
    got = list(written.ROIContourSequence)
    assert len(got) == len(reference) == len(rois)
    for mine, ref in zip(got, reference):
        assert _decoded(mine) == _decoded(ref)
    # And the file is still one whose every element a reader parses (no raw leftovers).
    again = pydicom.dcmread(tmp_path / "rs.dcm", force=False)
    assert again.ROIContourSequence[0].ContourSequence[0].ContourGeometricType == "CLOSED_PLANAR"
