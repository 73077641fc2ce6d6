"""2-D pictures: the overview (axial, coronal and sagittal panels through the planes that cut
the most vertex spheres), and the panel drawing it shares with the montage of axial slices
through the vertex centres (:mod:`lattice.render.montage`).

Panels follow the radiological convention; where they cut the grid comes from
:mod:`lattice.render.layout`. Only the displayed slices are read from the arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Patch
from matplotlib.path import Path as MplPath
from matplotlib.patheffects import withStroke
from matplotlib.ticker import FixedLocator
from numpy.typing import ArrayLike, NDArray

from ..errors import ParameterError
from ..volume import Volume
from .layout import (
    AXIS_ALIGNED_TOLERANCE_DEG,
    DEFAULT_CONTEXT_MM,
    WORLD_AXIS_NAMES,
    OverviewGeometry,
    PanelGeometry,
    overview_geometry,
)
from .outlined_text import HorizontalAlignment, OutlinedLabels, VerticalAlignment
from .style import (
    COLD_COLOR,
    FIGURE_DPI,
    GTV_COLOR,
    LETTER_COLOR_2D,
    NO_OARS,
    OAR_COLORS,
    SHELL_COLORS,
    STV_COLOR,
    TARGET_COLOR,
    VERTEX_COLOR,
    save_png,
)

#: Sphere cuts with a smaller radius (mm) get their id above the circle instead of on it.
SMALL_CUT_MM = 4.0

#: CT soft-tissue window as ``(level, width)`` in HU.
DEFAULT_WINDOW_HU = (40.0, 400.0)

#: Figure size in inches (at :data:`FIGURE_DPI`): 1650 x 605 pixels.
FIGURE_SIZE_IN = (15.0, 5.5)

#: Scale bar lengths (mm) to choose from: the largest one under a fifth of the panel width.
SCALE_BAR_MM = (5, 10, 20, 50, 100)


def render_overview(
    path: str | Path,
    *,
    ct: Volume,
    gtv: Volume,
    lattice_target: Volume | None,
    centers_ras_mm: ArrayLike,
    diameter_mm: float,
    oars: Mapping[str, Volume] = NO_OARS,
    title: str = "",
    window: tuple[float, float] = DEFAULT_WINDOW_HU,
    context_mm: float = DEFAULT_CONTEXT_MM,
    stv: Volume | None = None,
    cold: Volume | None = None,
    shells: Volume | None = None,
) -> Path:
    """Write a PNG with axial, coronal and sagittal views of the plan.

    The CT is shown in ``window`` (grey), the GTV contour in red, the LATTICE target contour
    in dashed yellow, each OAR in its own colour, and every vertex sphere as its true
    cross-section with the panel's plane (filled cyan circle labelled with the 1-based
    vertex number). Planes and crop are those of :func:`overview_geometry`. Only the
    displayed slices are read from the arrays (no whole-volume float copy).

    Parameters
    ----------
    path : str or Path
        Output file; written as PNG whatever its suffix. Its folder must exist.
    ct : Volume
        CT in HU (any dtype; int16 is not converted).
    gtv : Volume
        GTV mask on the CT grid (non-zero = inside).
    lattice_target : Volume or None
        LATTICE target mask on the CT grid, or None to draw none.
    centers_ras_mm : (n, 3) array_like of float
        Vertex centres, RAS+ mm, numbered 1..n in this order.
    diameter_mm : float
        Vertex sphere diameter.
    oars : mapping of str to Volume
        Organs at risk on the CT grid, by name (shown in the legend).
    title : str
        First part of the figure title; the vertex count is appended.
    window : (level, width) tuple of float
        CT display window in HU.
    context_mm : float
        Margin around the GTV and the vertex spheres kept in view.
    stv : Volume, optional
        SCART target on the CT grid (dotted magenta).
    cold : Volume, optional
        Cold-sphere label map on the CT grid (non-zero = inside), outlined in
        :data:`~lattice.render.style.COLD_COLOR`.
    shells : Volume, optional
        Support shell label map on the CT grid (label k = shell k), each shell outlined in
        :data:`~lattice.render.style.SHELL_COLORS`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    GridMismatchError
        If a mask is not on the CT grid, or the CT grid is sheared.
    MaskError
        If the GTV is empty.
    ParameterError
        If the centres, diameter, window or context are invalid.
    OutputWriteError
        If the file cannot be written.
    """
    level, width = (float(w) for w in window)
    if not (np.isfinite(level) and np.isfinite(width) and width > 0):
        raise ParameterError(f"window must be (level, width) with width > 0 HU, got {window!r}")
    ct.check_not_sheared(name="CT")
    ct.check_same_grid(gtv, name="CT", other_name="GTV")
    if lattice_target is not None:
        ct.check_same_grid(lattice_target, name="CT", other_name="LATTICE target")
    for oar_name, oar in oars.items():
        ct.check_same_grid(oar, name="CT", other_name=f"OAR '{oar_name}'")

    geo = overview_geometry(gtv, centers_ras_mm, diameter_mm=diameter_mm, context_mm=context_mm)
    if stv is not None:
        ct.check_same_grid(stv, name="CT", other_name="STV")
    ct_c = geo.canonical(np.asarray(ct.array))
    if cold is not None:
        ct.check_same_grid(cold, name="CT", other_name="cold spheres")
    overlays = mask_overlays(geo, gtv=gtv, lattice_target=lattice_target, stv=stv, oars=oars)
    if shells is not None:
        ct.check_same_grid(shells, name="CT", other_name="support shells")
        overlays[:0] = _shell_overlays(geo, shells)  # drawn first, under the GTV
    if cold is not None:
        overlays.append(cold_overlay(geo, cold))

    # A fixed layout: constrained layout costs an extra full draw (~0.3 s) for the same page.
    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    # Equal panel heights: each panel gets a width in proportion to its crop's aspect ratio.
    ratios = [
        (p.extent_mm[1] - p.extent_mm[0]) / (p.extent_mm[3] - p.extent_mm[2]) for p in geo.panels
    ]
    top = 0.81 if geo.oblique_deg > AXIS_ALIGNED_TOLERANCE_DEG else 0.86
    axes = fig.subplots(
        1,
        3,
        squeeze=False,
        width_ratios=[min(max(r, 0.4), 2.5) for r in ratios],
        # An oblique grid's title has a second line: the panels start lower, under it.
        gridspec_kw={"left": 0.06, "right": 0.99, "top": top, "bottom": 0.14, "wspace": 0.22},
    )[0]
    for ax, anchor in zip(axes, ("E", "C", "W")):
        ax.set_anchor(anchor)  # keep the three panels together when the height limits them
    seen: set[str] = set()
    for ax, panel in zip(axes, geo.panels):
        seen |= draw_panel(
            ax,
            panel,
            ct_c,
            overlays,
            vmin=level - width / 2,
            vmax=level + width / 2,
            oblique=geo.oblique_deg > AXIS_ALIGNED_TOLERANCE_DEG,
            n_vertices=geo.n_vertices,
        )
    handles = _legend_handles(overlays, seen, n_vertices=geo.n_vertices, diameter_mm=diameter_mm)
    fig.legend(
        handles=handles,
        loc="lower center",
        ncols=len(handles),
        frameon=False,
        fontsize=9,
        bbox_to_anchor=(0.5, 0.0),
    )
    fig.suptitle(
        _overview_title(title, geo, diameter_mm=diameter_mm, level=level, width=width), fontsize=11
    )

    return save_png(fig, path, dpi=FIGURE_DPI, what="overview PNG")


@dataclass(frozen=True)
class _Overlay:
    """A mask drawn as a contour: canonical-order array, legend name and line style."""

    name: str
    array: NDArray
    color: str
    style: Literal["-", "--", ":"]
    width: float


def _shell_overlays(geo: OverviewGeometry, shells: Volume) -> list[_Overlay]:
    """The support shells, outermost first: drawn under the GTV (the outer shell's outline
    runs along it), each line seen is the outer edge of the shell of its colour."""
    labels = geo.canonical(np.asarray(shells.array))
    return [
        _Overlay(f"support shell {k}", labels == k, SHELL_COLORS[min(k, 5) - 1], "-", 1.0)
        for k in range(int(labels.max(initial=0)), 0, -1)
    ]


def cold_overlay(geo: OverviewGeometry, cold: Volume) -> _Overlay:
    """The cold spheres' voxels, outlined in their own colour."""
    return _Overlay("cold spheres", geo.canonical(np.asarray(cold.array)), COLD_COLOR, "-", 1.6)


