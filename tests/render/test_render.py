"""Tests for lattice.render: the overview PNG and the geometry it draws.

The geometry oracle works in the rotated grid frame directly: for an affine
``A = [Rot @ diag(s) | t]`` with a rotation under 45 deg (so the closest canonical grid is
the grid itself), a world point ``c`` has grid-frame coordinates ``g = Rot.T @ (c - t)``,
layer ``l`` of axis ``a`` is the plane ``g[a] = l * s[a]``, and the panel coordinates are
``u = (Rot e_h) . c``, ``v = (Rot e_v) . c``. Everything else (flipped and permuted storage)
must give the same geometry and the same pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
from figure_capture import catch_saved_figures
from PIL import Image

from lattice.errors import GridMismatchError, MaskError, ParameterError
from lattice.render import (
    FIGURE_DPI,
    FIGURE_SIZE_IN,
    overview_geometry,
    render_overview,
)
from lattice.volume import Volume

SHAPE = (60, 60, 30)
DIAMETER_MM = 15.0
RADIUS_MM = DIAMETER_MM / 2
PANEL_AXES = {"axial": (2, 0, 1), "coronal": (1, 0, 2), "sagittal": (0, 1, 2)}


def _rotation(deg_xyz: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = np.radians(deg_xyz)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _affine(voxel_mm=(1.0, 1.0, 1.0), rot_deg=(0.0, 0.0, 0.0), origin=(0.0, 0.0, 0.0)):
    a = np.eye(4)
    a[:3, :3] = _rotation(rot_deg) @ np.diag(voxel_mm)
    a[:3, 3] = origin
    return a


def _phantom(affine: np.ndarray) -> tuple[Volume, Volume, Volume, np.ndarray]:
    """CT, GTV, LATTICE target and three vertex centres on the grid of ``affine``.

    Everything is asymmetric (off-centre ellipsoid, a "bone", an intensity ramp) so that
    a wrong flip shows up in the pixels. Centres are voxel-independent world points.
    """
    i, j, k = np.indices(SHAPE, dtype=float)
    ct = (-1000 + 1040 * ((i - 30) ** 2 / 28**2 + (j - 30) ** 2 / 26**2 < 1)).astype(np.int16)
    ct += (2 * i + j).astype(np.int16)
    ct[(i - 44) ** 2 + (j - 22) ** 2 < 16] = 900
    gtv = (i - 26) ** 2 / 18**2 + (j - 33) ** 2 / 15**2 + (k - 14) ** 2 / 11**2 < 1
    target = (i - 26) ** 2 / 13**2 + (j - 33) ** 2 / 10**2 + (k - 14) ** 2 / 6**2 < 1
    centers_ijk = np.array([[20.3, 30.1, 13.2], [32.6, 36.4, 15.1], [25.2, 28.7, 17.8]])
    centers = centers_ijk @ affine[:3, :3].T + affine[:3, 3]
    return (Volume(ct, affine), Volume(gtv, affine), Volume(target, affine), centers)


def _oar(affine: np.ndarray) -> Volume:
    """A box OAR beside the GTV, cut by some panels."""
    box = np.zeros(SHAPE, dtype=bool)
    box[40:50, 10:30, :] = True
    return Volume(box, affine)


def _flip(vol: Volume, axis: int) -> Volume:
    """The same image stored with ``axis`` reversed."""
    flip = np.eye(4)
    flip[axis, axis] = -1
    flip[axis, 3] = vol.shape[axis] - 1
    return Volume(np.flip(vol.array, axis=axis), vol.affine @ flip)


def _transpose(vol: Volume, perm: tuple[int, int, int]) -> Volume:
    """The same image stored with its axes permuted (new axis n = old axis perm[n])."""
    p = np.zeros((4, 4))
    p[3, 3] = 1
    for new, old in enumerate(perm):
        p[old, new] = 1
    return Volume(np.transpose(vol.array, perm), vol.affine @ p)


def _oracle(affine: np.ndarray, gtv: np.ndarray, centers: np.ndarray) -> dict:
    """Brute-force planes and circles for an affine whose grid is already canonical."""
    rot = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    s = np.linalg.norm(affine[:3, :3], axis=0)
    t = affine[:3, 3]
    g = (centers - t) @ rot  # grid-frame mm, shape (n, 3)
    centroid_idx = np.argwhere(gtv).mean(axis=0)
    out = {}
    for name, (a, h, v) in PANEL_AXES.items():
        best = None
        for layer in range(gtv.shape[a]):
            d = np.abs(g[:, a] - layer * s[a])
            cut = d < RADIUS_MM
            key = (
                round(float(np.sum(RADIUS_MM**2 - d[cut] ** 2)), 6),
                cut.sum(),
                -abs(layer - centroid_idx[a]),
                -layer,
            )
            if best is None or key > best[0]:
                best = (key, layer)
        layer = best[1]
        cuts = []
        for n, c in enumerate(centers):
            d = abs(g[n, a] - layer * s[a])
            if d < RADIUS_MM:
                cuts.append((n + 1, rot[:, h] @ c, rot[:, v] @ c, np.sqrt(RADIUS_MM**2 - d**2)))
        out[name] = (layer, cuts)
    return out


def _assert_same_geometry(geo_a, geo_b) -> None:
    np.testing.assert_allclose(geo_a.affine, geo_b.affine, atol=1e-9)
    for pa, pb in zip(geo_a.panels, geo_b.panels):
        assert (pa.name, pa.layer, pa.h_range, pa.v_range) == (
            pb.name,
            pb.layer,
            pb.h_range,
            pb.v_range,
        )
        assert pa.edge_letters == pb.edge_letters
        np.testing.assert_allclose(pa.extent_mm, pb.extent_mm, atol=1e-9)
        np.testing.assert_allclose(pa.plane_point_ras_mm, pb.plane_point_ras_mm, atol=1e-9)
        assert [c.vertex_id for c in pa.cuts] == [c.vertex_id for c in pb.cuts]
        for ca, cb in zip(pa.cuts, pb.cuts):
            np.testing.assert_allclose(
                [ca.u_mm, ca.v_mm, ca.radius_mm], [cb.u_mm, cb.v_mm, cb.radius_mm], atol=1e-9
            )


def _render(path, ct, gtv, target, centers, **kwargs):
    return render_overview(
        path,
        ct=ct,
        gtv=gtv,
        lattice_target=target,
        centers_ras_mm=centers,
        diameter_mm=DIAMETER_MM,
        **kwargs,
    )


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


# --- the picture -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lps_case():
    """Anisotropic grid stored LPS, like the sarcoma CTs (diag(-0.98, -0.98, 3.27))."""
    affine = np.diag([-0.98, -0.98, 3.27, 1.0])
    affine[:3, 3] = (30.0, 20.0, -800.0)
    return _phantom(affine)


@pytest.fixture(scope="module")
def lps_png(lps_case, tmp_path_factory):
    ct, gtv, target, centers = lps_case
    return _render(
        tmp_path_factory.mktemp("render") / "overview.png",
        ct,
        gtv,
        target,
        centers,
        oars={"cord": _oar(ct.affine)},
        title="phantom",
    )


def test_overview_png_is_written_with_the_figure_size(lps_png):
    assert lps_png.is_file() and lps_png.stat().st_size > 10_000
    with Image.open(lps_png) as im:
        assert im.format == "PNG"
        assert im.size == (
            round(FIGURE_SIZE_IN[0] * FIGURE_DPI),
            round(FIGURE_SIZE_IN[1] * FIGURE_DPI),
        )


@pytest.mark.parametrize("store", ["flip_i", "flip_k_and_transpose"])
def test_picture_does_not_depend_on_storage_order(lps_case, lps_png, tmp_path, store):
    ct, gtv, target, centers = lps_case
    if store == "flip_i":
        change = lambda vol: _flip(vol, 0)  # noqa: E731
    else:
        change = lambda vol: _transpose(_flip(vol, 2), (2, 0, 1))  # noqa: E731
    other = _render(
        tmp_path / "other.png",
        change(ct),
        change(gtv),
        change(target),
        centers,
        oars={"cord": change(_oar(ct.affine))},
        title="phantom",
    )
    diff = np.abs(_pixels(lps_png) - _pixels(other))
    assert diff.max() == 0, f"{np.count_nonzero(diff.sum(-1))} pixels differ"


def _grey_halves(rgb: np.ndarray, axis: int) -> tuple[float, float]:
    """Mean grey of the CT pixels in the first and second half of a panel, along ``axis``."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    ct = (r == g) & (g == b) & (r > 10) & (r < 245)  # grey, not text/background/contours
    idx = np.nonzero(ct.any(axis=1 - axis))[0]
    mid = (idx.min() + idx.max() + 1) // 2
    first = np.take(ct, np.arange(idx.min(), mid), axis=axis)
    second = np.take(ct, np.arange(mid, idx.max() + 1), axis=axis)
    grey = r.astype(float)
    return (
        float(np.take(grey, np.arange(idx.min(), mid), axis=axis)[first].mean()),
        float(np.take(grey, np.arange(mid, idx.max() + 1), axis=axis)[second].mean()),
    )


