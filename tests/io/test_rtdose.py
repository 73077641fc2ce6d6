"""RT Dose reading and writing: geometry of every orientation and offset convention, units,
refusals with a message that says what to do, and pydicom's own third-party RT Dose."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dose_phantoms import coarse_shifted_affine_ras, swapped_flipped_affine_ras
from pydicom.data import get_testdata_file
from scipy.spatial.transform import Rotation

from lattice.io.rtdose import (
    DoseError,
    DoseVolume,
    check_frame_of_reference,
    read_dose,
    read_rtdose,
    read_rtdose_info,
)
from lattice.io.rtdose_write import write_rtdose

FRAME = "1.2.826.0.1.3680043.8.498.77"


def _oblique_affine_ras() -> np.ndarray:
    """Rotated 25 deg about an oblique axis, 2 x 2.5 x 3 mm: not expressible as absolute."""
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_rotvec(np.deg2rad(25) * np.array([1, 2, 2]) / 3).as_matrix()
    affine[:3, :3] *= np.array([2.0, 2.5, 3.0])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    return affine


def _dose(shape=(6, 5, 4)) -> np.ndarray:
    return np.random.default_rng(3).uniform(0, 12, shape)


@pytest.mark.parametrize(
    ("make_affine", "offsets"),
    [
        (coarse_shifted_affine_ras, "relative"),
        (coarse_shifted_affine_ras, "absolute"),
        (swapped_flipped_affine_ras, "relative"),
        (swapped_flipped_affine_ras, "absolute"),
        (_oblique_affine_ras, "relative"),
    ],
)
def test_written_dose_reads_back_with_its_grid(tmp_path, make_affine, offsets):
    affine, dose = make_affine(), _dose()
    path = write_rtdose(
        tmp_path / "d.dcm", dose, affine, frame_of_reference_uid=FRAME, offsets=offsets
    )
    back = read_rtdose(path)
    np.testing.assert_allclose(back.affine_ras, affine, atol=1e-9)
    np.testing.assert_allclose(back.dose_gy, dose, atol=12 / 65535)
    assert back.info.offsets == offsets and back.info.frame_of_reference_uid == FRAME
    assert back.info.shape == dose.shape and back.info.units == "GY"
    offsets_mm = np.array(pydicom.dcmread(path).GridFrameOffsetVector, dtype=float)
    assert (offsets_mm[0] == 0) == (offsets == "relative")


def test_swapped_grid_puts_rows_along_y_and_frames_downwards(tmp_path):
    path = write_rtdose(
        tmp_path / "d.dcm",
        _dose(),
        swapped_flipped_affine_ras(),
        frame_of_reference_uid=FRAME,
        offsets="absolute",
    )
    ds = pydicom.dcmread(path)
    assert [float(v) for v in ds.ImageOrientationPatient] == [0, 1, 0, 1, 0, 0]
    offsets = np.array(ds.GridFrameOffsetVector, dtype=float)
    assert offsets[0] == pytest.approx(float(ds.ImagePositionPatient[2]))
    assert np.all(np.diff(offsets) == pytest.approx(-2.5))


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
@pytest.mark.parametrize("offsets", ["relative", "absolute"])
def test_dciodvfy_finds_no_error_or_warning(tmp_path, offsets):
    path = write_rtdose(
        tmp_path / "d.dcm",
        _dose(),
        coarse_shifted_affine_ras(),
        frame_of_reference_uid=FRAME,
        offsets=offsets,
    )
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    text = run.stdout + run.stderr
    assert run.returncode == 0 and "Error" not in text and "Warning" not in text, text


def test_pydicom_third_party_rtdose_grid_is_read_as_its_header_says():
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    # By hand from the header: 10 x 10 pixels of 10 mm, 15 frames 5 mm apart (relative
    # offsets 0..70), axial, IPP (189.43125, 199.43125, -761.87) LPS, RELATIVE, scaling 1e-6.
    assert (ds.Rows, ds.Columns, ds.NumberOfFrames) == (10, 10, 15)
    info = read_rtdose_info(path)
    assert info.shape == (10, 10, 15) and info.offsets == "relative"
    np.testing.assert_allclose(info.voxel_size_mm, [10, 10, 5])
    expected = np.array(
        [[-10, 0, 0, -189.43125], [0, -10, 0, -199.43125], [0, 0, 5, -761.87], [0, 0, 0, 1]]
    )
    np.testing.assert_allclose(info.affine_ras, expected)
    assert (info.units, info.dose_type, info.summation_type) == ("RELATIVE", "PHYSICAL", "BEAM")
    assert info.frame_of_reference_uid == str(ds.FrameOfReferenceUID)
    assert info.scaling == pytest.approx(1e-6)
    with open(path, "rb") as handle:
        assert info.sha256 == hashlib.sha256(handle.read()).hexdigest()
    dose = read_rtdose(path, relative_to_gy=2.0)
    np.testing.assert_allclose(dose.dose_gy, np.transpose(ds.pixel_array, (2, 1, 0)) * 2e-6)
    last = info.affine_ras @ [9, 9, 14, 1]
    assert last[:3] == pytest.approx([-(189.43125 + 90), -(199.43125 + 90), -761.87 + 70])


def test_a_relative_dose_needs_its_reference_in_gy():
    with pytest.raises(DoseError, match="RELATIVE dose; pass the dose in Gy"):
        read_rtdose(get_testdata_file("rtdose.dcm"))


def test_pydicoms_truncated_one_frame_files_are_refused_clearly():
    with pytest.raises(DoseError, match="1 frames but 15 GridFrameOffsetVector values"):
        read_rtdose(get_testdata_file("rtdose_1frame.dcm"), relative_to_gy=1.0)


def _edited(tmp_path, **attributes):
    path = write_rtdose(
        tmp_path / "d.dcm", _dose(), coarse_shifted_affine_ras(), frame_of_reference_uid=FRAME
    )
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def test_cgy_is_converted_to_gy(tmp_path):
    gy = read_rtdose(_edited(tmp_path)).dose_gy
    cgy = read_rtdose(_edited(tmp_path, DoseUnits="CGY"))
    np.testing.assert_allclose(cgy.dose_gy, gy / 100)
    assert cgy.info.units == "CGY"


def test_non_uniform_frame_offsets_are_refused(tmp_path):
    path = _edited(tmp_path, GridFrameOffsetVector=[0, 3, 6, 10])
    with pytest.raises(DoseError, match="frame spacing is not uniform .*equally spaced"):
        read_rtdose(path)


def test_first_offset_neither_zero_nor_ipp_z_is_refused(tmp_path):
    with pytest.raises(DoseError, match="neither 0 .relative. nor the ImagePositionPatient z"):
        read_rtdose(_edited(tmp_path, GridFrameOffsetVector=[5, 8, 11, 14]))


def test_absolute_offsets_on_oblique_planes_are_refused(tmp_path):
    with pytest.raises(DoseError, match="absolute offsets need axial planes"):
        write_rtdose(
            tmp_path / "d.dcm",
            _dose(),
            _oblique_affine_ras(),
            frame_of_reference_uid=FRAME,
            offsets="absolute",
        )


def test_unknown_units_and_other_modalities_are_refused(tmp_path):
    with pytest.raises(DoseError, match="DoseUnits 'MU'; export the dose in GY"):
        read_rtdose(_edited(tmp_path, DoseUnits="MU"))
    with pytest.raises(DoseError, match="not an RT Dose"):
        read_rtdose(get_testdata_file("CT_small.dcm"))
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    with pytest.raises(DoseError, match="cannot read .* as DICOM"):
        read_rtdose(tmp_path / "junk.dcm")


def test_foreign_frame_of_reference_gives_a_clear_error(tmp_path):
    info = read_rtdose_info(_edited(tmp_path))
    check_frame_of_reference(info, FRAME)
    with pytest.raises(
        DoseError,
        match=r"frame of reference .*export the dose computed on "
        r"this plan's CT",
    ):
        check_frame_of_reference(info, "1.2.3.999")


def test_dose_nifti_is_read_in_gy_with_units_assumed(tmp_path):
    affine = swapped_flipped_affine_ras()
    dose = _dose()
    nib.save(nib.Nifti1Image(dose[..., None].astype(np.float32), affine), tmp_path / "d.nii.gz")
    back = read_dose(tmp_path / "d.nii.gz")
    np.testing.assert_allclose(back.dose_gy, dose, rtol=1e-6)
    np.testing.assert_allclose(back.affine_ras, affine, atol=1e-5)
    assert back.info.units_assumed and back.info.file_format == "NIFTI"
    check_frame_of_reference(back.info, "1.2.3")  # no frame of reference to compare


@pytest.mark.parametrize("damage", ["stream longer, wrong checksum", "garbled deflate"])
def test_a_damaged_dose_nifti_is_a_dose_error(tmp_path, damage):
    """A .nii.gz dose whose gzip stream is damaged is refused with one line (nibabel alone
    read the first kind without an error, and let zlib's error of the second through)."""
    import gzip

    rng = np.random.default_rng(1)
    dose = rng.random((128, 128, 128)).astype(np.float32) * 70  # 8 MB: nibabel opens it
    path = tmp_path / "d.nii.gz"
    nib.save(nib.Nifti1Image(dose, np.eye(4)), path)
    raw = path.read_bytes()
    if damage == "garbled deflate":
        mid = len(raw) // 2
        raw = raw[:mid] + bytes(b ^ 0xA5 for b in raw[mid : mid + 40]) + raw[mid + 40 :]
    else:
        raw = gzip.compress(gzip.decompress(raw) + bytes(range(256)) * 800)
        raw = raw[:-8] + bytes(b ^ 0xFF for b in raw[-8:-4]) + raw[-4:]
    path.write_bytes(raw)
    with pytest.raises(DoseError, match="cannot read dose NIfTI"):
        read_dose(path)


def test_writer_refuses_negative_dose_and_bad_options(tmp_path):
    with pytest.raises(DoseError, match="non-negative"):
        write_rtdose(tmp_path / "d.dcm", -_dose(), np.eye(4), frame_of_reference_uid=FRAME)
    with pytest.raises(DoseError, match="'relative' or 'absolute'"):
        write_rtdose(
            tmp_path / "d.dcm", _dose(), np.eye(4), frame_of_reference_uid=FRAME, offsets="both"
        )  # type: ignore[arg-type]
    with pytest.raises(DoseError, match="pass a larger scaling"):
        write_rtdose(
            tmp_path / "d.dcm", _dose(), np.eye(4), frame_of_reference_uid=FRAME, scaling=1e-6
        )


def test_32_bit_storage_round_trips_to_the_quantisation_step(tmp_path):
    dose = _dose()
    path = write_rtdose(
        tmp_path / "d.dcm",
        dose,
        swapped_flipped_affine_ras(),
        frame_of_reference_uid=FRAME,
        bits=32,
    )
    assert pydicom.dcmread(path).BitsAllocated == 32
    np.testing.assert_allclose(read_rtdose(path).dose_gy, dose, atol=12 / 2**32 * 2)


def _nifti(tmp_path, dose, affine=None):
    path = tmp_path / "d.nii.gz"
    nib.save(
        nib.Nifti1Image(dose.astype(np.float32), np.eye(4) if affine is None else affine), path
    )
    return path


@pytest.mark.parametrize(
    ("value", "found"),
    [
        (np.nan, r"holds 1 NaN value of its 120 voxels \(the first at voxel \[4, 3, 2\]"),
        (np.inf, r"holds 1 infinite value of its 120 voxels \(the first at voxel \[4, 3, 2\]"),
        (
            -5.0,
            r"holds 1 negative value of its 120 voxels \(the lowest, -5 Gy, at voxel \[4, 3, 2\]",
        ),
    ],
)
def test_a_dose_nifti_with_an_impossible_value_is_refused_where_it_is(tmp_path, value, found):
    """The old reader returned NaN, inf and -5 Gy as doses (exit 0 or a wrong diagnosis)."""
    dose = _dose()
    dose[4, 3, 2] = value
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [10.0, 20.0, 30.0]
    with pytest.raises(DoseError, match=found) as caught:
        read_dose(_nifti(tmp_path, dose, affine))
    text = str(caught.value)
    assert "RAS (18.0, 26.0, 36.0) mm" in text and "export it again from the TPS" in text
    assert text.startswith("dose NIfTI '") and "\n" not in text


def test_a_dose_nifti_holding_several_kinds_counts_each(tmp_path):
    dose = _dose()
    dose[0, 0, :2] = np.nan
    dose[1, 1, 1] = -np.inf
    dose[2, 2, 2] = -1.0
    with pytest.raises(DoseError, match=r"holds 2 NaN and 1 infinite values of its 120 voxels"):
        read_dose(_nifti(tmp_path, dose))
    dose[0, 0, :2] = dose[1, 1, 1] = 1.0
    dose[3, 3, 3] = -7.5
    with pytest.raises(
        DoseError, match=r"2 negative values .*the lowest, -7.5 Gy, at voxel \[3, 3, 3\]"
    ):
        read_dose(_nifti(tmp_path, dose))


def test_rounding_below_zero_is_kept_as_it_is(tmp_path):
    dose = _dose()
    dose[1, 2, 3] = -5e-5  # float32 noise of a computed zero: within DOSE_ROUNDING_GY
    back = read_dose(_nifti(tmp_path, dose))
    assert back.dose_gy[1, 2, 3] == pytest.approx(-5e-5)


def test_signed_rt_dose_values_below_zero_are_refused_by_frame_row_and_column(tmp_path):
    """PixelRepresentation 1 (signed stored values) lets an RT Dose hold negative doses."""
    path = _edited(tmp_path)
    ds = pydicom.dcmread(path)
    pixels = (ds.pixel_array // 2).astype(np.int16)  # (frames, rows, columns), < 2**15
    pixels[2, 1, 3] = -300
    ds.PixelRepresentation = 1
    ds.PixelData = pixels.tobytes()
    ds.save_as(path)
    with pytest.raises(
        DoseError,
        match=r"^RT Dose '.*' holds 1 negative value .* at frame 2, row 1, column 3 \(from 0\)",
    ):
        read_rtdose(path)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns of a DS 'nan' / 'inf'
@pytest.mark.parametrize(
    ("scaling", "makes"),
    [("0", "0"), ("-0.001", "negative"), ("nan", "not a number"), ("inf", "infinite")],
)
def test_a_dose_grid_scaling_that_is_no_dose_per_unit_is_refused(tmp_path, scaling, makes):
    """The old reader multiplied by it: every dose 0, negative, NaN or infinite."""
    path = _edited(tmp_path, DoseGridScaling=scaling)
    with pytest.raises(DoseError, match=rf"DoseGridScaling {scaling}, .*every dose {makes}\)"):
        read_rtdose_info(path)
    with pytest.raises(DoseError, match="DoseGridScaling"):
        read_rtdose(path)


def test_a_dose_volume_built_by_hand_is_checked_too(tmp_path):
    info = read_dose(_nifti(tmp_path, _dose())).info
    dose = _dose()
    dose[0, 1, 2] = np.nan
    with pytest.raises(DoseError, match=r"holds 1 NaN value .*voxel \[0, 1, 2\]"):
        DoseVolume(dose_gy=dose, affine_ras=np.eye(4), info=info)


def test_docstring_examples_of_dose_values():
    import doctest

    from lattice.io import dose_values

    assert doctest.testmod(dose_values, raise_on_error=False).failed == 0
