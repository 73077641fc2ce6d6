"""The TPS round trip through ``lattice plan``: DICOM in, RTSTRUCT (and derived CT) out.

Written files are read back with the independent reader of ``dicom_oracle`` (pydicom and
numpy only): each vertex's centre and volume are recovered from its contours and compared
with plan.json. Real-case tests use ``../shared/data/STS_001`` (skipped without it); the
NIfTI-only round trip uses the bundled ``sample_data/STS_001``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_helpers import run_redirected as run
from conftest import REPO_ROOT
from dicom_oracle import read_series_geometry, read_structures, sphere_from_contours
from oracles import oracle_depth
from scipy.spatial.distance import pdist
from skimage.draw import polygon2mask

SAMPLE = REPO_ROOT / "sample_data" / "STS_001"
ARGS = ["--diameter-mm", "15", "--spacing-mm", "30", "--gtv-margin-mm", "5"]


def _vertices(out: Path) -> tuple[np.ndarray, float]:
    doc = json.loads((out / "plan.json").read_text())
    return (
        np.array([v["center_lps_mm"] for v in doc["vertices"]]),
        doc["parameters"]["diameter_mm"],
    )


def _check_round_trip(out: Path, ct_folder: Path) -> list[str]:
    """Recover every vertex from rtstruct.dcm; return the CT SOP UIDs it references."""
    centers, diameter = _vertices(out)
    assert len(centers) >= 5
    geometry = read_series_geometry(ct_folder)
    structures = read_structures(out / "rtstruct.dcm")
    exact = np.pi / 6 * diameter**3
    along = dict(zip(geometry["uids"], geometry["positions"] @ geometry["normal"]))
    referenced = []
    for i, center in enumerate(centers):
        contours = structures[f"VTX_{i + 1:02d}"]
        got, volume = sphere_from_contours(contours, geometry)
        assert np.linalg.norm(got - center) < 0.5
        assert abs(volume / exact - 1) < 0.05
        for c in contours:
            (uid,) = c["refs"]
            assert abs(float(c["points"][0] @ geometry["normal"]) - along[uid]) < 1e-4
            referenced.append(uid)
    assert len(structures["LATTICE_VTX"]) == len(referenced)
    return referenced


@pytest.fixture(scope="module")
def dicom_plan(shared_data, tmp_path_factory):
    """STS_001 planned from DICOM and from NIfTI."""
    case = shared_data / "STS_001"
    out = tmp_path_factory.mktemp("dicom") / "plan"
    code, stdout, err = run(
        [
            "plan",
            "--ct-dicom",
            case / "dicom" / "image",
            "--rtstruct",
            case / "dicom" / "mask" / "RS.dcm",
            "--gtv-name",
            "GTV_Mass_CT",
            "--out",
            out,
            *ARGS,
        ]
    )
    assert code == 0, err
    nifti = tmp_path_factory.mktemp("nifti") / "plan"
    code, _, err = run(
        [
            "plan",
            "--ct",
            case / "image.nii.gz",
            "--gtv",
            case / "gtv.nii.gz",
            "--out",
            nifti,
            "--no-dicom",
            "--no-picture",
            *ARGS,
        ]
    )
    assert code == 0, err
    return {"case": case, "out": out, "nifti": nifti, "stdout": stdout}


def test_dicom_input_gives_the_nifti_plan(dicom_plan):
    """Same vertex count, and the DICOM route's vertices obey every rule on the NIfTI GTV.

    The centres themselves may differ: the NIfTI affine is the DICOM one rounded to float32
    (7e-6 mm), which moves lattice points that sit on voxel boundaries to the neighbouring
    voxel and can tip the choice between equally good poses.
    """
    a, diameter = _vertices(dicom_plan["out"])
    b, _ = _vertices(dicom_plan["nifti"])
    assert a.shape == b.shape and len(a) >= 10
    img = nib.load(dicom_plan["case"] / "gtv.nii.gz")
    gtv = img.get_fdata() > 0
    ras = a * np.array([-1.0, -1.0, 1.0])
    assert np.all(oracle_depth(gtv, img.affine, ras) >= 5.0 + diameter / 2 - 1e-9)
    assert pdist(ras).min() >= 30.0
    vertices = nib.load(dicom_plan["out"] / "vertices.nii.gz")
    np.testing.assert_allclose(vertices.affine, img.affine, atol=1e-4)
    assert np.all(gtv[vertices.get_fdata() > 0])


def _plan_frame(out: Path) -> str:
    return json.loads((out / "plan.json").read_text())["frame_of_reference_uid"]


def _series_frame(folder: Path) -> str:
    """FrameOfReferenceUID of the series' first file, read with pydicom."""
    import pydicom

    first = sorted(p for p in folder.iterdir() if p.is_file())[0]
    return str(pydicom.dcmread(first, stop_before_pixels=True).FrameOfReferenceUID)


