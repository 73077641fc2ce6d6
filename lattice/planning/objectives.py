"""Optimisation objectives for the TPS: a template of rows per protocol, scaled by the peak and
valley doses.

A starting point for the TPS optimiser, not a prescription. Each row names a structure (its
ROI name as written, so it follows the naming scheme), an objective (``lower``: at least the
dose to at least the volume; ``upper``: at most the dose to at most the volume; ``mean``: a
mean-dose objective at the dose), a dose in Gy, a volume in % (None for ``mean``), a priority
and where its numbers come from. A row's dose is a factor of the peak dose or of the valley
dose, so ``--peak-dose-gy`` and ``--valley-dose-gy`` scale the template.

The numbers (``../shared/docs/domain.md`` sections 7 and 8, and the sources below):

- Peaks: MAAS-SFRThelper's SFRT template asks the peaks for ``lower`` 100 % at the peak dose
  (15 Gy, priority 140) and a ``mean`` of 20 Gy = 4/3 of it (priority 150).
- Valley: the same template caps the valley with ``upper`` 6 Gy (priority 130) and a
  ``mean`` of 4.5 Gy (priority 120): 4.5 Gy is 0.3 x the 15 Gy peak, the cap pyCERR puts on
  the valley (0.3 x the peak dose), so the valley dose defaults to
  :data:`VALLEY_FRACTION` x the peak dose and the ``upper`` row is 4/3 of the valley dose
  (6 / 4.5). The template gives no volume for the ``upper`` row: 0 % (a maximum) here.
- STV (SCART): MAAS asks the STV for 99 % of the prescription, the peak dose here (the seed
  trial's SCART arm gives the STV the same 8-12 Gy x 1 as the vertices).
- Cold spheres: no published objective; lattice asks them for no more than the valley dose.
- Doses: the seed trial (NCT06987370) gives 8-12 Gy x 1 to the vertices: the default peak dose
  is the middle, 10 Gy in 1 fraction (``mayo`` too: its published rules are geometric). WashU's
  LITE SABR M1 gives 66.7 Gy to the spheres and 20 Gy to the tumour in 5 fractions (Duriseti
  et al., Radiother Oncol 2022;167:172).

These are not the dose proxy's ``--dose-peak-gy`` / ``--dose-valley-gy`` (levels of a geometric
picture of a dose, :mod:`lattice.analysis.dose`); the objectives do not follow them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ParameterError
from .parameters import check_range

#: The kinds of objective.
OBJECTIVE_KINDS = ("lower", "upper", "mean")
#: The valley dose when only the peak dose is known: MAAS's 4.5 Gy valley mean for a 15 Gy
#: peak, and pyCERR's cap on the valley (0.3 x the peak dose).
VALLEY_FRACTION = 0.3
#: What the objectives are, written beside them wherever they appear.
OBJECTIVES_NOTE = (
    "A starting point for the TPS optimiser, not a prescription: the dose levels, volumes "
    "and priorities are to be reviewed and adjusted by the planner for each patient."
)
#: The structures a template row may be about, and their default ROI names.
ROLES = {
    "peaks": "LATTICE_VTX",
    "valley": "LATTICE_VALLEY",
    "stv": "LATTICE_STV",
    "cold": "LATTICE_COLD",
}

_MAAS = "MAAS-SFRThelper SFRT template"


@dataclass(frozen=True)
class ObjectiveRow:
    """One row of a template: its dose is ``factor`` x the peak or the valley dose (``of``)."""

    role: str
    objective: str
    of: str
    factor: float
    volume_pct: float | None
    priority: int
    source: str


@dataclass(frozen=True)
class ObjectiveTemplate:
    """The rows of a protocol, its default doses (Gy) and fractions, and their source."""

    name: str
    peak_dose_gy: float
    valley_dose_gy: float | None
    fractions: int
    dose_source: str
    rows: tuple[ObjectiveRow, ...]


_ROWS = (
    ObjectiveRow("peaks", "lower", "peak", 1.0, 100.0, 140, f"{_MAAS}: lower 100 % at 15 Gy"),
    ObjectiveRow("peaks", "mean", "peak", 4 / 3, None, 150, f"{_MAAS}: mean 20 Gy for 15 Gy"),
    ObjectiveRow(
        "valley", "upper", "valley", 4 / 3, 0.0, 130, f"{_MAAS}: upper 6 Gy for a 4.5 Gy mean"
    ),
    ObjectiveRow(
        "valley", "mean", "valley", 1.0, None, 120, f"{_MAAS}: mean 4.5 Gy; pyCERR: 0.3 x peak"
    ),
    ObjectiveRow("stv", "lower", "peak", 1.0, 99.0, 140, "MAAS-SFRThelper SCART: STV 99 %"),
    ObjectiveRow("cold", "upper", "valley", 1.0, 0.0, 120, "lattice: no published value"),
)
_TRIAL = "NCT06987370 SFRT arm: 8-12 Gy x 1 to the vertices (middle: 10 Gy)"

#: The template of each protocol (:data:`lattice.planning.protocols.PROTOCOLS`) and of no
#: protocol (``default``).
OBJECTIVE_TEMPLATES: dict[str, ObjectiveTemplate] = {
    "default": ObjectiveTemplate("default", 10.0, None, 1, _TRIAL, _ROWS),
    "mayo": ObjectiveTemplate(
        "mayo", 10.0, None, 1, f"{_TRIAL}; the Mayo rules (Deufel 2024) are geometric", _ROWS
    ),
    "washu": ObjectiveTemplate(
        "washu",
        66.7,
        20.0,
        5,
        "LITE SABR M1 (Duriseti et al., Radiother Oncol 2022;167:172): 66.7 Gy to the "
        "spheres, 20 Gy to the tumour, 5 fractions",
        _ROWS,
    ),
}


def objective_doses(
    protocol: str | None, *, peak_dose_gy: float | None = None, valley_dose_gy: float | None = None
) -> tuple[float, float]:
    """The peak and valley doses (Gy): given, else the protocol's template's (the valley
    :data:`VALLEY_FRACTION` x the peak when the template has none).

    Raises
    ------
    ParameterError
        A dose out of its range (:data:`~lattice.planning.parameters.RANGES`), or a valley
        dose not below the peak dose.
    """
    template = OBJECTIVE_TEMPLATES[protocol or "default"]
    if peak_dose_gy is not None:
        check_range("peak_dose_gy", peak_dose_gy)
    if valley_dose_gy is not None:
        check_range("valley_dose_gy", valley_dose_gy)
    peak = template.peak_dose_gy if peak_dose_gy is None else float(peak_dose_gy)
    if valley_dose_gy is not None:
        valley = float(valley_dose_gy)
    elif peak_dose_gy is None and template.valley_dose_gy is not None:
        valley = template.valley_dose_gy
    else:
        valley = VALLEY_FRACTION * peak
    if not valley < peak:
        raise ParameterError(
            f"the objectives' valley dose ({valley:g} Gy) must be below their peak dose "
            f"({peak:g} Gy); set {{peak_dose_gy}} and {{valley_dose_gy}}",
            parameters=["peak_dose_gy", "valley_dose_gy"],
        )
    return peak, valley


def plan_objectives(
    protocol: str | None,
    structures: Mapping[str, Sequence[tuple[str, str]]],
    *,
    peak_dose_gy: float | None = None,
    valley_dose_gy: float | None = None,
) -> dict[str, Any]:
    """The objectives of a plan: the protocol's template on the structures it has.

    Parameters
    ----------
    protocol : str or None
        A protocol name (None: the ``default`` template).
    structures : mapping of role to sequence of (name, default name)
        The ROIs each role (:data:`ROLES`) has in this plan, under their final names: one
        for most, one per vertex when only per-vertex ROIs are written; a role absent or
        empty has no rows.
    peak_dose_gy, valley_dose_gy : float, optional
        See :func:`objective_doses`.

    Returns
    -------
    dict
        ``note``, ``template``, ``peak_dose_gy`` and ``valley_dose_gy`` (with
        ``peak_dose_from`` and ``valley_dose_from``: ``given``, ``template`` or the fraction of
        the peak), ``fractions``, ``dose_source`` (the template's) and ``rows`` (each
        ``structure``, ``default_name``, ``objective``, ``dose_gy``, ``volume_pct``,
        ``priority``, ``source``).
    """
    template = OBJECTIVE_TEMPLATES[protocol or "default"]
    peak, valley = objective_doses(
        protocol, peak_dose_gy=peak_dose_gy, valley_dose_gy=valley_dose_gy
    )
    rows = []
    for row in template.rows:
        level = peak if row.of == "peak" else valley
        for name, default in structures.get(row.role, ()):
            rows.append(
                {
                    "structure": name,
                    "default_name": default,
                    "objective": row.objective,
                    "dose_gy": round(row.factor * level, 3),
                    "volume_pct": row.volume_pct,
                    "priority": row.priority,
                    "source": row.source,
                }
            )
    if valley_dose_gy is not None:
        valley_from = "given"
    elif peak_dose_gy is None and template.valley_dose_gy is not None:
        valley_from = "template"
    else:
        valley_from = f"{VALLEY_FRACTION:g} x the peak dose"
    return {
        "note": OBJECTIVES_NOTE,
        "template": template.name,
        "peak_dose_gy": peak,
        "peak_dose_from": "template" if peak_dose_gy is None else "given",
        "valley_dose_gy": valley,
        "valley_dose_from": valley_from,
        "fractions": template.fractions,
        "dose_source": template.dose_source,
        "rows": rows,
    }
