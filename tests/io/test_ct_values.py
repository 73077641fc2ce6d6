"""A CT whose values are no CT numbers (a mask, a blank image, a copy cast to 8 bits, raw
values without their rescale intercept) is planned, with a warning printed and recorded in
plan.json wherever its values are used: the pictures and the derived DICOM CT."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run

from lattice.forking import FORK_ENV
from lattice.io.ct_values import ct_value_warnings
from lattice.volume import Volume

SHAPE = (60, 60, 24)
VOXEL_MM = (1.0, 1.0, 2.5)


def _ct_in_hu(mask_of):
    """Air (-1000 HU) around a soft-tissue body (0 HU) holding a +40 HU sphere."""
    body, gtv = mask_of(26.0), mask_of(18.0)
    return np.where(gtv, 40, np.where(body, 0, -1000)).astype(np.int16)


#: The CT variants: how each is made from the CT in HU, and the words its warning must hold
#: (None: no warning).
VARIANTS = {
    "hu": (lambda hu, gtv: hu, None),
    # no air, but lung (-800 HU): CT numbers
    "lung_darkest": (lambda hu, gtv: np.maximum(hu, -800).astype(np.int16), None),
    "uint8": (
        lambda hu, gtv: np.clip((hu + 1000) / 8, 0, 255).astype(np.uint8),
        "no voxel darker than 0 (its values run from 0 to 130)",
    ),
    "no_intercept": (
        lambda hu, gtv: (hu + 1024).astype(np.int16),
        "no voxel darker than 24 (its values run from 24 to 1064)",
    ),
    "mask": (lambda hu, gtv: gtv.astype(np.uint8), "holds values from 0 to 1 only"),
    "probability": (lambda hu, gtv: gtv * np.float32(0.75), "holds values from 0 to 0.75 only"),
    "blank": (lambda hu, gtv: np.zeros_like(hu), "holds the same value (0) in every voxel"),
}


@pytest.fixture(scope="module")
def case(tmp_path_factory, make_affine, ellipsoid_mask, write_nifti):
    folder = tmp_path_factory.mktemp("ct_values")
    affine = make_affine(SHAPE, VOXEL_MM, "lps")

    centre = affine[:3, :3] @ ((np.array(SHAPE) - 1) / 2) + affine[:3, 3]

    def mask_of(radius):
        return ellipsoid_mask((SHAPE, affine), centre, radius)

    hu, gtv = _ct_in_hu(mask_of), mask_of(18.0)
    files = {"gtv": write_nifti(folder, "gtv.nii.gz", gtv, affine), "arrays": {}}
    for name, (make, _) in VARIANTS.items():
        array = make(hu, gtv)
        files["arrays"][name] = Volume(array, affine)
        files[name] = write_nifti(folder, f"ct_{name}.nii.gz", array, affine, dtype=array.dtype)
    return files


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_check_warns_exactly_for_values_that_are_no_ct_numbers(case, variant):
    got = ct_value_warnings(case["arrays"][variant], name="CT 'x.nii.gz'")
    words = VARIANTS[variant][1]
    if words is None:
        assert got == []
        return
    assert len(got) == 1 and got[0].startswith("CT 'x.nii.gz' ")
    assert words in got[0]


def _plan(case, tmp_path, capfd, variant, *extra):
    out = tmp_path / f"out_{variant}"
    code, _, err = run(
        capfd,
        [
            "plan",
            "--ct",
            case[variant],
            "--gtv",
            case["gtv"],
            "--out",
            out,
            "--spacing-mm",
            20,
            "--mesh-format",
            "none",
            *extra,
        ],
    )
    assert code == 0, err
    return json.loads((out / "plan.json").read_text())["warnings"], err


@pytest.mark.parametrize("process", ["1", "0"])
@pytest.mark.parametrize("variant", ["hu", "uint8", "mask", "blank"])
def test_a_derived_dicom_ct_from_values_that_are_no_ct_numbers_is_warned_about(
    case, tmp_path, capfd, monkeypatch, variant, process
):
    """The derived DICOM CT (written by the picture worker's process, or in this one)."""
    monkeypatch.setenv(FORK_ENV, process)
    recorded, err = _plan(case, tmp_path, capfd, variant, "--no-picture")
    words = VARIANTS[variant][1]
    ours = [w for w in recorded if w.startswith(f"CT '{case[variant]}'")]
    if words is None:
        assert ours == [] and "CT '" not in err
        return
    assert len(ours) == 1 and words in ours[0]
    assert f"lattice: warning: {ours[0]}" in err


def test_the_pictures_of_a_mask_given_as_the_ct_are_warned_about(case, tmp_path, capfd):
    recorded, err = _plan(case, tmp_path, capfd, "mask", "--no-dicom")
    assert [w for w in recorded if "looks like a mask, not a CT" in w] != []
    assert "looks like a mask, not a CT" in err


def test_the_values_are_not_checked_where_no_output_uses_them(case, tmp_path, capfd):
    """Without pictures and DICOM only the CT's grid is used: the plan is right."""
    recorded, err = _plan(case, tmp_path, capfd, "mask", "--no-picture", "--no-dicom")
    assert not any("not a CT" in w for w in recorded) and "not a CT" not in err
