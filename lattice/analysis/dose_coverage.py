"""Which voxels of the evaluated structures have a dose, and what happens to those without.

A CT voxel has no dose when its centre lies outside the dose grid (``outside``, from
:func:`lattice.analysis.resample.resample_dose`) or its dose is not a finite number. The
GTV, the peaks and the cold spheres must be fully covered (every target metric would be
biased otherwise): :class:`DoseError`. An OAR partly outside is evaluated on its covered
voxels, with a warning (see :mod:`lattice.analysis.evaluate`, "Voxels without dose").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from lattice.io.rtdose import DoseError

if TYPE_CHECKING:
    from lattice.analysis.evaluate import EvaluationMasks

__all__ = ["coverage_report", "voxels_without_dose"]


def voxels_without_dose(
    dose_gy: NDArray[np.float64], outside: NDArray[np.bool_] | None
) -> NDArray[np.bool_]:
    """(I, J, K) bool: voxels outside the dose grid or with a non-finite dose."""
    lacking = ~np.isfinite(dose_gy)
    return lacking if outside is None else lacking | np.asarray(outside, dtype=bool)


def coverage_report(
    masks: EvaluationMasks, lacking: NDArray[np.bool_], *, voxel_volume_cc: float
) -> tuple[dict[str, Any], list[str]]:
    """Voxels without dose per structure; refuse uncovered targets, warn for OARs.

    Returns
    -------
    report : dict
        Per structure (``gtv``, ``peaks``, ``cold``, ``oar:NAME``): ``n_voxels``,
        ``n_without_dose``, ``volume_without_dose_cc``.
    warnings : list of str
        One per OAR with voxels without dose.

    Raises
    ------
    DoseError
        A GTV, peak or cold-sphere voxel without dose.
    """
    targets = {"gtv": np.asarray(masks.gtv, dtype=bool), "peaks": masks.resolved_peaks()}
    if masks.cold_labels is not None:
        targets["cold"] = np.asarray(masks.cold_labels) > 0
    report: dict[str, Any] = {}
    for name, mask in {
        **targets,
        **{f"oar:{k}": np.asarray(v, dtype=bool) for k, v in masks.oars.items()},
    }.items():
        missing = int(np.count_nonzero(mask & lacking))
        report[name] = {
            "n_voxels": int(np.count_nonzero(mask)),
            "n_without_dose": missing,
            "volume_without_dose_cc": missing * voxel_volume_cc,
        }
    for name in targets:
        if report[name]["n_without_dose"]:
            entry = report[name]
            raise DoseError(
                f"the dose grid does not cover {entry['n_without_dose']} of the "
                f"{entry['n_voxels']} voxels of the {name} "
                f"({entry['volume_without_dose_cc']:.2f} cc); export the dose on a "
                "grid that covers the whole GTV"
            )
    warnings = [
        f"OAR '{name[4:]}': {entry['n_without_dose']} of {entry['n_voxels']} voxels "
        f"({entry['volume_without_dose_cc']:.2f} cc) outside the dose grid, evaluated "
        "on the rest"
        for name, entry in report.items()
        if name.startswith("oar:") and entry["n_without_dose"]
    ]
    return report, warnings
