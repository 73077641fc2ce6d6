"""The cheap drawing of the 2-D panels against matplotlib's own (the oracles): mask outlines
against ``ax.contour``, fixed ticks against the default locator, outlined labels against
``Text`` with a ``withStroke`` path effect."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patheffects import withStroke

from lattice.render.outlined_text import OutlinedLabels
from lattice.render.slices import _fix_ticks, _outline


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