def test_panels_are_radiological_without_vertices_target_or_oars(tmp_path):
    """Patient right and anterior brighter than left and posterior; superior brighter still.

    Stored LPS with 1 x 1 x 2 mm voxels so every crop is 60 mm square and the panels sit in
    the thirds of the figure.
    """
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    affine[:3, 3] = (29.5, 29.5, -29.0)  # grid centre at the world origin
    ras = np.moveaxis(np.indices(SHAPE), 0, -1) @ affine[:3, :3].T + affine[:3, 3]
    x, y, z = np.moveaxis(ras, -1, 0)
    ct = (-60 + 120 * (x > 0) + 60 * (y > 0) + 30 * (z > 0)).astype(np.int16)
    gtv = x**2 + y**2 + z**2 < 8**2
    out = _render(
        tmp_path / "bare.png",
        Volume(ct, affine),
        Volume(gtv, affine),
        None,
        np.zeros((0, 3)),
        context_mm=30.0,
    )
    rgb = _pixels(out)
    third = rgb.shape[1] // 3
    axial, coronal, sagittal = (rgb[:, n * third : (n + 1) * third] for n in range(3))
    left, right = _grey_halves(axial, axis=1)
    assert left > right + 50  # R on the left
    top, bottom = _grey_halves(axial, axis=0)
    assert top > bottom + 25  # A at the top
    left, right = _grey_halves(coronal, axis=1)
    assert left > right + 50  # R on the left
    top, bottom = _grey_halves(coronal, axis=0)
    assert top > bottom + 10  # S at the top
    left, right = _grey_halves(sagittal, axis=1)
    assert left > right + 25  # A on the left
    top, bottom = _grey_halves(sagittal, axis=0)
    assert top > bottom + 10  # S at the top


