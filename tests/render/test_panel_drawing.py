"""The cheap drawing of the 2-D panels against matplotlib's own (the oracles): mask outlines
against ``ax.contour``, fixed ticks against the default locator, outlined labels against
``Text`` with a ``withStroke`` path effect; and the grouped montage slices against a brute
force search."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from figure_capture import catch_saved_figures
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patheffects import withStroke

from lattice.render.layout import montage_layers, montage_slices, overview_geometry
from lattice.render.outlined_text import OutlinedLabels
from lattice.render.slices import _fix_ticks, _outline
from lattice.volume import Volume


def _figure(xlim=(40.0, -25.0), ylim=(-12.0, 30.0)) -> tuple[Figure, object]:
    fig = Figure(figsize=(3.0, 2.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.15, 0.15, 0.8, 0.8))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    return fig, ax


def _pixels(fig: Figure) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)


def _mask(nu: int, nv: int) -> np.ndarray:
    """(nv, nu) bool: an ellipse with a hole, touching the border, and a lone pixel."""
    v, u = np.indices((nv, nu), dtype=float)
    m = (u - 0.4 * nu) ** 2 / (0.35 * nu) ** 2 + (v - 0.5 * nv) ** 2 / (0.45 * nv) ** 2 < 1
    m &= (u - 0.45 * nu) ** 2 + (v - 0.5 * nv) ** 2 > 9
    m[:, -3:] = True
    m[2, 2] = True
    return m


@pytest.mark.parametrize("spacing", [(0.98, 0.98), (0.7, 2.5), (-1.2, 0.8)])
@pytest.mark.parametrize("style", ["-", "--", ":"])
def test_outline_is_the_path_and_pixels_of_ax_contour(spacing, style):
    nu, nv = 61, 43
    u = 5.0 + spacing[0] * np.arange(nu)
    v = -3.0 + spacing[1] * np.arange(nv)
    m = _mask(nu, nv)
    fig_a, ax_a = _figure((u.max(), u.min()), (v.min(), v.max()))
    contour = ax_a.contour(
        u, v, m.astype(np.float32), levels=[0.5], colors=["#ff2a2a"],
        linestyles=[style], linewidths=[1.6],
    )  # fmt: skip
    ax_a.set_xlim(u.max(), u.min())
    ax_a.set_ylim(v.min(), v.max())
    fig_b, ax_b = _figure((u.max(), u.min()), (v.min(), v.max()))
    mine = _outline(u, v, m, color="#ff2a2a", style=style, width=1.6)
    ax_b.add_collection(mine, autolim=False)
    (expected,), (path,) = contour.get_paths(), mine.get_paths()
    np.testing.assert_array_equal(path.vertices, expected.vertices)
    np.testing.assert_array_equal(path.codes, expected.codes)
    np.testing.assert_array_equal(_pixels(fig_b), _pixels(fig_a))


@pytest.mark.parametrize(
    "xlim, ylim, labelsize",
    [((40.0, -25.0), (-12.0, 30.0), 8), ((103.7, -81.2), (-60.4, 98.9), 8),
     ((-480.0, -730.0), (-55.5, 1.0), 10), ((0.3, 0.1), (2.0, 7.0), 8)],
)  # fmt: skip
def test_fixed_ticks_are_the_ticks_matplotlib_shows(xlim, ylim, labelsize):
    fig_a, ax_a = _figure(xlim, ylim)
    ax_a.set_aspect("equal")
    ax_a.tick_params(labelsize=labelsize)
    fig_b, ax_b = _figure(xlim, ylim)
    ax_b.set_aspect("equal")
    ax_b.tick_params(labelsize=labelsize)
    _fix_ticks(ax_b)
    pixels_a = _pixels(fig_a)
    for axis_a, axis_b in ((ax_a.xaxis, ax_b.xaxis), (ax_a.yaxis, ax_b.yaxis)):
        lo, hi = sorted(axis_a.get_view_interval())
        shown = [t for t in axis_a.get_ticklocs() if lo - 1e-9 <= t <= hi + 1e-9]
        np.testing.assert_allclose(axis_b.get_ticklocs(), shown)
    np.testing.assert_array_equal(_pixels(fig_b), pixels_a)


def _ink_box(pixels: np.ndarray, background: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(np.abs(pixels - background).max(axis=-1) > 60)
    return np.array([cols.min(), cols.max(), rows.min(), rows.max()], dtype=float)


@pytest.mark.parametrize(
    "text, size, bold, ha, va",
    [("17", 8, True, "center", "center"), ("6", 6.5, False, "center", "bottom"),
     ("A", 13, True, "center", "top"), ("SA", 13, True, "left", "center"),
     ("L", 13, True, "right", "center"), ("20 mm", 8, False, "center", "bottom")],
)  # fmt: skip
def test_outlined_label_sits_where_a_stroked_text_does(text, size, bold, ha, va):
    """Same place and size as the text it replaces (within a pixel), outlined in black."""
    grey = np.array([128, 128, 128])
    boxes = []
    for kind in ("text", "labels"):
        fig, ax = _figure()
        fig.set_facecolor("#808080")
        ax.set_axis_off()
        if kind == "text":
            ax.text(
                7.5, 9.0, text, color="white", fontsize=size, ha=ha, va=va,
                fontweight="bold" if bold else "normal",
                path_effects=[withStroke(linewidth=2.5, foreground="black")],
            )  # fmt: skip
        else:
            labels = OutlinedLabels()
            labels.add(7.5, 9.0, text, size_pt=size, color="white", bold=bold, ha=ha, va=va)
            labels.add_to(ax)
        pixels = _pixels(fig)
        boxes.append(_ink_box(pixels, grey))
        white = (pixels.min(axis=-1) > 190).sum()
        black = (pixels.max(axis=-1) < 40).sum()
        assert white > 2 and black > white / 2  # white glyphs in a black outline
    np.testing.assert_allclose(boxes[1], boxes[0], atol=1.0)


def _grid_volume(affine: np.ndarray, shape=(40, 40, 60)) -> Volume:
    gtv = np.zeros(shape, dtype=bool)
    gtv[10:30, 10:30, 10:50] = True
    return Volume(gtv, affine)


def _affines() -> dict[str, np.ndarray]:
    aniso = np.diag([0.9, 1.1, 2.5, 1.0])
    flipped = aniso.copy()
    flipped[2, 2], flipped[2, 3] = -2.5, 140.0
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    oblique = np.eye(4)
    oblique[:3, :3] = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.diag([1.0, 1.0, 1.5])
    oblique[:3, 3] = (10.0, -4.0, 30.0)
    return {"anisotropic": aniso, "flipped-k": flipped, "oblique": oblique}


def _plane_distances(geo, centers: np.ndarray) -> np.ndarray:
    """(n, L) distance (mm) of each centre to each axial layer plane of the canonical grid,
    from the canonical affine: the plane of layer l holds the voxel centres with k = l."""
    a = geo.affine
    normal = np.cross(a[:3, 0], a[:3, 1])
    normal /= np.linalg.norm(normal)
    layers = np.arange(geo.shape[2])
    point = a[:3, 3][None, :] + layers[:, None] * a[:3, 2][None, :]
    return np.abs((centers[:, None, :] - point[None, :, :]) @ normal)


@pytest.mark.parametrize("kind", ["anisotropic", "flipped-k", "oblique"])
@pytest.mark.parametrize("tolerance_mm", [0.0, 1.0, 3.75, 6.0])
def test_grouped_slices_cover_every_centre_with_the_fewest_slices(kind, tolerance_mm):
    rng = np.random.default_rng(7)
    affine = _affines()[kind]
    vol = _grid_volume(affine)
    ijk = np.column_stack([rng.uniform(12, 28, 7), rng.uniform(12, 28, 7), rng.uniform(12, 48, 7)])
    centers = ijk @ affine[:3, :3].T + affine[:3, 3]
    geo = overview_geometry(vol, centers, diameter_mm=15.0)
    slices = montage_slices(geo, centers, tolerance_mm=tolerance_mm)
    layers = [layer for layer, _ in slices]
    assert layers == sorted(layers, reverse=True) and len(set(layers)) == len(layers)
    members = sorted(i for _, group in slices for i in group)
    assert members == list(range(len(centers)))  # each centre on exactly one slice
    d = _plane_distances(geo, centers)
    nearest = d.argmin(axis=1)
    allowed = [
        set(np.flatnonzero(row <= tolerance_mm + 1e-9)) or {nearest[i]} for i, row in enumerate(d)
    ]
    for layer, group in slices:
        for i in group:
            assert layer in allowed[i]
    # brute force: no fewer layers can give every centre an allowed layer
    candidates = sorted(set().union(*allowed))
    fewest = next(
        n
        for n in range(1, len(candidates) + 1)
        if any(all(a & set(pick) for a in allowed) for pick in combinations(candidates, n))
    )
    assert len(slices) == fewest
    if tolerance_mm == 0.0:
        assert layers == montage_layers(geo, centers)


def test_scattered_centres_get_one_panel_per_group(monkeypatch, tmp_path):
    """Centres on more than MONTAGE_EXACT_PANELS slices: one panel per group, every vertex
    on a panel cut within D/4 of its centre, and the title says so."""
    from lattice.render import GROUPED_TOLERANCE_D, MONTAGE_EXACT_PANELS, render_vertex_montage
    from lattice.render.layout import axial_panel_at

    affine = _affines()["flipped-k"]
    vol = _grid_volume(affine)
    ct = Volume(np.where(np.asarray(vol.array), 40, -900).astype(np.int16), affine)
    k = np.linspace(14.2, 46.9, 20)  # 20 slices of 2.5 mm, centres 4.3 mm apart
    ijk = np.column_stack([15 + (np.arange(20) % 4) * 3.0, 15 + (np.arange(20) % 3) * 4.0, k])
    centers = ijk @ affine[:3, :3].T + affine[:3, 3]
    diameter = 15.0
    geo = overview_geometry(vol, centers, diameter_mm=diameter)
    assert len(montage_layers(geo, centers)) > MONTAGE_EXACT_PANELS
    saved = catch_saved_figures(monkeypatch)
    render_vertex_montage(
        tmp_path / "m.png", ct=ct, gtv=vol, lattice_target=None, centers_ras_mm=centers,
        diameter_mm=diameter,
    )  # fmt: skip
    tolerance = GROUPED_TOLERANCE_D * diameter
    slices = montage_slices(geo, centers, tolerance_mm=tolerance)
    titled = [ax for ax in saved[-1].axes if ax.get_title()]
    assert len(titled) == len(slices) < len(montage_layers(geo, centers))
    assert f"within {tolerance:.1f} mm" in saved[-1].get_suptitle()
    for layer, group in slices:
        cuts = {
            c.vertex_id: c
            for c in axial_panel_at(geo, centers, diameter_mm=diameter, layer=layer).cuts
        }
        for i in group:
            assert cuts[i + 1].distance_mm <= tolerance + 1e-9
