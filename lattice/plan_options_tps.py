"""The ROI-name and objective options of ``lattice plan`` and ``lattice batch`` (rows of
:data:`lattice.plan_options.PLAN_OPTIONS`): ``--roi-names``, ``--roi-prefix``,
``--roi-name-map``, ``--peak-dose-gy``, ``--valley-dose-gy``, and :func:`tps_options`, which
reads them (see :mod:`lattice.io.roi_names` and :mod:`lattice.planning.objectives`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .io.tps_outputs import TpsOptions

__all__ = ["TPS_OPTION_NAMES", "TPS_OPTION_ROWS", "tps_options"]

#: Keyword arguments of each :class:`~lattice.plan_options.PlanOption`, in ``--help`` order.
TPS_OPTION_ROWS: tuple[dict[str, Any], ...] = (
    {
        "name": "roi_names",
        "kind": "choice",
        "help": "ROI names in rtstruct.dcm and objectives: lattice's own (LATTICE_VTX, "
        "VTX_01...), or AAPM TG-263 (PTV_High, PTV01_High, PTV!_Low, helpers z...) "
        "(default: default)",
        "choices": "lattice.io.roi_names:ROI_NAME_SCHEMES",
    },
    {
        "name": "roi_prefix",
        "kind": "text",
        "help": "put this before every ROI name (after the z of a TG-263 helper), e.g. L1_ "
        "for a second lesion; every name stays <= 16 characters",
        "metavar": "PREFIX",
    },
    {
        "name": "roi_name_map",
        "kind": "text",
        "help": "JSON file of a clinic's own ROI names, default name -> name, e.g. "
        '{{"LATTICE_VTX": "zPTV_Peak"}}; used as given, recorded in plan.json with its sha256',
        "metavar": "FILE.json",
    },
    {
        "name": "peak_dose_gy",
        "kind": "number",
        "help": "peak (vertex) dose of objectives.json, a starting point for the TPS "
        "optimiser, not a prescription (default: the protocol's; 10 Gy x 1, the seed "
        "trial's 8-12 Gy; washu 66.7 Gy / 5 fx). Not the dose proxy's --dose-peak-gy",
        "range": "peak_dose_gy",
        "metavar": "GY",
    },
    {
        "name": "valley_dose_gy",
        "kind": "number",
        "help": "valley dose of objectives.json (default: the protocol's; 0.3 x the peak "
        "dose, washu 20 Gy). Not the dose proxy's --dose-valley-gy",
        "range": "valley_dose_gy",
        "metavar": "GY",
    },
)
#: The option names of :data:`TPS_OPTION_ROWS`.
TPS_OPTION_NAMES = tuple(row["name"] for row in TPS_OPTION_ROWS)


def tps_options(values: Mapping[str, Any]) -> TpsOptions | None:
    """The :class:`~lattice.io.tps_outputs.TpsOptions` of the options by name (None or absent:
    not given), the name map read now; None when none is given.

    Raises
    ------
    InputFileError
        The name map cannot be read.
    ParameterError
        A bad scheme, prefix, map or dose (:class:`~lattice.io.roi_names.RoiNaming`,
        :func:`~lattice.planning.objectives.objective_doses`).
    """
    from .io.roi_names import RoiNaming

    given = {k: values.get(k) for k in TPS_OPTION_NAMES}
    given = {k: (None if v == "" else v) for k, v in given.items()}
    if all(v is None for v in given.values()):
        return None
    naming = RoiNaming.from_options(given["roi_names"], given["roi_prefix"], given["roi_name_map"])
    return TpsOptions(
        naming=naming, peak_dose_gy=given["peak_dose_gy"], valley_dose_gy=given["valley_dose_gy"]
    )
