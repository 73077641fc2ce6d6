"""evaluation.png is drawn from the evaluation dict alone, and from its JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dose_phantoms import Phantom, analytic_dose_gy, make_phantom
from matplotlib.image import imread

from lattice.analysis.evaluate import evaluate_dose
from lattice.render.evaluation import DPI, FIGURE_SIZE_IN, draw_evaluation


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom()


def test_picture_is_drawn_from_the_json_alone(phantom, tmp_path):
    dose = analytic_dose_gy(phantom.points_ras_mm, phantom.vertex_centers_ras_mm)
    result = evaluate_dose(
        dose,
        phantom.masks,
        affine_ras=phantom.ct_affine_ras,
        vertex_centers_ras_mm=phantom.vertex_centers_ras_mm,
        vertex_ids=phantom.vertex_ids,
    )
    document = json.loads(json.dumps(result, allow_nan=False))
    path = draw_evaluation(document, tmp_path / "evaluation.png", title="phantom")
    image = imread(path)
    assert image.shape[:2] == (round(FIGURE_SIZE_IN[1] * DPI), round(FIGURE_SIZE_IN[0] * DPI))
    assert np.std(image[..., :3]) > 0.05  # not blank


def test_a_single_vertex_gives_an_empty_profile_panel(tmp_path):
    document = {
        "dvh": {"dose_gy": [0, 1, 2], "percent_volume": {"GTV": [100, 50, 0]}},
        "profiles": [],
        "gtv": {},
        "pvdr_d10_d90": None,
        "epvdr": None,
    }
    assert draw_evaluation(document, tmp_path / "e.png").is_file()
