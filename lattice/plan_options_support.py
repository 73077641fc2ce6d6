"""The helper-ring options of ``lattice plan`` and ``lattice batch`` (rows of
:data:`lattice.plan_options.PLAN_OPTIONS`): ``--shells-mm``, ``--body``, ``--scart-ring-mm``
(see :mod:`lattice.planning.support`), and :func:`support_options`, which reads them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .planning.support import SupportOptions

__all__ = ["SUPPORT_OPTION_ROWS", "support_options"]

#: Keyword arguments of each :class:`~lattice.plan_options.PlanOption` (in ``--help`` order,
#: after the STV options).
SUPPORT_OPTION_ROWS: tuple[dict[str, Any], ...] = (
    {
        "name": "shells_mm",
        "kind": "text",
        "help": "support shells: ring bounds in whole mm from the vertex sphere surfaces, "
        "e.g. 0,5,15,35 (rings 0-5, 5-15, 15-35 mm), clipped to the GTV or --body: "
        "shells.nii.gz, the LATTICE_SHaa_bb AVOIDANCE ROIs and plan.json shells",
        "metavar": "A,B,...",
    },
    {
        "name": "body",
        "kind": "text",
        "help": "clip the support shells (and SCART rings) to this body instead of the GTV: "
        "a NIfTI mask on the CT grid, or with --ct-dicom an ROI name of --rtstruct",
        "metavar": "MASK|ROI",
    },
    {
        "name": "scart_ring_mm",
        "kind": "text",
        "help": "with an STV: SCART rings at these whole mm from the GTV and from the STV, "
        "e.g. 2,12 (GTV+12 mm minus GTV+2 mm, the same around the STV): gtv_rings.nii.gz, "
        "stv_rings.nii.gz, the GTV_RINGaa_bb and STV_RINGaa_bb CONTROL ROIs",
        "metavar": "A,B",
    },
)


def support_options(values: Mapping[str, Any]) -> SupportOptions | None:
    """The :class:`~lattice.planning.support.SupportOptions` of the options by name (None or
    absent: not given), or None when no ring is asked for.

    Raises
    ------
    ParameterError
        Bounds that do not parse (:func:`~lattice.planning.support.parse_ring_bounds`),
        ``--body`` without rings, ``--scart-ring-mm`` without an STV.
    """
    given = {k: values.get(k) for k in ("shells_mm", "body", "scart_ring_mm")}
    if all(v is None or v == "" for v in given.values()):
        return None
    options = SupportOptions(**{k: (None if v == "" else v) for k, v in given.items()})
    stv = values.get("stv_margin_mm") is not None or values.get("stv_fraction") is not None
    options.check_stv(stv)
    return options
