"""Named protocol presets: parameter sets published for LATTICE programmes.

Each preset gives planning parameters and the source it follows; explicit settings override
preset values. The values are the ones stated in ``docs/protocols.md`` from
the cited papers; "like" because a protocol is more than its geometry (dose, fractionation,
plan evaluation are not modelled here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ParameterError


@dataclass(frozen=True)
class Protocol:
    """A named parameter set and where it comes from."""

    name: str
    description: str
    source: str
    parameters: dict[str, Any] = field(default_factory=dict)
    oar_clearance_mm: float | None = None


PROTOCOLS: dict[str, Protocol] = {
    "mayo": Protocol(
        name="mayo",
        description="Mayo-like: 15 mm vertices, >= 30 mm apart, centres >= 5 mm + R inside "
        "the GTV and >= 10 mm + R from every OAR; co-planar rule: centres less "
        "than 20 mm apart in z must be >= 80 mm apart",
        source="Deufel et al., Phys Med Biol 2024;69:075010 (Mayo LATTICE placement rules)",
        parameters={
            "diameter_mm": 15.0,
            "min_spacing_mm": 30.0,
            "gtv_margin_mm": 5.0,
            "pattern": "hcp",
            "coplanar_mm": 20.0,
            "coplanar_spacing_mm": 80.0,
        },
        oar_clearance_mm=10.0,
    ),
    "washu": Protocol(
        name="washu",
        description="WashU-like (LITE SABR): 15 mm hot spheres on an FCC lattice "
        "3*sqrt(2) = 42.4 mm apart, on CT slice planes, GTV retracted by 5 mm",
        source="Duriseti et al., Radiother Oncol 2022;167:172 and 317 (LITE SABR M1); "
        "script-based sphere placement, Phys Imaging Radiat Oncol 2024 (PMC10876586)",
        parameters={
            "diameter_mm": 15.0,
            "min_spacing_mm": 42.43,
            "gtv_margin_mm": 5.0,
            "pattern": "fcc",
            "snap_to_slices": True,
        },
    ),
}


def get_protocol(name: str) -> Protocol:
    """The named preset; :class:`ParameterError` listing the valid names otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ParameterError(
            f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}"
        ) from None


def protocol_clearance_mm(protocol: str | None, oar: str) -> float:
    """The clearance of an OAR given without one: the protocol's (Mayo: 10 mm).

    Both :meth:`lattice.planning.plan.PlanParameters.from_protocol` (an ``oar_clearance_mm`` value
    of None) and :func:`lattice.run_plan` (an OAR input without a clearance) take it from
    here, so a notebook and ``lattice plan --protocol mayo --oar cord.nii.gz`` agree.

    Parameters
    ----------
    protocol : str or None
        A name of :data:`PROTOCOLS`, or None (no protocol).
    oar : str
        How the OAR was given (its name or file), for the message.

    Raises
    ------
    ParameterError
        No protocol, or one that sets no OAR clearance (WashU); an unknown protocol.
    """
    clearance = get_protocol(protocol).oar_clearance_mm if protocol is not None else None
    if clearance is None:
        raise ParameterError(
            f"{{oar}} '{oar}' has no clearance; write {{oar}} {oar}:MM (e.g. "
            f"{oar}:10) or choose a {{protocol}} that sets one",
            parameters=["oar", "protocol"],
        )
    return clearance
