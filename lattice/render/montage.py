"""The montage of axial slices through the vertex centres (``vertices.png``): one panel per
slice, drawn as the overview's panels are (:mod:`lattice.render.slices`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from numpy.typing import ArrayLike

from ..volume import Volume
from .layout import (
    AXIS_ALIGNED_TOLERANCE_DEG,
    DEFAULT_CONTEXT_MM,
    OverviewGeometry,
    as_centres,
    axial_panel_at,
    montage_slices,
    overview_geometry,
)
from .slices import DEFAULT_WINDOW_HU, cold_overlay, draw_panel, mask_overlays
from .style import NO_OARS, save_png

#: Largest number of panels in the vertex montage (one per axial layer through a centre).
MAX_MONTAGE_PANELS = 48
MONTAGE_COLUMNS = 4
#: Up to this many slices the montage shows the slice nearest to every centre (a layered
#: lattice: one per layer, 7 for the benchmark's hcp plan). Centres spread over more slices
#: (``--pattern max``: ~50 distinct slices for 55 vertices, 48 panels drawn and the rest
#: left out) are grouped instead (:func:`~lattice.render.layout.montage_slices`) when that
#: gives fewer panels: the fewest slices such that every centre lies within
#: :data:`GROUPED_TOLERANCE_D` x D of one (18 for that plan). Every vertex is then on a
#: panel, cut at least at sqrt(1 - 0.5**2) ~ 87 % of its diameter, its id centred on it; the
#: title states the distance.
MONTAGE_EXACT_PANELS = 12
#: Largest distance of a centre from its grouped slice, as a fraction of the diameter D.
GROUPED_TOLERANCE_D = 0.25
#: The montage has many small panels: a lower resolution than the overview keeps it quick.
MONTAGE_DPI = 85


def _outer_axes_only(ax: Axes, *, left: bool, bottom: bool) -> None:
    """No ticks, tick labels nor axis label on the sides of a montage panel that face
    another panel (the y axis unless ``left``, the x axis unless ``bottom``)."""
    if not left:
        ax.yaxis.set_major_locator(NullLocator())
        ax.set_ylabel("")
    if not bottom:
        ax.xaxis.set_major_locator(NullLocator())
        ax.set_xlabel("")


def render_vertex_montage(
    path: str | Path,
    *,
    ct: Volume,
    gtv: Volume,
    lattice_target: Volume | None,
    centers_ras_mm: ArrayLike,
    diameter_mm: float,
    oars: Mapping[str, Volume] = NO_OARS,
    stv: Volume | None = None,
    title: str = "",
    window: tuple[float, float] = DEFAULT_WINDOW_HU,
    context_mm: float = DEFAULT_CONTEXT_MM,
    cold: Volume | None = None,
    cold_centers_ras_mm: ArrayLike | None = None,
) -> Path | None:
    """Write a PNG with one axial panel per slice through a vertex centre (the slice nearest
    to each centre; at most :data:`MAX_MONTAGE_PANELS`, superior first; beyond
    :data:`MONTAGE_EXACT_PANELS` such slices, one slice per group of centres within
    :data:`GROUPED_TOLERANCE_D` x ``diameter_mm`` of it). Same drawing as
    :func:`render_overview` (``cold``: the cold spheres' label map, outlined in their
    colour; with ``cold_centers_ras_mm`` the slices through the cold-sphere centres are shown
    too, since the holes of a layered lattice lie between the vertex layers). Returns None
    (and writes nothing) without vertices."""
    centers = as_centres(centers_ras_mm)
    if not len(centers):
        return None
    level, width = (float(w) for w in window)
    geo = overview_geometry(gtv, centers, diameter_mm=diameter_mm, context_mm=context_mm)
    cold_centers = (
        np.zeros((0, 3)) if cold_centers_ras_mm is None else as_centres(cold_centers_ras_mm)
    )
    layers, tolerance_mm = _slices(geo, np.concatenate([centers, cold_centers]), diameter_mm)
    shown = layers[:MAX_MONTAGE_PANELS]
    ct_c = geo.canonical(np.asarray(ct.array))
    overlays = mask_overlays(geo, gtv=gtv, lattice_target=lattice_target, stv=stv, oars=oars)
    if cold is not None:
        ct.check_same_grid(cold, name="CT", other_name="cold spheres")
        overlays.append(cold_overlay(geo, cold))
    cols = min(MONTAGE_COLUMNS, len(shown))
    rows = -(-len(shown) // cols)
    fig = Figure(figsize=(4.4 * cols, 4.3 * rows + 0.8), dpi=MONTAGE_DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, cols)
    # Fixed margins (before the panels: their size sets their ticks): tight_layout would
    # cost a second full draw of every panel.
    height_in = 4.3 * rows + 0.8
    fig.subplots_adjust(
        left=0.06,
        right=0.99,
        bottom=0.45 / height_in,
        top=1 - 0.95 / height_in,
        wspace=0.3,
        hspace=0.28,
    )
    for n, (layer, members) in enumerate(shown):
        ax = fig.add_subplot(grid[n // cols, n % cols])  # none for the empty cells
        panel = axial_panel_at(geo, centers, diameter_mm=diameter_mm, layer=layer)
        draw_panel(
            ax,
            panel,
            ct_c,
            overlays,
            vmin=level - width / 2,
            vmax=level + width / 2,
            oblique=geo.oblique_deg > AXIS_ALIGNED_TOLERANCE_DEG,
            n_vertices=len(centers),
        )
        # Every panel has the same crop: the mm axes are labelled on the outer panels only
        # (the left column, the lowest panel of each column), as in a shared-axes grid. Ticks
        # and their labels are most of a panel's cost (~40 ms of ~60 ms).
        _outer_axes_only(ax, left=n % cols == 0, bottom=n + cols >= len(shown))
        cold_ids = [i - len(centers) + 1 for i in members if i >= len(centers)]
        cold_note = f"; cold {', '.join(map(str, cold_ids))}" if cold_ids else ""
        ax.set_title(panel.label + cold_note, fontsize=9, y=1.0)
    more = f"; {len(layers) - len(shown)} more slices not shown" if len(layers) > len(shown) else ""
    what = (
        "every axial slice through a vertex "
        + ("or cold-sphere " if len(cold_centers) else "")
        + "centre "
        if not tolerance_mm
        else "axial slices: every vertex "
        + ("or cold-sphere " if len(cold_centers) else "")
        + f"centre is within {tolerance_mm:.1f} mm of one "
    )
    fig.suptitle(
        f"{title + ' - ' if title else ''}{what}"
        f"({len(shown)} slices, {len(centers)} vertices{more}; window L {level:.0f} / "
        f"W {width:.0f}; radiological view)\n" + _legend_line(stv, oars, cold),
        fontsize=11,
    )
    return save_png(fig, path, dpi=MONTAGE_DPI, what="montage")


def _slices(
    geo: OverviewGeometry, every: np.ndarray, diameter_mm: float
) -> tuple[list[tuple[int, tuple[int, ...]]], float]:
    """The montage's slices (each with the centres it shows) and the largest distance of a
    centre from its slice (0: the slice nearest to every centre)."""
    layers = montage_slices(geo, every, tolerance_mm=0.0)
    if len(layers) > MONTAGE_EXACT_PANELS:  # scattered centres: one slice per group
        tolerance_mm = diameter_mm * GROUPED_TOLERANCE_D
        grouped = montage_slices(geo, every, tolerance_mm=tolerance_mm)
        if len(grouped) < len(layers):  # else layers far apart (cold spheres between them)
            return grouped, tolerance_mm
    return layers, 0.0


def _legend_line(stv: Volume | None, oars: Mapping[str, Volume], cold: Volume | None) -> str:
    """The title's second line: how each structure is drawn."""
    return (
        "GTV solid red, LATTICE target dashed yellow"
        + (", STV dotted orange" if stv is not None else "")
        + (", OARs in their colours" if oars else "")
        + ", vertex spheres cyan (true cross-sections)"
        + (", cold spheres violet outlines" if cold is not None else "")
    )
