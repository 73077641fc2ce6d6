"""Cold spheres in a plan: :func:`lattice.planning.cold.cold_sites` under the planner's rules.

``lattice plan --cold-spheres`` places cold (valley) spheres at the holes of the vertices
once they are placed (:func:`plan_cold_sites`, called by
:func:`lattice.planning.placement.plan_vertices`), with

- the gap ``cold_gap_mm`` (default :data:`~lattice.planning.cold.DEFAULT_COLD_GAP_MM`,
  reason there) from every cold sphere's surface to every vertex sphere's surface;
- every cold sphere inside the GTV by the GTV margin under the surface model of the rules:
  the exact depth of :class:`~lattice.planning.rules.RuleField` (the same solid that checks
  the vertices) at least margin + cold radius. The OAR clearances are *not* applied: a cold
  sphere asks the optimiser for a low dose, which is what an organ next to it wants too,
  and the GTV margin already keeps it inside the target;
- cold-to-cold spacing :func:`cold_spacing_mm` = cold diameter + gap. Two cold spheres are
  both low-dose targets, so no fall-off has to fit between them; they only have to stay
  separate structures, and the same gap as to the peaks keeps them so. It keeps every
  octahedral hole of HCP (0.816 S apart along the stacking axis, S in-plane) and FCC (S),
  where the peak spacing S would thin HCP's to every other layer.

The shell depth limit of ``--mode shell`` applies to vertices only: the holes of a shell
arrangement lie between its vertices, wherever they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ParameterError
from .cold import DEFAULT_COLD_GAP_MM, ColdSites, cold_sites, cold_sphere_entries

if TYPE_CHECKING:
    from .plan import PlanParameters
    from .rules import RuleField

__all__ = [
    "COLD_PARAMETERS",
    "DEFAULT_COLD_GAP_MM",
    "ColdSites",
    "check_cold_options",
    "cold_depth_slack",
    "cold_document",
    "cold_parameters",
    "cold_warnings",
    "cold_spacing_mm",
    "plan_cold_sites",
]

#: The :class:`~lattice.planning.plan.PlanParameters` fields of the cold spheres (in plan.json's
#: ``parameters`` as every field is: ``cold_spheres`` false, ``cold_diameter_mm`` null when off).
COLD_PARAMETERS = ("cold_spheres", "cold_diameter_mm", "cold_gap_mm")


def check_cold_options(cold_spheres: bool, given: Iterable[str]) -> None:
    """Refuse a cold-sphere size, gap or ROI choice given without cold spheres.

    ``lattice plan --cold-gap-mm 3`` without ``--cold-spheres`` would otherwise plan without
    cold spheres and record a gap nothing used: the user meant one or the other, so it is an
    error (exit 2) rather than a warning.

    Parameters
    ----------
    cold_spheres : bool
    given : iterable of str
        The names given among ``cold_diameter_mm``, ``cold_gap_mm`` and ``cold_rois``
        (others ignored).

    Raises
    ------
    ParameterError (a ValueError)
        Naming the options given and how to fix it.
    """
    named = [n for n in ("cold_diameter_mm", "cold_gap_mm", "cold_rois") if n in set(given)]
    if named and not cold_spheres:
        names = " and ".join("{" + n + "}" for n in named)
        raise ParameterError(
            f"{names} only appl{'y' if len(named) > 1 else 'ies'} to cold spheres; add "
            f"{{cold_spheres}} or drop {names}",
            parameters=[*named, "cold_spheres"],
        )


def cold_spacing_mm(cold_diameter_mm: float, cold_gap_mm: float) -> float:
    """Least centre-to-centre distance between two cold spheres, mm (see module docstring)."""
    return float(cold_diameter_mm) + float(cold_gap_mm)


def cold_depth_slack(
    field: RuleField, gtv_margin_mm: float, cold_radius_mm: float
) -> Any:  # a SlackFn
    """``slack(points RAS mm) -> depth - (margin + cold radius)`` under the rules' surface."""

    def slack(points_ras_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        depth = np.asarray(field.depth_mm(points_ras_mm), dtype=float)
        return depth - (float(gtv_margin_mm) + float(cold_radius_mm))

    return slack


def plan_cold_sites(
    field: RuleField, centers_ras_mm: NDArray[np.float64], params: PlanParameters
) -> ColdSites | None:
    """The cold spheres of a plan's vertices, or None when ``params.cold_spheres`` is off.

    Parameters
    ----------
    field : RuleField
        The rules the vertices were placed under (its exact GTV depth is used).
    centers_ras_mm : (n, 3) ndarray of float
        Vertex centres, RAS mm.
    params : PlanParameters

    Returns
    -------
    ColdSites or None
    """
    if not params.cold_spheres:
        return None
    diameter = params.diameter_mm if params.cold_diameter_mm is None else params.cold_diameter_mm
    return cold_sites(
        np.asarray(centers_ras_mm, dtype=float).reshape(-1, 3),
        peak_diameter_mm=params.diameter_mm,
        cold_diameter_mm=diameter,
        cold_gap_mm=params.cold_gap_mm,
        min_spacing_mm=cold_spacing_mm(diameter, params.cold_gap_mm),
        slack_fn=cold_depth_slack(field, params.gtv_margin_mm, diameter / 2.0),
    )


def cold_warnings(cold: ColdSites | None, n_vertices: int) -> list[str]:
    """A warning when cold spheres were asked for and none fits: the plan is written (its
    vertices are what was planned), but the user must not miss that ``cold_spheres`` is
    empty."""
    if cold is None or len(cold):
        return []
    why = (
        "fewer than 4 vertices, or all in one plane, leave no hole between them"
        if n_vertices < 4
        else f"no hole between the vertices keeps the {cold.gap_mm:g} mm gap to every vertex "
        "sphere and lies inside the GTV by the margin"
    )
    return [
        f"--cold-spheres: no cold sphere of D {cold.diameter_mm:g} mm fits ({why}); try a "
        "smaller --cold-diameter-mm or --cold-gap-mm"
    ]


def cold_parameters(params: dict[str, Any], cold: ColdSites | None) -> dict[str, Any]:
    """plan.json's ``parameters`` from ``asdict(PlanParameters)``, every field recorded as
    for the other parameters; with cold spheres the diameter resolved (D when not given)."""
    if cold is None:
        return params
    return {**params, "cold_diameter_mm": float(cold.diameter_mm)}


def cold_document(cold: ColdSites | None) -> dict[str, Any]:
    """plan.json's ``cold_spheres`` (empty mapping without cold spheres: no key)."""
    return {} if cold is None else {"cold_spheres": cold_sphere_entries(cold)}