def test_dicom_plan_records_the_frame_of_its_ct_series(dicom_plan):
    assert _plan_frame(dicom_plan["out"]) == _series_frame(dicom_plan["case"] / "dicom" / "image")
    assert "frame_of_reference_uid" not in json.loads(
        (dicom_plan["nifti"] / "plan.json").read_text()
    )  # --no-dicom


def test_dicom_round_trip_on_real_ct(dicom_plan):
    out = dicom_plan["out"]
    assert (out / "rtstruct.dcm").is_file() and not (out / "ct_dicom").exists()
    ct_folder = dicom_plan["case"] / "dicom" / "image"
    referenced = _check_round_trip(out, ct_folder)
    assert set(referenced) <= set(read_series_geometry(ct_folder)["uids"])
    import pydicom

    rs = pydicom.dcmread(out / "rtstruct.dcm")
    ct = pydicom.dcmread(sorted(ct_folder.iterdir())[0], stop_before_pixels=True)
    for key in ("PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert rs[key].value == ct[key].value
    doc = json.loads((out / "plan.json").read_text())
    assert doc["inputs"]["gtv"]["roi"] == "GTV_Mass_CT"
    assert doc["inputs"]["ct"]["series_instance_uid"] == ct.SeriesInstanceUID


def test_verify_and_rois_on_dicom_plan(dicom_plan):
    code, stdout, err = run(["verify", dicom_plan["out"]])
    assert code == 0, stdout + err
    assert "OK: every rule holds" in stdout
    code, stdout, _ = run(["rois", dicom_plan["case"] / "dicom" / "mask" / "RS.dcm"])
    assert code == 0 and "GTV_Mass_CT" in stdout and "1 ROI in" in stdout


def test_show_on_dicom_plan(dicom_plan, tmp_path):
    """Pictures drawn again from the recorded DICOM series and structure set."""
    code, _, err = run(["show", dicom_plan["out"], "--out", tmp_path])
    assert code == 0, err
    assert {"overview.png", "overview3d.png", "vertices.png"} <= {
        p.name for p in tmp_path.iterdir()
    }


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy (Debian package dicom3tools) is not installed",
)
def test_dciodvfy_on_real_export(dicom_plan):
    """No error, and one warning: the source CT's own patient name form (copied unchanged so
    that the structure set matches its CT). Its 17-character Study ID, an error in the CT
    itself, is cut to 16 (with a warning in plan.json)."""
    result = subprocess.run(
        ["dciodvfy", str(dicom_plan["out"] / "rtstruct.dcm")], capture_output=True, text=True
    )
    found = {
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.startswith(("Error", "Warning"))
    }
    assert found == {
        "Warning - Value dubious for this VR - (0x0010,0x0010) PN Patient's Name  "
        "PN [1] = <STS_001> - Retired Person Name form"
    }, found


