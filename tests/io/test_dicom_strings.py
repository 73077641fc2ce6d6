"""Every DICOM string lattice writes obeys its VR; the derived CT's patient attributes.

TPS-facing defects of issue 11, one test each: an over-long PatientName (from a long file
name) and pydicom warnings on stderr; ``--patient-id 'AB\\123'`` written as two values; IDs
cut differently in the CT and the RTSTRUCT; the CT's file stem shown as the patient; an empty
PatientPosition; a source Study ID over 16 characters cut without a word. Written files are
checked by an independent reader (pydicom, without lattice's own rules) and, where installed,
by dciodvfy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from cli_helpers import run_redirected as run
from conftest import REPO_ROOT

from lattice.errors import ParameterError
from lattice.io.dicom_series import (
    ANONYMOUS_PATIENT_NAME,
    PATIENT_POSITIONS,
    check_dicom_string,
    derived_series,
    dicom_string_problem,
    fit_dicom_string,
    string_problems,
    write_series,
)
from lattice.io.nifti import load_image

SAMPLE = REPO_ROOT / "sample_data" / "STS_001"
FAST = [
    "--no-picture",
    "--mesh-format",
    "none",
    "--diameter-mm",
    "15",
    "--spacing-mm",
    "30",
    "--gtv-margin-mm",
    "5",
]
#: dciodvfy's one warning on a derived CT slice: Laterality is empty because it is unknown
#: (left out, dciodvfy reports a missing type 2C attribute, an error).
LATERALITY_WARNING = (
    "Warning - is only permitted to be empty when actually unknown; should be "
    "absent (not empty) if an unpaired body part, and have a value if a "
    "paired body part - attribute <Laterality>"
)


def lattice_process(*argv, cwd=None) -> subprocess.CompletedProcess:
    """``lattice`` as a user runs it: its own process, so every line that reaches stderr
    (a pydicom warning from the picture worker too) is seen."""
    return subprocess.run(
        [sys.executable, "-m", "lattice_cli", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def independent_string_problems(ds) -> list[str]:
    """VR rules of PS3.5 6.2 checked with pydicom's dictionary only (not lattice's code):
    lengths, no backslash in one value, no control characters, value multiplicity 1."""
    limits = {
        "AE": 16,
        "CS": 16,
        "SH": 16,
        "LO": 64,
        "ST": 1024,
        "LT": 10240,
        "UI": 64,
        "DA": 8,
        "TM": 14,
        "IS": 12,
        "DS": 16,
        "AS": 4,
    }
    problems = []
    for elem in ds.iterall():
        if elem.VR not in (*limits, "PN") or elem.tag == 0x30060050:  # ContourData: own test
            continue
        raw = elem.value
        values = list(raw) if isinstance(raw, pydicom.multival.MultiValue) else [raw]
        values = [str(v) for v in values if v not in (None, "")]
        if len(values) > 1 and pydicom.datadict.dictionary_VM(elem.tag) == "1":
            problems.append(f"{elem.keyword}: {len(values)} values")
        for v in values:
            if any(ord(c) < 32 for c in v) and elem.VR not in ("ST", "LT"):
                problems.append(f"{elem.keyword}: control character")
            if elem.VR == "PN":
                if any(len(g) > 64 for g in v.split("=")) or v.count("=") > 2:
                    problems.append(f"{elem.keyword}: PN too long")
            elif len(v) > limits[elem.VR]:
                problems.append(f"{elem.keyword}: {len(v)} > {limits[elem.VR]}")
    return problems


# -- the rules themselves ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, vr, fragment",
    [
        ("AB\\123", "LO", "backslash"),
        ("A" * 65, "LO", "65 characters"),
        ("A" * 17, "SH", "17 characters"),
        ("line\nbreak", "LO", "control character"),
        ("tab\there", "PN", "control character"),
        ("x\x1b", "SH", "control character"),
        ("a=b=c=d", "PN", "3"),
        ("a^b^c^d^e^f", "PN", "components"),
        ("A" * 65, "PN", "65 characters"),
        ("hfs", "CS", "upper-case"),
        ("1.2.03", "UI", "form"),
    ],
)
def test_string_rules_find_each_problem(value, vr, fragment):
    problem = dicom_string_problem(value, vr)
    assert problem is not None and fragment in problem, problem


@pytest.mark.parametrize(
    "value, vr",
    [
        ("A" * 64, "LO"),
        ("A" * 64 + "=" + "B" * 64, "PN"),
        ("DOE^JOHN^^DR^III", "PN"),
        ("back\\slash and\nnew line", "ST"),
        ("HFS", "CS"),
        ("Müller^Jürgen", "PN"),
        ("", "SH"),
        ("1.2.840.10008.5.1.4.1.1.2", "UI"),
    ],
)
def test_valid_values_pass(value, vr):
    assert dicom_string_problem(value, vr) is None


def test_one_truncation_for_derived_values():
    assert fit_dicom_string("A" * 70, "LO") == "A" * 64
    assert fit_dicom_string("IBSI_1_STS_001_CT", "SH") == "IBSI_1_STS_001_C"
    assert fit_dicom_string("a\\b\nc", "LO") == "a/b c"
    assert fit_dicom_string("a\\b\nc", "ST") == "a\\b\nc"  # text VRs keep both
    assert fit_dicom_string("head-first", "CS") == "HEAD_FIRST"
    long_name = "^".join(["X" * 30] * 7)
    fitted = fit_dicom_string(long_name, "PN")
    assert dicom_string_problem(fitted, "PN") is None and len(fitted) == 64
    for value, vr in (("A" * 70, "LO"), ("q\x00\\" * 30, "SH"), ("é" * 2000, "ST")):
        assert dicom_string_problem(fit_dicom_string(value, vr), vr) is None


def test_user_values_refused_with_one_parameter_error():
    with pytest.raises(ParameterError, match="backslash"):
        check_dicom_string("AB\\123", "LO", what="patient_id")
    with pytest.raises(ParameterError, match="leading or trailing spaces"):
        check_dicom_string(" AB", "LO", what="patient_id")
    with pytest.raises(ParameterError, match="not a DICOM patient position.*HFS"):
        derived_series(load_image(SAMPLE / "gtv.nii.gz"), patient_id="X", patient_position="UP")


# -- the derived CT through the command line -----------------------------------------------


@pytest.fixture(scope="module")
def long_named_plan(tmp_path_factory):
    """The sample CT under a 90-character file name, planned by the installed command."""
    folder = tmp_path_factory.mktemp("long")
    ct = folder / ("sarcoma_left_thigh_" + "x" * 71 + ".nii.gz")
    shutil.copy(SAMPLE / "ct.nii.gz", ct)
    result = lattice_process(
        "plan", "--ct", ct, "--gtv", SAMPLE / "gtv.nii.gz", "--out", folder / "plan", *FAST[1:]
    )  # with the picture worker
    return {"out": folder / "plan", "result": result}


def test_long_file_name_gives_anonymous_patient_and_no_pydicom_warning(long_named_plan):
    result = long_named_plan["result"]
    assert result.returncode == 0, result.stderr
    # No pydicom warning (from this process or the picture worker, which writes the CT):
    # stderr holds lattice's own warning lines at most.
    assert all(line.startswith("lattice: warning: ") for line in result.stderr.splitlines()), (
        result.stderr
    )
    assert "UserWarning" not in result.stderr and "pydicom" not in result.stderr
    out = long_named_plan["out"]
    ct = pydicom.dcmread(sorted((out / "ct_dicom").iterdir())[0], stop_before_pixels=True)
    rs = pydicom.dcmread(out / "rtstruct.dcm")
    assert str(ct.PatientName) == str(rs.PatientName) == ANONYMOUS_PATIENT_NAME
    assert "x" * 10 not in str(ct.PatientName)
    assert ct.PatientPosition == "HFS"
    doc = json.loads((out / "plan.json").read_text())
    assert doc["inputs"]["derived_ct_dicom"]["patient_position"] == "HFS"
    for ds in (ct, rs):
        assert independent_string_problems(ds) == []
        assert string_problems(ds) == []


def test_patient_id_with_backslash_is_refused(tmp_path):
    code, out, err = run(
        [
            "plan",
            "--ct",
            SAMPLE / "ct.nii.gz",
            "--gtv",
            SAMPLE / "gtv.nii.gz",
            "--out",
            tmp_path / "o",
            "--patient-id",
            "AB\\123",
            *FAST,
        ]
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--patient-id 'AB\\123'" in err and "backslash" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("--patient-id", "P" * 65, "65 characters"),
        ("--patient-name", "N" * 65, "65 characters"),
        ("--patient-name", "DOE^J\nX", "control character"),
        ("--patient-name", "A=B=C=D", "component groups"),
    ],
)
def test_bad_patient_values_are_refused(tmp_path, option, value, fragment):
    code, _, err = run(
        [
            "plan",
            "--ct",
            SAMPLE / "ct.nii.gz",
            "--gtv",
            SAMPLE / "gtv.nii.gz",
            "--out",
            tmp_path / "o",
            option,
            value,
            *FAST,
        ]
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
    assert err.startswith(f"lattice: error: {option} ")
    assert not (tmp_path / "o").exists()


def test_longest_ids_are_identical_in_ct_and_rtstruct(tmp_path):
    """A 64-character ID and a full person name are written, byte for byte, the same in the
    CT slices and the RTSTRUCT (a TPS matches them)."""
    pid, name = "I" * 64, "F" * 30 + "^" + "G" * 33 + "=" + "H" * 64
    out = tmp_path / "o"
    code, _, err = run(
        [
            "plan",
            "--ct",
            SAMPLE / "ct.nii.gz",
            "--gtv",
            SAMPLE / "gtv.nii.gz",
            "--out",
            out,
            "--patient-id",
            pid,
            "--patient-name",
            name,
            *FAST,
        ]
    )
    assert code == 0, err
    rs = pydicom.dcmread(out / "rtstruct.dcm")
    for path in sorted((out / "ct_dicom").iterdir())[::20]:
        ct = pydicom.dcmread(path, stop_before_pixels=True)
        for key in ("PatientID", "PatientName", "StudyID", "StudyInstanceUID"):
            assert ct[key].value == rs[key].value, key
    assert rs.PatientID == pid and str(rs.PatientName) == name


@pytest.mark.parametrize("given, written", [(None, "HFS"), ("FFS", "FFS"), ("hfdl", "HFDL")])
def test_patient_position(tmp_path, given, written):
    out = tmp_path / "o"
    extra = [] if given is None else ["--patient-position", given]
    code, _, err = run(
        [
            "plan",
            "--ct",
            SAMPLE / "ct.nii.gz",
            "--gtv",
            SAMPLE / "gtv.nii.gz",
            "--out",
            out,
            *extra,
            *FAST,
        ]
    )
    assert code == 0, err
    files = sorted((out / "ct_dicom").iterdir())
    assert {pydicom.dcmread(p, stop_before_pixels=True).PatientPosition for p in files[::10]} == {
        written
    }
    assert (
        json.loads((out / "plan.json").read_text())["inputs"]["derived_ct_dicom"][
            "patient_position"
        ]
        == written
    )


def test_bad_patient_position_lists_the_defined_terms(tmp_path):
    code, _, err = run(
        [
            "plan",
            "--ct",
            SAMPLE / "ct.nii.gz",
            "--gtv",
            SAMPLE / "gtv.nii.gz",
            "--out",
            tmp_path / "o",
            "--patient-position",
            "supine",
        ]
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert all(term in err for term in PATIENT_POSITIONS)
    assert not (tmp_path / "o").exists()


def test_patient_options_need_the_derived_ct(tmp_path):
    code, _, err = run(
        [
            "plan",
            "--ct",
            SAMPLE / "ct.nii.gz",
            "--gtv",
            SAMPLE / "gtv.nii.gz",
            "--reference-ct-dicom",
            tmp_path / "nowhere",
            "--patient-position",
            "FFS",
            "--out",
            tmp_path / "o",
        ]
    )
    assert code == 2 and "--patient-position" in err and "derived" in err, err


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy (Debian package dicom3tools) is not installed",
)
def test_dciodvfy_on_the_derived_ct_and_its_rtstruct(long_named_plan):
    """Exactly one warning on the derived CT (Laterality, empty because unknown), none on
    the RTSTRUCT, and no error on either."""
    out = long_named_plan["out"]
    files = {"ct": sorted((out / "ct_dicom").iterdir())[0], "rs": out / "rtstruct.dcm"}
    found = {}
    for key, path in files.items():
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        found[key] = {
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.startswith(("Error", "Warning"))
        }
    assert found == {"ct": {LATERALITY_WARNING}, "rs": set()}, found


# -- values copied from a reference CT -----------------------------------------------------


@pytest.fixture(scope="module")
def reference_plan(tmp_path_factory):
    """A DICOM series of the sample CT with a 20-character Study ID and a 70-character
    PatientID (as some exports hold), planned with --reference-ct-dicom."""
    folder = tmp_path_factory.mktemp("ref")
    ct = load_image(SAMPLE / "ct.nii.gz")
    series = derived_series(ct, patient_id="REF1", patient_name="REF^CASE")
    write_series(series, ct, folder / "series")
    study_id, patient_id = "IBSI_1_STS_001_CT_XX", "P" * 70
    with warnings.catch_warnings():  # pydicom rightly warns about these values
        warnings.simplefilter("ignore")
        for path in (folder / "series").iterdir():
            ds = pydicom.dcmread(path)
            ds.StudyID, ds.PatientID = study_id, patient_id
            ds.save_as(path)
    result = lattice_process(
        "plan",
        "--ct",
        SAMPLE / "ct.nii.gz",
        "--gtv",
        SAMPLE / "gtv.nii.gz",
        "--reference-ct-dicom",
        folder / "series",
        "--out",
        folder / "plan",
        *FAST,
    )
    return {
        "out": folder / "plan",
        "result": result,
        "study_id": study_id,
        "patient_id": patient_id,
    }


def test_long_source_study_id_is_cut_with_a_warning(reference_plan):
    result = reference_plan["result"]
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("lattice: warning: ") for line in lines), result.stderr
    assert "UserWarning" not in result.stderr and "pydicom" not in result.stderr
    out = reference_plan["out"]
    doc = json.loads((out / "plan.json").read_text())
    rs = pydicom.dcmread(out / "rtstruct.dcm")
    assert rs.StudyID == reference_plan["study_id"][:16]
    assert rs.PatientID == reference_plan["patient_id"][:64]
    for key, value in (
        ("StudyID", reference_plan["study_id"]),
        ("PatientID", reference_plan["patient_id"]),
    ):
        (warning,) = [w for w in doc["warnings"] if f"the CT's {key} '{value}'" in w]
        assert f"lattice: warning: {warning}" in lines
        assert "characters long" in warning
    assert independent_string_problems(rs) == []


def test_every_written_string_is_valid_also_in_contours(long_named_plan):
    """The production check skips ContourData (written by its own formatter); here every
    value of it is at most 16 characters too, and the whole file passes the walker."""
    rs = pydicom.dcmread(long_named_plan["out"] / "rtstruct.dcm")
    lengths = [
        len(getattr(v, "original_string", str(v)))
        for item in rs.ROIContourSequence
        for c in item.ContourSequence
        for v in c.ContourData
    ]
    assert max(lengths) <= 16
    assert string_problems(rs) == []
    assert np.all([len(str(r.ROIName)) <= 16 for r in rs.StructureSetROISequence])


def test_real_study_id_over_16_characters_warns(shared_data, tmp_path):
    """STS_001's own CT holds the Study ID 'IBSI_1_STS_001_CT' (17 characters)."""
    case = shared_data / "STS_001" / "dicom"
    out = tmp_path / "plan"
    result = lattice_process(
        "plan",
        "--ct-dicom",
        case / "image",
        "--rtstruct",
        case / "mask" / "RS.dcm",
        "--gtv-name",
        "GTV_Mass_CT",
        "--out",
        out,
        *FAST,
    )
    assert result.returncode == 0, result.stderr
    warning = (
        "the CT's StudyID 'IBSI_1_STS_001_CT' breaks DICOM's rules: it is 17 characters "
        "long; VR SH (Short String) allows at most 16; rtstruct.dcm holds "
        "'IBSI_1_STS_001_C' instead"
    )
    assert warning in json.loads((out / "plan.json").read_text())["warnings"]
    assert f"lattice: warning: {warning}" in result.stderr.splitlines()
    assert "UserWarning" not in result.stderr
    assert pydicom.dcmread(out / "rtstruct.dcm").StudyID == "IBSI_1_STS_001_C"


def test_written_objects_pass_the_walker(tmp_path, make_volume):
    """derived_series and write_series refuse nothing valid; the walker finds nothing."""
    grid = make_volume((8, 7, 5), (1.0, 1.0, 2.0), "oblique")
    series = derived_series(
        grid, patient_id="X" * 64, patient_name="É" * 64, description="d\\e\n" * 40
    )
    assert len(series.header.SeriesDescription) == 64
    write_series(series, grid, tmp_path)
    for path in Path(tmp_path).iterdir():
        ds = pydicom.dcmread(path)
        assert string_problems(ds) == [] and independent_string_problems(ds) == []
