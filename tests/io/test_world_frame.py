"""plan.json's ``world_frame`` names each coordinate's frame and the input's own frame, for
NIfTI input (RAS+) and for DICOM input (LPS), and the named frame really is the input's:
the vertex centres given in it fall inside the GTV as the input files themselves define it
(the NIfTI mask through nibabel's affine, the RTSTRUCT's ContourData polygons).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from cli_helpers import run_redirected as run
from conftest import REPO_ROOT
from dicom_oracle import read_structures
from matplotlib.path import Path as PolygonPath

SAMPLE = REPO_ROOT / "sample_data" / "STS_001"
ARGS = [
    "--diameter-mm",
    "15",
    "--spacing-mm",
    "30",
    "--gtv-margin-mm",
    "5",
    "--no-picture",
    "--mesh-format",
    "none",
]
KEYS = {"center_ras_mm", "center_lps_mm", "center_ijk"}


def _doc(out):
    return json.loads((out / "plan.json").read_text())


def _check_frame_text(frame: dict, *, native: str, other: str, route: str, not_route: str):
    assert KEYS <= set(frame)
    assert frame["input_frame"] == native
    assert route in frame["input"] and not_route not in frame["input"]
    assert "input's own frame" in frame[native] and "input's own frame" not in frame[other]
    assert frame["center_ras_mm"].startswith("RAS+ mm")
    assert frame["center_lps_mm"].startswith("LPS mm")
    assert "patient's right" in frame["center_ras_mm"]
    assert "patient's left" in frame["center_lps_mm"]


def _inside_nifti_mask(path, points_mm: np.ndarray) -> np.ndarray:
    img = nib.load(str(path))
    ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(img.affine), points_mm)).astype(int)
    data = np.asarray(img.dataobj)
    ok = np.all((ijk >= 0) & (ijk < data.shape), axis=1)
    inside = np.zeros(len(points_mm), dtype=bool)
    inside[ok] = data[tuple(ijk[ok].T)] != 0
    return inside


def _inside_contours(contours: list[dict], points_mm: np.ndarray) -> np.ndarray:
    """Even-odd inside test against the axial polygons on the contour plane nearest in z."""
    planes = np.array(sorted({round(float(c["points"][0, 2]), 3) for c in contours}))
    out = []
    for p in points_mm:
        z = planes[np.argmin(np.abs(planes - p[2]))]
        if abs(z - p[2]) > np.diff(planes).max(initial=0.0):
            out.append(False)
            continue
        crossings = sum(
            PolygonPath(c["points"][:, :2]).contains_point(p[:2])
            for c in contours
            if abs(c["points"][0, 2] - z) < 1e-3
        )
        out.append(crossings % 2 == 1)
    return np.array(out)


def test_nifti_input_names_ras_as_its_frame(tmp_path):
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
            "--no-dicom",
            *ARGS,
        ]
    )
    assert code == 0, err
    doc = _doc(out)
    frame = doc["world_frame"]
    _check_frame_text(
        frame, native="center_ras_mm", other="center_lps_mm", route="NIfTI", not_route="DICOM"
    )
    native = np.array([v[frame["input_frame"]] for v in doc["vertices"]])
    other = np.array([v["center_lps_mm"] for v in doc["vertices"]])
    assert len(native) >= 3
    assert _inside_nifti_mask(SAMPLE / "gtv.nii.gz", native).all()
    assert not _inside_nifti_mask(SAMPLE / "gtv.nii.gz", other).any()
    html = (out / "report.html").read_text()
    assert "NIfTI CT and masks" in html and "center_lps_mm" in html


def test_dicom_input_names_lps_as_its_frame(shared_data, tmp_path):
    case = shared_data / "STS_001" / "dicom"
    out = tmp_path / "plan"
    code, _, err = run(
        [
            "plan",
            "--ct-dicom",
            case / "image",
            "--rtstruct",
            case / "mask" / "RS.dcm",
            "--gtv-name",
            "GTV_Mass_CT",
            "--out",
            out,
            *ARGS,
        ]
    )
    assert code == 0, err
    doc = _doc(out)
    frame = doc["world_frame"]
    _check_frame_text(
        frame, native="center_lps_mm", other="center_ras_mm", route="DICOM", not_route="NIfTI"
    )
    assert "NIfTI" not in json.dumps(frame)
    gtv = read_structures(case / "mask" / "RS.dcm")["GTV_Mass_CT"]
    native = np.array([v[frame["input_frame"]] for v in doc["vertices"]])
    other = np.array([v["center_ras_mm"] for v in doc["vertices"]])
    assert len(native) >= 3
    assert _inside_contours(gtv, native).all()
    assert not _inside_contours(gtv, other).any()
    html = (out / "report.html").read_text()
    assert "DICOM CT series and RTSTRUCT" in html and "RAS+ mm (NIfTI)" not in html


def test_a_plan_made_through_the_api_says_so():
    from lattice.planning.plan import world_frame

    frame = world_frame("api")
    assert frame["input_frame"] == "center_ras_mm" and "library" in frame["input"]
    assert KEYS <= set(frame)


@pytest.mark.parametrize("old", ["RAS+ mm (NIfTI); center_lps_mm is DICOM LPS"])
def test_report_still_shows_the_string_of_older_plans(old):
    from lattice.render.report import render_report

    assert old in render_report({"world_frame": old}, {}).replace("&#x27;", "'")