# --- the geometry ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "affine",
    [
        _affine(),
        _affine(voxel_mm=(0.98, 0.98, 3.27), origin=(-40.0, 12.0, -790.0)),
        _affine(voxel_mm=(1.1, 0.9, 2.5), rot_deg=(20.0, -10.0, 30.0), origin=(5.0, -7.0, 3.0)),
    ],
    ids=["identity", "anisotropic", "oblique"],
)
def test_vertex_circles_match_world_space_oracle(affine):
    _, gtv, _, centers = _phantom(affine)
    geo = overview_geometry(gtv, centers, diameter_mm=DIAMETER_MM)
    expected = _oracle(affine, gtv.array, centers)
    for panel in geo.panels:
        layer, cuts = expected[panel.name]
        assert panel.layer == layer
        assert len(cuts) >= 1
        assert [c.vertex_id for c in panel.cuts] == [c[0] for c in cuts]
        got = [(c.u_mm, c.v_mm, c.radius_mm) for c in panel.cuts]
        np.testing.assert_allclose(got, [c[1:] for c in cuts], atol=1e-9)


def test_circle_and_plane_reconstruct_the_sphere_centre():
    """Centre = in-plane point + d along the normal; d from the displayed layer's plane."""
    affine = _affine(voxel_mm=(1.1, 0.9, 2.5), rot_deg=(20.0, -10.0, 30.0))
    _, gtv, _, centers = _phantom(affine)
    geo = overview_geometry(gtv, centers, diameter_mm=DIAMETER_MM)
    for panel in geo.panels:
        # three voxel centres of the displayed layer span its plane
        ijk = np.zeros((3, 3))
        ijk[:, panel.normal_axis] = panel.layer
        ijk[1, panel.h_axis] = 7
        ijk[2, panel.v_axis] = 5
        p = ijk @ affine[:3, :3].T + affine[:3, 3]
        normal = np.cross(p[1] - p[0], p[2] - p[0])
        normal /= np.linalg.norm(normal)
        for cut in panel.cuts:
            c = centers[cut.vertex_id - 1]
            d = abs(normal @ (c - p[0]))
            assert cut.distance_mm == pytest.approx(d, abs=1e-9)
            assert cut.radius_mm == pytest.approx(np.sqrt(RADIUS_MM**2 - d**2), abs=1e-9)
            rebuilt = (
                cut.u_mm * panel.h_dir_ras + cut.v_mm * panel.v_dir_ras + (normal @ c) * normal
            )
            np.testing.assert_allclose(rebuilt, c, atol=1e-9)