def test_nifti_only_writes_a_derived_ct(tmp_path):
    out = tmp_path / "plan"
    code, _, err = run(
        [
            "plan",
            "--ct",
            SAMPLE / "ct.nii.gz",
            "--gtv",
            SAMPLE / "gtv.nii.gz",
            "--out",
            out,
            "--no-picture",
            "--stv-fraction",
            "0.3",
            *ARGS,
        ]
    )
    assert code == 0, err
    ct_folder = out / "ct_dicom"
    # The STV and GTV ROIs, rasterised from the file, are the written masks.
    structures = read_structures(out / "rtstruct.dcm")
    for roi, mask_file in (("LATTICE_STV", out / "stv.nii.gz"), ("GTV", SAMPLE / "gtv.nii.gz")):
        img = nib.load(mask_file)
        mask = img.get_fdata() > 0
        to_ijk = np.linalg.inv(img.affine) @ np.diag([-1.0, -1, 1, 1])
        got = np.zeros(mask.shape, dtype=bool)
        for c in structures[roi]:
            ijk = c["points"] @ to_ijk[:3, :3].T + to_ijk[:3, 3]
            got[:, :, int(round(ijk[:, 2].mean()))] ^= polygon2mask(mask.shape[:2], ijk[:, :2])
        assert 2 * (got & mask).sum() / (got.sum() + mask.sum()) > 0.97, roi
    files = sorted(ct_folder.iterdir())
    image = nib.load(SAMPLE / "ct.nii.gz")
    assert len(files) == image.shape[2]
    referenced = _check_round_trip(out, ct_folder)
    assert set(referenced) <= set(read_series_geometry(ct_folder)["uids"])
    # The derived series is the NIfTI grid: slice positions from the affine (LPS).
    lps = np.diag([-1.0, -1, 1, 1]) @ image.affine
    positions = read_series_geometry(ct_folder)["positions"]
    expected = lps[:3, 3] + np.arange(image.shape[2])[:, None] * lps[:3, 2]
    np.testing.assert_allclose(np.sort(positions, axis=0), np.sort(expected, axis=0), atol=1e-4)
    # A second export: new series and instance UIDs, same patient / study / frame.
    again = tmp_path / "again"
    assert (
        run(
            [
                "plan",
                "--ct",
                SAMPLE / "ct.nii.gz",
                "--gtv",
                SAMPLE / "gtv.nii.gz",
                "--out",
                again,
                "--no-picture",
                *ARGS,
            ]
        )[0]
        == 0
    )
    import pydicom

    a, b = (pydicom.dcmread(p / "rtstruct.dcm") for p in (out, again))
    assert a.SeriesInstanceUID != b.SeriesInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    assert (a.StudyInstanceUID, a.FrameOfReferenceUID, a.PatientID) == (
        b.StudyInstanceUID,
        b.FrameOfReferenceUID,
        b.PatientID,
    )
    ca, cb = (pydicom.dcmread(sorted((p / "ct_dicom").iterdir())[0]) for p in (out, again))
    assert ca.SOPInstanceUID != cb.SOPInstanceUID


