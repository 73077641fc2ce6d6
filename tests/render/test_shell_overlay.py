"""overview.png outlines the support shells (``lattice plan --shells-mm``) in their greens."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lattice.errors import GridMismatchError
from lattice.geometry.rings import sphere_ring_labels
from lattice.render import render_overview
from lattice.render.style import SHELL_COLORS
from lattice.volume import Volume


def _near(pixels: np.ndarray, hex_color: str, tolerance: int = 12) -> int:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return int(np.count_nonzero(np.all(np.abs(pixels - rgb) <= tolerance, axis=-1)))


@pytest.fixture(scope="module")
def case(make_volume, ellipsoid_mask):
    ct = make_volume((70, 64, 24), (1.0, 1.0, 2.5), "lps", center_ras_mm=(0, 0, 0))
    gtv = ct.with_array(ellipsoid_mask(ct, [0.0, 0.0, 0.0], [28.0, 25.0, 24.0]))
    target = ct.with_array(ellipsoid_mask(ct, [0.0, 0.0, 0.0], [20.0, 17.0, 16.0]))
    centers = np.array([[-10.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 12.0, 0.0]])
    shells = sphere_ring_labels(gtv, centers, diameter_mm=8.0, bounds_mm=(0, 4, 9, 30))
    return ct, gtv, target, centers, shells


def test_each_shell_is_outlined_in_its_green(case, tmp_path):
    ct, gtv, target, centers, shells = case
    kwargs = dict(ct=ct, gtv=gtv, lattice_target=target, centers_ras_mm=centers, diameter_mm=8.0)
    without = render_overview(tmp_path / "a.png", **kwargs, title="no shells")
    drawn = render_overview(tmp_path / "b.png", **kwargs, shells=shells, title="shells")
    pixels = {p: np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in (without, drawn)}
    # The outer edges of shells 1 and 2 (shell 3's runs under the GTV's outline).
    for color in SHELL_COLORS[:2]:
        assert _near(pixels[without], color) < 20, color
        assert _near(pixels[drawn], color) > 200, color
    assert set(np.unique(np.asarray(shells.array))) == {0, 1, 2, 3}


def test_shells_on_another_grid_are_refused(case, tmp_path):
    ct, gtv, target, centers, shells = case
    other = Volume(np.asarray(shells.array)[:-1], shells.affine)
    with pytest.raises(GridMismatchError, match="support shells"):
        render_overview(
            tmp_path / "c.png",
            ct=ct,
            gtv=gtv,
            lattice_target=target,
            centers_ras_mm=centers,
            diameter_mm=8.0,
            shells=other,
        )