def test_geometry_is_the_same_for_flipped_and_transposed_storage(lps_case):
    _, gtv, _, centers = lps_case
    base = overview_geometry(gtv, centers, diameter_mm=DIAMETER_MM)
    for other in (_flip(gtv, 0), _flip(_flip(gtv, 1), 2), _transpose(gtv, (1, 2, 0))):
        _assert_same_geometry(base, overview_geometry(other, centers, diameter_mm=DIAMETER_MM))


def test_lps_storage_is_shown_radiologically_in_world_mm(lps_case):
    _, gtv, _, centers = lps_case
    geo = overview_geometry(gtv, centers, diameter_mm=DIAMETER_MM, context_mm=1000.0)
    letters = {p.name: p.edge_letters for p in geo.panels}
    assert letters["axial"] == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert letters["coronal"] == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert letters["sagittal"] == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    # with a huge context the crop is the whole grid: extents are the world voxel edges
    corners = gtv.ijk_to_ras([[0, 0, 0], [59, 59, 29]])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    half = np.array([0.98, 0.98, 3.27]) / 2
    axial = geo.panels[0]
    np.testing.assert_allclose(
        axial.extent_mm, [lo[0] - half[0], hi[0] + half[0], lo[1] - half[1], hi[1] + half[1]]
    )
    for cut in axial.cuts:  # u, v are plain RAS x, y
        np.testing.assert_allclose([cut.u_mm, cut.v_mm], centers[cut.vertex_id - 1][:2])
    assert axial.label == f"axial z = {axial.plane_point_ras_mm[2]:.1f} mm"


def test_crop_is_gtv_box_plus_context_clipped_to_grid():
    _, gtv, _, centers = _phantom(_affine())
    geo = overview_geometry(gtv, centers, diameter_mm=DIAMETER_MM, context_mm=5.0)
    idx = np.argwhere(gtv.array)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    axial = geo.panels[0]
    assert axial.h_range == (lo[0] - 5, hi[0] + 6)
    assert axial.v_range == (lo[1] - 5, hi[1] + 6)
    sagittal = geo.panels[2]
    assert sagittal.v_range == (max(lo[2] - 5, 0), min(hi[2] + 6, SHAPE[2]))


def test_without_vertices_planes_pass_through_gtv_centroid():
    _, gtv, _, _ = _phantom(_affine())
    geo = overview_geometry(gtv, np.empty((0, 3)), diameter_mm=DIAMETER_MM)
    centroid = np.argwhere(gtv.array).mean(axis=0)
    for panel in geo.panels:
        assert panel.layer == round(centroid[panel.normal_axis])
        assert panel.cuts == ()


