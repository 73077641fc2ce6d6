"""Whether a CT image's values look like CT numbers (Hounsfield units).

The plan's geometry needs only the CT's grid, but its values go into the pictures (windowed
as HU) and, from a NIfTI CT, into the derived DICOM CT series, which a TPS reads as CT
numbers for its dose calculation. A file that is no CT in HU plans without an error, so its
values are checked when they are used, and a warning says what they look like:

- one value in every voxel (an empty or placeholder image);
- values between 0 and 1 only (a mask or a probability map given as the CT);
- no voxel darker than :data:`DARKEST_AT_LEAST_HU` (air is about -1000 HU and lung -700 to
  -900 HU; every CT of the bundled and shared cases has air at -1000 HU): an MR image, CT
  numbers stored without their rescale intercept (raw values from 0), or a copy cast to
  8 bits (0-255).

These are warnings, not errors: a CT cropped tightly inside the body has no air either, and
the plan itself is right. They are recorded in plan.json.
"""

from __future__ import annotations

import numpy as np

from ..volume import Volume

#: A CT whose darkest voxel is brighter than this (HU) holds no air and no lung.
DARKEST_AT_LEAST_HU = -200.0


def ct_value_warnings(ct: Volume, *, name: str) -> list[str]:
    """Warnings on ``ct``'s values (see the module's text); empty for a CT in HU.

    ``name`` is how the warning names the image (``CT 'ct.nii.gz'``). NaN values are refused
    when the CT is read, before this check.
    """
    values = ct.array
    if values.size == 0:
        return []
    lo, hi = float(np.min(values)), float(np.max(values))
    span = f"{lo:.6g} to {hi:.6g}"
    if lo == hi:
        return [
            f"{name} holds the same value ({lo:.6g}) in every voxel: it is no CT image, so the "
            "pictures and any derived DICOM CT show a blank image; check that the CT file was "
            "given as the CT"
        ]
    if lo >= 0.0 and hi <= 1.0:
        return [
            f"{name} holds values from {span} only: it looks like a mask, not a CT (CT "
            "numbers run from about -1000 HU in air); check that the CT file was given as "
            "the CT"
        ]
    if lo > DARKEST_AT_LEAST_HU:
        return [
            f"{name} has no voxel darker than {lo:.6g} (its values run from {span}), yet air "
            "is about -1000 HU: the values may not be CT numbers (an MR image, CT numbers "
            "stored without their rescale intercept, or a copy cast to 8 bits); the pictures "
            "and any derived DICOM CT treat them as HU, and a TPS computes dose from the "
            "derived CT's numbers"
        ]
    return []
