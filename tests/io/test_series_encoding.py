"""The derived CT series' slices are encoded by lattice's slice writer (shared elements
encoded once): every file must be exactly what pydicom's own writer makes of its values."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset

from lattice.io.dicom_series import derived_series, write_series
from lattice.volume import Volume


def _pydicom_bytes(path) -> bytes:
    """The file at ``path`` decoded by pydicom, every element rebuilt from its decoded value
    and written again by pydicom (``save_as``, enforcing the file format)."""
    read = pydicom.dcmread(path)
    ds = Dataset()
    for elem in read:
        ds.add(DataElement(elem.tag, elem.VR, elem.value))
    meta = FileMetaDataset()
    for elem in read.file_meta:
        if elem.tag != 0x00020000:  # the group length is pydicom's to compute
            meta.add(DataElement(elem.tag, elem.VR, elem.value))
    ds.file_meta = meta
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize(
    ("kind", "values", "name"),
    [
        ("oblique", "hu", "Müller^Jörg"),  # int16 voxels, a non-ASCII name (ISO_IR 192)
        ("lps", "real", "PHANTOM^A"),  # real values: uint16 with a rescale, odd pixel count
    ],
)
def test_slices_are_what_pydicom_writes(tmp_path, make_volume, kind, values, name):
    shape = (7, 5, 4)
    rng = np.random.default_rng(3)
    if values == "hu":
        array = rng.integers(-1024, 3000, size=shape).astype(np.int16)
    else:
        array = rng.normal(0.0, 400.0, size=shape)
    ct = make_volume(shape, (0.9, 1.1, 2.5), kind, array=array)
    series = derived_series(ct, patient_name=name, patient_id="ENC1")
    paths = write_series(series, ct, tmp_path)
    assert [p.name for p in paths] == [f"CT_{k:04d}.dcm" for k in range(shape[2])]
    lps = series.grid.lps_affine
    for k, path in enumerate(paths):
        assert path.read_bytes() == _pydicom_bytes(path)
        ds = pydicom.dcmread(path)
        assert ds.SOPInstanceUID == series.slices[k].sop_instance_uid
        assert ds.file_meta.MediaStorageSOPInstanceUID == series.slices[k].sop_instance_uid
        assert ds.InstanceNumber == k + 1
        assert np.allclose(
            [float(v) for v in ds.ImagePositionPatient], lps[:3, 3] + k * lps[:3, 2], atol=1e-4
        )
        assert str(ds.PatientName) == name
        hu = ds.pixel_array.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        step = float(ds.RescaleSlope)
        assert np.allclose(hu, array[:, :, k], atol=step / 2 + 1e-9)
        assert ds[0x7FE00010].VR == "OW"


def test_series_reads_back_as_the_volume(tmp_path, make_volume):
    """pydicom's pixel decoding of the files stacks back to the CT's voxels."""
    from lattice.io.dicom import load_series

    array = np.arange(6 * 4 * 3, dtype=np.int16).reshape(6, 4, 3) - 50
    ct = make_volume(array.shape, (1.0, 1.0, 2.0), "identity-like", array=array)
    write_series(derived_series(ct, patient_id="ENC2"), ct, tmp_path)
    back = load_series(tmp_path).grid
    assert isinstance(back, Volume)
    assert np.array_equal(np.asarray(back.array), array)
    assert np.allclose(back.affine, ct.affine, atol=1e-5)


def test_file_meta_encoded_once_is_what_pydicom_writes_for_every_uid_length():
    """The slice writer's File Meta (shared elements encoded once) against pydicom's
    write_file_meta_info, slice by slice: UIDs of odd and even length (padded), two SOP
    classes; and the shared encoding is the one used (not the fallback to pydicom)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import UID, CTImageStorage, SecondaryCaptureImageStorage

    from lattice.io.dicom import SliceRef
    from lattice.io.slice_writer import _MetaWriter

    writer = _MetaWriter()
    refs = [
        SliceRef(cls, "1.2.3." + "4" * n)
        for n in (1, 2, 9, 20, 57, 58)
        for cls in (CTImageStorage, SecondaryCaptureImageStorage)
    ]
    for ref in refs:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(ref.sop_class_uid)
        meta.MediaStorageSOPInstanceUID = UID(ref.sop_instance_uid)
        meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        want = DicomBytesIO()
        want.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(want, meta, enforce_standard=True)
        assert writer.preamble_and_meta(ref) == want.getvalue()
    assert writer._shared is not None  # the elements encoded once were used
    read = pydicom.dcmread(BytesIO(writer.preamble_and_meta(refs[0])), force=True)
    assert read.file_meta.MediaStorageSOPInstanceUID == refs[0].sop_instance_uid
