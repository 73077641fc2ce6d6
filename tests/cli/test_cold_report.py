"""Issue 14, items 1 and 5 finished: ``--cold-rois``, the cold options' rule, the CT frame
of reference in plan.json, and report.html's cold-sphere and dose-evaluation sections.

Independent checks: the per-sphere ROIs read back with pydicom, every contour point at the
cold radius from plan.json's centre (LPS mm); the frame against rtstruct.dcm and the
ct_dicom/ series read by pydicom; the report's numbers against evaluation.json and its
picture against evaluation.png's bytes.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from cli_helpers import run

from lattice.errors import EXIT_INPUT, EXIT_USAGE
from lattice.io.rtdose_write import write_rtdose

REPO = Path(__file__).resolve().parents[2]
STS_001 = REPO / "sample_data" / "STS_001"
INPUTS = ["--ct", STS_001 / "ct.nii.gz", "--gtv", STS_001 / "gtv.nii.gz"]
FAST = ["--mesh-format", "none", "--no-picture"]


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """STS_001 with cold spheres and both kinds of cold ROI."""
    from lattice_cli.main import main

    out = tmp_path_factory.mktemp("coldrest") / "plan"
    argv = ["plan", *INPUTS, "--out", out, "--cold-spheres", "--cold-rois", "both", *FAST]
    assert main([str(a) for a in argv]) == 0
    return out


def _copy(planned: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "plan"
    shutil.copytree(planned, folder)
    return folder


@pytest.mark.parametrize(
    "extra",
    [["--cold-gap-mm", "3"], ["--cold-diameter-mm", "10"], ["--cold-rois", "each"]],
    ids=["gap", "diameter", "rois"],
)
def test_cold_sizes_without_cold_spheres_are_refused(tmp_path, capfd, extra):
    out = tmp_path / "plan"
    code, stdout, err = run(capfd, ["plan", *INPUTS, "--out", out, *FAST, *extra])
    assert code == EXIT_USAGE
    assert err.count("\n") == 1 and extra[0] in err and "--cold-spheres" in err
    assert stdout == "" and not out.exists()


def test_cold_rois_each_hold_one_sphere_at_its_centre(planned):
    plan = json.loads((planned / "plan.json").read_text())
    cold = plan["cold_spheres"]
    assert len(cold) >= 2
    ds = pydicom.dcmread(planned / "rtstruct.dcm")
    names = {r.ROINumber: str(r.ROIName) for r in ds.StructureSetROISequence}
    per_sphere = sorted(n for n in names.values() if n.startswith("COLD_"))
    assert (
        per_sphere
        == [c["name"] for c in cold]
        == [f"COLD_{i:02d}" for i in range(1, 1 + len(cold))]
    )
    assert "LATTICE_COLD" in names.values()
    assert len(set(n.upper() for n in names.values())) == len(names)
    assert all(len(n) <= 16 for n in names.values())
    kinds = {o.ReferencedROINumber: o.RTROIInterpretedType for o in ds.RTROIObservationsSequence}
    radius = plan["parameters"]["cold_diameter_mm"] / 2
    for roi in ds.ROIContourSequence:
        name = names[roi.ReferencedROINumber]
        if not name.startswith("COLD_"):
            continue
        assert kinds[roi.ReferencedROINumber] == "AVOIDANCE"
        centre = np.array(cold[int(name[5:]) - 1]["center_lps_mm"])
        points = np.concatenate(
            [np.array(c.ContourData, dtype=float).reshape(-1, 3) for c in roi.ContourSequence]
        )
        # each point lies on the sphere: its circle is the exact cut of the slice plane
        np.testing.assert_allclose(np.linalg.norm(points - centre, axis=1), radius, atol=0.01)


def test_cold_rois_each_leaves_out_the_combined_roi(tmp_path, capfd):
    out = tmp_path / "plan"
    argv = ["plan", *INPUTS, "--out", out, "--cold-spheres", "--cold-rois", "each", *FAST]
    code, _, err = run(capfd, argv)
    assert code == 0, err
    names = [str(r.ROIName) for r in pydicom.dcmread(out / "rtstruct.dcm").StructureSetROISequence]
    assert "LATTICE_COLD" not in names and "COLD_01" in names


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy is not installed")
def test_dciodvfy_reports_no_error_with_per_sphere_cold_rois(planned):
    result = subprocess.run(
        ["dciodvfy", str(planned / "rtstruct.dcm")], capture_output=True, text=True
    )
    errors = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.startswith("Error")]
    assert errors == []


def test_plan_json_records_the_frame_of_the_ct_series(planned):
    plan = json.loads((planned / "plan.json").read_text())
    rtstruct = pydicom.dcmread(planned / "rtstruct.dcm")
    first_ct = sorted((planned / "ct_dicom").iterdir())[0]
    ct = pydicom.dcmread(first_ct, stop_before_pixels=True)
    assert plan["frame_of_reference_uid"] == rtstruct.FrameOfReferenceUID == ct.FrameOfReferenceUID


def test_no_dicom_plan_records_no_frame(tmp_path, capfd):
    out = tmp_path / "plan"
    code, _, err = run(capfd, ["plan", *INPUTS, "--out", out, *FAST, "--no-dicom"])
    assert code == 0, err
    assert "frame_of_reference_uid" not in json.loads((out / "plan.json").read_text())


def _dose(folder: Path, path: Path, frame_uid: str) -> Path:
    """A linear dose over the GTV (trilinear resampling reproduces it exactly)."""
    gtv = nib.load(STS_001 / "gtv.nii.gz")
    points = nib.affines.apply_affine(gtv.affine, np.argwhere(np.asarray(gtv.dataobj) > 0))
    lo, hi = points.min(axis=0) - 10.0, points.max(axis=0) + 10.0
    spacing = np.array([2.5, 2.5, 3.0])
    shape = tuple(int(n) for n in np.ceil((hi - lo) / spacing) + 1)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [hi[0], hi[1], lo[2]]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    dose = 8.0 + (nib.affines.apply_affine(affine, ijk) - lo) @ np.array([0.05, -0.02, 0.03])
    return write_rtdose(path, dose, affine, frame_of_reference_uid=frame_uid, bits=32)


def test_evaluate_checks_the_frame_from_plan_json_alone(planned, tmp_path, capfd):
    folder = _copy(planned, tmp_path)
    frame = json.loads((folder / "plan.json").read_text())["frame_of_reference_uid"]
    (folder / "rtstruct.dcm").unlink()
    shutil.rmtree(folder / "ct_dicom")
    foreign = _dose(folder, tmp_path / "foreign.dcm", "1.2.826.0.1.3680043.8.498.1")
    code, _, err = run(capfd, ["evaluate", folder, "--dose", foreign])
    assert code == EXIT_INPUT and "frame of reference" in err and frame in err
    code, _, err = run(
        capfd, ["evaluate", folder, "--dose", _dose(folder, tmp_path / "d.dcm", frame)]
    )
    assert code == 0, err
    doc = json.loads((folder / "evaluation.json").read_text())
    assert doc["plan"]["frame_checked"] is True and doc["plan"]["frame_of_reference_uid"] == frame


def _cells(html: str, header: str) -> list[str]:
    """The text of the cell beside a row header of the report."""
    return re.findall(rf"<tr><th>{re.escape(header)}</th><td[^>]*>([^<]*)</td>", html)


def test_report_shows_the_cold_spheres_and_the_evaluation(planned, tmp_path, capfd):
    folder = _copy(planned, tmp_path)
    plan = json.loads((folder / "plan.json").read_text())
    before = (folder / "report.html").read_text()
    assert "<h2>Cold spheres (" in before and "Dose evaluation" not in before
    for c in plan["cold_spheres"]:
        row = f"<td>{c['name']}</td><td class='num'>" + ", ".join(
            f"{v:.2f}" for v in c["center_ras_mm"]
        )
        assert row in before
    dose = _dose(folder, tmp_path / "dose.dcm", plan["frame_of_reference_uid"])
    code, stdout, err = run(capfd, ["evaluate", folder, "--dose", dose])
    assert code == 0, err
    assert "report.html" in stdout
    ev = json.loads((folder / "evaluation.json").read_text())
    html = (folder / "report.html").read_text()
    assert "<h2>Dose evaluation (TPS dose)</h2>" in html
    assert _cells(html, "PVDR (GTV D10 / D90)") == [f"{ev['pvdr_d10_d90']:.2f}"]
    assert _cells(html, "ePVDR (mean peak / mean valley)") == [f"{ev['epvdr']:.2f}"]
    picture = base64.b64encode((folder / "evaluation.png").read_bytes()).decode()
    assert picture in html
    # lattice report makes the same page from the folder
    code, _, err = run(capfd, ["report", folder, "--out", tmp_path / "again.html"])
    assert code == 0, err
    assert (tmp_path / "again.html").read_text() == html


def test_report_leaves_out_an_evaluation_of_another_plan(planned, tmp_path, capfd):
    folder = _copy(planned, tmp_path)
    plan = json.loads((folder / "plan.json").read_text())
    dose = _dose(folder, tmp_path / "dose.dcm", plan["frame_of_reference_uid"])
    assert run(capfd, ["evaluate", folder, "--dose", dose])[0] == 0
    plan["note"] = "edited after the evaluation"  # another plan.json (extra keys are allowed)
    (folder / "plan.json").write_text(json.dumps(plan))
    code, _, err = run(capfd, ["report", folder, "--force"])
    assert code == 0, err
    html = (folder / "report.html").read_text()
    assert "made on another plan.json" in html
    assert "PVDR (GTV D10 / D90)" not in html


def test_a_new_plan_removes_the_old_evaluation(planned, tmp_path, capfd):
    folder = _copy(planned, tmp_path)
    plan = json.loads((folder / "plan.json").read_text())
    dose = _dose(folder, tmp_path / "dose.dcm", plan["frame_of_reference_uid"])
    assert run(capfd, ["evaluate", folder, "--dose", dose])[0] == 0
    argv = ["plan", *INPUTS, "--out", folder, *FAST, "--spacing-mm", "35", "--force"]
    code, _, err = run(capfd, argv)
    assert code == 0, err
    assert not (folder / "evaluation.json").exists() and not (folder / "evaluation.png").exists()
    assert "Dose evaluation" not in (folder / "report.html").read_text()


def test_no_cold_sphere_that_fits_is_a_warning(tmp_path, capfd):
    """D 30 mm cold spheres need 27.5 mm to the nearest vertex centre; the holes of STS_001's
    HCP plan (S 30 mm) are 18.4 and 21.2 mm from it: none fits, and the plan says so."""
    out = tmp_path / "plan"
    argv = ["plan", *INPUTS, "--out", out, *FAST, "--cold-spheres", "--cold-diameter-mm", "30"]
    code, stdout, err = run(capfd, argv)
    assert code == 0, err
    plan = json.loads((out / "plan.json").read_text())
    assert plan["cold_spheres"] == []
    assert any("no cold sphere of D 30 mm fits" in w for w in plan["warnings"])
    assert "no cold sphere of D 30 mm fits" in err
    assert "0 cold spheres (D 30 mm" in stdout