def mask_overlays(
    geo: OverviewGeometry,
    *,
    gtv: Volume,
    lattice_target: Volume | None,
    stv: Volume | None,
    oars: Mapping[str, Volume],
) -> list[_Overlay]:
    """The contours to draw, in legend order: GTV, LATTICE target, STV, OARs."""
    overlays = [_Overlay("GTV", geo.canonical(np.asarray(gtv.array)), GTV_COLOR, "-", 1.6)]
    if lattice_target is not None:
        overlays.append(
            _Overlay(
                "LATTICE target",
                geo.canonical(np.asarray(lattice_target.array)),
                TARGET_COLOR,
                "--",
                1.4,
            )
        )
    if stv is not None:
        overlays.append(
            _Overlay("STV (SCART)", geo.canonical(np.asarray(stv.array)), STV_COLOR, ":", 1.6)
        )
    for n, (oar_name, oar) in enumerate(oars.items()):
        overlays.append(
            _Overlay(
                oar_name,
                geo.canonical(np.asarray(oar.array)),
                OAR_COLORS[n % len(OAR_COLORS)],
                "-",
                1.3,
            )
        )
    return overlays


def _legend_handles(
    overlays: list[_Overlay], seen: set[str], *, n_vertices: int, diameter_mm: float
) -> list[Artist]:
    """One legend line per overlay (marked when no panel shows it), and the spheres."""
    handles: list[Artist] = []
    for ov in overlays:
        missing = "" if ov.name in seen else " (not in these planes)"
        handles.append(
            Line2D(
                [],
                [],
                color=ov.color,
                linestyle=ov.style,
                linewidth=ov.width,
                label=f"{ov.name}{missing}",
            )
        )
    if n_vertices:
        handles.append(
            Patch(
                facecolor=VERTEX_COLOR,
                edgecolor=VERTEX_COLOR,
                alpha=0.6,
                label=f"vertex sphere cross-section (D = {diameter_mm:g} mm)",
            )
        )
    return handles


