"""The top-level API researchers use: lazy names, in-memory volumes, the plan document."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lattice


def test_every_exported_name_resolves():
    for name in lattice.__all__:
        assert getattr(lattice, name) is not None
    with pytest.raises(AttributeError):
        lattice.not_a_name  # noqa: B018


def test_plan_in_memory_and_json_round_trip():
    shape = (40, 40, 24)
    aff = np.diag([2.0, 2.0, 2.5, 1.0])
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    world = ijk @ aff[:3, :3].T
    gtv = np.linalg.norm(world - world.reshape(-1, 3).mean(0), axis=-1) <= 30.0
    plan = lattice.plan_vertices(
        lattice.Volume(gtv, aff), diameter_mm=10, min_spacing_mm=16, gtv_margin_mm=3
    )
    doc = json.loads(json.dumps(plan.to_dict()))
    assert doc["summary"]["n_vertices"] == plan.n_vertices > 0
    centres = np.array([v["center_ras_mm"] for v in doc["vertices"]])
    np.testing.assert_array_equal(centres, plan.centers_ras_mm)  # full precision in JSON
    assert doc["parameters"]["min_spacing_mm"] == 16
