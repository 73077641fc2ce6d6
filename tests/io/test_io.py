"""Reading masks and images from NIfTI, and writing volumes back.

Files are written with nibabel directly (``write_nifti`` in conftest), so the reader is
checked against an independent writer; what ``save_volume`` writes is read back with nibabel.
"""

from __future__ import annotations

import gzip
import sys
import threading

import nibabel as nib
import numpy as np
import pytest

from lattice.errors import InputFileError, MaskError
from lattice.io import nifti_data
from lattice.io.nifti import (
    load_case,
    load_image,
    load_mask,
    mask_from_array,
    save_volume,
    sha256_file,
)
from lattice.volume import Volume

SHAPE = (12, 10, 8)
VOXEL_MM = (0.9, 1.1, 2.5)


@pytest.fixture
def grid(make_affine):
    """(4, 4) oblique affine of the test grid."""
    return make_affine(SHAPE, VOXEL_MM, "oblique")


@pytest.fixture
def blob():
    """(12, 10, 8) bool: a box of 4 x 3 x 2 voxels."""
    m = np.zeros(SHAPE, bool)
    m[3:7, 2:5, 4:6] = True
    return m


# -- accepted mask encodings -----------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, on_value",
    [
        (np.uint8, 1),
        (np.uint8, 255),
        (np.int8, 1),
        (np.int16, 1),
        (np.uint16, 7),
        (np.int32, 1),
        (np.float32, 1.0),
        (np.float64, 1.0),
    ],
)
def test_load_mask_accepts_common_encodings(tmp_path, write_nifti, grid, blob, dtype, on_value):
    data = np.where(blob, on_value, 0).astype(dtype)
    path = write_nifti(tmp_path, "m.nii.gz", data, grid, dtype=dtype)
    vol = load_mask(path)
    assert vol.array.dtype == bool
    np.testing.assert_array_equal(vol.array, blob)
    np.testing.assert_allclose(vol.affine, grid, atol=1e-5)


def test_a_float_mask_just_above_one_is_refused_with_its_values_shown(
    tmp_path, write_nifti, grid, blob
):
    """float32 1.0000001 was printed "from 1 to 1", which reads as no reason at all."""
    data = np.where(blob, np.float32(1.0000001), np.float32(0.0)).astype(np.float32)
    with pytest.raises(MaskError, match=r"from 1\.0000001 to 1\.0000001: an image"):
        load_mask(write_nifti(tmp_path, "p.nii.gz", data, grid))


def test_float_mask_is_thresholded_at_one_half(tmp_path, write_nifti, grid, blob):
    data = np.where(blob, 0.6, 0.4).astype(np.float32)  # a resampled / probability mask
    data[0, 0, 0] = 0.5  # exactly the threshold is outside
    vol = load_mask(write_nifti(tmp_path, "p.nii.gz", data, grid))
    np.testing.assert_array_equal(vol.array, blob)


def test_mask_with_a_trailing_singleton_axis_is_read_as_3d(tmp_path, write_nifti, grid, blob):
    path = write_nifti(tmp_path, "m4.nii.gz", blob[..., None].astype(np.uint8), grid)
    vol = load_mask(path)
    assert vol.shape == SHAPE
    np.testing.assert_array_equal(vol.array, blob)


def test_bool_arrays_are_accepted_in_memory(blob):
    out = mask_from_array(blob)
    np.testing.assert_array_equal(out, blob)
    assert out.dtype == bool


# -- label maps ------------------------------------------------------------------------------


@pytest.fixture
def label_map(blob):
    """(12, 10, 8) int16 with labels 2, 5 and 17."""
    data = np.zeros(SHAPE, np.int16)
    data[blob] = 2
    data[0:2, 0:2, 0:2] = 5
    data[10:, 8:, 6:] = 17
    return data


def test_label_map_without_a_label_lists_the_labels(tmp_path, write_nifti, grid, label_map):
    path = write_nifti(tmp_path, "labels.nii.gz", label_map, grid)
    with pytest.raises(MaskError) as info:
        load_mask(path)
    msg = str(info.value)
    assert "2, 5, 17" in msg and "labels.nii.gz" in msg
    assert "label" in msg


