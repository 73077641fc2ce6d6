"""3D Slicer markups of a plan: ``vertices.mrk.json``, one labelled point per vertex centre.

The document follows Slicer's markups JSON schema v1.0.3 (the one Slicer 5 writes): one
markup of type ``Fiducial`` (a point list), ``coordinateSystem`` LPS (Slicer's convention
for files, as for the meshes), positions in mm, one control point per vertex with the
plan's id and name. Only fields of the schema are written, plus
``lastUsedControlPointNumber``, which Slicer itself writes. Dragging the file into Slicer
beside the CT shows every vertex as a sphere of the vertex diameter, labelled ``VTX_01``...

Orientation in an LPS file
    Slicer negates the first two rows of a control point's 3x3 orientation when it reads an
    LPS file (RAS in memory), and writes the identity as ``[-1, 0, 0, 0, -1, 0, 0, 0, 1]``;
    :data:`IDENTITY_ORIENTATION_LPS` is that, so a point loads with the identity orientation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import OutputWriteError
from ..planning.plan import Plan
from .folder import write_json

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/"
    "Markups/Resources/Schema/markups-schema-v1.0.3.json#"
)
#: The identity orientation (row-major 3x3) as an LPS file stores it: diag(-1, -1, 1).
IDENTITY_ORIENTATION_LPS = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]
#: Point colour (RGB 0-1): the orange-red of the vertices in the overview picture.
VERTEX_COLOR = [1.0, 0.2, 0.1]


def markups_document(plan: Plan) -> dict[str, Any]:
    """The Slicer markups document of the plan's vertex centres (LPS mm).

    Parameters
    ----------
    plan : Plan

    Returns
    -------
    dict
        JSON-ready: ``{"@schema": ..., "markups": [one Fiducial markup]}``. Control point
        ``id`` is the vertex id as a string, ``label`` its name (``VTX_01``...), ``position``
        its centre in LPS mm at full precision, ``description`` its depth in the GTV. The
        points are locked (a plan is not edited by dragging). The display draws each point
        as a sphere of the vertex diameter (``glyphSize`` in mm, ``useGlyphScale`` false). A
        plan without vertices gives a markup without control points.
    """
    p = plan.parameters
    return {
        "@schema": MARKUPS_SCHEMA,
        "markups": [
            {
                "type": "Fiducial",
                "name": "LATTICE vertices",
                "coordinateSystem": "LPS",
                "coordinateUnits": "mm",
                "locked": True,
                "fixedNumberOfControlPoints": True,
                "labelFormat": "VTX_%02d",
                "lastUsedControlPointNumber": plan.n_vertices,
                "controlPoints": [_control_point(r) for r in plan.vertex_records()],
                "measurements": [],
                "display": {
                    "visibility": True,
                    "opacity": 1.0,
                    "color": VERTEX_COLOR,
                    "selectedColor": VERTEX_COLOR,
                    "propertiesLabelVisibility": False,
                    "pointLabelsVisibility": True,
                    "textScale": 3.0,
                    "glyphType": "Sphere3D",
                    # The absolute size (mm) is the one used: the sphere the vertex is. The
                    # relative scale (% of the view) is Slicer's default, for whoever toggles it.
                    "glyphScale": 3.0,
                    "glyphSize": float(p.diameter_mm),
                    "useGlyphScale": False,
                },
            }
        ],
    }


def _control_point(record: dict[str, Any]) -> dict[str, Any]:
    depth = record["depth_mm"]
    return {
        "id": str(record["id"]),
        "label": record["name"],
        "description": "" if depth is None else f"depth {depth:.2f} mm in the GTV",
        "associatedNodeID": "",
        "position": record["center_lps_mm"],
        "orientation": IDENTITY_ORIENTATION_LPS,
        "selected": True,
        "locked": True,
        "visibility": True,
        "positionStatus": "defined",
    }


def write_markups(plan: Plan, path: str | Path) -> Path:
    """Write :func:`markups_document` as indented JSON.

    Parameters
    ----------
    plan : Plan
    path : path
        The file, conventionally ``vertices.mrk.json`` (Slicer recognises ``.mrk.json``);
        replaced if it exists.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputWriteError
        The file cannot be written.
    """
    try:
        return write_json(markups_document(plan), path)
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write the markups file '{path}' "
            f"({exc.strerror or exc}); free some space or choose another "
            "output folder"
        ) from exc