def _overview_title(
    title: str, geo: OverviewGeometry, *, diameter_mm: float, level: float, width: float
) -> str:
    head = f"{title} \u2014 " if title else ""
    n = geo.n_vertices
    suptitle = f"{head}{n} {'vertex' if n == 1 else 'vertices'}, D = {diameter_mm:g} mm"
    suptitle += f"   (window L {level:.0f} / W {width:.0f}; radiological view)"
    if geo.oblique_deg > AXIS_ALIGNED_TOLERANCE_DEG:
        suptitle += (
            f"\noblique grid (tilted up to {geo.oblique_deg:.1f}\u00b0): panels show grid "
            "planes closest to axial/coronal/sagittal; circles are exact cuts"
        )
    return suptitle


def draw_panel(
    ax: Axes,
    panel: PanelGeometry,
    ct_c: NDArray,
    overlays: list[_Overlay],
    *,
    vmin: float,
    vmax: float,
    oblique: bool,
    n_vertices: int,
) -> set[str]:
    """Draw one panel; return the names of the overlays visible on it."""
    u_min, u_max, v_min, v_max = panel.extent_mm
    ct_slice = _panel_slice(ct_c, panel)
    ax.set_facecolor("black")
    # rows of the image are v (origin lower); the u axis is inverted below
    ax.imshow(
        ct_slice.T,
        cmap="gray",
        vmin=vmin,
        vmax=vmax,
        origin="lower",
        extent=(u_min, u_max, v_min, v_max),
        interpolation="nearest",
        aspect="equal",
    )
    seen = _draw_contours(ax, panel, overlays)
    labels = OutlinedLabels()
    _draw_cuts(ax, panel, labels)
    ax.set_xlim(u_max, u_min)  # radiological: u (towards R, or A on sagittal) grows leftwards
    ax.set_ylim(v_min, v_max)
    _scale_bar(ax, u_min, u_max, v_min, v_max, labels)
    for where, (x, y, ha, va) in _EDGE_LETTERS.items():
        # axes fractions to data: u runs from u_max on the left to u_min on the right
        labels.add(
            u_max + x * (u_min - u_max),
            v_min + y * (v_max - v_min),
            panel.edge_letters[where],
            size_pt=13,
            color=LETTER_COLOR_2D,
            bold=True,
            ha=ha,
            va=va,
        )
    labels.add_to(ax)
    ax.set_xlabel(_axis_label(panel.h_dir_ras, oblique))
    ax.set_ylabel(_axis_label(panel.v_dir_ras, oblique))
    cut_note = (
        f"{len(panel.cuts)} of {n_vertices} vertex spheres cut"
        if n_vertices
        else "no vertices: plane through the GTV centroid"
    )
    # An explicit y: matplotlib's automatic title position measures the tick labels of every
    # panel (~45 ms each) to find the same y = 1 (no ticks on top).
    ax.set_title(f"{panel.label}\n{cut_note}", fontsize=10, y=1.0)
    ax.tick_params(labelsize=8)
    _fix_ticks(ax)  # after the label size, which sets how many ticks fit
    return seen


