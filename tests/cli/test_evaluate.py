"""``lattice evaluate PLAN_DIR --dose FILE`` on a plan of the bundled STS_001: an analytic
RT Dose in the plan's frame of reference, metrics checked against a computation from the
written NIfTI files alone; a dose from another frame refused on one line."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from cli_helpers import run, run_redirected
from conftest import REPO_ROOT

from lattice.errors import EXIT_INPUT, EXIT_OUTPUT_EXISTS
from lattice.io.rtdose_write import write_rtdose

SAMPLE = REPO_ROOT / "sample_data" / "STS_001"
PLAN_ARGS = ["--diameter-mm", "15", "--spacing-mm", "30", "--gtv-margin-mm", "5", "--no-picture"]
#: The analytic dose: linear in RAS mm, so trilinear resampling reproduces it exactly.
BASE_GY, SLOPE_GY_PER_MM = 10.0, np.array([0.04, -0.03, 0.02])
DOSE_SPACING_MM = np.array([2.5, 2.5, 3.0])


def _world_ras_mm(img, mask):
    return nib.affines.apply_affine(img.affine, np.argwhere(mask))


def _linear_dose_gy(points_ras_mm, centre_ras_mm):
    return BASE_GY + (points_ras_mm - centre_ras_mm) @ SLOPE_GY_PER_MM


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """The plan folder, and (dose grid affine, shape, centre) covering its GTV."""
    out = tmp_path_factory.mktemp("evaluate") / "plan"
    argv = ["plan", "--ct", SAMPLE / "ct.nii.gz", "--gtv", SAMPLE / "gtv.nii.gz", "--out", out]
    code, _, err = run_redirected([*argv, *PLAN_ARGS])
    assert code == 0, err
    gtv = nib.load(SAMPLE / "gtv.nii.gz")
    points = _world_ras_mm(gtv, np.asarray(gtv.dataobj) > 0)
    lo, hi = points.min(axis=0) - 10.0, points.max(axis=0) + 10.0
    shape = tuple(int(n) for n in np.ceil((hi - lo) / DOSE_SPACING_MM) + 1)
    # Standard axial RT Dose: rows along LPS +x (RAS -x), columns along LPS +y (RAS -y).
    affine = np.diag([-DOSE_SPACING_MM[0], -DOSE_SPACING_MM[1], DOSE_SPACING_MM[2], 1.0])
    affine[:3, 3] = [hi[0], hi[1], lo[2]]
    return out, affine, shape, points.mean(axis=0)


def _write_dose(path, planned, frame_uid):
    _, affine, shape, centre = planned
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    dose = _linear_dose_gy(nib.affines.apply_affine(affine, ijk), centre)
    return write_rtdose(path, dose, affine, frame_of_reference_uid=frame_uid, bits=32)


def _plan_frame_uid(folder):
    import pydicom

    return str(pydicom.dcmread(folder / "rtstruct.dcm").FrameOfReferenceUID)


def test_evaluate_writes_the_metrics_of_the_dose(planned, capfd, tmp_path):
    out = planned[0]
    dose_path = _write_dose(tmp_path / "dose.dcm", planned, _plan_frame_uid(out))
    code, stdout, err = run(capfd, ["evaluate", out, "--dose", dose_path])
    assert code == 0, err
    assert "wrote evaluation.png, evaluation.json" in stdout
    doc = json.loads((out / "evaluation.json").read_text())
    for key in ("gtv", "pvdr_d10_d90", "peaks", "valley", "epvdr", "vertices", "cold"):
        assert key in doc
    for key in ("oars", "shells", "profiles", "dose"):
        assert key in doc
    assert set(doc["gtv"]) >= {f"D{p}_gy" for p in (2, 5, 10, 50, 90, 95, 98)} | {"mean_gy"}
    assert set(doc["dose"]) >= {"path", "sha256", "units", "summation_type", "grid"}
    assert doc["plan"]["frame_checked"] is True
    plan = json.loads((out / "plan.json").read_text())
    assert [v["id"] for v in doc["vertices"]] == [v["id"] for v in plan["vertices"]]
    # Independent: the linear dose at the voxel centres of the written masks.
    centre = planned[3]
    gtv = nib.load(SAMPLE / "gtv.nii.gz")
    gtv_dose = _linear_dose_gy(_world_ras_mm(gtv, np.asarray(gtv.dataobj) > 0), centre)
    assert doc["gtv"]["mean_gy"] == pytest.approx(gtv_dose.mean(), abs=1e-3)
    assert doc["gtv"]["D50_gy"] == pytest.approx(np.percentile(gtv_dose, 50), abs=1e-3)
    labels_img = nib.load(out / "vertices.nii.gz")
    labels = np.rint(np.asarray(labels_img.dataobj)).astype(int)
    peak_dose = _linear_dose_gy(_world_ras_mm(labels_img, labels > 0), centre)
    assert doc["peaks"]["mean_gy"] == pytest.approx(peak_dose.mean(), abs=1e-3)
    first = _linear_dose_gy(_world_ras_mm(labels_img, labels == 1), centre)
    assert doc["vertices"][0]["mean_gy"] == pytest.approx(first.mean(), abs=1e-3)
    assert (out / "evaluation.png").stat().st_size > 0
    # An earlier evaluation is kept unless --force.
    code, _, err = run(capfd, ["evaluate", out, "--dose", dose_path])
    assert code == EXIT_OUTPUT_EXISTS and "--force" in err
    code, _, err = run(capfd, ["evaluate", out, "--dose", dose_path, "--force"])
    assert code == 0, err


def test_a_dose_in_another_frame_of_reference_is_refused(planned, capfd, tmp_path):
    out = planned[0]
    before = sorted(p.name for p in out.iterdir())
    dose_path = _write_dose(tmp_path / "foreign.dcm", planned, "1.2.826.0.1.3680043.8.498.1")
    code, stdout, err = run(capfd, ["evaluate", out, "--dose", dose_path, "--force"])
    assert code == EXIT_INPUT
    assert stdout == ""
    assert err.count("\n") == 1 and err.startswith("lattice: error: ")
    assert "frame of reference" in err
    assert sorted(p.name for p in out.iterdir()) == before


def _vertex_dose_nifti(path, planned, edit):
    """A dose NIfTI on the plan's grid: 15 Gy in the vertex spheres, 4 Gy elsewhere, edited."""
    labels = nib.load(planned[0] / "vertices.nii.gz")
    dose = np.where(np.asarray(labels.dataobj) > 0, 15.0, 4.0)
    gtv = np.asarray(nib.load(SAMPLE / "gtv.nii.gz").dataobj) > 0
    dose = edit(dose, tuple(int(n) for n in np.argwhere(gtv).mean(axis=0)))
    nib.save(nib.Nifti1Image(dose.astype(np.float32), labels.affine), path)
    return path


