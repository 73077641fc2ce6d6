"""Malformed RTSTRUCTs (issue 12, class 4): never a contour dropped without a word.

A structure set of a small synthetic case is written by ``lattice plan`` itself (CT series in
``ct_dicom/``, ``rtstruct.dcm`` with a GTV ROI and an added square OAR), then edited with
pydicom into each malformed variant. Every variant goes through ``lattice plan --ct-dicom``:

* a damaged contour (coordinates that cannot be trusted: length not a multiple of 3, NaN or
  infinite values, a wrong NumberOfContourPoints, points off the contour's plane, a POINT or
  an open line) and a file whose ROIs cannot be told apart (no StructureSetROISequence, an
  ROI number or name used twice, an ROIContour item without ReferencedROINumber that may be
  the ROI's) are refused: exit 3, one line naming the ROI, the contour, its slice (z) and the
  count; an ROI left without any usable contour is refused with exit 4 and says why;
* a contour without area (fewer than 3 points) or a second copy of a contour on its slice is
  left out: exit 0, one warning naming ROI, slice and count, the same warning in plan.json
  ``warnings``, and ``lattice verify`` passes. A duplicated contour no longer cancels its
  slice (even-odd rule): the GTV is the same as without the copy.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from cli_helpers import run
from pydicom.sequence import Sequence

from lattice.io.dicom import load_dicom_case
from lattice.io.rtstruct_read import read_rtstruct
from lattice_cli.main import main

SHAPE = (40, 40, 20)
VOXEL_MM = (1.5, 1.5, 3.0)
RULES = ["--diameter-mm", "15", "--spacing-mm", "30", "--gtv-margin-mm", "5"]
FAST = ["--mesh-format", "none", "--no-picture"]
OAR_MM = 4.0  # the square OAR's clearance


@pytest.fixture(scope="module")
def case(tmp_path_factory, make_affine, ellipsoid_mask, write_nifti):
    """ct_dicom/ and rtstruct.dcm (ROIs GTV and OAR) written by `lattice plan`."""
    folder = tmp_path_factory.mktemp("malformed")
    affine = make_affine(SHAPE, VOXEL_MM, "lps")
    centre = affine[:3, :3] @ ((np.array(SHAPE) - 1) / 2) + affine[:3, 3]
    gtv = ellipsoid_mask((SHAPE, affine), centre, 20.0)
    ct = write_nifti(folder, "ct.nii.gz", np.where(gtv, 40, -1000).astype(np.int16), affine)
    gtv_path = write_nifti(folder, "gtv.nii.gz", gtv, affine)
    base = folder / "base"
    assert (
        main(
            [str(a) for a in ["plan", "--ct", ct, "--gtv", gtv_path, "--out", base, *RULES, *FAST]]
        )
        == 0
    )
    ds = pydicom.dcmread(base / "rtstruct.dcm")
    _add_square_oar(ds)
    rtstruct = folder / "rtstruct.dcm"
    ds.save_as(rtstruct)
    reference = load_dicom_case(base / "ct_dicom", rtstruct, gtv_name="GTV", oar_names=["OAR"])
    assert reference.warnings == ()
    return {
        "folder": folder,
        "ct_dicom": base / "ct_dicom",
        "rtstruct": rtstruct,
        "gtv": reference.gtv.array,
        "oar": reference.oars["OAR"].array,
    }


def _roi_contour(ds, name):
    number = next(int(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName == name)
    return next(i for i in ds.ROIContourSequence if int(i.ReferencedROINumber) == number)


def _add_square_oar(ds):
    """An ROI 'OAR': a 6 mm square beside the GTV on its middle three slices."""
    gtv = _roi_contour(ds, "GTV")
    number = max(int(r.ROINumber) for r in ds.StructureSetROISequence) + 1
    roi = copy.deepcopy(ds.StructureSetROISequence[0])
    roi.ROINumber, roi.ROIName = number, "OAR"
    ds.StructureSetROISequence.append(roi)
    obs = copy.deepcopy(ds.RTROIObservationsSequence[0])
    obs.ObservationNumber, obs.ReferencedROINumber = number, number
    obs.RTROIInterpretedType = "ORGAN"
    ds.RTROIObservationsSequence.append(obs)
    item = copy.deepcopy(gtv)
    item.ReferencedROINumber = number
    middle = len(gtv.ContourSequence) // 2
    contours = [copy.deepcopy(gtv.ContourSequence[k]) for k in (middle - 1, middle, middle + 1)]
    ring = np.array(_points(gtv.ContourSequence[middle])).reshape(-1, 3)
    x0, y0 = ring[:, :2].mean(axis=0) + 22.0  # beyond the 20 mm GTV, inside the 60 mm slice
    for c in contours:
        z = float(c.ContourData[2])
        square = [(x0, y0), (x0 + 6, y0), (x0 + 6, y0 + 6), (x0, y0 + 6)]
        c.ContourData = [v for x, y in square for v in (x, y, z)]
        c.NumberOfContourPoints = 4
    item.ContourSequence = Sequence(contours)
    ds.ROIContourSequence.append(item)


def _middle(ds, name="GTV"):
    contours = _roi_contour(ds, name).ContourSequence
    return contours[len(contours) // 2]


def _points(c):
    return [float(v) for v in c.ContourData]


def _set(c, data, *, count=True):
    c.ContourData = data
    if count:
        c.NumberOfContourPoints = len(data) // 3


# --- the variants: each edits the dataset in place ---------------------------------------


def _short(n, name="GTV"):
    """The ROI's second contour cut to ``n`` points (near the GTV's end: a vertex still fits)."""

    def edit(ds):
        c = _roi_contour(ds, name).ContourSequence[1]
        _set(c, _points(c)[: 3 * n])

    return edit


def _duplicate(reverse=False, roll=0):
    def edit(ds):
        seq = _roi_contour(ds, "GTV").ContourSequence
        c = copy.deepcopy(_middle(ds))
        pts = np.array(_points(c)).reshape(-1, 3)
        pts = np.roll(pts[::-1] if reverse else pts, roll, axis=0)
        _set(c, [float(v) for v in pts.ravel()])
        seq.append(c)

    return edit


def _not_multiple_of_3(ds):
    _set(_middle(ds), _points(_middle(ds))[:-1], count=False)


def _value(index, value, name="GTV"):
    def edit(ds):
        data = _points(_middle(ds, name))
        data[index] = value
        _middle(ds, name).ContourData = data

    return edit


def _outward(mm):
    """The middle contour's first point moved ``mm`` further from the contour's centre in x
    (its neighbours stay: one spike)."""

    def edit(ds):
        data = _points(_middle(ds))
        mean_x = float(np.mean(data[0::3]))
        data[0] += mm if data[0] >= mean_x else -mm
        _middle(ds).ContourData = data

    return edit


def _overlapping(ds):
    """A copy of the second contour (near the GTV's end, so a vertex still fits) shifted
    3 mm (two pixels) along x, added on its slice: the staircase outlines meet where they
    cannot cross properly."""
    seq = _roi_contour(ds, "GTV").ContourSequence
    c = copy.deepcopy(seq[1])
    pts = np.array(_points(c)).reshape(-1, 3) + [3.0, 0.0, 0.0]
    _set(c, [float(v) for v in pts.ravel()])
    seq.append(c)


def _bow_tie(ds):
    """The second contour's second point swapped with its middle one: it crosses itself."""
    c = _roi_contour(ds, "GTV").ContourSequence[1]
    pts = np.array(_points(c)).reshape(-1, 3)
    n = len(pts)
    pts[[1, n // 2]] = pts[[n // 2, 1]]
    _set(c, [float(v) for v in pts.ravel()])


def _collinear(ds):
    """The second contour (near the GTV's end) replaced by three points on one line."""
    c = _roi_contour(ds, "GTV").ContourSequence[1]
    x, y, z = _points(c)[:3]
    _set(c, [x, y, z, x + 1.0, y + 1.0, z, x + 2.0, y + 2.0, z])


def _off_plane(ds):
    data = _points(_middle(ds))
    data[5] += 2.0  # the second point's z: 2 mm off the contour's plane
    _middle(ds).ContourData = data


def _geometric_type(kind):
    def edit(ds):
        _middle(ds).ContourGeometricType = kind

    return edit


def _count(delta):
    def edit(ds):
        c = _middle(ds)
        c.NumberOfContourPoints = int(c.NumberOfContourPoints) + delta

    return edit


def _no_referenced_number(ds):
    del _roi_contour(ds, "GTV").ReferencedROINumber


def _unknown_referenced_number(ds):
    _roi_contour(ds, "GTV").ReferencedROINumber = 999


def _empty_sequence(ds):
    _roi_contour(ds, "GTV").ContourSequence = Sequence([])


def _no_sequence(ds):
    del _roi_contour(ds, "GTV").ContourSequence


def _all_short(ds):
    for c in _roi_contour(ds, "GTV").ContourSequence:
        _set(c, _points(c)[:6])


def _duplicate_number(ds):
    gtv = next(r for r in ds.StructureSetROISequence if r.ROIName == "GTV")
    ds.StructureSetROISequence[0].ROINumber = gtv.ROINumber


def _duplicate_name(ds):
    ds.StructureSetROISequence[0].ROIName = "GTV"


def _no_roi_sequence(ds):
    del ds.StructureSetROISequence


def _no_roi_number(ds):
    del ds.StructureSetROISequence[0].ROINumber


def _orphan_elsewhere(ds):
    """An ROIContour item without ReferencedROINumber that is not the GTV's or the OAR's."""
    other = next(
        i
        for i in ds.ROIContourSequence
        if int(i.ReferencedROINumber) not in _numbers(ds, "GTV", "OAR")
    )
    del other.ReferencedROINumber


def _numbers(ds, *names):
    return {int(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName in names}


# id -> (edit, exit code, phrases of the one error line)
REFUSED = {
    "ContourData length not a multiple of 3": (
        _not_multiple_of_3,
        3,
        [
            "ROI 'GTV'",
            "1 of ",
            "not a multiple of 3",
            "contour ",
            "at z = ",
            "export the structure set again",
        ],
    ),
    "NaN in ContourData": (_value(4, "NaN"), 3, ["ROI 'GTV'", "NaN", "at z = "]),
    "infinite ContourData": (_value(0, "-inf"), 3, ["ROI 'GTV'", "infinite", "at z = "]),
    "contour not planar": (_off_plane, 3, ["ROI 'GTV'", "not planar", "at z = "]),
    "POINT contour": (_geometric_type("POINT"), 3, ["ROI 'GTV'", "POINT", "at z = "]),
    "OPEN_PLANAR contour": (
        _geometric_type("OPEN_PLANAR"),
        3,
        ["ROI 'GTV'", "open line", "at z = "],
    ),
    "NumberOfContourPoints too large": (
        _count(+1),
        3,
        ["ROI 'GTV'", "NumberOfContourPoints", "at z = "],
    ),
    "NumberOfContourPoints too small": (_count(-5), 3, ["ROI 'GTV'", "NumberOfContourPoints"]),
    # The image spans 60 mm, the GTV 40: a point moved 40 mm out lies ~30 mm off the image.
    "contour point off the image": (
        _outward(40.0),
        3,
        ["ROI 'GTV'", "rtstruct_edited.dcm", "beyond the edge of the CT's image", "(LPS)"],
    ),
    "contour point 1 km off": (
        _value(0, 1e6),
        3,
        ["ROI 'GTV'", "(1e+06, ", "beyond the edge of the CT's image", "export the structure"],
    ),
    "damaged OAR contour": (_value(2, "nan", name="OAR"), 3, ["ROI 'OAR'", "NaN", "1 of 3"]),
    "ROIContour without ReferencedROINumber": (
        _no_referenced_number,
        3,
        ["ROI 'GTV'", "has no ReferencedROINumber", "may be this"],
    ),
    "ROIContour of an unknown ROI number": (
        _unknown_referenced_number,
        3,
        ["ROI 'GTV'", "ROI number 999", "may be this"],
    ),
    "empty ContourSequence": (_empty_sequence, 4, ["ROI 'GTV'", "ContourSequence is empty"]),
    "no ContourSequence": (_no_sequence, 4, ["ROI 'GTV'", "ContourSequence is empty"]),
    "every contour under 3 points": (
        _all_short,
        4,
        [
            "ROI 'GTV'",
            "all ",
            "contours were left out",
            "fewer than 3 points",
            "correct the ROI in the TPS",
        ],
    ),
    "ROI number used twice": (
        _duplicate_number,
        3,
        ["ROI 'GTV'", "is used by both", "cannot be told apart"],
    ),
    "ROI name used twice": (_duplicate_name, 3, ["ROI 'GTV'", "name is used by ROI numbers"]),
    "no StructureSetROISequence": (
        _no_roi_sequence,
        3,
        ["no StructureSetROISequence", "export the structure set again"],
    ),
    "StructureSetROI without ROINumber": (_no_roi_number, 3, ["has no valid ROINumber"]),
}

# id -> (edit, phrases of the one warning, GTV unchanged by the edit)
WARNED = {
    "contour of 2 points": (
        _short(2),
        ["ROI 'GTV'", "1 of ", "fewer than 3 points", "at z = "],
        False,
    ),
    "contour of 1 point": (_short(1), ["ROI 'GTV'", "fewer than 3 points"], False),
    "contour without points": (
        _short(0),
        ["ROI 'GTV'", "fewer than 3 points", "at z = ? mm"],
        False,
    ),
    "contour without area": (
        _collinear,
        ["ROI 'GTV'", "1 of ", "has no area (its points lie on one line)", "contour 2 at z = "],
        False,
    ),
    "overlapping contours": (
        _overlapping,
        ["ROI 'GTV'", "contours cross on 1 slice (at z = ", "even-odd", "check the ROI in the TPS"],
        False,
    ),
    "contour crossing itself": (
        _bow_tie,
        ["ROI 'GTV'", "contours cross on 1 slice", "crosses itself or another"],
        True,  # this small contour's lobes still hold the same pixel centres
    ),
    "contour duplicated on its slice": (
        _duplicate(),
        ["ROI 'GTV'", "repeats another contour", "one copy is kept", "at z = "],
        True,
    ),
    "duplicate reversed and rolled": (
        _duplicate(reverse=True, roll=5),
        ["ROI 'GTV'", "repeats another contour"],
        True,
    ),
    "OAR contour of 2 points": (
        _short(2, name="OAR"),
        ["ROI 'OAR'", "1 of 3 contours", "fewer than 3 points"],
        True,
    ),
    "orphan ROIContour of another ROI": (
        _orphan_elsewhere,
        ["ROIContourSequence item", "no ReferencedROINumber", "belong to no ROI"],
        True,
    ),
}


def _variant(case, tmp_path, edit) -> Path:
    ds = pydicom.dcmread(case["rtstruct"])
    with warnings.catch_warnings():  # pydicom warns about the invalid DS values written
        warnings.simplefilter("ignore", UserWarning)
        edit(ds)
        path = tmp_path / "rtstruct_edited.dcm"
        ds.save_as(path)
    return path


def _plan(case, rtstruct, out, oar=True):
    return [
        "plan",
        "--ct-dicom",
        case["ct_dicom"],
        "--rtstruct",
        rtstruct,
        "--gtv-name",
        "GTV",
        *(["--oar-name", f"OAR:{OAR_MM:g}"] if oar else []),
        "--out",
        out,
        *RULES,
        *FAST,
    ]


@pytest.mark.parametrize("variant", list(REFUSED))
def test_malformed_rtstruct_is_refused_in_one_line(case, tmp_path, capfd, variant):
    edit, expected, phrases = REFUSED[variant]
    rtstruct = _variant(case, tmp_path, edit)
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run(capfd, _plan(case, rtstruct, out))
    assert code == expected, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lattice: error: "), err
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    assert "Traceback" not in err and "Warning" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("variant", list(WARNED))
def test_contour_left_out_warns_and_is_in_plan_json(case, tmp_path, capfd, variant):
    edit, phrases, gtv_unchanged = WARNED[variant]
    rtstruct = _variant(case, tmp_path, edit)
    out = tmp_path / "out"
    code, _, err = run(capfd, _plan(case, rtstruct, out))
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lattice: warning: "), err
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    doc = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    assert lines[0].removeprefix("lattice: warning: ") in doc["warnings"]
    loaded = load_dicom_case(
        case["ct_dicom"], rtstruct, gtv_name="GTV", oar_names=["OAR"], pixels=False
    )
    assert np.array_equal(loaded.gtv.array, case["gtv"]) == gtv_unchanged
    code, stdout, err = run(capfd, ["verify", out])
    assert code == 0, stdout + err
    assert lines[0].removeprefix("lattice: warning: ") in err  # verify says it again


def test_duplicate_contour_no_longer_cancels_its_slice(case, tmp_path):
    """The even-odd rule would make the pair a hole: the slice would vanish from the GTV."""
    rtstruct = _variant(case, tmp_path, _duplicate())
    loaded = load_dicom_case(case["ct_dicom"], rtstruct, gtv_name="GTV", pixels=False)
    assert np.array_equal(loaded.gtv.array, case["gtv"])
    assert len(loaded.gtv.rings_ijk) == len(read_rtstruct(case["rtstruct"]).get("GTV").contours)


def test_rois_lists_a_file_with_damaged_contours(case, tmp_path, capfd):
    """`lattice rois` still lists a file whose GTV is damaged (it is refused only when used)."""
    rtstruct = _variant(case, tmp_path, _not_multiple_of_3)
    code, out, err = run(capfd, ["rois", rtstruct])
    assert code == 0 and err == "" and "GTV" in out