# --- errors ------------------------------------------------------------------------------


def test_empty_gtv_is_rejected(lps_case, tmp_path):
    ct, gtv, _, centers = lps_case
    with pytest.raises(MaskError, match="empty"):
        _render(tmp_path / "x.png", ct, gtv.with_array(np.zeros(SHAPE, bool)), None, centers)


def test_mask_on_another_grid_is_rejected(lps_case, tmp_path):
    ct, gtv, _, centers = lps_case
    shifted = Volume(gtv.array, gtv.affine + _shift_x(5.0))
    with pytest.raises(GridMismatchError, match="GTV"):
        _render(tmp_path / "x.png", ct, shifted, None, centers)


def _shift_x(mm: float) -> np.ndarray:
    s = np.zeros((4, 4))
    s[0, 3] = mm
    return s


@pytest.mark.parametrize("centers", [np.zeros((4, 2)), np.full((1, 3), np.nan)])
def test_bad_centres_are_rejected(lps_case, centers):
    _, gtv, _, _ = lps_case
    with pytest.raises(ParameterError, match="centers_ras_mm"):
        overview_geometry(gtv, centers, diameter_mm=DIAMETER_MM)


def test_bad_window_is_rejected(lps_case, tmp_path):
    ct, gtv, _, centers = lps_case
    with pytest.raises(ParameterError, match="window"):
        _render(tmp_path / "x.png", ct, gtv, None, centers, window=(40.0, 0.0))


def _check_montage(gtv, centers, radius_mm):
    """Each vertex appears on the panel of the slice nearest to its centre, as a circle at the
    projection of its centre with radius sqrt(R^2 - d^2) (world-space oracle)."""
    from lattice.render import axial_panel_at, montage_layers

    geo = overview_geometry(gtv, centers, diameter_mm=2 * radius_mm)
    layers = montage_layers(geo, centers)
    panels = [axial_panel_at(geo, centers, diameter_mm=2 * radius_mm, layer=k) for k in layers]
    # Oracle: the k plane nearest each centre, from the original affine (any storage order).
    a = gtv.affine
    normal = np.cross(a[:3, 0], a[:3, 1])
    normal /= np.linalg.norm(normal)
    step = abs(normal @ a[:3, 2])
    for i, c in enumerate(centers, start=1):
        k_float = np.linalg.solve(a[:3, :3], c - a[:3, 3])[2]
        d = abs(k_float - np.rint(k_float)) * step  # distance to the nearest slice plane
        hits = [
            (p, cut)
            for p in panels
            for cut in p.cuts
            if cut.vertex_id == i and abs(cut.distance_mm - d) < 1e-6
        ]
        assert hits, f"vertex {i} is not on its nearest slice"
        panel, cut = hits[0]
        assert cut.u_mm == pytest.approx(panel.h_dir_ras @ c)
        assert cut.v_mm == pytest.approx(panel.v_dir_ras @ c)
        assert cut.radius_mm == pytest.approx(np.sqrt(radius_mm**2 - d**2))
        listed = set()
        for part in panel.label.split(": vertices ")[1].split(", "):
            lo, _, hi = part.partition("-")
            listed |= set(range(int(lo), int(hi or lo) + 1))
        assert i in listed
    return panels


@pytest.mark.parametrize("store", ["lps", "flipped-k", "oblique"])
def test_montage_puts_every_vertex_on_its_nearest_slice(store, lps_case, tmp_path):
    from lattice.render import render_vertex_montage

    ct, gtv, target, centers = lps_case
    if store == "flipped-k":
        ct, gtv, target = (_flip(v, 2) for v in (ct, gtv, target))
    elif store == "oblique":
        affine = _affine((0.9, 1.1, 2.5), rot_deg=(8.0, -5.0, 12.0), origin=(10.0, -4.0, 30.0))
        ct, gtv, target, centers = _phantom(affine)
    _check_montage(gtv, centers, RADIUS_MM)
    out = render_vertex_montage(
        tmp_path / "m.png",
        ct=ct,
        gtv=gtv,
        lattice_target=target,
        centers_ras_mm=centers,
        diameter_mm=DIAMETER_MM,
    )
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 400
    assert (
        render_vertex_montage(
            tmp_path / "n.png",
            ct=ct,
            gtv=gtv,
            lattice_target=None,
            centers_ras_mm=np.zeros((0, 3)),
            diameter_mm=DIAMETER_MM,
        )
        is None
    )


