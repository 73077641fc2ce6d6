"""What a plan hands the TPS beside its ROIs: the ROI naming (:mod:`lattice.io.roi_names`) and
the optimisation objectives (:mod:`lattice.planning.objectives`), as ``objectives.json``,
``objectives.csv`` and plan.json's ``objectives``, ``rois`` and ``parameters`` (``roi_names``,
``roi_prefix``, ``roi_name_map``, ``peak_dose_gy``, ``valley_dose_gy``).

:func:`check_tps_options` runs before any work; :func:`add_tps_sections` adds the plan.json
sections; :func:`write_objectives` writes the two files into the plan folder's stage (moved
into place with the rest, :func:`lattice.io.folder.write_staged`).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..planning.objectives import objective_doses, plan_objectives
from ..planning.parameters import check_range
from ..planning.plan import Plan
from .folder import write_json
from .roi_names import RoiNaming, check_roi_names

__all__ = [
    "OBJECTIVE_FILES",
    "TpsOptions",
    "add_tps_sections",
    "check_tps_options",
    "check_tps_request",
    "plan_structures",
    "write_objectives",
]

#: The files :func:`write_objectives` writes.
OBJECTIVE_FILES = ("objectives.json", "objectives.csv")
#: Columns of ``objectives.csv``.
CSV_COLUMNS = (
    "structure",
    "objective",
    "dose_gy",
    "volume_pct",
    "priority",
    "source",
    "default_name",
)


@dataclass(frozen=True)
class TpsOptions:
    """The ROI naming and the objectives' doses of a plan.

    Attributes
    ----------
    naming : RoiNaming
    peak_dose_gy, valley_dose_gy : float, optional
        The objectives' doses (None: the protocol's template's,
        :func:`~lattice.planning.objectives.objective_doses`).
    """

    naming: RoiNaming = field(default_factory=RoiNaming)
    peak_dose_gy: float | None = None
    valley_dose_gy: float | None = None

    def __post_init__(self) -> None:
        for name in ("peak_dose_gy", "valley_dose_gy"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_range(name, getattr(self, name)))


def plan_structures(
    plan: Plan,
    naming: RoiNaming,
    *,
    vertex_rois: str = "both",
    stv: bool = False,
    cold_rois: str = "combined",
) -> dict[str, list[tuple[str, str]]]:
    """The (final name, default name) of the ROIs each objective role has in ``plan``: the
    combined vertex ROI (or, with ``vertex_rois='each'``, every vertex's), the valley, the
    STV when there is one, the cold spheres when placed (combined, or each with
    ``cold_rois='each'``)."""

    def named(*defaults: str) -> list[tuple[str, str]]:
        return [(naming.name(d), d) for d in defaults]

    peaks: list[tuple[str, str]] = []
    if plan.n_vertices:
        peaks = (
            named(*(r["name"] for r in plan.vertex_records()))
            if vertex_rois == "each"
            else named("LATTICE_VTX")
        )
    n_cold = 0 if plan.cold is None else len(plan.cold)
    cold = named("LATTICE_COLD") if n_cold else []
    if n_cold and cold_rois == "each":
        cold = named(*(f"COLD_{i:02d}" for i in range(1, n_cold + 1)))
    return {
        "peaks": peaks,
        "valley": named("LATTICE_VALLEY"),
        "stv": named("LATTICE_STV") if stv else [],
        "cold": cold,
    }


def check_tps_options(
    tps: TpsOptions | None,
    protocol: str | None,
    *,
    vertex_rois: str = "both",
    n_vertices: int = 99,
    stv: bool = False,
    cold: bool = False,
    cold_rois: str = "combined",
    gtv: bool = False,
    rings: Sequence[str] = (),
) -> None:
    """Before any work: the objectives' doses, and the names of the ROIs the plan will have
    (``n_vertices``: the most vertices expected, for the widest per-vertex name; ``rings``:
    the default names of the support shells and SCART rings asked for).

    Raises
    ------
    ParameterError
    """
    tps = tps or TpsOptions()
    objective_doses(protocol, peak_dose_gy=tps.peak_dose_gy, valley_dose_gy=tps.valley_dose_gy)
    defaults = ["LATTICE_TARGET", "LATTICE_VALLEY"]
    if vertex_rois in ("both", "combined"):
        defaults.append("LATTICE_VTX")
    if vertex_rois in ("both", "each"):
        defaults += [f"VTX_{i:02d}" for i in (1, max(n_vertices, 1))]
    defaults += ["LATTICE_STV"] * stv + ["GTV"] * gtv + list(rings)
    if cold:
        defaults += ["LATTICE_COLD"] * (cold_rois != "each") + ["COLD_01"] * (
            cold_rois != "combined"
        )
    check_roi_names({d: tps.naming.name(d) for d in defaults})


def check_tps_request(request: Any) -> None:
    """:func:`check_tps_options` for a :class:`~lattice.pipeline.PlanRequest`, before any
    work (the widest vertex name from ``count`` or ``max_vertices``, else 99 vertices).

    Raises
    ------
    ParameterError
    """
    opts, p = request.options, request.parameters
    check_tps_options(
        opts.tps,
        p.protocol,
        vertex_rois=opts.vertex_rois,
        n_vertices=p.count or p.max_vertices or 99,
        stv=opts.stv_margin_mm is not None or opts.stv_fraction is not None,
        cold=bool(p.cold_spheres),
        cold_rois=opts.cold_rois,
        gtv=opts.dicom and getattr(request.inputs, "reference_ct_dicom", 0) is None,
        rings=_ring_names(getattr(opts, "support", None)),
    )


def _ring_names(support: Any) -> list[str]:
    """The default names of the support shells and SCART rings asked for (``support``: the
    shells' SupportOptions, bounds as whole mm, or None)."""
    if support is None:
        return []
    shells = tuple(getattr(support, "shells_mm", None) or ())
    scart = tuple(getattr(support, "scart_ring_mm", None) or ())
    names = [f"LATTICE_SH{a:02d}_{b:02d}" for a, b in zip(shells, shells[1:])]
    for kind in ("GTV", "STV"):
        names += [f"{kind}_RING{a:02d}_{b:02d}" for a, b in zip(scart, scart[1:])]
    return names


def add_tps_sections(doc: dict[str, Any], plan: Plan, options: Any, *, stv: bool) -> dict[str, Any]:
    """``doc`` (plan.json) with the naming and the doses in ``parameters`` and the plan's
    ``objectives``; returned for chaining. ``options``: the
    :class:`~lattice.pipeline.PlanOptions` (its ``tps``, ``vertex_rois``, ``cold_rois``);
    ``stv``: the plan has an STV."""
    tps = options.tps or TpsOptions()
    structures = plan_structures(
        plan, tps.naming, vertex_rois=options.vertex_rois, stv=stv, cold_rois=options.cold_rois
    )
    objectives = plan_objectives(
        plan.parameters.protocol,
        structures,
        peak_dose_gy=tps.peak_dose_gy,
        valley_dose_gy=tps.valley_dose_gy,
    )
    doc["parameters"] = {
        **doc.get("parameters", {}),
        **tps.naming.parameters(),
        "peak_dose_gy": objectives["peak_dose_gy"],
        "valley_dose_gy": objectives["valley_dose_gy"],
    }
    doc["objectives"] = objectives
    return doc


def write_objectives(doc: Mapping[str, Any], stage: Path) -> list[str]:
    """``objectives.json`` and ``objectives.csv`` of plan.json's ``objectives`` into ``stage``
    (none without it); their names."""
    objectives = doc.get("objectives")
    if not objectives:
        return []
    write_json(objectives, stage / "objectives.json")
    with open(stage / "objectives.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for row in objectives["rows"]:
            writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    return list(OBJECTIVE_FILES)
