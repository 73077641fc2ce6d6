"""3D Slicer markups: schema fields, one labelled point per vertex, LPS from the plan's RAS.

No network and no jsonschema dependency: :func:`schema_problems` checks the constraints of
Slicer's markups-schema-v1.0.3.json (types, enums, array lengths, ranges) that apply to the
fields the writer uses, copied from the schema.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lattice.errors import OutputWriteError
from lattice.io.markups import markups_document, write_markups
from lattice.planning.placement import plan_vertices
from lattice.volume import Volume

SCHEMA_URL = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
    "Resources/Schema/markups-schema-v1.0.3.json#"
)

# Constraints of markups-schema-v1.0.3.json.
MARKUP_TYPES = {"Fiducial", "Line", "Angle", "Curve", "ClosedCurve", "Plane", "ROI"}
GLYPH_TYPES = {
    "Vertex2D",
    "Dash2D",
    "Cross2D",
    "ThickCross2D",
    "Triangle2D",
    "Square2D",
    "Circle2D",
    "Diamond2D",
    "Arrow2D",
    "ThickArrow2D",
    "HookedArrow2D",
    "StarBurst2D",
    "Sphere3D",
    "Diamond3D",
}
MARKUP_FIELDS = {
    "type": str,
    "name": str,
    "coordinateSystem": str,
    "coordinateUnits": str,
    "locked": bool,
    "fixedNumberOfControlPoints": bool,
    "labelFormat": str,
    "controlPoints": list,
    "measurements": list,
    "display": dict,
}
POINT_FIELDS = {
    "id": str,
    "label": str,
    "description": str,
    "associatedNodeID": str,
    "position": list,
    "orientation": list,
    "selected": bool,
    "locked": bool,
    "visibility": bool,
    "positionStatus": str,
}
DISPLAY_FIELDS = {
    "visibility": bool,
    "opacity": float,
    "color": list,
    "selectedColor": list,
    "activeColor": list,
    "propertiesLabelVisibility": bool,
    "pointLabelsVisibility": bool,
    "textScale": float,
    "glyphType": str,
    "glyphScale": float,
    "glyphSize": float,
    "useGlyphScale": bool,
}


def _numbers(value, n):
    return (
        isinstance(value, list)
        and len(value) == n
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
    )


def _typed(obj, fields, where):
    problems = []
    for key, value in obj.items():
        want = fields.get(key)
        if want is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = want is None or isinstance(value, want)
        if not ok:
            problems.append(f"{where}.{key}: {value!r} is not {want.__name__}")
    return problems


def schema_problems(doc) -> list[str]:
    """What in ``doc`` breaks the v1.0.3 schema's rules for the fields used (empty: fine)."""
    problems = []
    if not isinstance(doc.get("@schema"), str) or not isinstance(doc.get("markups"), list):
        return ["@schema (string) and markups (array) are required"]
    for m, markup in enumerate(doc["markups"]):
        where = f"markups[{m}]"
        problems += _typed(markup, MARKUP_FIELDS, where)
        if markup.get("type") not in MARKUP_TYPES:
            problems.append(f"{where}.type {markup.get('type')!r}")
        if markup.get("coordinateSystem", "LPS") not in {"LPS", "RAS"}:
            problems.append(f"{where}.coordinateSystem")
        if markup.get("coordinateUnits", "mm") not in {"mm", "um"}:
            problems.append(f"{where}.coordinateUnits")
        for i, point in enumerate(markup.get("controlPoints", [])):
            at = f"{where}.controlPoints[{i}]"
            problems += _typed(point, POINT_FIELDS, at)
            if "position" in point and not _numbers(point["position"], 3):
                problems.append(f"{at}.position")
            if "orientation" in point and not _numbers(point["orientation"], 9):
                problems.append(f"{at}.orientation")
            if point.get("positionStatus", "defined") not in {"undefined", "preview", "defined"}:
                problems.append(f"{at}.positionStatus")
        display = markup.get("display", {})
        problems += _typed(display, DISPLAY_FIELDS, f"{where}.display")
        for key in ("color", "selectedColor", "activeColor"):
            if key in display and not (
                _numbers(display[key], 3) and all(0 <= v <= 1 for v in display[key])
            ):
                problems.append(f"{where}.display.{key}")
        if not 0 <= display.get("opacity", 1.0) <= 1:
            problems.append(f"{where}.display.opacity")
        for key in ("textScale", "glyphScale", "glyphSize"):
            if display.get(key, 0.0) < 0:
                problems.append(f"{where}.display.{key}")
        if display.get("glyphType", "Sphere3D") not in GLYPH_TYPES:
            problems.append(f"{where}.display.glyphType")
    return problems