def test_reference_ct_dicom(shared_data, tmp_path):
    case = shared_data / "STS_001"
    out = tmp_path / "plan"
    code, _, err = run(
        [
            "plan",
            "--ct",
            case / "image.nii.gz",
            "--gtv",
            case / "gtv.nii.gz",
            "--reference-ct-dicom",
            case / "dicom" / "image",
            "--out",
            out,
            "--no-picture",
            "--vertex-rois",
            "combined",
            *ARGS,
        ]
    )
    assert code == 0, err
    assert not (out / "ct_dicom").exists()
    structures = read_structures(out / "rtstruct.dcm")
    assert "LATTICE_VTX" in structures and "VTX_01" not in structures
    assert _plan_frame(out) == _series_frame(case / "dicom" / "image")
    uids = set(read_series_geometry(case / "dicom" / "image")["uids"])
    assert {r for c in structures["LATTICE_VTX"] for r in c["refs"]} <= uids
    # A NIfTI on another grid (cropped) is refused, and nothing is written.
    img = nib.load(case / "image.nii.gz")
    cropped = img.slicer[:, :, 2:]
    nib.save(cropped, tmp_path / "cropped.nii.gz")
    nib.save(nib.load(case / "gtv.nii.gz").slicer[:, :, 2:], tmp_path / "gtv_cropped.nii.gz")
    code, _, err = run(
        [
            "plan",
            "--ct",
            tmp_path / "cropped.nii.gz",
            "--gtv",
            tmp_path / "gtv_cropped.nii.gz",
            "--reference-ct-dicom",
            case / "dicom" / "image",
            "--out",
            tmp_path / "bad",
            *ARGS,
        ]
    )
    assert code == 5 and len(err.strip().splitlines()) == 1, err
    assert "not on the grid" in err and not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--ct-dicom", "X"], 2, "--ct-dicom needs --rtstruct and --gtv-name"),
        (
            ["--ct-dicom", "X", "--rtstruct", "R", "--gtv-name", "G", "--gtv", "g.nii.gz"],
            2,
            "--gtv cannot be combined with --ct-dicom",
        ),
        (["--ct", "c.nii.gz", "--gtv", "g.nii.gz", "--gtv-name", "G"], 2, "--gtv-name need"),
        ([], 2, "give the CT"),
        (["--ct-dicom", "nowhere", "--rtstruct", "R", "--gtv-name", "G"], 3, "folder not found"),
    ],
)
def test_dicom_option_errors(tmp_path, argv, code, message):
    got, _, err = run(["plan", *argv, "--out", tmp_path / "o"])
    assert got == code and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_unknown_roi_name(shared_data, tmp_path):
    case = shared_data / "STS_001"
    code, _, err = run(
        [
            "plan",
            "--ct-dicom",
            case / "dicom" / "image",
            "--rtstruct",
            case / "dicom" / "mask" / "RS.dcm",
            "--gtv-name",
            "GTV",
            "--out",
            tmp_path / "o",
        ]
    )
    assert code == 4 and "ROIs present: 'GTV_Mass_CT'" in err, err
    assert not (tmp_path / "o").exists()


def test_oblique_real_mr_round_trip(shared_data, tmp_path):
    """A real oblique MR grid (nibabel's example4d, first volume, real-valued): the derived
    series read back is the same world grid with the same values, and the vertices are
    recovered from the RTSTRUCT."""
    from lattice.io.dicom import load_series, on_grid
    from lattice.volume import Volume

    img = nib.load(shared_data / "oblique_mr" / "example4d.nii.gz")
    data = np.asarray(img.dataobj[..., 0], dtype=np.float32) * 1.37  # not whole numbers
    affine = img.affine
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in data.shape], indexing="ij"), -1)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    centre = world.reshape(-1, 3).mean(axis=0)
    gtv = (np.linalg.norm(world - centre, axis=-1) < 24.0).astype(np.uint8)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "mr.nii.gz")
    nib.save(nib.Nifti1Image(gtv, affine), tmp_path / "gtv.nii.gz")
    out = tmp_path / "plan"
    code, _, err = run(
        [
            "plan",
            "--ct",
            tmp_path / "mr.nii.gz",
            "--gtv",
            tmp_path / "gtv.nii.gz",
            "--out",
            out,
            "--diameter-mm",
            "10",
            "--spacing-mm",
            "20",
            "--gtv-margin-mm",
            "3",
        ]
    )
    assert code == 0, err
    series = load_series(out / "ct_dicom")
    back = on_grid(series.grid, Volume(data, affine), tolerance_mm=1e-3)
    scale = (data.max() - data.min()) / 65535
    assert np.abs(back.array - data).max() <= scale / 2 + 1e-3
    _check_round_trip(out, out / "ct_dicom")
