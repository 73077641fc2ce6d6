"""lattice: LATTICE / SFRT vertex geometry planning.

Erode a GTV by a margin in mm, place spherical vertices under every rule (diameter, spacing,
GTV margin, OAR clearance), and export them. World space is RAS+ mm throughout the core; LPS
appears only in exporters.

>>> import lattice
>>> gtv = lattice.load_mask("gtv.nii.gz")                          # doctest: +SKIP
>>> plan = lattice.plan_vertices(gtv, diameter_mm=15, min_spacing_mm=30,
...                              gtv_margin_mm=5)                   # doctest: +SKIP

What ``lattice plan`` does, from Python (see :mod:`lattice.pipeline`):

>>> from lattice.pipeline import NiftiInputs
>>> outcome = lattice.run_plan(lattice.PlanRequest(
...     NiftiInputs("ct.nii.gz", "gtv.nii.gz"), "out"))             # doctest: +SKIP

The names below are imported on first use, so ``import lattice`` stays cheap (scipy and
nibabel take ~0.5 s to import).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "Volume": "lattice.volume",
    "Grid": "lattice.grid",
    "Oar": "lattice.planning.rules",
    "Plan": "lattice.planning.plan",
    "PlanParameters": "lattice.planning.plan",
    "plan_vertices": "lattice.planning.placement",
    "pack_maximal": "lattice.planning.packing",
    "verify_plan": "lattice.analysis.verify",
    "verify_plan_file": "lattice.analysis.verify",
    "contract_gtv": "lattice.analysis.stv",
    "erode_mm": "lattice.geometry.margins",
    "depth_mm": "lattice.geometry.margins",
    "make_pattern": "lattice.geometry.patterns",
    "load_image": "lattice.io.nifti",
    "load_mask": "lattice.io.nifti",
    "load_case": "lattice.io.nifti",
    "save_volume": "lattice.io.nifti",
    "write_plan_folder": "lattice.io.plan_writer",
    "PlanRequest": "lattice.pipeline",
    "PlanOutcome": "lattice.pipeline",
    "PlanOptions": "lattice.pipeline",
    "run_plan": "lattice.pipeline",
    "DoseProxyParameters": "lattice.analysis.dose",
    "cold_sites": "lattice.planning.cold",
    "read_dose": "lattice.io.rtdose",
    "write_rtdose": "lattice.io.rtdose_write",
    "resample_dose": "lattice.analysis.resample",
    "EvaluationMasks": "lattice.analysis.evaluate",
    "evaluate_dose": "lattice.analysis.evaluate",
    "evaluate_dose_volume": "lattice.analysis.evaluate",
    "evaluate_plan_folder": "lattice.analysis.evaluate_plan",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lattice' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
