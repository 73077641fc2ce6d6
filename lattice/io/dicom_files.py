"""Which files of a folder are the slices of an image series, and their headers.

A folder a TPS exported a CT to may hold other files: an RTSTRUCT, a DICOMDIR, notes. Those
are skipped. A slice that lost its image plane (cut short by a copy, an attribute deleted)
or a ``.dcm`` file beside the slices that is no longer DICOM is not skipped: skipping the
first or last slice would shorten the grid without a word. It is refused, named.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import InputFileError

#: File names of DICOM files: such a file that is not DICOM is a damaged one, not one to skip.
_DICOM_SUFFIXES = frozenset((".dcm", ".dicom", ".ima"))
#: The attributes that place a slice in space: a file without one of them is not a slice.
_PLANE_KEYWORDS = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
)
#: SOP classes of single-frame images that must carry an image plane (CT, MR, PET Image
#: Storage): one without it is a damaged slice, not a file to skip.
_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.128": "PET",
}


def image_headers(folder: Path) -> dict[str, list[tuple[Path, Any]]]:
    """The headers (no pixel data) of the image files in ``folder`` and its sub-folders, by
    SeriesInstanceUID, files in name order; other files skipped.

    Raises
    ------
    InputFileError
        No such folder, a file that cannot be read, or a damaged slice (above).
    """
    series: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    not_dicom = []
    for path in _files_in(folder):
        ds = _read_header(path)
        if ds is None:
            if path.suffix.lower() in _DICOM_SUFFIXES:
                not_dicom.append(path)
            continue
        if not _is_image(ds):
            if damaged := _missing_plane(path, ds):
                raise InputFileError(damaged)
            continue  # an RTSTRUCT or a report beside the CT
        series[str(ds.get("SeriesInstanceUID", ""))].append((path, ds))
    if series and not_dicom:  # beside the slices: one of them, emptied or cut before its header
        path = not_dicom[0]
        raise InputFileError(
            f"'{path}' is named as a DICOM file but is not one ({path.stat().st_size} bytes: "
            "an empty or damaged slice?); export the series again, or move the file out of "
            "the folder"
        )
    return series


def _read_header(path: Path) -> Any | None:
    """The dataset without pixel data, or None for a file that is not DICOM."""
    import pydicom  # ~0.15 s to import; only DICOM users pay for it

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except pydicom.errors.InvalidDicomError:
        return None
    except PermissionError as exc:
        raise InputFileError(
            f"cannot read DICOM file '{path}' (permission denied); give this "
            "user read permission on the series (chmod -R a+r)"
        ) from exc
    except (OSError, EOFError, ValueError, KeyError) as exc:
        raise InputFileError(
            f"cannot read DICOM file '{path}' ({type(exc).__name__}: {exc}); "
            "export the series again"
        ) from exc


def _is_image(ds: Any) -> bool:
    return all(k in ds for k in _PLANE_KEYWORDS)


def _missing_plane(path: Path, ds: Any) -> str:
    """Why the DICOM file ``ds``, which is not an image (:func:`_is_image`), is a damaged
    slice: it says it is a CT, MR or PET image; "" for a file of another kind (skipped)."""
    meta = getattr(ds, "file_meta", None)
    sop = str(ds.get("SOPClassUID", "") or (meta or {}).get("MediaStorageSOPClassUID", ""))
    if sop not in _IMAGE_SOP_CLASSES:
        return ""
    missing = ", ".join(k for k in _PLANE_KEYWORDS if k not in ds)
    return (
        f"'{path}' is a {_IMAGE_SOP_CLASSES[sop]} image without {missing} (a truncated or "
        "damaged slice?); export the series again"
    )


def _files_in(folder: Path) -> list[Path]:
    if not folder.exists():
        raise InputFileError(f"folder not found: '{folder}'; check the path")
    if not folder.is_dir():
        raise InputFileError(f"'{folder}' is a file; pass the folder holding the CT series")
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
