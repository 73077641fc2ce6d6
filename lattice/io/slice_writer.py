"""Encoding the slices of one DICOM image series fast: what every slice shares is encoded
once (:class:`SliceWriter`), File Meta Information included (:class:`_MetaWriter`), with
pydicom's element writer; the bytes are pydicom's own (tests compare them)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .dicom import SliceRef

#: The elements that differ between the slices of a series (SOP class and instance UIDs,
#: Instance Number, Image Position (Patient), Pixel Data), in tag order.
SLICE_TAGS = (0x00080016, 0x00080018, 0x00200013, 0x00200032, 0x7FE00010)
PIXEL_DATA = 0x7FE00010


class SliceWriter:
    """Writes the slices of one series: the elements every slice shares are encoded once,
    only :data:`SLICE_TAGS` and the file meta information for each slice, with pydicom's
    element writer. The bytes are those of ``Dataset.save_as(path,
    enforce_file_format=True)`` (explicit VR little endian; tests compare them), at a
    fraction of the time: pydicom walks and encodes every element of every slice.
    """

    def __init__(self, template: Any, pixel_dtype: np.dtype) -> None:
        from pydicom.filewriter import correct_ambiguous_vr

        ds = copy_header(template)
        # Pixel Data's VR (OB or OW) follows from Bits Allocated: pydicom's correction,
        # with a placeholder value of the right type.
        ds.PixelData = np.zeros(2, dtype=pixel_dtype).tobytes()
        correct_ambiguous_vr(ds, True)
        self._pixel_vr = ds[PIXEL_DATA].VR
        self._encodings = ds.get("SpecificCharacterSet", None)
        if self._encodings is None:
            from pydicom.charset import default_encoding

            self._encodings = default_encoding
        # Runs of shared elements between the varying ones: len(SLICE_TAGS) + 1 byte strings.
        runs: list[list[bytes]] = [[] for _ in range(len(SLICE_TAGS) + 1)]
        for tag in sorted(ds.keys()):
            if tag.element == 0 and tag.group > 6:  # no retired group lengths, as pydicom
                continue
            if tag in SLICE_TAGS:
                continue
            runs[sum(tag > t for t in SLICE_TAGS)].append(self._encode(ds[tag]))
        self._runs = [b"".join(r) for r in runs]
        self._meta = _MetaWriter()

    def _encode(self, elem: Any) -> bytes:
        return _encode_element(elem, self._encodings)

    def write(
        self,
        path: Path,
        ref: SliceRef,
        *,
        instance_number: int,
        position: list[str],
        pixels: NDArray,
    ) -> None:
        """Write one slice (``pixels`` in rows x columns, C order) to ``path``."""
        from pydicom.dataelem import DataElement

        data = pixels.tobytes()
        varying = [
            self._encode(DataElement(0x00080016, "UI", ref.sop_class_uid)),
            self._encode(DataElement(0x00080018, "UI", ref.sop_instance_uid)),
            self._encode(DataElement(0x00200013, "IS", instance_number)),
            self._encode(DataElement(0x00200032, "DS", position)),
            # Pixel Data's header: tag, VR, two reserved bytes, the 4-byte length.
            struct.pack("<HH", PIXEL_DATA >> 16, PIXEL_DATA & 0xFFFF)
            + self._pixel_vr.encode("ascii")
            + struct.pack("<HI", 0, len(data) + len(data) % 2),
        ]
        parts = [self._meta.preamble_and_meta(ref), self._runs[0]]
        for element, run in zip(varying, self._runs[1:]):
            parts += [element, run]
        parts.insert(-1, data + b"\0" * (len(data) % 2))  # the value right after its header
        with open(path, "wb") as fh:
            fh.writelines(parts)


class _MetaWriter:
    """The 128-byte preamble, "DICM" and the File Meta Information of one slice, as
    ``pydicom.filewriter.write_file_meta_info(enforce_standard=True)`` writes them (explicit
    VR little endian), from elements encoded once: only the two SOP UIDs and the group length
    differ between slices. pydicom's function validates and re-encodes every element of every
    slice: 0.29 s of the 0.68 s that 300 slices took (benchmark CT, 2026-12-03).

    The first slice is written by pydicom as well and compared: on any difference (another
    pydicom's defaults, say) every slice is written by pydicom, as before."""

    _CLASS, _INSTANCE = 0x00020002, 0x00020003

    def __init__(self) -> None:
        self._shared: dict[int, bytes] | None = None
        self._checked = False

    def preamble_and_meta(self, ref: SliceRef) -> bytes:
        if not self._checked:
            reference = _pydicom_meta(ref)
            shared = _shared_meta_elements(ref)
            self._shared = shared if self._encode(ref, shared) == reference else None
            self._checked = True
            return reference
        if self._shared is None:
            return _pydicom_meta(ref)
        return self._encode(ref, self._shared)

    def _encode(self, ref: SliceRef, shared: dict[int, bytes]) -> bytes:
        from pydicom.dataelem import DataElement

        own = {
            self._CLASS: _encode_element(DataElement(self._CLASS, "UI", ref.sop_class_uid)),
            self._INSTANCE: _encode_element(
                DataElement(self._INSTANCE, "UI", ref.sop_instance_uid)
            ),
        }
        body = b"".join(v for _, v in sorted({**shared, **own}.items()))
        length = _encode_element(DataElement(0x00020000, "UL", len(body)))
        return b"\0" * 128 + b"DICM" + length + body


def _file_meta(ref: SliceRef) -> Any:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(ref.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(ref.sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _pydicom_meta(ref: SliceRef) -> bytes:
    """The preamble and File Meta Information of ``ref``'s file, by pydicom."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    head = DicomBytesIO()
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, _file_meta(ref), enforce_standard=True)
    return head.getvalue()


def _shared_meta_elements(ref: SliceRef) -> dict[int, bytes]:
    """The encoded File Meta elements every slice shares (those pydicom adds included), by
    tag: all but the group length and the two SOP UIDs."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    meta = _file_meta(ref)
    write_file_meta_info(DicomBytesIO(), meta, enforce_standard=True)  # adds its defaults
    skip = {0x00020000, _MetaWriter._CLASS, _MetaWriter._INSTANCE}
    return {int(e.tag): _encode_element(e) for e in meta if int(e.tag) not in skip}


def _encode_element(elem: Any, encodings: Any = None) -> bytes:
    """One element, explicit VR little endian (pydicom's element writer; ``encodings``: the
    dataset's character sets, None for pydicom's default as in the File Meta)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, elem, encodings)
    return fp.getvalue()


def copy_header(header: Any) -> Any:
    """A new pydicom Dataset with ``header``'s elements but its File Meta and Pixel Data."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    for elem in header:
        if elem.tag.group != 0x0002 and elem.tag != PIXEL_DATA:
            ds.add(elem)
    return ds
