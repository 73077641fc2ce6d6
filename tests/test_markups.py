"""3D Slicer markups: schema fields, one labelled point per vertex, LPS from the plan's RAS."""

from __future__ import annotations

import json

import numpy as np

from lattice.export.markups import write_markups
from lattice.placement import plan_vertices
from lattice.volume import Volume


def test_markups_file(tmp_path, make_volume, ellipsoid_mask):
    vol = make_volume((60, 56, 40), (0.9, 1.1, 2.0), "oblique")
    gtv = Volume(ellipsoid_mask(vol, (-12.0, 25.0, 40.0), 25.0), vol.affine)
    plan = plan_vertices(gtv, diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3)
    assert plan.n_vertices >= 3
    doc = json.loads(write_markups(plan, tmp_path / "v.mrk.json").read_text())
    assert doc["@schema"].endswith("markups-schema-v1.0.3.json#")
    (markup,) = doc["markups"]
    assert markup["type"] == "Fiducial"
    assert markup["coordinateSystem"] == "LPS" and markup["coordinateUnits"] == "mm"
    points = markup["controlPoints"]
    assert [p["label"] for p in points] == [f"VTX_{i + 1:02d}" for i in range(plan.n_vertices)]
    assert len({p["id"] for p in points}) == plan.n_vertices
    lps = plan.centers_ras_mm * np.array([-1.0, -1.0, 1.0])
    np.testing.assert_allclose([p["position"] for p in points], lps, atol=0.01)
    for p in points:
        assert len(p["orientation"]) == 9 and p["positionStatus"] == "defined"
