"""plan.json's ``world_frame``: which frame each coordinate of a vertex is in, and which of
them is the frame of the input's own coordinates."""

from __future__ import annotations

from typing import Any, Literal

InputFormat = Literal["nifti", "dicom", "api"]


_RAS_TEXT = "RAS+ mm: +x to the patient's right, +y anterior, +z superior"


_LPS_TEXT = "LPS mm, DICOM patient coordinates: +x to the patient's left, +y posterior, +z superior"


_IJK_TEXT = "fractional voxel index (i, j, k) of the CT grid; grid.affine maps it to RAS+ mm"


def world_frame(input_format: InputFormat) -> dict[str, str]:
    """plan.json's ``world_frame``: the frame of each coordinate, and which of them is the
    frame the input's own coordinates are in.

    The same point is reported as ``center_ras_mm`` and ``center_lps_mm`` (x and y negated):
    NIfTI input is RAS+ (its sform/qform, as nibabel reads it), DICOM input is LPS (the CT
    series' ImagePositionPatient/ImageOrientationPatient, the RTSTRUCT's ContourData).
    """
    if input_format == "dicom":
        return {
            "input": "DICOM CT series and RTSTRUCT, whose coordinates are LPS mm",
            "input_frame": "center_lps_mm",
            "center_lps_mm": f"{_LPS_TEXT}; the input's own frame",
            "center_ras_mm": f"{_RAS_TEXT}; the LPS point with x and y negated",
            "center_ijk": _IJK_TEXT,
        }
    lps = f"{_LPS_TEXT}; the RAS+ point with x and y negated"
    if input_format == "nifti":
        return {
            "input": "NIfTI CT and masks, whose sform/qform coordinates are RAS+ mm",
            "input_frame": "center_ras_mm",
            "center_ras_mm": f"{_RAS_TEXT}; the input's own frame",
            "center_lps_mm": lps,
            "center_ijk": _IJK_TEXT,
        }
    return {
        "input": "Volumes given to the library, whose affines are RAS+ mm",
        "input_frame": "center_ras_mm",
        "center_ras_mm": _RAS_TEXT,
        "center_lps_mm": lps,
        "center_ijk": _IJK_TEXT,
    }


def input_format_of(inputs: dict[str, Any] | None) -> InputFormat:
    """The input route that plan.json's ``inputs`` record (their CT entry)."""
    ct = (inputs or {}).get("ct") or {}
    if "dicom_folder" in ct:
        return "dicom"
    return "nifti" if "path" in ct else "api"