def test_label_picks_one_label(tmp_path, write_nifti, grid, label_map, blob):
    path = write_nifti(tmp_path, "labels.nii.gz", label_map, grid)
    np.testing.assert_array_equal(load_mask(path, label=2).array, blob)
    assert load_mask(path, label=17).array.sum() == 2 * 2 * 2


def test_absent_label_is_an_error_listing_the_labels(tmp_path, write_nifti, grid, label_map):
    path = write_nifti(tmp_path, "labels.nii.gz", label_map, grid)
    with pytest.raises(MaskError, match="label 3 .*2, 5, 17"):
        load_mask(path, label=3)


def test_label_maps_with_large_or_negative_labels(label_map):
    data = label_map.astype(np.int32)
    data[data == 17] = 70000
    data[data == 5] = -4
    with pytest.raises(MaskError, match="-4, 2, 70000"):
        mask_from_array(data)
    assert mask_from_array(data, label=70000).sum() == 8


def test_float_label_map_without_a_label_is_an_error(tmp_path, write_nifti, grid, label_map):
    path = write_nifti(tmp_path, "labels_f.nii.gz", label_map.astype(np.float32), grid)
    with pytest.raises(MaskError, match="2, 5, 17"):
        load_mask(path)


def test_float_label_map_with_a_label_picks_it(tmp_path, write_nifti, grid, label_map, blob):
    path = write_nifti(tmp_path, "labels_f.nii.gz", label_map.astype(np.float32), grid)
    np.testing.assert_array_equal(load_mask(path, label=2).array, blob)


# -- unusable masks --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_empty_mask_is_a_mask_error(tmp_path, write_nifti, grid, dtype):
    path = write_nifti(tmp_path, "empty.nii.gz", np.zeros(SHAPE, dtype), grid)
    with pytest.raises(MaskError, match="empty"):
        load_mask(path)


def test_float_mask_below_threshold_everywhere_is_empty(tmp_path, write_nifti, grid):
    path = write_nifti(tmp_path, "low.nii.gz", np.full(SHAPE, 0.2, np.float32), grid)
    with pytest.raises(MaskError, match="empty"):
        load_mask(path)


def test_nan_in_a_float_mask_is_a_mask_error(blob):
    data = blob.astype(np.float32)
    data[0, 0, 0] = np.nan
    with pytest.raises(MaskError, match="NaN"):
        mask_from_array(data)


def test_four_d_mask_with_several_volumes_is_a_mask_error(tmp_path, write_nifti, grid, blob):
    data = np.stack([blob, blob], axis=-1).astype(np.uint8)
    path = write_nifti(tmp_path, "series.nii.gz", data, grid)
    with pytest.raises(MaskError, match="4-D"):
        load_mask(path)
    with pytest.raises(MaskError, match="4-D"):
        load_image(path)


def test_two_d_mask_is_a_mask_error(tmp_path, write_nifti, grid, blob):
    path = write_nifti(tmp_path, "slice.nii.gz", blob[:, :, 4].astype(np.uint8), grid)
    with pytest.raises(MaskError, match="2-D"):
        load_mask(path)


# -- unreadable files ------------------------------------------------------------------------


def test_missing_file_is_an_input_file_error(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        load_mask(tmp_path / "nope.nii.gz")
    with pytest.raises(InputFileError, match="not found"):
        load_image(tmp_path / "nope.nii.gz")


def test_a_folder_is_an_input_file_error(tmp_path):
    folder = tmp_path / "case.nii.gz"
    folder.mkdir()
    with pytest.raises(InputFileError, match="folder"):
        load_image(folder)


@pytest.mark.parametrize(
    "name, content",
    [
        ("x.nii.gz", b"this is not a NIfTI file\n"),
        ("x.nii", b"this is not a NIfTI file\n"),
        ("x.nii.gz", gzip.compress(b"gzip, but not NIfTI inside" * 20)),
        ("empty.nii.gz", b""),
    ],
)
def test_text_named_like_nifti_is_an_input_file_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=name):
        load_image(path)


