"""The cold-sphere output option of ``lattice plan`` and ``lattice batch`` (rows of
:data:`lattice.plan_options.PLAN_OPTIONS`): ``--cold-rois`` (see
:func:`lattice.io.cold_outputs.cold_roi`). The planning options ``--cold-spheres``,
``--cold-diameter-mm`` and ``--cold-gap-mm`` are rows of the table itself."""

from __future__ import annotations

from typing import Any

__all__ = ["COLD_OPTION_ROWS"]

#: Keyword arguments of each :class:`~lattice.plan_options.PlanOption` (in ``--help`` order,
#: after the vertex ROIs).
COLD_OPTION_ROWS: tuple[dict[str, Any], ...] = (
    {
        "name": "cold_rois",
        "kind": "choice",
        "help": "cold-sphere ROIs in rtstruct.dcm with --cold-spheres: one combined "
        "LATTICE_COLD, one COLD_nn per cold sphere, or both ({default})",
        "choices": "lattice.io.cold_outputs:COLD_ROI_CHOICES",
    },
)
