"""``lattice plan --cold-spheres`` (issue 14, scope 1): cold spheres in the plan folder.

Every cold sphere is checked independently of the planner: the gap to every vertex sphere
and the spacing among cold spheres by brute-force distances from plan.json's centres, the
depth in the GTV under the TPS surface model by :class:`tps_checker.Solid` rebuilt from the
input mask (margin + cold radius at least). The outputs: plan.json against its schema,
``cold.csv``, ``cold.mrk.json``, ``cold.nii.gz``, the ``LATTICE_COLD`` ROI (dciodvfy clean
when installed) and the cold label map that ``lattice evaluate`` rebuilds from plan.json.
A plan without the option is unchanged: no cold key, parameter, file or ROI.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import nibabel as nib
import numpy as np
import pydicom
import pytest
from cli_helpers import run
from tps_checker import solids_of_plan

from lattice.io.cold_outputs import cold_labels_of_document
from lattice.io.planfolder import plan_schema
from lattice.volume import Volume

REPO = Path(__file__).resolve().parents[2]
STS_001 = REPO / "sample_data" / "STS_001"
FAST = ["--mesh-format", "none", "--no-picture"]


def check_cold(plan: dict) -> dict[str, float]:
    """Assert the cold-sphere rules on a plan.json; the worst slacks (mm)."""
    p = plan["parameters"]
    peaks = np.array([v["center_ras_mm"] for v in plan["vertices"]], dtype=float)
    cold = np.array([c["center_ras_mm"] for c in plan["cold_spheres"]], dtype=float)
    d, dc, gap = p["diameter_mm"], p["cold_diameter_mm"], p["cold_gap_mm"]
    assert all(c["diameter_mm"] == dc for c in plan["cold_spheres"])
    to_peaks = np.linalg.norm(cold[:, None, :] - peaks[None, :, :], axis=2)
    nearest = to_peaks.min(axis=1)
    np.testing.assert_allclose(
        [c["nearest_peak_mm"] for c in plan["cold_spheres"]], nearest, atol=1e-9
    )
    gap_slack = nearest - (d / 2 + dc / 2 + gap)
    assert np.all(gap_slack >= 0), gap_slack
    among = np.linalg.norm(cold[:, None, :] - cold[None, :, :], axis=2)
    among[np.diag_indices(len(cold))] = np.inf
    spacing_slack = among.min() - (dc + gap) if len(cold) > 1 else np.inf
    assert spacing_slack >= 0, spacing_slack
    gtv, _ = solids_of_plan(plan)
    depth_slack = gtv.depth(cold) - (p["gtv_margin_mm"] + dc / 2)
    assert np.all(depth_slack >= 0), depth_slack
    return {
        "n": len(cold),
        "gap_slack_mm": float(gap_slack.min()),
        "spacing_slack_mm": float(spacing_slack),
        "depth_slack_mm": float(depth_slack.min()),
    }


def schema_errors(doc) -> list[str]:
    validator = jsonschema.Draft202012Validator(plan_schema())
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.fixture(scope="module")
def sts001_cold(tmp_path_factory):
    """STS_001 planned with cold spheres, with the DICOM export."""
    from lattice_cli.main import main

    out = tmp_path_factory.mktemp("cold") / "plan"
    argv = ["plan", "--ct", STS_001 / "ct.nii.gz", "--gtv", STS_001 / "gtv.nii.gz"]
    code = main([str(a) for a in [*argv, "--out", out, "--cold-spheres", "--no-picture"]])
    assert code == 0
    return out


def test_cold_spheres_on_sts001_keep_every_rule(sts001_cold):
    plan = json.loads((sts001_cold / "plan.json").read_text())
    assert schema_errors(plan) == []
    assert plan["parameters"]["cold_spheres"] is True
    assert plan["parameters"]["cold_diameter_mm"] == plan["parameters"]["diameter_mm"]
    assert plan["parameters"]["cold_gap_mm"] == 5.0
    worst = check_cold(plan)
    assert worst["n"] >= 1
    names = [c["name"] for c in plan["cold_spheres"]]
    assert [c["id"] for c in plan["cold_spheres"]] == list(range(1, len(names) + 1))
    for c in plan["cold_spheres"]:
        ras = np.array(c["center_ras_mm"])
        np.testing.assert_array_equal(c["center_lps_mm"], ras * [-1, -1, 1])


def test_cold_files_match_plan_json(sts001_cold):
    plan = json.loads((sts001_cold / "plan.json").read_text())
    cold = plan["cold_spheres"]
    with open(sts001_cold / "cold.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == [c["name"] for c in cold]
    np.testing.assert_allclose(
        [[float(r[k]) for k in ("x_ras_mm", "y_ras_mm", "z_ras_mm")] for r in rows],
        [c["center_ras_mm"] for c in cold],
    )
    markups = json.loads((sts001_cold / "cold.mrk.json").read_text())["markups"][0]
    assert [p["label"] for p in markups["controlPoints"]] == [c["name"] for c in cold]
    assert markups["display"]["glyphSize"] == cold[0]["diameter_mm"]
    img = nib.load(str(sts001_cold / "cold.nii.gz"))
    labels = np.asarray(img.dataobj)
    assert sorted(set(np.unique(labels)) - {0}) == [c["id"] for c in cold]
    # lattice evaluate rebuilds the same label map from plan.json
    rebuilt = cold_labels_of_document(plan, Volume(np.zeros(labels.shape, dtype=bool), img.affine))
    np.testing.assert_array_equal(rebuilt, labels)
    ijk = np.rint(
        nib.affines.apply_affine(np.linalg.inv(img.affine), [c["center_ras_mm"] for c in cold])
    ).astype(int)
    assert [int(labels[tuple(i)]) for i in ijk] == [c["id"] for c in cold]


def test_cold_mesh(sts001_cold):
    import trimesh

    plan = json.loads((sts001_cold / "plan.json").read_text())
    mesh = trimesh.load(sts001_cold / "cold.stl")
    r = plan["parameters"]["cold_diameter_mm"] / 2
    expected = len(plan["cold_spheres"]) * 4 / 3 * np.pi * r**3
    assert abs(mesh.volume - expected) < 0.02 * expected
    lps = np.array([c["center_lps_mm"] for c in plan["cold_spheres"]])
    assert np.all(
        mesh.bounds[0] >= lps.min(axis=0) - r - 0.1
    )  # the mesh keeps the volume: a little outside r
    assert np.all(mesh.bounds[1] <= lps.max(axis=0) + r + 0.1)


def test_cold_roi_in_rtstruct(sts001_cold):
    ds = pydicom.dcmread(sts001_cold / "rtstruct.dcm")
    rois = {r.ROINumber: r.ROIName for r in ds.StructureSetROISequence}
    assert "LATTICE_COLD" in rois.values()
    number = next(n for n, name in rois.items() if name == "LATTICE_COLD")
    kind = {o.ReferencedROINumber: o.RTROIInterpretedType for o in ds.RTROIObservationsSequence}
    assert kind[number] == "AVOIDANCE"
    contours = next(c for c in ds.ROIContourSequence if c.ReferencedROINumber == number)
    assert len(contours.ContourSequence) > 0
    assert all(len(n) <= 16 for n in rois.values())


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy is not installed")
def test_dciodvfy_reports_no_error_with_cold_roi(sts001_cold):
    result = subprocess.run(
        ["dciodvfy", str(sts001_cold / "rtstruct.dcm")], capture_output=True, text=True
    )
    errors = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.startswith("Error")]
    assert errors == []


def test_plan_without_cold_spheres_is_unchanged(tmp_path, capfd):
    out = tmp_path / "plan"
    argv = ["plan", "--ct", STS_001 / "ct.nii.gz", "--gtv", STS_001 / "gtv.nii.gz"]
    code, _, err = run(capfd, [*argv, "--out", out, *FAST])
    assert code == 0, err
    plan = json.loads((out / "plan.json").read_text())
    assert "cold_spheres" not in plan
    assert plan["parameters"]["cold_spheres"] is False  # every parameter is recorded
    assert plan["parameters"]["cold_diameter_mm"] is None
    assert not list(out.glob("cold*"))
    ds = pydicom.dcmread(out / "rtstruct.dcm")
    assert "LATTICE_COLD" not in {r.ROIName for r in ds.StructureSetROISequence}


@pytest.mark.parametrize("pattern", ["hcp", "max"])
def test_cold_spheres_on_sts013(shared_data, tmp_path, capfd, pattern):
    case = shared_data / "STS_013"
    out = tmp_path / "plan"
    argv = ["plan", "--ct", case / "image.nii.gz", "--gtv", case / "gtv.nii.gz"]
    argv += ["--pattern", pattern, "--cold-spheres", "--no-dicom", *FAST]
    code, _, err = run(capfd, [*argv, "--out", out])
    assert code == 0, err
    plan = json.loads((out / "plan.json").read_text())
    assert schema_errors(plan) == []
    worst = check_cold(plan)
    print(f"STS_013 {pattern}: {len(plan['vertices'])} vertices, {worst}")
    assert worst["n"] >= 1


def test_evaluate_fills_cold_from_plan_json(sts001_cold, capfd, tmp_path):
    """A linear dose (trilinear resampling reproduces it exactly) evaluated on the plan: the
    cold metrics equal the dose at the voxel centres of cold.nii.gz."""
    from lattice.io.rtdose_write import write_rtdose

    frame = str(pydicom.dcmread(sts001_cold / "rtstruct.dcm").FrameOfReferenceUID)
    gtv = nib.load(STS_001 / "gtv.nii.gz")
    points = nib.affines.apply_affine(gtv.affine, np.argwhere(np.asarray(gtv.dataobj) > 0))
    lo, hi = points.min(axis=0) - 10.0, points.max(axis=0) + 10.0
    spacing = np.array([2.5, 2.5, 3.0])
    shape = tuple(int(n) for n in np.ceil((hi - lo) / spacing) + 1)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [hi[0], hi[1], lo[2]]
    slope = np.array([0.04, -0.03, 0.02])

    def dose_at(ras):
        return 10.0 + (ras - lo) @ slope

    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    path = write_rtdose(
        tmp_path / "dose.dcm",
        dose_at(nib.affines.apply_affine(affine, ijk)),
        affine,
        frame_of_reference_uid=frame,
        bits=32,
    )
    code, _, err = run(capfd, ["evaluate", sts001_cold, "--dose", path, "--force"])
    assert code == 0, err
    doc = json.loads((sts001_cold / "evaluation.json").read_text())
    img = nib.load(str(sts001_cold / "cold.nii.gz"))
    labels = np.rint(np.asarray(img.dataobj)).astype(int)
    expected = dose_at(nib.affines.apply_affine(img.affine, np.argwhere(labels > 0)))
    assert doc["cold"]["mean_gy"] == pytest.approx(expected.mean(), abs=1e-3)
    assert doc["cold"]["max_gy"] == pytest.approx(expected.max(), abs=1e-3)
    n_cold = len(json.loads((sts001_cold / "plan.json").read_text())["cold_spheres"])
    assert len(doc["cold"]["spheres"]) == n_cold


def test_show_draws_a_plan_with_cold_spheres(sts001_cold, capfd, tmp_path):
    code, _, err = run(capfd, ["show", sts001_cold, "--out", tmp_path / "pictures"])
    assert code == 0, err
    assert (tmp_path / "pictures" / "overview.png").stat().st_size > 0