@pytest.mark.parametrize("case", ["STS_013", "STS_044"])
def test_real_plans_show_every_vertex(shared_data, case):
    from lattice.io.nifti import load_mask
    from lattice.planning.placement import plan_vertices

    gtv = load_mask(shared_data / case / "gtv.nii.gz")
    plan = plan_vertices(gtv, diameter_mm=15, min_spacing_mm=30, gtv_margin_mm=5)
    panels = _check_montage(gtv, plan.centers_ras_mm, 7.5)
    assert sum(len(p.cuts) for p in panels) >= plan.n_vertices


def test_montage_outlines_the_cold_spheres_in_their_colour(lps_case, tmp_path, monkeypatch):
    """A cold sphere between the vertex layers (k 10; vertices on 13, 15, 18): with its centre
    the montage adds the slice through it, titled with its id, and draws its outline in the
    cold colour (pixels of that colour appear only with it)."""
    from matplotlib.colors import to_rgb

    from lattice.io.masks import sphere_label_map
    from lattice.render import render_vertex_montage
    from lattice.render.style import COLD_COLOR

    ct, gtv, target, centers = lps_case
    cold_centre = np.array([26.0, 40.0, 10.0]) @ gtv.affine[:3, :3].T + gtv.affine[:3, 3]
    cold = sphere_label_map(gtv, cold_centre[None], diameter_mm=8.0)
    colour = np.array(to_rgb(COLD_COLOR)) * 255
    saved = catch_saved_figures(monkeypatch)

    def drawn(**extra):
        out = render_vertex_montage(
            tmp_path / f"m{len(extra)}.png",
            ct=ct,
            gtv=gtv,
            lattice_target=target,
            centers_ras_mm=centers,
            diameter_mm=DIAMETER_MM,
            **extra,
        )
        with Image.open(out) as im:
            px = np.asarray(im.convert("RGB"), dtype=float)
        titles = [ax.get_title() for ax in saved[-1].axes if ax.get_title()]
        return titles, int(np.count_nonzero(np.abs(px - colour).max(axis=-1) < 40))

    titles, n_cold = drawn()
    assert len(titles) == 3 and n_cold == 0
    titles, n_cold = drawn(cold=cold, cold_centers_ras_mm=cold_centre[None])
    assert len(titles) == 4 and titles[-1].endswith("vertices none; cold 1")
    assert n_cold > 30


@pytest.mark.parametrize(
    "rot_deg", [(0.0, 0.0, 0.0), (20.0, 0.0, 15.0)], ids=["aligned", "oblique"]
)
def test_the_figure_title_overlaps_no_panel_title(tmp_path, monkeypatch, rot_deg):
    """An oblique grid's overview title has a second line (the tilt): the panels' own titles
    must stay below it, on the drawn figure (window extents after drawing)."""

    saved = catch_saved_figures(monkeypatch)
    ct, gtv, target, centers = _phantom(_affine((0.9, 1.1, 2.0), rot_deg))
    _render(tmp_path / "o.png", ct, gtv, target, centers)
    (fig,) = saved
    renderer = fig.canvas.get_renderer()
    top = fig._suptitle.get_window_extent(renderer)
    assert ("\n" in fig._suptitle.get_text()) == (rot_deg != (0.0, 0.0, 0.0))
    for ax in fig.axes:
        title = ax.title.get_window_extent(renderer)
        assert title.y1 < top.y0, (ax.title.get_text(), title, top)
