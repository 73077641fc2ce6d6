"""3D Slicer markups of a plan: ``vertices.mrk.json``, one labelled point per vertex centre.

Markups JSON schema v1.0.3, one ``Fiducial`` markup, ``coordinateSystem`` LPS (Slicer's file
convention), positions in mm. Dragging the file into Slicer beside the CT shows the vertices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..plan import Plan

MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/"
                  "Markups/Resources/Schema/markups-schema-v1.0.3.json#")
#: Identity orientation of a control point (row-major 3x3).
IDENTITY = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def markups_document(plan: Plan) -> dict[str, Any]:
    """The markups JSON document of the plan's vertex centres (LPS mm)."""
    points = []
    for record in plan.vertex_records():
        points.append({
            "id": str(record["id"]),
            "label": record["name"],
            "description": f"depth {record['depth_mm']:.2f} mm",
            "associatedNodeID": "",
            "position": record["center_lps_mm"],
            "orientation": IDENTITY,
            "selected": True,
            "locked": True,
            "visibility": True,
            "positionStatus": "defined",
        })
    p = plan.parameters
    return {
        "@schema": MARKUPS_SCHEMA,
        "markups": [{
            "type": "Fiducial",
            "name": "LATTICE vertices",
            "coordinateSystem": "LPS",
            "coordinateUnits": "mm",
            "locked": True,
            "fixedNumberOfControlPoints": True,
            "labelFormat": "VTX_%02d",
            "lastUsedControlPointNumber": plan.n_vertices,
            "description": f"lattice {p.pattern} vertex centres, D {p.diameter_mm:g} mm, "
                           f"spacing {p.min_spacing_mm:g} mm, margin {p.gtv_margin_mm:g} mm",
            "controlPoints": points,
            "measurements": [],
            "display": {
                "visibility": True,
                "opacity": 1.0,
                "color": [1.0, 0.2, 0.1],
                "selectedColor": [1.0, 0.2, 0.1],
                "activeColor": [0.4, 1.0, 0.0],
                "propertiesLabelVisibility": False,
                "pointLabelsVisibility": True,
                "textScale": 3.0,
                "glyphType": "Sphere3D",
                # Absolute glyph size in mm: the sphere the vertex is.
                "glyphScale": 3.0,
                "glyphSize": float(p.diameter_mm),
                "useGlyphScale": False,
            },
        }],
    }


def write_markups(plan: Plan, path: str | Path) -> Path:
    """Write :func:`markups_document` as JSON."""
    from . import write_json

    return write_json(markups_document(plan), path)
