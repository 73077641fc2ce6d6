"""The report's sections on what the TPS gets beside the geometry: the optimisation objectives
(labelled as a starting point, not a prescription) and the ROIs of ``rtstruct.dcm`` with
their names, types and colours."""

from __future__ import annotations

import html
from typing import Any

from ..io.planfolder import PlanDocument


def tps_sections(plan: PlanDocument) -> str:
    """HTML of the objectives and ROI sections ('' for a plan without them)."""
    return _objectives(plan.objectives) + _rois(plan.rois)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _objectives(objectives: dict[str, Any]) -> str:
    if not objectives:
        return ""
    head = (
        "<h2>Optimisation objectives: a starting point for the TPS optimiser, not a "
        "prescription</h2>"
        f"<p class='warn'>{_e(objectives.get('note'))}</p>"
        f"<p class='note'>Template {_e(objectives.get('template'))}: peak "
        f"{_e(objectives.get('peak_dose_gy'))} Gy ({_e(objectives.get('peak_dose_from'))}), "
        f"valley {_e(objectives.get('valley_dose_gy'))} Gy "
        f"({_e(objectives.get('valley_dose_from'))}), {_e(objectives.get('fractions'))} "
        f"fraction(s); doses from {_e(objectives.get('dose_source'))}. Also in "
        "objectives.json and objectives.csv. Not the dose proxy's levels.</p>"
    )
    rows = "".join(
        f"<tr><td>{_e(r.get('structure'))}</td><td>{_e(r.get('objective'))}</td>"
        f"<td class='num'>{_e(r.get('dose_gy'))}</td>"
        f"<td class='num'>{_e('-' if r.get('volume_pct') is None else r.get('volume_pct'))}</td>"
        f"<td class='num'>{_e(r.get('priority'))}</td><td>{_e(r.get('source'))}</td></tr>"
        for r in objectives.get("rows", [])
    )
    return (
        head + "<table><tr><th>structure</th><th>objective</th><th>dose Gy</th>"
        f"<th>volume %</th><th>priority</th><th>source</th></tr>{rows}</table>"
    )


def _rois(rois: list[dict[str, Any]]) -> str:
    if not rois:
        return ""
    rows = []
    for r in rois:
        color = r.get("color") or [0, 0, 0]
        swatch = "#" + "".join(f"{int(c):02x}" for c in color[:3])
        rows.append(
            f"<tr><td>{_e(r.get('name'))}</td><td>{_e(r.get('default_name'))}</td>"
            f"<td>{_e(r.get('type'))}</td><td><span style='background:{swatch}'>"
            f"&#160;&#160;&#160;&#160;</span> {_e(', '.join(map(str, color)))}</td></tr>"
        )
    return (
        "<h2>ROIs in rtstruct.dcm</h2><table><tr><th>name</th><th>default name</th>"
        f"<th>type</th><th>colour (RGB)</th></tr>{''.join(rows)}</table>"
    )