@pytest.mark.parametrize(
    "damage, phrase",
    [
        ("cut 1", "is truncated or corrupt (its gzip stream ends early)"),
        ("cut 8", "is truncated or corrupt (its gzip stream ends early)"),
        ("flip", "is truncated or corrupt (zlib: "),
        ("named .nii", "is gzip-compressed but named .nii; name it .nii.gz"),
    ],
)
def test_a_small_damaged_or_misnamed_gzip_file_is_named_so(
    tmp_path, write_nifti, grid, blob, damage, phrase
):
    """A small .nii.gz is one deflate block: damaged, nibabel cannot even read its header and
    said "Cannot work out file type ...; pass a .nii or .nii.gz file" of a .nii.gz."""
    raw = write_nifti(tmp_path, "m.nii.gz", blob, grid).read_bytes()
    assert len(raw) < 20_000
    path = tmp_path / ("m.nii" if damage == "named .nii" else "bad.nii.gz")
    if damage.startswith("cut"):
        raw = raw[: -int(damage.split()[1])]
    elif damage == "flip":
        raw = raw[: len(raw) // 2] + bytes([raw[len(raw) // 2] ^ 0xFF]) + raw[len(raw) // 2 + 1 :]
    path.write_bytes(raw)
    with pytest.raises(InputFileError) as err:
        load_mask(path)
    assert str(err.value).startswith(f"'{path}' {phrase.split(' (')[0]}"), err.value
    assert phrase in str(err.value) and "Cannot work out" not in str(err.value)


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii"])
def test_truncated_file_is_an_input_file_error(tmp_path, write_nifti, grid, name):
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 2000, size=(40, 40, 20)).astype(np.int16)  # incompressible
    path = write_nifti(tmp_path, name, data, grid)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputFileError, match="ct.nii"):
        load_image(path)


@pytest.mark.parametrize(
    "dtype, order, slope, name",
    [
        ("<i2", "F", None, "ct.nii.gz"),
        (">i2", "F", None, "ct.nii.gz"),  # read in its byte order, as nibabel does
        ("<f4", "F", None, "ct.nii.gz"),
        ("<u1", "F", None, "m.nii.gz"),
        ("<i2", "F", 2.0, "ct.nii.gz"),  # scaled: nibabel's path
        ("<i2", "F", None, "ct.nii"),  # uncompressed: memory-mapped by nibabel
    ],
)
def test_voxels_are_what_nibabel_reads(tmp_path, grid, dtype, order, slope, name):
    low = 0 if dtype == "<u1" else -1000
    data = np.random.default_rng(1).integers(low, 250, size=(*SHAPE, 1)).astype(dtype)
    img = nib.Nifti1Image(data, grid)
    img.header.set_data_dtype(np.dtype(dtype))
    if slope is not None:
        img.header.set_slope_inter(slope, 0.5)
    path = tmp_path / name
    nib.save(img, path)
    expected = np.asanyarray(nib.load(path).dataobj)[..., 0]  # the oracle: nibabel's read
    vol = load_image(path)
    assert vol.array.dtype == expected.dtype
    np.testing.assert_array_equal(vol.array, expected)


def test_gzip_file_cut_inside_the_voxels_is_an_input_file_error(tmp_path, grid):
    data = np.random.default_rng(0).integers(-1000, 2000, size=SHAPE).astype(np.int16)
    blob = gzip.compress(nib.Nifti1Image(data, grid).to_bytes())
    whole = gzip.decompress(blob)
    path = tmp_path / "ct.nii.gz"
    path.write_bytes(gzip.compress(whole[: len(whole) - 100]))  # a valid gzip stream, short
    with pytest.raises(InputFileError, match="truncated or corrupt"):
        load_image(path)


@pytest.mark.parametrize(
    "dtype, values",
    [
        (np.uint8, (1,)),
        (np.uint8, (2,)),
        (np.uint8, (1, 2)),
        (np.uint8, (255,)),
        (np.uint8, ()),
        (np.int8, (1,)),
        (np.int8, (-1, 1)),
        (np.int8, (-1,)),
    ],
)
def test_byte_masks_read_as_mask_from_array_reads_them(tmp_path, write_nifti, grid, dtype, values):
    data = np.zeros(SHAPE, dtype)
    for n, v in enumerate(values, start=1):
        data[n : n + 4, 2:5, 3:6] = v
    path = write_nifti(tmp_path, "m.nii.gz", data, grid, dtype=dtype)
    try:
        expected = mask_from_array(data, name=f"mask '{path}'")  # the oracle: the general path
    except MaskError as exc:
        with pytest.raises(MaskError, match=str(exc)[:20]):
            load_mask(path)
        return
    vol = load_mask(path)
    assert vol.array.dtype == bool
    np.testing.assert_array_equal(vol.array, expected)