def _set(value):
    def edit(dose, ijk):
        dose[ijk] = value
        return dose

    return edit


@pytest.mark.parametrize(
    ("edit", "found"),
    [
        (_set(np.nan), "holds 1 NaN value of its"),
        (_set(np.inf), "holds 1 infinite value of its"),
        (_set(-5.0), "holds 1 negative value of its"),
    ],
    ids=["nan", "inf", "negative"],
)
def test_a_dose_with_an_impossible_value_is_refused_on_one_line(
    planned, capfd, tmp_path, edit, found
):
    """The old code evaluated -5 Gy (gtv.min_gy -5, exit 0), and blamed a NaN in the GTV on
    a dose grid that does not cover it."""
    out = planned[0]
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    dose_path = _vertex_dose_nifti(tmp_path / "dose.nii.gz", planned, edit)
    code, stdout, err = run(capfd, ["evaluate", out, "--dose", dose_path, "--force"])
    assert code == EXIT_INPUT and stdout == ""
    assert err.count("\n") == 1 and err.startswith(f"lattice: error: dose NIfTI '{dose_path}'")
    assert found in err and "export it again from the TPS" in err
    assert "does not cover" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    ("edit", "found"),
    [
        (lambda dose, ijk: dose * 0, "voxels it covers, so PVDR and ePVDR are undefined"),
        (lambda dose, ijk: dose * 100, "reaches 1500 Gy, above 200 Gy"),
        (lambda dose, ijk: dose * 0 + 1e30, "reaches 1e+30 Gy, above 200 Gy"),
        (lambda dose, ijk: dose / 100, "peaks at 0.15 Gy in the GTV, at most 1 Gy"),
        (lambda dose, ijk: dose / 15, "peaks at 1 Gy in the GTV, at most 1 Gy"),
    ],
    ids=["all-zero", "cGy-as-Gy", "1e30", "Gy-as-cGy", "relative"],
)
def test_an_implausible_dose_is_evaluated_with_a_warning_on_stderr_and_in_the_json(
    planned, capfd, tmp_path, edit, found
):
    """The old code evaluated these with exit 0 and no word about them."""
    out = planned[0]
    dose_path = _vertex_dose_nifti(tmp_path / "dose.nii.gz", planned, edit)
    code, _, err = run(capfd, ["evaluate", out, "--dose", dose_path, "--force"])
    assert code == 0, err
    printed = [line for line in err.splitlines() if found in line]
    assert len(printed) == 1 and printed[0].startswith("lattice: warning: the dose ")
    doc = json.loads((out / "evaluation.json").read_text())
    assert [w for w in doc["warnings"] if found in w] == [printed[0][len("lattice: warning: ") :]]


def test_a_plausible_dose_gets_no_dose_value_warning(planned, capfd, tmp_path):
    """15 Gy peaks, and 1.5 Gy (just above the low limit): no units warning."""
    out = planned[0]
    for scale in (1.0, 0.1):
        dose_path = _vertex_dose_nifti(
            tmp_path / f"dose{scale}.nii.gz", planned, lambda d, _, scale=scale: d * scale
        )
        code, _, err = run(capfd, ["evaluate", out, "--dose", dose_path, "--force"])
        assert code == 0, err
        assert "check its units" not in err and "undefined" not in err


def test_an_rt_dose_of_another_patient_is_evaluated_with_a_warning(planned, capfd, tmp_path):
    """In the plan's frame of reference (checked) but filed under another PatientID: a TPS
    that took in the derived CT may have renamed the patient, so only a warning."""
    import pydicom

    out = planned[0]
    plan_patient = str(pydicom.dcmread(out / "rtstruct.dcm").PatientID)
    for patient, warned in ((plan_patient, False), ("MRN-0042", True)):
        dose_path = _write_dose(tmp_path / f"{patient}.dcm", planned, _plan_frame_uid(out))
        ds = pydicom.dcmread(dose_path)
        ds.PatientID = patient
        ds.save_as(dose_path)
        code, _, err = run(capfd, ["evaluate", out, "--dose", dose_path, "--force"])
        assert code == 0, err
        doc = json.loads((out / "evaluation.json").read_text())
        found = [w for w in doc["warnings"] if "(PatientID)" in w]
        assert found == (
            [
                f"RT Dose '{dose_path}' is of patient 'MRN-0042' (PatientID), the plan's DICOM "
                f"files of patient '{plan_patient}'; it is in the plan's frame of reference, so it "
                "was evaluated: check that it is this patient's dose"
            ]
            if warned
            else []
        )
        assert (f"lattice: warning: {found[0]}" in err) if warned else "(PatientID)" not in err
