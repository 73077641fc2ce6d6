"""Why a contour of an RTSTRUCT ROI is left out or refused, and how a message says so.

See :mod:`lattice.io.rtstruct_read`, which finds the problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ContourProblem:
    """A contour of an ROI that is left out, or that makes the ROI unusable.

    Attributes
    ----------
    index : int
        The contour's position in the ROI's ContourSequence, from 1.
    z_mm : float
        Mean LPS z of its points, naming its slice (NaN when no point is readable).
    reason : str
        A key of :data:`CONTOUR_PROBLEMS`.
    """

    index: int
    z_mm: float
    reason: str

    @property
    def fatal(self) -> bool:
        return CONTOUR_PROBLEMS[self.reason][0]


#: Why a contour is not used: reason -> (fatal, what is wrong with one, with several). A
#: contour without area (fewer than 3 points) or a second copy of one is left out with a
#: warning; a damaged contour (coordinates that cannot be trusted) makes its ROI unusable,
#: because leaving it out would change the ROI's shape without anyone knowing what it was.
CONTOUR_PROBLEMS: dict[str, tuple[bool, str, str]] = {
    "point": (
        True,
        "is a POINT (ContourGeometricType; a marker, no outline)",
        "are POINTs (ContourGeometricType; markers, no outline)",
    ),
    "open": (
        True,
        "is an open line (ContourGeometricType OPEN_PLANAR or OPEN_NONPLANAR)",
        "are open lines (ContourGeometricType OPEN_PLANAR or OPEN_NONPLANAR)",
    ),
    "too_few_points": (
        False,
        "has fewer than 3 points (no area)",
        "have fewer than 3 points (no area)",
    ),
    "no_area": (
        False,
        "has no area (its points lie on one line)",
        "have no area (their points lie on one line)",
    ),
    "duplicate": (
        False,
        "repeats another contour of its slice point for point (the even-odd "
        "rule would cancel the pair; one copy is kept)",
        "repeat another contour of their slice point for point (the even-odd rule "
        "would cancel each pair; one copy is kept)",
    ),
    "length": (
        True,
        "has a ContourData length that is not a multiple of 3 (x, y, z per point)",
        "have a ContourData length that is not a multiple of 3 (x, y, z per point)",
    ),
    "not_finite": (
        True,
        "has NaN, infinite or non-numeric ContourData values",
        "have NaN, infinite or non-numeric ContourData values",
    ),
    "count": (
        True,
        "has a NumberOfContourPoints that disagrees with its ContourData",
        "have a NumberOfContourPoints that disagrees with their ContourData",
    ),
    "not_planar": (
        True,
        "is not planar (its points lie at different slice positions)",
        "are not planar (their points lie at different slice positions)",
    ),
}
# Open lines and points have no inside to fill, but a structure drawn with them (a nerve as a
# line, seeds as points) would silently lose its geometry: they are refused as well.


def crossing_warning(roi_name: str, source: str | Path, z_mm: Sequence[float]) -> str:
    """The warning for an ROI whose contours cross on the slices at ``z_mm`` (LPS)."""
    n = len(z_mm)
    return (
        f"ROI '{roi_name}' in '{source}': contours cross on {n} slice{'s' * (n > 1)} "
        f"({at_z(z_mm)}): a contour crosses itself or another of its slice, so the even-odd "
        "rule counts their overlap as outside and the TPS may rebuild another shape; check "
        "the ROI in the TPS"
    )


def describe_problems(problems: Sequence[ContourProblem]) -> str:
    """The problems grouped by reason, each with its contours and their slices (LPS z)."""
    parts = []
    for reason, (_, one, several) in CONTOUR_PROBLEMS.items():
        group = [p for p in problems if p.reason == reason]
        if group:
            numbers = ", ".join(str(p.index) for p in group[:4]) + (
                ", ..." if len(group) > 4 else ""
            )
            parts.append(
                f"{len(group)} {one if len(group) == 1 else several} "
                f"(contour{'s' * (len(group) > 1)} {numbers} "
                f"{at_z([p.z_mm for p in group])})"
            )
    return "; ".join(parts)


def at_z(z_mm: Sequence[float]) -> str:
    shown = ", ".join("?" if not np.isfinite(z) else f"{z:.2f}" for z in z_mm[:4])
    return f"at z = {shown}{', ...' if len(z_mm) > 4 else ''} mm"