def _ct_and_gtv(tmp_path, grid, ct, name="ct.nii.gz"):
    nib.save(nib.Nifti1Image(ct, grid), tmp_path / name)
    gtv = np.zeros(SHAPE, np.uint8)
    gtv[3:7, 2:5, 4:6] = 1
    nib.save(nib.Nifti1Image(gtv, grid), tmp_path / "gtv.nii.gz")
    return tmp_path / name, tmp_path / "gtv.nii.gz"


def _outcome(ct, gtv, ct_data):
    """What load_case gives (the CT's grid) or raises (type, message)."""
    try:
        case = load_case(ct, gtv, ct_data=ct_data)
    except (InputFileError, MaskError) as exc:
        return type(exc), str(exc)
    return case.ct.shape, case.ct.affine.tolist(), case.warnings


@pytest.mark.parametrize("chunk_bytes", [1 << 24, 7, 1000])  # pieces split voxels
@pytest.mark.parametrize(
    "case",
    [
        "int16",
        "float32",
        "nan",
        "inf",
        "truncated",
        "cut in the voxels",
        "garbled deflate",
        "wrong checksum",
        "two members",
        "nii",
        "bytes after the voxels",
        "bytes after the voxels, wrong checksum",
        "zeros after the stream",
        "garbage after the stream",
    ],
)
def test_checked_ct_is_refused_or_accepted_as_a_read_one(
    tmp_path, grid, monkeypatch, case, chunk_bytes
):
    # The oracle: ct_data=True reads the whole array (nibabel's reader) and checks it.
    monkeypatch.setattr(nifti_data, "CHECK_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(2)
    data = rng.integers(-1000, 2000, size=SHAPE).astype(np.int16)
    if case in ("float32", "nan", "inf"):
        data = data.astype(np.float32) + 0.25
        data[5, 4, 3] = {"float32": 1.0, "nan": np.nan, "inf": -np.inf}[case]
        data[11, 9, 7] = {"float32": 1.0, "nan": np.nan, "inf": np.inf}[case]
    ct, gtv = _ct_and_gtv(tmp_path, grid, data, "ct.nii" if case == "nii" else "ct.nii.gz")
    raw = ct.read_bytes()
    if case == "truncated":
        ct.write_bytes(raw[: len(raw) // 2])
    elif case == "cut in the voxels":
        ct.write_bytes(gzip.compress(gzip.decompress(raw)[:-5]))
    elif case == "garbled deflate":  # bytes flipped inside the compressed stream
        mid = len(raw) // 2
        ct.write_bytes(raw[:mid] + bytes(b ^ 0xA5 for b in raw[mid : mid + 40]) + raw[mid + 40 :])
    elif case == "wrong checksum":  # the voxels inflate, but not to the trailer's CRC-32
        ct.write_bytes(raw[:-8] + bytes(b ^ 0xFF for b in raw[-8:-4]) + raw[-4:])
    elif case == "two members":  # a valid gzip file: members are read one after another
        whole = gzip.decompress(raw)
        ct.write_bytes(gzip.compress(whole[:1000]) + gzip.compress(whole[1000:]))
    elif case.startswith("bytes after the voxels"):
        # The stream holds more than the voxels (a damaged stream may inflate so): read to
        # its end, so a wrong checksum there is found as well.
        longer = gzip.compress(gzip.decompress(raw) + bytes(range(256)) * 400)
        if case.endswith("wrong checksum"):
            longer = longer[:-8] + bytes(b ^ 0xFF for b in longer[-8:-4]) + longer[-4:]
        ct.write_bytes(longer)
    elif case == "zeros after the stream":
        ct.write_bytes(raw + bytes(1000))
    elif case == "garbage after the stream":
        ct.write_bytes(raw + b"not gzip" * 100)
    checked, read = _outcome(ct, gtv, "check"), _outcome(ct, gtv, True)
    assert checked == read
    # Bytes after the last gzip member that start no member are ignored by both readers.
    accepted = ("int16", "float32", "two members", "nii", "bytes after the voxels")
    if case in (*accepted, "zeros after the stream", "garbage after the stream"):
        assert checked[0] == SHAPE
    else:
        assert checked[0] in (InputFileError, MaskError)


def test_other_image_formats_are_refused(tmp_path, grid, blob):
    path = tmp_path / "mask.mgz"
    nib.save(nib.MGHImage(blob.astype(np.uint8), grid), path)
    with pytest.raises(InputFileError, match="NIfTI"):
        load_mask(path)


def test_rgb_image_as_mask_is_a_mask_error(tmp_path, grid):
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"][2:5, 2:5, 2:5] = 255
    path = tmp_path / "rgb.nii.gz"
    nib.save(nib.Nifti1Image(rgb, grid), path)
    with pytest.raises(MaskError):
        load_mask(path)


def test_input_errors_are_value_errors_with_exit_codes():
    assert issubclass(InputFileError, ValueError) and InputFileError.exit_code == 3
    assert issubclass(MaskError, ValueError) and MaskError.exit_code == 4


# -- images ----------------------------------------------------------------------------------


def test_load_image_keeps_dtype_values_and_affine(tmp_path, write_nifti, grid):
    data = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE) - 500
    vol = load_image(write_nifti(tmp_path, "ct.nii.gz", data, grid))
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, data)
    np.testing.assert_allclose(vol.affine, grid, atol=1e-5)


def test_sform_is_preferred_over_a_qform_less_than_a_voxel_away(tmp_path, grid, blob):
    # More than a voxel apart is refused (tests/io/test_nifti_headers.py).
    img = nib.Nifti1Image(blob.astype(np.uint8), grid)
    img.set_sform(grid, code=1)
    other = grid.copy()
    other[:3, 3] += 0.3
    img.set_qform(other, code=1)
    path = tmp_path / "both.nii.gz"
    nib.save(img, path)
    np.testing.assert_allclose(load_mask(path).affine, grid, atol=1e-5)


# -- writing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["identity-like", "lps", "oblique"])
def test_save_volume_writes_sform_and_qform_equal_to_the_affine(tmp_path, make_affine, blob, kind):
    affine = make_affine(SHAPE, VOXEL_MM, kind)
    path = save_volume(Volume(blob, affine), tmp_path / "out.nii.gz")
    img = nib.load(path)
    hdr = img.header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 1
    sform, qform = img.get_sform(), img.get_qform()
    # The header stores float32 (sform) and a quaternion (qform): ~1e-5 mm of rounding.
    np.testing.assert_allclose(sform, affine, atol=1e-5)
    np.testing.assert_allclose(qform, affine, atol=1e-5)
    np.testing.assert_allclose(img.affine, affine, atol=1e-5)
    assert hdr.get_xyzt_units()[0] == "mm"
    data = np.asanyarray(img.dataobj)
    assert data.dtype == np.uint8  # bool is written as uint8
    np.testing.assert_array_equal(data, blob.astype(np.uint8))


def test_save_volume_keeps_label_dtype_and_round_trips(tmp_path, grid, label_map):
    path = save_volume(Volume(label_map, grid), tmp_path / "labels.nii.gz")
    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    assert data.dtype == np.int16
    np.testing.assert_array_equal(data, label_map)
    again = load_image(path)
    np.testing.assert_array_equal(again.array, label_map)
    Volume(label_map, grid).check_same_grid(again, name="written", other_name="read back")


def test_save_volume_writes_default_int_label_maps(tmp_path, grid, label_map):
    labels = label_map.astype(np.int64)
    path = save_volume(Volume(labels, grid), tmp_path / "labels64.nii.gz")
    np.testing.assert_array_equal(np.asanyarray(nib.load(path).dataobj), labels)


@pytest.mark.parametrize("kind", ["lps", "oblique"])
def test_save_volume_gzip_decodes_as_nibabels_own_file(tmp_path, make_affine, label_map, kind):
    """The .nii.gz written through ISA-L's gzip holds the same bytes as nibabel's own
    nib.save of that image (the oracle), header and voxels; the .nii is nibabel's."""
    import gzip

    affine = make_affine(SHAPE, VOXEL_MM, kind)
    for array in (label_map, label_map > 0, np.asfortranarray(label_map)):
        path = save_volume(Volume(array, affine), tmp_path / "fast.nii.gz")
        plain = save_volume(Volume(array, affine), tmp_path / "plain.nii")
        img = nib.load(plain)
        nib.save(img, tmp_path / "oracle.nii.gz")
        assert gzip.decompress(path.read_bytes()) == plain.read_bytes()
        assert gzip.decompress((tmp_path / "oracle.nii.gz").read_bytes()) == plain.read_bytes()
        assert nib.load(path).header.binaryblock == img.header.binaryblock


def test_save_volume_does_not_modify_the_volume(tmp_path, grid, blob):
    vol = Volume(blob.copy(), grid)
    save_volume(vol, tmp_path / "m.nii.gz")
    assert vol.array.dtype == bool
    np.testing.assert_array_equal(vol.array, blob)


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "f.bin"
    payload = bytes(range(256)) * 5000
    path.write_bytes(payload)
    assert sha256_file(path) == hashlib.sha256(payload).hexdigest()


# -- the shared real data (skipped when ../shared/data is absent) ----------------------------

SHARED_CASES = (
    "STS_001",
    "STS_002",
    "STS_013",
    "STS_035",
    "STS_044",
    "breast1_tiny",
    "lung_phantom_nc",
)


@pytest.mark.parametrize("name", SHARED_CASES)
def test_shared_case_image_and_gtv_share_a_grid(shared_data, name):
    folder = shared_data / name
    if not folder.is_dir():
        pytest.skip(f"{name} not in ../shared/data")
    image = load_image(folder / "image.nii.gz")
    gtv = load_mask(folder / "gtv.nii.gz")
    image.check_same_grid(gtv, name="image", other_name="gtv")
    image.check_not_sheared(name="image")
    img = nib.load(folder / "image.nii.gz")
    np.testing.assert_allclose(image.voxel_size_mm, img.header.get_zooms()[:3], rtol=1e-5)
    assert gtv.array.sum() == int(
        (np.asanyarray(nib.load(folder / "gtv.nii.gz").dataobj) > 0).sum()
    )


def test_real_four_d_series_is_refused_and_its_volume_is_oblique(shared_data, tmp_path):
    path = shared_data / "oblique_mr" / "example4d.nii.gz"
    if not path.exists():
        pytest.skip("oblique_mr/example4d.nii.gz not in ../shared/data")
    with pytest.raises(MaskError, match="4-D"):
        load_image(path)
    img = nib.load(path)
    one = nib.Nifti1Image(np.asanyarray(img.dataobj)[..., 0], img.affine, img.header)
    nib.save(one, tmp_path / "vol0.nii.gz")
    vol = load_image(tmp_path / "vol0.nii.gz")
    np.testing.assert_allclose(vol.voxel_size_mm, img.header.get_zooms()[:3], rtol=1e-4)
    vol.check_not_sheared(name="example4d")
    ijk = np.array([[0, 0, 0], [127, 95, 23], [10.5, 20.25, 3.0]])
    np.testing.assert_allclose(
        vol.ijk_to_ras(ijk), nib.affines.apply_affine(img.affine, ijk), atol=1e-6
    )


def test_an_image_given_as_a_mask_is_named_as_such_in_one_short_line():
    rng = np.random.default_rng(0)
    ct_like = rng.integers(-1000, 1500, size=(20, 20, 10)).astype(np.int16)
    with pytest.raises(MaskError, match="an image, not a mask") as info:
        mask_from_array(ct_like, name="mask 'ct.nii.gz'")
    assert "swapped" in str(info.value) and len(str(info.value)) < 200
    few = np.zeros((5, 5, 5), np.int16)
    few[0, 0, :] = (-1000, -30, 40, 60, 1000)  # a few HU values
    few[1, 0, :] = (-500, -100, 20, 30, 700)
    with pytest.raises(MaskError, match="an image, not a mask"):
        mask_from_array(few)


def test_a_label_map_with_many_labels_is_listed_briefly():
    labels = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    with pytest.raises(MaskError, match=r"1, 2, .*\.\.\. 59 \(59 labels\)"):
        mask_from_array(labels)


def test_switch_interval_is_short_while_files_are_read_and_restored_after(tmp_path, grid):
    before = sys.getswitchinterval()
    seen = []
    with nifti_data.short_switch_interval(0.001):
        seen.append(sys.getswitchinterval())
        with nifti_data.short_switch_interval(0.0002):  # nested: the first one's value stays
            seen.append(sys.getswitchinterval())
        seen.append(sys.getswitchinterval())
    assert seen == [pytest.approx(0.001)] * 3
    assert sys.getswitchinterval() == before
    # Blocks that overlap in two threads: the interval comes back when the last one ends.
    started, release = threading.Barrier(2), threading.Event()

    def other() -> None:
        with nifti_data.short_switch_interval(0.001):
            started.wait()
            release.wait()

    thread = threading.Thread(target=other)
    thread.start()
    with nifti_data.short_switch_interval(0.001):
        started.wait()
    assert sys.getswitchinterval() == pytest.approx(0.001)  # the other block still runs
    release.set()
    thread.join()
    assert sys.getswitchinterval() == before
    # load_case restores it, also when it raises.
    ct, gtv = _ct_and_gtv(tmp_path, grid, np.zeros(SHAPE, np.int16), "ct.nii.gz")
    load_case(ct, gtv)
    assert sys.getswitchinterval() == before
    with pytest.raises(InputFileError):
        load_case(tmp_path / "missing.nii.gz", gtv)
    assert sys.getswitchinterval() == before


def _longer_stream_wrong_crc(path, extra=200_000):
    """Rewrite the .nii.gz ``path`` so that its stream holds ``extra`` bytes after the voxels
    and its trailer's CRC-32 is wrong: what a stream damaged mid-file may inflate to."""
    whole = gzip.decompress(path.read_bytes())
    rng = np.random.default_rng(0)
    longer = gzip.compress(whole + rng.integers(0, 256, extra, dtype=np.uint8).tobytes())
    path.write_bytes(longer[:-8] + bytes(b ^ 0xFF for b in longer[-8:-4]) + longer[-4:])


@pytest.mark.parametrize("what", ["ct as stored", "ct scaled", "mask", "mask scaled"])
@pytest.mark.parametrize("ct_data", [True, "check", "check in pieces"])
def test_a_wrong_checksum_beyond_the_voxels_is_found(tmp_path, monkeypatch, what, ct_data):
    """Large enough (4 MB of voxels) that a reader asked for the voxels alone stops before
    the gzip trailer: the file is still read to its end and refused (it was accepted: a real
    CT with 40 bytes garbled mid-file inflated to more bytes and was read without error)."""
    shape = (128, 128, 128)
    affine = np.diag([0.9, 0.9, 1.5, 1.0])
    rng = np.random.default_rng(4)
    ct = nib.Nifti1Image(rng.integers(-1000, 1000, shape).astype(np.int16), affine)
    gtv_array = np.zeros(shape, np.uint8)
    gtv_array[40:80, 40:80, 40:80] = 1
    gtv = nib.Nifti1Image(gtv_array, affine)
    if what.endswith("scaled"):  # read by nibabel (scaled), not read_gzip_data
        (ct if what.startswith("ct") else gtv).header.set_slope_inter(2.0, 0.0)
    nib.save(ct, tmp_path / "ct.nii.gz")
    nib.save(gtv, tmp_path / "gtv.nii.gz")
    if ct_data != True and what.startswith("mask"):  # noqa: E712 - True or a string
        pytest.skip("the check is for the CT only")
    if ct_data == "check in pieces":  # the check's pieces end before the stream does
        monkeypatch.setattr(nifti_data, "CHECK_CHUNK_BYTES", 1 << 16)
        ct_data = "check"
    damaged = tmp_path / ("ct.nii.gz" if what.startswith("ct") else "gtv.nii.gz")
    _longer_stream_wrong_crc(damaged)
    # (nibabel itself may already refuse a small damaged file: "cannot read ... as NIfTI")
    with pytest.raises(InputFileError, match="truncated or corrupt|cannot read"):
        load_case(tmp_path / "ct.nii.gz", tmp_path / "gtv.nii.gz", ct_data=ct_data)
