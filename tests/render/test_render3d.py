"""Tests for overview3d.png (lattice.render.render_3d), read the way a person reads it.

The tests need nothing from the drawing code but the figure it saves (caught at
``Figure.savefig``) and the PNG:

- where a sphere is drawn: the pixels that change when one vertex is added to the plan;
- what the scale says there: the printed tick labels (their text and where they are drawn),
  interpolated at that pixel, must give the sphere centre's coordinate;
- what colour the sphere is: the pixels of the disc against the legend's swatch;
- where the orientation letters are: never on a drawn surface, sphere or id, nor on a tick
  label, axis label or title.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from figure_capture import catch_saved_figures
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

from lattice.render import render_3d
from lattice.volume import Volume

DIAMETER_MM = 15.0
#: GTV: an ellipsoid with semi-axes (x, y, z) mm about the grid centre, long in x so that the
#: left view (camera on -x) has a deep scene.
GTV_SEMI_AXES_MM = (50.0, 32.0, 36.0)
#: The vertex, off the GTV centre along every axis (so no axis can be right by symmetry).
VERTEX_OFFSET_MM = (18.0, -11.0, 9.0)
#: A tick label read at a pixel gives the coordinate there to about a pixel (~0.4 mm here).
TICK_TOLERANCE_MM = 1.5
ORIENTATION_LETTERS = set("RLAPSI")


@pytest.fixture(scope="module")
def scene(make_volume, ellipsoid_mask):
    # LPS-stored 1 x 1 x 2 mm grid, like a CT
    gtv = make_volume((120, 84, 44), (1.0, 1.0, 2.0), "lps")
    centre = np.array(gtv.ijk_to_ras(np.array([(np.array(gtv.shape) - 1) / 2.0]))[0])
    gtv = gtv.with_array(ellipsoid_mask(gtv, centre, GTV_SEMI_AXES_MM))
    oar = ellipsoid_mask(gtv, centre + (-30.0, 25.0, -20.0), (10.0, 8.0, 14.0)) & ~gtv.array
    vertex = centre + np.array(VERTEX_OFFSET_MM)
    return gtv, Volume(oar, gtv.affine), vertex


def _render(tmp_path, name, gtv, oar, centers, monkeypatch, diameter_mm=DIAMETER_MM, **extra):
    """Render, returning (figure as saved, RGB pixels); ``extra``: more render_3d keywords."""
    saved = catch_saved_figures(monkeypatch)
    path = render_3d(
        tmp_path / name,
        gtv=gtv,
        centers_ras_mm=centers,
        diameter_mm=diameter_mm,
        oars={"cord": oar},
        title="phantom",
        **extra,
    )
    monkeypatch.undo()
    assert len(saved) == 1
    with Image.open(path) as im:
        return saved[0], np.asarray(im.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def pictures(scene, tmp_path_factory):
    gtv, oar, vertex = scene
    tmp = tmp_path_factory.mktemp("render3d")
    with pytest.MonkeyPatch.context() as mp:
        with_vertex = _render(tmp, "one.png", gtv, oar, vertex[None], mp)
        without = _render(tmp, "none.png", gtv, oar, np.zeros((0, 3)), mp)
    return with_vertex, without


def _views(fig: Figure) -> list:
    views = [ax for ax in fig.axes if ax.get_title().startswith("from")]
    assert [ax.get_title() for ax in views] == ["from anterior", "from the patient's left"]
    return views


def _renderer(fig: Figure):
    return fig.canvas.get_renderer()


def _to_rows(fig: Figure, x: float, y: float) -> tuple[float, float]:
    """Display (x, y), origin bottom left, to PNG (column, row)."""
    return x, fig.bbox.height - y


def _sphere_pixel(fig, ax, with_px, without_px) -> tuple[float, float]:
    """(column, row) of the centroid of the pixels inside ``ax`` that the vertex changed."""
    changed = np.abs(with_px - without_px).max(axis=-1) > 40
    x0, y0, x1, y1 = ax.bbox.extents
    cols = slice(int(x0), int(np.ceil(x1)))
    rows = slice(int(fig.bbox.height - y1), int(np.ceil(fig.bbox.height - y0)))
    window = np.zeros_like(changed)
    window[rows, cols] = True
    r, c = np.nonzero(changed & window)
    assert len(r) > 50, "the sphere is not visible"
    return float(c.mean()), float(r.mean())


def _number(text: str) -> float | None:
    text = text.replace("\u2212", "-").strip()
    return float(text) if re.fullmatch(r"-?\d+(\.\d*)?", text) else None


def _scales(fig, ax) -> list[tuple[int, str, float, float]]:
    """Per labelled axis of ``ax``: (world axis 0/1/2 from its label, "col"/"row", slope,
    intercept) of the printed tick values against their drawn pixel position."""
    renderer = _renderer(fig)
    out = []
    for axis in (ax.xaxis, ax.yaxis, getattr(ax, "zaxis", None)):
        if axis is None:
            continue
        label = axis.get_label_text()
        m = re.match(r"\s*([xyz]) RAS", label)
        if not m:
            continue
        lo, hi = sorted(axis.get_view_interval())
        values, cols, rows = [], [], []
        for tick in axis.get_major_ticks():
            text = tick.label1 if tick.label1.get_visible() else tick.label2
            value = _number(text.get_text())
            if (
                not text.get_visible()
                or value is None
                or not lo - 1e-9 <= tick.get_loc() <= hi + 1e-9
            ):
                continue
            box = text.get_window_extent(renderer)
            col, row = _to_rows(fig, (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
            values.append(value)
            cols.append(col)
            rows.append(row)
        assert len(values) >= 3, f"too few tick labels on {label!r}"
        pos = np.array(cols) if np.ptp(cols) > np.ptp(rows) else np.array(rows)
        slope, intercept = np.polyfit(pos, values, 1)
        fit = slope * pos + intercept
        assert np.abs(fit - values).max() < 0.5, f"tick labels of {label!r} are not linear"
        out.append(
            (
                "xyz".index(m.group(1)),
                "col" if np.ptp(cols) > np.ptp(rows) else "row",
                float(slope),
                float(intercept),
            )
        )
    return out


@pytest.mark.parametrize("view", [0, 1], ids=["anterior", "left"])
def test_tick_labels_give_the_sphere_centre_where_it_is_drawn(pictures, scene, view):
    (fig, px), (_, px_none) = pictures
    _, _, vertex = scene
    ax = _views(fig)[view]
    col, row = _sphere_pixel(fig, ax, px, px_none)
    scales = _scales(fig, ax)
    assert len(scales) == 2, "each view has a horizontal and a vertical scale"
    assert {s[1] for s in scales} == {"col", "row"}
    for world_axis, along, slope, intercept in scales:
        read = slope * (col if along == "col" else row) + intercept
        assert read == pytest.approx(vertex[world_axis], abs=TICK_TOLERANCE_MM), (
            f"{'xyz'[world_axis]} read off the scale at the sphere is {read:.1f} mm, "
            f"the sphere centre is at {vertex[world_axis]:.1f} mm"
        )


def test_views_show_the_expected_world_axes(pictures):
    (fig, _), _ = pictures
    anterior, left = (_scales(fig, ax) for ax in _views(fig))
    # from anterior: x across (patient's right on the image left), z up
    assert {(a, along) for a, along, *_ in anterior} == {(0, "col"), (2, "row")}
    # from the left: y across (anterior on the image left), z up
    assert {(a, along) for a, along, *_ in left} == {(1, "col"), (2, "row")}
    # rows: superior at the top; columns: the coordinate grows towards the image left
    # (R on the left from the front, A on the left from the patient's left)
    for scales in (anterior, left):
        assert all(slope < 0 for _, _, slope, _ in scales)


def test_spheres_are_drawn_in_the_legend_colour(pictures):
    (fig, px), (_, px_none) = pictures
    swatch = None
    for legend in fig.legends:
        for patch, text in zip(legend.get_patches(), legend.get_texts()):
            if text.get_text().startswith("vertex spheres"):
                swatch = np.array(to_rgb(patch.get_facecolor())) * 255
    assert swatch is not None, "no legend entry for the spheres"
    for ax in _views(fig):
        col, row = _sphere_pixel(fig, ax, px, px_none)
        changed = np.abs(px - px_none).max(axis=-1) > 40
        r, c = np.nonzero(changed)
        near = (np.hypot(r - row, c - col) < 12) & changed[r, c]
        # the disc without its dark id label
        disc = px[r[near], c[near]]
        disc = disc[disc.max(axis=-1) > 120]
        assert len(disc) > 30
        median = np.median(disc, axis=0)
        assert np.abs(median - swatch).max() < 60, (
            f"sphere drawn as RGB {median.astype(int).tolist()}, legend says "
            f"{swatch.astype(int).tolist()}"
        )


def _pixels_without(fig, hidden) -> np.ndarray:
    """RGB of the figure drawn with ``hidden`` artists made invisible (then restored)."""
    hidden = [a for a in hidden if a.get_visible()]
    for a in hidden:
        a.set_visible(False)
    fig.canvas.draw()
    px = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.int16)
    for a in hidden:
        a.set_visible(True)
    return px


def test_orientation_letters_are_off_every_drawn_object_and_label(pictures):
    """Pixel by pixel: the letters' pixels (what disappears with the letters) must keep 2 px
    away from the pixels of every surface, sphere and id, and of every tick label, axis label,
    title and the legend."""
    from scipy.ndimage import binary_dilation

    (fig, _), _ = pictures
    views = _views(fig)
    letters, content, decorations = [], [], []
    for ax in views:
        mine = [t for t in ax.texts if t.get_text().strip() in ORIENTATION_LETTERS]
        assert {t.get_text().strip() for t in mine} in ({"R", "L", "S", "I"}, {"A", "P", "S", "I"})
        letters += mine
        content += list(ax.collections) + [t for t in ax.texts if t not in mine]
        for axis in (ax.xaxis, ax.yaxis, getattr(ax, "zaxis", None)):
            if axis is not None:
                decorations += [*axis.get_ticklabels(), axis.label]
        decorations.append(ax.title)
    decorations += list(fig.legends)
    if fig._suptitle is not None:
        decorations.append(fig._suptitle)
    full = _pixels_without(fig, [])
    no_letters = _pixels_without(fig, letters)
    no_content = _pixels_without(fig, letters + content)
    no_decorations = _pixels_without(fig, letters + decorations)
    letter_px = binary_dilation(np.abs(full - no_letters).max(axis=-1) > 10, iterations=2)
    assert letter_px.sum() > 100, "no orientation letters drawn"
    content_px = np.abs(no_letters - no_content).max(axis=-1) > 10
    decoration_px = np.abs(no_letters - no_decorations).max(axis=-1) > 10
    assert content_px.sum() > 1000 and decoration_px.sum() > 1000
    on_content = int(np.count_nonzero(letter_px & content_px))
    on_labels = int(np.count_nonzero(letter_px & decoration_px))
    assert on_content == 0, f"orientation letters on drawn content ({on_content} pixels)"
    assert on_labels == 0, f"orientation letters on labels or legend ({on_labels} pixels)"


def test_coarsened_surface_stays_on_the_mask_surface(make_volume, ellipsoid_mask):
    """The drawn GTV surface (block-averaged before marching cubes) lies within a block of
    the true surface, here a 45 mm sphere on 0.8 x 0.8 x 3 mm voxels."""
    from lattice.render.three_d import MAX_FACES_3D, _surface_triangles

    vol = make_volume((130, 130, 36), (0.8, 0.8, 3.0), "lps")
    centre = np.array(vol.ijk_to_ras(np.array([(np.array(vol.shape) - 1) / 2.0]))[0])
    mask = vol.with_array(ellipsoid_mask(vol, centre, 45.0))
    tris = _surface_triangles(mask)
    assert len(tris) <= 1.5 * MAX_FACES_3D
    r = np.linalg.norm(tris.reshape(-1, 3) - centre, axis=1)
    assert 45.0 - 2.0 < r.min() and r.max() < 45.0 + 2.0
    assert abs(np.median(r) - 45.0) < 1.5


def test_vertex_ids_never_overprint_each_other(scene, tmp_path, monkeypatch):
    """Twelve 4 mm spheres in a row, 2.7 mm apart as seen from anterior (more than a radius,
    so none hides another's centre, but less than the width of a two-digit id): the ids
    that are drawn do not touch, and the title counts the ones left out."""
    gtv, oar, vertex = scene
    steps = np.arange(12)[:, None]
    centers = vertex + steps * np.array([-2.5, 1.25, 1.0]) - [0.0, 10.0, 10.0]
    fig, _ = _render(tmp_path, "row.png", gtv, oar, centers, monkeypatch, diameter_mm=4.0)
    renderer = _renderer(fig)
    most_hidden = 0
    for ax in _views(fig):
        ids = [t for t in ax.texts if t.get_text().isdigit()]
        boxes = [t.get_window_extent(renderer) for t in ids]
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                assert not boxes[a].overlaps(boxes[b]), (
                    f"ids {ids[a].get_text()} and {ids[b].get_text()} overprint in "
                    f"{ax.get_title()!r}"
                )
        most_hidden = max(most_hidden, len(centers) - len(ids))
    assert f"ids of {most_hidden} hidden vertices" in fig._suptitle.get_text()


def test_cold_spheres_are_drawn_where_they_are_in_their_legend_colour(
    scene, pictures, tmp_path, monkeypatch
):
    """A cold sphere (10 mm) added to the one-vertex scene: the pixels it changes centre on
    its world position read off the tick labels, in the legend's cold colour."""
    from lattice.render.style import COLD_COLOR

    gtv, oar, vertex = scene
    (_, px_vertex), _ = pictures
    cold = vertex + np.array([-32.0, 8.0, -14.0])
    fig, px = _render(
        tmp_path,
        "cold.png",
        gtv,
        oar,
        vertex[None],
        monkeypatch,
        cold_centers_ras_mm=cold[None],
        cold_diameter_mm=10.0,
    )
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "1 cold sphere (D 10 mm)" in labels
    swatch = np.array(to_rgb(COLD_COLOR)) * 255
    for ax in _views(fig):
        col, row = _sphere_pixel(fig, ax, px, px_vertex)
        for world_axis, along, slope, intercept in _scales(fig, ax):
            read = slope * (col if along == "col" else row) + intercept
            assert read == pytest.approx(cold[world_axis], abs=TICK_TOLERANCE_MM)
        disc = px[int(row) - 3 : int(row) + 4, int(col) - 3 : int(col) + 4].reshape(-1, 3)
        assert np.abs(np.median(disc, axis=0) - swatch).max() < 60