#: A tick this close to the view's edge (fraction of its width) is shown, as matplotlib does.
_TICK_EDGE_RTOL = 1e-10


def _fix_ticks(ax: Axes) -> None:
    """Replace each axis's tick locator by the ticks it would show: matplotlib makes a tick
    (two lines, two texts, ~1-2 ms) for every location its locator returns, some beyond the
    view, and locates them again at each draw."""
    ax.apply_aspect()  # the panel's final box: the locator's tick count depends on its size
    for axis in (ax.xaxis, ax.yaxis):
        lo, hi = sorted(axis.get_view_interval())
        close = _TICK_EDGE_RTOL * (hi - lo)  # a tick on the edge, up to float rounding
        locs = axis.get_major_locator()()
        axis.set_major_locator(FixedLocator([x for x in locs if lo - close <= x <= hi + close]))


#: Where each orientation letter goes: axes fractions (x, y) and its alignment there.
_EDGE_LETTERS: dict[str, tuple[float, float, HorizontalAlignment, VerticalAlignment]] = {
    "left": (0.015, 0.5, "left", "center"),
    "right": (0.985, 0.5, "right", "center"),
    "top": (0.5, 0.985, "center", "top"),
    "bottom": (0.5, 0.015, "center", "bottom"),
}


def _draw_contours(ax: Axes, panel: PanelGeometry, overlays: list[_Overlay]) -> set[str]:
    """Outline every overlay on the panel; return the names of those it shows."""
    seen: set[str] = set()
    u_pad, v_pad = panel.u_centres_mm(pad=1), panel.v_centres_mm(pad=1)
    for ov in overlays:
        m = _panel_slice(ov.array, panel, pad=1)
        m = m if m.dtype == np.bool_ else m != 0
        if not m[1:-1, 1:-1].any():
            continue
        seen.add(ov.name)
        if m.all():
            continue  # the structure fills the view: nothing to outline
        ax.add_collection(
            _outline(u_pad, v_pad, m.T, color=ov.color, style=ov.style, width=ov.width),
            autolim=False,
        )
    return seen