@pytest.fixture(scope="module")
def plan(make_volume, ellipsoid_mask):
    vol = make_volume((60, 56, 40), (0.9, 1.1, 2.0), "oblique")
    gtv = Volume(ellipsoid_mask(vol, (-12.0, 25.0, 40.0), 25.0), vol.affine)
    plan = plan_vertices(gtv, diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3)
    assert plan.n_vertices >= 3
    return plan


@pytest.fixture(scope="module")
def written(plan, tmp_path_factory):
    path = tmp_path_factory.mktemp("markups") / "vertices.mrk.json"
    assert write_markups(plan, path) == path
    return json.loads(path.read_text(encoding="utf-8"))


def test_file_is_one_fiducial_markup_in_lps_mm(written):
    assert written["@schema"] == SCHEMA_URL
    assert schema_problems(written) == []
    (markup,) = written["markups"]
    assert markup["type"] == "Fiducial"
    assert markup["coordinateSystem"] == "LPS"
    assert markup["coordinateUnits"] == "mm"


def test_one_control_point_per_vertex_with_its_id_and_name(plan, written):
    points = written["markups"][0]["controlPoints"]
    assert len(points) == plan.n_vertices
    records = plan.vertex_records()
    assert [p["label"] for p in points] == [r["name"] for r in records]
    assert [p["id"] for p in points] == [str(r["id"]) for r in records]
    assert all(p["positionStatus"] == "defined" for p in points)


def test_positions_are_the_centres_in_lps(plan, written):
    points = written["markups"][0]["controlPoints"]
    lps_mm = plan.centers_ras_mm * np.array([-1.0, -1.0, 1.0])
    np.testing.assert_allclose([p["position"] for p in points], lps_mm, atol=0.01)


def test_orientation_loads_as_identity_in_slicer(written):
    # Slicer reads an LPS file's orientation into RAS by negating its first two rows.
    for point in written["markups"][0]["controlPoints"]:
        ras = np.array(point["orientation"], dtype=float).reshape(3, 3)
        ras[:2] *= -1
        np.testing.assert_array_equal(ras, np.eye(3))


def test_glyphs_are_spheres_of_the_vertex_diameter(plan, written):
    display = written["markups"][0]["display"]
    assert display["glyphType"] == "Sphere3D"
    assert display["useGlyphScale"] is False
    assert display["glyphSize"] == plan.parameters.diameter_mm


def test_plan_without_vertices_gives_a_markup_without_points(make_volume, ellipsoid_mask):
    vol = make_volume((20, 20, 12), (1.0, 1.0, 2.0), "identity-like")
    gtv = Volume(ellipsoid_mask(vol, (-12.0, 25.0, 40.0), 6.0), vol.affine)
    empty = plan_vertices(gtv, diameter_mm=20, min_spacing_mm=30, gtv_margin_mm=2)
    doc = json.loads(json.dumps(markups_document(empty), allow_nan=False))
    assert doc["markups"][0]["controlPoints"] == []
    assert schema_problems(doc) == []


def test_unwritable_path_is_reported(plan, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(OutputWriteError, match="cannot write"):
        write_markups(plan, not_a_folder / "vertices.mrk.json")