def _outline(
    u_mm: NDArray[np.float64],
    v_mm: NDArray[np.float64],
    mask: NDArray[np.bool_],
    *,
    color: str,
    style: str,
    width: float,
) -> PathCollection:
    """The 0.5-level outline of a (nv, nu) mask as one collection, as ``ax.contour`` draws it.

    The same tracing (contourpy's ``mpl2014`` with corner masking, matplotlib's defaults) and
    the same single path: the same pixels, without the ``ContourSet`` machinery (levels,
    labels, autoscaling: ~13 ms a call, ten times the tracing).
    """
    import contourpy  # matplotlib's own contour tracer, one of its dependencies

    u, v = np.meshgrid(u_mm, v_mm)
    tracer = contourpy.contour_generator(
        u,
        v,
        mask.astype(np.float64),
        name="mpl2014",
        corner_mask=True,
        line_type=contourpy.LineType.SeparateCode,
    )
    # SeparateCode: a list of (n, 2) point arrays and a list of their path codes
    points, codes = cast(
        tuple[list[NDArray[np.float64]], list[NDArray[np.uint8]]], tracer.create_contour(0.5)
    )
    path = (
        MplPath(np.concatenate(points), np.concatenate(codes))
        if points
        else MplPath(np.empty((0, 2)))
    )
    return PathCollection(
        [path],
        facecolors="none",
        edgecolors=[color],
        linestyles=[style],
        linewidths=[width],
        zorder=2,  # as contour lines: above the sphere discs
    )


def _draw_cuts(ax: Axes, panel: PanelGeometry, labels: OutlinedLabels) -> None:
    """Each vertex sphere's cross-section as a translucent disc with its id."""
    for cut in panel.cuts:
        # Translucent fill, opaque outline: one patch with an RGBA face colour.
        # add_artist, not add_patch: the limits are set afterwards, and add_patch's data
        # limits of a circle (its Bezier extents) cost ~1 ms a disc.
        ax.add_artist(
            Circle(
                (cut.u_mm, cut.v_mm),
                cut.radius_mm,
                facecolor=to_rgba(VERTEX_COLOR, 0.4),
                edgecolor=VERTEX_COLOR,
                linewidth=1.0,
            )
        )
        # A sphere cut near its rim leaves a small circle that a centred label would hide:
        # its id goes just above the circle, smaller, so the circle stays visible.
        small = cut.radius_mm < SMALL_CUT_MM
        labels.add(
            cut.u_mm,
            cut.v_mm + (cut.radius_mm + 1.0 if small else 0.0),
            str(cut.vertex_id),
            size_pt=6.5 if small else 8,
            color="white",
            bold=not small,
            va="bottom" if small else "center",
        )


def _scale_bar(
    ax: Axes, u_min: float, u_max: float, v_min: float, v_max: float, labels: OutlinedLabels
) -> None:
    """A white bar of a round number of mm in the panel's lower right corner."""
    width = u_max - u_min
    length = max([b for b in SCALE_BAR_MM if b <= width / 5] or [SCALE_BAR_MM[0]])
    # u grows to the image left: the lower right corner is (u_min, v_min).
    right = u_min + 0.05 * width
    y = v_min + 0.06 * (v_max - v_min)
    ax.plot(
        [right, right + length],
        [y, y],
        color="white",
        linewidth=3,
        solid_capstyle="butt",
        path_effects=[withStroke(linewidth=2.5, foreground="black")],
    )
    labels.add(
        right + length / 2,
        y + 0.015 * (v_max - v_min),
        f"{length} mm",
        size_pt=8,
        color="white",
        va="bottom",
    )


def _panel_slice(array: NDArray, panel: PanelGeometry, *, pad: int = 0) -> NDArray:
    """(nu, nv) slice of a canonical-order array: the panel's layer, cropped.

    With ``pad`` the crop grows by that many voxels on each side; voxels beyond the grid are
    zero. Contours drawn from such a slice run on past the crop edge instead of closing on it.
    """
    index: list[int | slice] = [slice(None)] * 3
    index[panel.normal_axis] = panel.layer
    widths = []
    for axis, (lo, hi) in ((panel.h_axis, panel.h_range), (panel.v_axis, panel.v_range)):
        start, stop = max(lo - pad, 0), min(hi + pad, array.shape[axis])
        index[axis] = slice(start, stop)
        widths.append((start - (lo - pad), (hi + pad) - stop))
    # h < v for every panel, so the remaining axes come out in (h, v) order
    out = np.asarray(array[tuple(index)])
    return np.pad(out, widths) if pad else out


def _axis_label(direction: NDArray[np.float64], oblique: bool) -> str:
    name = WORLD_AXIS_NAMES[int(np.argmax(np.abs(direction)))]
    if oblique:
        return f"mm along grid axis \u2248 {name}"
    return f"{name} RAS (mm)"
