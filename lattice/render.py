"""Static QA pictures: CT, GTV, LATTICE target, OARs and vertex spheres on three planes.

:func:`render_overview` writes one PNG with an axial, a coronal and a sagittal panel through
the planes that cut the most vertex spheres. Panels follow the radiological convention
whatever the storage order of the arrays: the grid is first brought to the closest canonical
(RAS) orientation with :mod:`nibabel.orientations`, which only flips and transposes axes, so
every displayed pixel is an original voxel. Then

- axial: patient right on the image left, anterior at the top;
- coronal: patient right on the image left, superior at the top;
- sagittal: anterior on the image left, superior at the top.

So in every panel the horizontal coordinate *increases towards the image left*.

Panel coordinates are millimetres along the canonical grid axes: a world point ``p`` has
horizontal coordinate ``u = h . p`` and vertical coordinate ``v = w . p``, with ``h`` and
``w`` the unit world directions of the displayed grid axes. For an axis-aligned grid these
are plain RAS coordinates (``u = x`` on an axial panel). For an oblique grid a "canonical"
plane is only the closest to axial/coronal/sagittal; the panel then shows that tilted grid
plane, and every vertex sphere is cut by the true plane in world space: the plane through
the displayed layer of voxel centres, with its world normal taken from the grid's affine.
A sphere of radius ``R`` whose centre lies at distance ``d`` from the plane appears as a
circle of radius ``sqrt(R**2 - d**2)`` centred at the projection of its centre.

The geometry (planes, crop, circles, edge letters) comes from :func:`overview_geometry`,
which needs no CT values, so it can be tested against world-space arithmetic alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Patch
from matplotlib.patheffects import withStroke
from nibabel.affines import apply_affine
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation
from numpy.typing import ArrayLike, NDArray

from .errors import MaskError, OutputWriteError, ParameterError
from .grid import Grid
from .margins import bounding_box, mask_surface_ijk
from .volume import Volume

PanelName = Literal["axial", "coronal", "sagittal"]

#: Margin in mm around the GTV (and any vertex sphere) shown in every panel: enough anatomy
#: to judge where the tumour sits while keeping it large in the frame.
DEFAULT_CONTEXT_MM = 25.0
#: Sphere cuts with a smaller radius (mm) get their id above the circle instead of on it.
SMALL_CUT_MM = 4.0

#: CT soft-tissue window as ``(level, width)`` in HU.
DEFAULT_WINDOW_HU = (40.0, 400.0)

#: Figure size in inches and resolution: 1650 x 605 pixels.
FIGURE_SIZE_IN = (15.0, 5.5)
FIGURE_DPI = 110

#: A grid axis within this angle of a world axis is called axis-aligned. Float32 scanner
#: affines are aligned to ~1e-5 deg; 0.01 deg moves a point 500 mm away by < 0.1 mm.
AXIS_ALIGNED_TOLERANCE_DEG = 0.01

#: An edge of an oblique panel gets a second orientation letter (e.g. "SA") when the edge
#: direction has at least this component along a second world axis (sin 15 deg), as DICOM
#: viewers do; smaller tilts are reported in the figure title instead.
SECOND_LETTER_MIN_COMPONENT = float(np.sin(np.radians(15.0)))

#: Layer scores are rounded to this many decimals (mm^2) before comparing them, so that
#: float rounding in equivalent affines (e.g. a flipped array) cannot change the chosen plane.
_SCORE_DECIMALS = 6

# name, grid axis normal to the panel, horizontal grid axis, vertical grid axis
_PANELS: tuple[tuple[PanelName, int, int, int], ...] = (
    ("axial", 2, 0, 1),
    ("coronal", 1, 0, 2),
    ("sagittal", 0, 1, 2),
)
_WORLD_AXIS_NAMES = ("x", "y", "z")
_POSITIVE_LETTERS = ("R", "A", "S")
_NEGATIVE_LETTERS = ("L", "P", "I")

_GTV_COLOR = "#ff2a2a"
_TARGET_COLOR = "#ffd21f"
_VERTEX_COLOR = "#00e5ff"
_STV_COLOR = "#ff8c00"
_OAR_COLORS = ("#ff4fd8", "#4cff4c", "#5a8cff", "#d2b48c", "#ffffff", "#b07cff", "#a0e000")
_NO_OARS: Mapping[str, Volume] = MappingProxyType({})


@dataclass(frozen=True)
class VertexCut:
    """The cross-section of one vertex sphere with a panel's plane.

    Attributes
    ----------
    vertex_id : int
        1-based index of the vertex in the order the centres were given.
    u_mm, v_mm : float
        Circle centre in panel coordinates (mm; ``u`` increases towards the image left).
    radius_mm : float
        ``sqrt(R**2 - d**2)``.
    distance_mm : float
        Distance ``d`` from the sphere centre to the plane.
    """

    vertex_id: int
    u_mm: float
    v_mm: float
    radius_mm: float
    distance_mm: float


@dataclass(frozen=True)
class PanelGeometry:
    """Where one panel slices the canonical grid and what it draws.

    Attributes
    ----------
    name : {"axial", "coronal", "sagittal"}
    normal_axis, h_axis, v_axis : int
        Canonical grid axes normal to the panel, shown horizontally, shown vertically.
    layer : int
        Index along ``normal_axis`` of the displayed layer of voxel centres.
    h_range, v_range : tuple of int
        ``(start, stop)`` index ranges of the crop along ``h_axis`` and ``v_axis``.
    h_dir_ras, v_dir_ras, normal_ras : (3,) ndarray of float
        Unit world directions of increasing ``u``, increasing ``v``, and the plane normal.
    plane_point_ras_mm : (3,) ndarray of float
        World point on the plane at the centre of the crop.
    extent_mm : tuple of float
        ``(u_min, u_max, v_min, v_max)`` of the crop's outer voxel edges.
    voxel_size_mm : tuple of float
        In-plane voxel size ``(along u, along v)``.
    edge_letters : dict
        Patient orientation letters at the ``"left"``, ``"right"``, ``"top"``, ``"bottom"``
        image edges, derived from the affine.
    label : str
        Plane description, e.g. ``"axial z = -791.2 mm"``.
    cuts : tuple of VertexCut
        Vertex spheres this plane cuts, in vertex order.
    """

    name: PanelName
    normal_axis: int
    h_axis: int
    v_axis: int
    layer: int
    h_range: tuple[int, int]
    v_range: tuple[int, int]
    h_dir_ras: NDArray[np.float64]
    v_dir_ras: NDArray[np.float64]
    normal_ras: NDArray[np.float64]
    plane_point_ras_mm: NDArray[np.float64]
    extent_mm: tuple[float, float, float, float]
    voxel_size_mm: tuple[float, float]
    edge_letters: dict[str, str]
    label: str
    cuts: tuple[VertexCut, ...]

    def u_centres_mm(self, *, pad: int = 0) -> NDArray[np.float64]:
        """(n,) float: ``u`` of the voxel centres of the crop, extended by ``pad`` voxels."""
        lo, hi = self.h_range
        steps = np.arange(-pad, hi - lo + pad, dtype=np.float64) + 0.5
        return self.extent_mm[0] + steps * self.voxel_size_mm[0]

    def v_centres_mm(self, *, pad: int = 0) -> NDArray[np.float64]:
        """(n,) float: ``v`` of the voxel centres of the crop, extended by ``pad`` voxels."""
        lo, hi = self.v_range
        steps = np.arange(-pad, hi - lo + pad, dtype=np.float64) + 0.5
        return self.extent_mm[2] + steps * self.voxel_size_mm[1]


@dataclass(frozen=True)
class OverviewGeometry:
    """Everything :func:`render_overview` draws, except pixel values.

    Attributes
    ----------
    ornt : (3, 2) ndarray of float
        nibabel orientation taking the input array to the canonical (closest RAS) one.
    affine : (4, 4) ndarray of float
        Voxel-to-RAS affine of the canonical grid.
    shape : tuple of int
        Shape of the canonical grid.
    oblique_deg : float
        Largest angle between a canonical grid axis and its world axis (0 if axis-aligned).
    n_vertices : int
    panels : tuple of PanelGeometry
        Axial, coronal, sagittal.
    """

    ornt: NDArray[np.float64]
    affine: NDArray[np.float64]
    shape: tuple[int, int, int]
    oblique_deg: float
    n_vertices: int
    panels: tuple[PanelGeometry, ...]

    def canonical(self, array: NDArray) -> NDArray:
        """View of an array on the input grid in canonical order (no copy)."""
        return apply_orientation(array, self.ornt)


def overview_geometry(
    gtv: Volume,
    centers_ras_mm: ArrayLike,
    *,
    diameter_mm: float,
    context_mm: float = DEFAULT_CONTEXT_MM,
) -> OverviewGeometry:
    """Choose the three overview planes, the crop, and each vertex's circle on them.

    Each panel shows the layer of the canonical grid with the largest total vertex
    cross-section area (ties: more spheres cut, then nearer the GTV centroid); without vertices,
    or when no sphere reaches the grid, the layer through the GTV centroid. The in-plane
    crop is the bounding box of the GTV and of every vertex sphere, plus ``context_mm``,
    clipped to the grid. The grid is assumed orthogonal (:func:`render_overview` checks it);
    then ``u``, ``v`` and every circle are exact, oblique or not.

    Parameters
    ----------
    gtv : Volume
        GTV mask (non-zero = inside); its grid is the grid the panels show.
    centers_ras_mm : (n, 3) array_like of float
        Vertex centres, RAS+ mm. ``n`` may be 0.
    diameter_mm : float
        Vertex sphere diameter.
    context_mm : float
        Margin shown around the GTV and the vertex spheres.

    Returns
    -------
    OverviewGeometry

    Raises
    ------
    ParameterError
        If the centres are not an (n, 3) finite array, or the diameter or context is not a
        positive (non-negative) finite number.
    MaskError
        If the GTV is empty.
    """
    centers = _as_centres(centers_ras_mm)
    if not (np.isfinite(diameter_mm) and diameter_mm > 0):
        raise ParameterError(f"diameter_mm must be a positive number, got {diameter_mm!r}")
    if not (np.isfinite(context_mm) and context_mm >= 0):
        raise ParameterError(f"context_mm must be >= 0 mm, got {context_mm!r}")
    radius = 0.5 * float(diameter_mm)

    ornt = io_orientation(gtv.affine)
    affine = gtv.affine @ inv_ornt_aff(ornt, gtv.shape)
    mask = apply_orientation(np.asarray(gtv.array), ornt)
    shape = (int(mask.shape[0]), int(mask.shape[1]), int(mask.shape[2]))
    if mask.dtype != np.bool_:
        mask = mask != 0

    # Per-axis voxel counts give the bounding box and the centroid in three passes, without
    # materialising the index list of a possibly very large mask.
    counts = [np.count_nonzero(mask, axis=tuple(b for b in range(3) if b != a)) for a in range(3)]
    n_voxels = int(counts[0].sum())
    if n_voxels == 0:
        raise MaskError("the GTV mask is empty; pass a mask with at least one non-zero voxel")
    centroid_ijk = np.array([np.dot(np.arange(len(c)), c) / n_voxels for c in counts])
    box_lo = np.array([np.flatnonzero(c)[0] for c in counts], dtype=float)
    box_hi = np.array([np.flatnonzero(c)[-1] for c in counts], dtype=float)

    canonical = Grid(shape, affine)
    columns = affine[:3, :3]
    voxel_size = canonical.voxel_size_mm
    directions = canonical.directions
    origin = affine[:3, 3]
    if len(centers):
        # The projection of a sphere on any axis is R wide on each side: exact for oblique grids.
        centers_ijk = canonical.ras_to_ijk(centers)
        box_lo = np.minimum(box_lo, (centers_ijk - radius / voxel_size).min(axis=0))
        box_hi = np.maximum(box_hi, (centers_ijk + radius / voxel_size).max(axis=0))
    context = context_mm / voxel_size
    crop_lo = np.clip(np.floor(box_lo - context), 0, np.array(shape) - 1).astype(int)
    crop_hi = np.clip(np.ceil(box_hi + context), 0, np.array(shape) - 1).astype(int) + 1

    cos_to_axis = np.abs(np.diag(directions)).clip(0.0, 1.0)
    oblique_deg = float(np.degrees(np.arccos(cos_to_axis.min())))
    oblique = oblique_deg > AXIS_ALIGNED_TOLERANCE_DEG

    panels = []
    for name, a, h, v in _PANELS:
        normal = np.cross(directions[:, h], directions[:, v])
        normal /= np.linalg.norm(normal)
        if normal @ columns[:, a] < 0:
            normal = -normal
        layer_step = float(normal @ columns[:, a])  # distance between layers along the normal
        offsets = (centers - origin) @ normal  # signed distance of each centre from layer 0
        layer = _richest_layer(offsets, layer_step, shape[a], radius, centroid_ijk[a])

        ijk_centre = (crop_lo + crop_hi - 1) / 2.0
        ijk_centre[a] = layer
        point = apply_affine(affine, ijk_centre)
        h_dir, v_dir = directions[:, h], directions[:, v]
        u0, v0 = float(h_dir @ origin), float(v_dir @ origin)
        extent = (
            float(u0 + (crop_lo[h] - 0.5) * voxel_size[h]),
            float(u0 + (crop_hi[h] - 0.5) * voxel_size[h]),
            float(v0 + (crop_lo[v] - 0.5) * voxel_size[v]),
            float(v0 + (crop_hi[v] - 0.5) * voxel_size[v]),
        )
        cuts = []
        for idx, (c, off) in enumerate(zip(centers, offsets)):
            d = abs(off - layer * layer_step)
            if d < radius:
                cuts.append(
                    VertexCut(
                        idx + 1,
                        float(h_dir @ c),
                        float(v_dir @ c),
                        float(np.sqrt(radius**2 - d**2)),
                        float(d),
                    )
                )
        axis_name = _WORLD_AXIS_NAMES[a]
        label = (
            f"{name} {axis_name} = {point[a]:.1f} mm"
            if not oblique
            else f"{name} (tilted) {axis_name} \u2248 {point[a]:.1f} mm at centre"
        )
        panels.append(
            PanelGeometry(
                name=name,
                normal_axis=a,
                h_axis=h,
                v_axis=v,
                layer=layer,
                h_range=(int(crop_lo[h]), int(crop_hi[h])),
                v_range=(int(crop_lo[v]), int(crop_hi[v])),
                h_dir_ras=h_dir.copy(),
                v_dir_ras=v_dir.copy(),
                normal_ras=normal,
                plane_point_ras_mm=point,
                extent_mm=extent,
                voxel_size_mm=(float(voxel_size[h]), float(voxel_size[v])),
                # u grows towards the image left and v towards the top (radiological convention)
                edge_letters={
                    "left": _letters(h_dir),
                    "right": _letters(-h_dir),
                    "top": _letters(v_dir),
                    "bottom": _letters(-v_dir),
                },
                label=label,
                cuts=tuple(cuts),
            )
        )
    return OverviewGeometry(
        ornt=ornt,
        affine=affine,
        shape=shape,
        oblique_deg=oblique_deg,
        n_vertices=len(centers),
        panels=tuple(panels),
    )


def render_overview(
    path: str | Path,
    *,
    ct: Volume,
    gtv: Volume,
    lattice_target: Volume | None,
    centers_ras_mm: ArrayLike,
    diameter_mm: float,
    oars: Mapping[str, Volume] = _NO_OARS,
    title: str = "",
    window: tuple[float, float] = DEFAULT_WINDOW_HU,
    context_mm: float = DEFAULT_CONTEXT_MM,
    stv: Volume | None = None,
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
    ct_c = geo.canonical(np.asarray(ct.array))
    overlays = [_Overlay("GTV", geo.canonical(np.asarray(gtv.array)), _GTV_COLOR, "-", 1.6)]
    if lattice_target is not None:
        overlays.append(
            _Overlay(
                "LATTICE target",
                geo.canonical(np.asarray(lattice_target.array)),
                _TARGET_COLOR,
                "--",
                1.4,
            )
        )
    if stv is not None:
        ct.check_same_grid(stv, name="CT", other_name="STV")
        overlays.append(_Overlay("STV (SCART)", geo.canonical(np.asarray(stv.array)),
                                 _STV_COLOR, ":", 1.6))
    for n, (oar_name, oar) in enumerate(oars.items()):
        overlays.append(
            _Overlay(
                oar_name,
                geo.canonical(np.asarray(oar.array)),
                _OAR_COLORS[n % len(_OAR_COLORS)],
                "-",
                1.3,
            )
        )

    # A fixed layout: constrained layout costs an extra full draw (~0.3 s) for the same page.
    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    # Equal panel heights: each panel gets a width in proportion to its crop's aspect ratio.
    ratios = [
        (p.extent_mm[1] - p.extent_mm[0]) / (p.extent_mm[3] - p.extent_mm[2]) for p in geo.panels
    ]
    axes = fig.subplots(1, 3, squeeze=False,
                        width_ratios=[min(max(r, 0.4), 2.5) for r in ratios],
                        gridspec_kw={"left": 0.06, "right": 0.99, "top": 0.86, "bottom": 0.14,
                                     "wspace": 0.22})[0]
    for ax, anchor in zip(axes, ("E", "C", "W")):
        ax.set_anchor(anchor)  # keep the three panels together when the height limits them
    seen: set[str] = set()
    for ax, panel in zip(axes, geo.panels):
        seen |= _draw_panel(
            ax,
            panel,
            ct_c,
            overlays,
            vmin=level - width / 2,
            vmax=level + width / 2,
            oblique=geo.oblique_deg > AXIS_ALIGNED_TOLERANCE_DEG,
            n_vertices=geo.n_vertices,
        )

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
    if geo.n_vertices:
        handles.append(
            Patch(
                facecolor=_VERTEX_COLOR,
                edgecolor=_VERTEX_COLOR,
                alpha=0.6,
                label=f"vertex sphere cross-section (D = {diameter_mm:g} mm)",
            )
        )
    fig.legend(handles=handles, loc="lower center", ncols=len(handles), frameon=False,
               fontsize=9, bbox_to_anchor=(0.5, 0.0))

    head = f"{title} \u2014 " if title else ""
    n = geo.n_vertices
    suptitle = f"{head}{n} {'vertex' if n == 1 else 'vertices'}, D = {diameter_mm:g} mm"
    suptitle += f"   (window L {level:.0f} / W {width:.0f}; radiological view)"
    if geo.oblique_deg > AXIS_ALIGNED_TOLERANCE_DEG:
        suptitle += (
            f"\noblique grid (tilted up to {geo.oblique_deg:.1f}\u00b0): panels show grid "
            "planes closest to axial/coronal/sagittal; circles are exact cuts"
        )
    fig.suptitle(suptitle, fontsize=11)

    out = Path(path)
    try:
        fig.savefig(out, format="png", dpi=FIGURE_DPI)
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write the overview PNG '{out}': {exc}; check that the folder exists and "
            "is writable"
        ) from exc
    return out


@dataclass(frozen=True)
class _Overlay:
    """A mask drawn as a contour: canonical-order array, legend name and line style."""

    name: str
    array: NDArray
    color: str
    style: Literal["-", "--", ":"]
    width: float


def _draw_panel(
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
        ax.contour(
            u_pad,
            v_pad,
            m.T.astype(np.float32),
            levels=[0.5],
            colors=[ov.color],
            linestyles=[ov.style],
            linewidths=[ov.width],
        )

    outline = [withStroke(linewidth=2.5, foreground="black")]
    for cut in panel.cuts:
        # Translucent fill, opaque outline: one patch with an RGBA face colour.
        ax.add_patch(
            Circle(
                (cut.u_mm, cut.v_mm),
                cut.radius_mm,
                facecolor=to_rgba(_VERTEX_COLOR, 0.4),
                edgecolor=_VERTEX_COLOR,
                linewidth=1.0,
            )
        )
        # A sphere cut near its rim leaves a small circle that a centred label would hide:
        # its id goes just above the circle, smaller, so the circle stays visible.
        small = cut.radius_mm < SMALL_CUT_MM
        ax.text(
            cut.u_mm,
            cut.v_mm + (cut.radius_mm + 1.0 if small else 0.0),
            str(cut.vertex_id),
            color="white",
            fontsize=6.5 if small else 8,
            fontweight="normal" if small else "bold",
            ha="center",
            va="bottom" if small else "center",
            path_effects=outline,
            clip_on=True,
        )

    ax.set_xlim(u_max, u_min)  # radiological: u (towards R, or A on sagittal) grows leftwards
    ax.set_ylim(v_min, v_max)
    _scale_bar(ax, u_min, u_max, v_min, v_max, outline)
    for where, (x, y, ha, va) in {
        "left": (0.015, 0.5, "left", "center"),
        "right": (0.985, 0.5, "right", "center"),
        "top": (0.5, 0.985, "center", "top"),
        "bottom": (0.5, 0.015, "center", "bottom"),
    }.items():
        ax.text(
            x,
            y,
            panel.edge_letters[where],
            transform=ax.transAxes,
            ha=ha,
            va=va,
            color="#ffe680",
            fontsize=13,
            fontweight="bold",
            path_effects=outline,
        )
    ax.set_xlabel(_axis_label(panel.h_dir_ras, oblique))
    ax.set_ylabel(_axis_label(panel.v_dir_ras, oblique))
    cut_note = (
        f"{len(panel.cuts)} of {n_vertices} vertex spheres cut"
        if n_vertices
        else "no vertices: plane through the GTV centroid"
    )
    ax.set_title(f"{panel.label}\n{cut_note}", fontsize=10)
    ax.tick_params(labelsize=8)
    return seen


#: Scale bar lengths (mm) to choose from: the largest one under a fifth of the panel width.
SCALE_BAR_MM = (5, 10, 20, 50, 100)


def _scale_bar(ax: Axes, u_min: float, u_max: float, v_min: float, v_max: float,
               outline: list) -> None:
    """A white bar of a round number of mm in the panel's lower right corner."""
    width = u_max - u_min
    length = max([b for b in SCALE_BAR_MM if b <= width / 5] or [SCALE_BAR_MM[0]])
    # u grows to the image left: the lower right corner is (u_min, v_min).
    right = u_min + 0.05 * width
    y = v_min + 0.06 * (v_max - v_min)
    ax.plot([right, right + length], [y, y], color="white", linewidth=3,
            solid_capstyle="butt", path_effects=outline)
    ax.text(right + length / 2, y + 0.015 * (v_max - v_min), f"{length} mm", color="white",
            ha="center", va="bottom", fontsize=8, path_effects=outline)


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


def _richest_layer(
    offsets: NDArray[np.float64],
    layer_step: float,
    n_layers: int,
    radius: float,
    centroid_layer: float,
) -> int:
    """Layer showing the most sphere cross-section area (then most spheres cut, then nearest
    the centroid): seven rims are less informative than four full discs."""
    fallback = int(np.clip(np.rint(centroid_layer), 0, n_layers - 1))
    if len(offsets) == 0:
        return fallback
    layers = np.arange(n_layers)
    d = np.abs(offsets[None, :] - layers[:, None] * layer_step)
    cut = d < radius
    count = cut.sum(axis=1)
    if count.max() == 0:
        return fallback
    area = np.round(np.where(cut, radius**2 - d**2, 0.0).sum(axis=1), _SCORE_DECIMALS)
    # lexsort: last key is primary; the final tie-break is the lower layer index
    order = np.lexsort((layers, np.abs(layers - centroid_layer), -count, -area))
    return int(order[0])


def _letters(direction: NDArray[np.float64]) -> str:
    """Patient orientation letters of a world direction, dominant axis first."""
    order = np.argsort(-np.abs(direction), kind="stable")
    letters = []
    for rank, axis in enumerate(order):
        component = direction[axis]
        if rank > 0 and abs(component) < SECOND_LETTER_MIN_COMPONENT:
            break
        letters.append(_POSITIVE_LETTERS[axis] if component > 0 else _NEGATIVE_LETTERS[axis])
    return "".join(letters)


def _axis_label(direction: NDArray[np.float64], oblique: bool) -> str:
    name = _WORLD_AXIS_NAMES[int(np.argmax(np.abs(direction)))]
    if oblique:
        return f"mm along grid axis \u2248 {name}"
    return f"{name} RAS (mm)"


def _as_centres(centers_ras_mm: ArrayLike) -> NDArray[np.float64]:
    centers = np.asarray(centers_ras_mm, dtype=np.float64)
    if centers.size == 0:
        return np.zeros((0, 3))
    if centers.ndim != 2 or centers.shape[1] != 3 or not np.all(np.isfinite(centers)):
        raise ParameterError(
            f"centers_ras_mm must be a finite (n, 3) array of RAS points in mm, got shape "
            f"{centers.shape}; stack the vertex centres as rows"
        )
    return centers


#: Faces of each surface drawn in the 3-D picture, at most (marching cubes' step grows).
MAX_FACES_3D = 5000


@dataclass(frozen=True)
class View3D:
    """One viewpoint of the 3-D picture: an orthographic projection along a world axis.

    Attributes
    ----------
    title : str
    toward_camera : (3,) tuple of float
        Unit RAS direction from the scene to the camera.
    h_axis, v_axis : int
        World axes (0 = x, 1 = y, 2 = z) shown horizontally and vertically; the horizontal
        coordinate grows towards the image left, the vertical one towards the top.
    h_letters : tuple of str
        Orientation letters at the image (left, right) edges.
    """

    title: str
    toward_camera: tuple[float, float, float]
    h_axis: int
    v_axis: int
    h_letters: tuple[str, str]


#: The two viewpoints. From anterior (camera on +y): the patient's right (+x) on the image
#: left, as when facing the patient. From the patient's left (camera on -x): anterior (+y) on
#: the image left. Superior (+z) at the top in both. The projection is along a world axis with
#: no tilt, so every drawn point sits exactly at its (h, v) coordinates: the tick labels hold
#: for every object whatever its depth.
VIEWS_3D = (
    View3D("from anterior", (0.0, 1.0, 0.0), 0, 2, ("R", "L")),
    View3D("from the patient's left", (-1.0, 0.0, 0.0), 1, 2, ("A", "P")),
)
#: Width (pixels) of the empty band inside each view's frame that holds the orientation
#: letters, so they never cover a surface, a sphere or a tick label.
LETTER_BAND_PX = 30
_LETTER_COLOR = "#b36b00"


def render_3d(path: str | Path, *, gtv: Volume, centers_ras_mm: ArrayLike, diameter_mm: float,
              oars: Mapping[str, Volume] = _NO_OARS, title: str = "") -> Path:
    """Write a PNG with the GTV surface, the vertex spheres and the OARs in 3-D, seen from
    two viewpoints (:data:`VIEWS_3D`), with RAS mm scales and R/L, A/P, S/I letters.

    Each view is an orthographic projection along a world axis, drawn on plain 2-D axes,
    both views at the same scale (mm per pixel, equal in both directions): the tick labels
    are exact for every object, near or far. Faces are painted far to near: first the
    translucent GTV, then the translucent OARs and the opaque spheres together. The spheres
    lie inside the GTV, so the GTV never tints them; they are shaded by a light at the camera
    and are the legend's colour where they face the viewer. The orientation letters sit in
    an empty band inside the frame, outside the box that holds every surface and sphere.

    Raises
    ------
    MaskError
        An empty GTV.
    OutputWriteError
        The file cannot be written.
    """
    from matplotlib.collections import PolyCollection

    centers = _as_centres(centers_ras_mm)
    gtv_tris = _surface_triangles(gtv)
    oar_tris = {name: _surface_triangles(m) for name, m in oars.items() if np.any(m.array)}
    oar_colors = {name: _OAR_COLORS[k % len(_OAR_COLORS)] for k, name in enumerate(oar_tris)}
    radius = diameter_mm / 2.0
    sphere_quads = _sphere_quads(centers, radius, n_theta=24, n_phi=12)
    outward = (sphere_quads.mean(axis=1) - np.repeat(centers, len(sphere_quads)
                                                     // max(len(centers), 1), axis=0))
    outward /= np.linalg.norm(outward, axis=1, keepdims=True).clip(1e-12)
    everything = np.concatenate([gtv_tris.reshape(-1, 3),
                                 *[t.reshape(-1, 3) for t in oar_tris.values()],
                                 centers - radius, centers + radius])
    lo, hi = everything.min(axis=0) - 2.0, everything.max(axis=0) + 2.0

    surfaces = [(gtv_tris, to_rgba(_GTV_COLOR, 0.18))]
    surfaces += [(tris, to_rgba(oar_colors[name], 0.3)) for name, tris in oar_tris.items()]
    fig = Figure(figsize=(11.0, 5.8), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    # One scale for both views (the coarser of the two that fit in a 0.41 x 0.74 frame), so
    # that they compare directly.
    rect_w, rect_h = 0.41 * fig.bbox.width, 0.74 * fig.bbox.height
    mm_per_px = max(max((hi[w.h_axis] - lo[w.h_axis]) / (rect_w - 2 * LETTER_BAND_PX),
                        (hi[w.v_axis] - lo[w.v_axis]) / (rect_h - 2 * LETTER_BAND_PX))
                    for w in VIEWS_3D)
    hidden = 0
    for n, view in enumerate(VIEWS_3D):
        toward = np.array(view.toward_camera)
        h, v = view.h_axis, view.v_axis
        # The GTV envelope first, far to near; then the OAR and sphere faces, far to near:
        # the spheres lie inside the GTV by construction and stay the legend's colour, while
        # an OAR in front of a sphere still covers it.
        # The frame at that scale, the views side by side about the middle of the figure
        width = ((hi[h] - lo[h]) / mm_per_px + 2 * LETTER_BAND_PX) / fig.bbox.width
        height = ((hi[v] - lo[v]) / mm_per_px + 2 * LETTER_BAND_PX) / fig.bbox.height
        left = 0.48 - width if n == 0 else 0.57
        ax = fig.add_axes((left, 0.15 + (0.74 - height) / 2, width, height))
        for k, layer in enumerate(([surfaces[0]], surfaces[1:])):
            polys, colours, depths = [], [], []
            for tris, rgba in layer:
                normal = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
                facing = np.abs(normal @ toward) / np.linalg.norm(normal, axis=1).clip(1e-12)
                rgb = np.outer(0.8 + 0.2 * facing, rgba[:3])  # a little shape from shading
                colours.append(np.column_stack([rgb, np.full(len(tris), rgba[3])]))
                polys.append(tris)
                depths.append(tris.mean(axis=1) @ toward)
            if k == 1 and len(sphere_quads):
                lit = outward @ toward
                front = lit > 0  # the back half of an opaque sphere is never seen
                brightness = 0.55 + 0.45 * lit[front]  # the legend colour facing the camera
                rgb = np.outer(brightness, to_rgba(_VERTEX_COLOR)[:3])
                colours.append(np.column_stack([rgb, np.ones(len(rgb))]))
                polys.append(sphere_quads[front])
                depths.append(sphere_quads[front].mean(axis=1) @ toward)
            if not polys:
                continue
            order = np.argsort(np.concatenate(depths), kind="stable")  # far to near
            # triangles as quads with a repeated corner: one (m, 4, 2) array is fast to draw
            faces = np.concatenate([np.concatenate([p, p[:, -1:]], axis=1)[..., (h, v)]
                                    if p.shape[1] == 3 else p[..., (h, v)]
                                    for p in polys])[order]
            face_rgba = np.concatenate(colours)[order]
            # Antialiased translucent faces leave no visible seams; an opaque face's own
            # colour as a thin edge closes the seams between sphere faces.
            edges = face_rgba.copy()
            edges[edges[:, 3] < 1, 3] = 0.0
            ax.add_collection(PolyCollection(faces,  # type: ignore[arg-type]  # an array: fast
                                             facecolors=face_rgba, edgecolors=edges,
                                             linewidths=0.4))
        # A bold 7 pt digit is about 5 pt wide and 7 pt high, plus a 2 pt gap around it.
        pt_mm = FIGURE_DPI / 72.0 * mm_per_px
        shown = _labelled(centers, toward, radius, (h, v), (5.0 * pt_mm, 9.0 * pt_mm))
        hidden = max(hidden, len(centers) - len(shown))
        for i in shown:
            ax.text(centers[i, h], centers[i, v], str(i + 1), fontsize=7, fontweight="bold",
                    ha="center", va="center", color="black", zorder=10)
        _frame_3d(ax, view, lo, hi, mm_per_px)
        ax.set_title(view.title, fontsize=10)
    handles = [Patch(facecolor=_GTV_COLOR, alpha=0.4, label="GTV"),
               Patch(facecolor=_VERTEX_COLOR, label=f"vertex spheres (D {diameter_mm:g} mm)"),
               *[Patch(facecolor=c, alpha=0.6, label=f"OAR {name}")
                 for name, c in oar_colors.items()]]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8,
               frameon=False)
    note = f"; ids of {hidden} hidden vertices in vertices.png" if hidden else ""
    fig.suptitle(f"{title + ' - ' if title else ''}{len(centers)} vertices, orthographic "
                 f"views, RAS mm{note}", fontsize=10)
    out = Path(path)
    try:
        fig.savefig(out, format="png", dpi=FIGURE_DPI)
    except OSError as exc:
        raise OutputWriteError(f"cannot write the 3-D picture '{out}': {exc}") from exc
    return out


def _frame_3d(ax: Axes, view: View3D, lo: NDArray[np.float64], hi: NDArray[np.float64],
              mm_per_px: float) -> None:
    """Equal mm scales, limits with an empty band of :data:`LETTER_BAND_PX` around the
    scene, the orientation letters in that band, and the axis labels."""
    h, v = view.h_axis, view.v_axis
    band = LETTER_BAND_PX * mm_per_px
    h_lo, h_hi, v_lo, v_hi = lo[h] - band, hi[h] + band, lo[v] - band, hi[v] + band
    ax.set_xlim(h_hi, h_lo)  # the coordinate grows towards the image left
    ax.set_ylim(v_lo, v_hi)
    ax.set_aspect("equal", adjustable="box")
    h_mid, v_mid = (h_lo + h_hi) / 2, (v_lo + v_hi) / 2
    for x, y, letter in ((h_hi - band / 2, v_mid, view.h_letters[0]),
                         (h_lo + band / 2, v_mid, view.h_letters[1]),
                         (h_mid, v_hi - band / 2, "S"), (h_mid, v_lo + band / 2, "I")):
        ax.text(x, y, letter, fontsize=12, fontweight="bold", color=_LETTER_COLOR,
                ha="center", va="center", zorder=11)
    ax.set_xlabel(f"{_WORLD_AXIS_NAMES[h]} RAS (mm)", fontsize=8)
    ax.set_ylabel(f"{_WORLD_AXIS_NAMES[v]} RAS (mm)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_facecolor("#f4f4f4")


def _labelled(centers: NDArray[np.float64], toward: NDArray[np.float64], radius: float,
              axes: tuple[int, int], label_mm: tuple[float, float]) -> list[int]:
    """Indices of the spheres whose id the view can show, nearest first: the centre is not
    behind a nearer sphere (``toward``: unit vector to the camera, along a world axis;
    orthographic view), and its id, ``label_mm`` = (width per digit, height) in mm, does not
    touch the id of a nearer sphere already shown."""
    depth = centers @ toward
    flat = centers[:, list(axes)]
    width = np.array([len(str(i + 1)) for i in range(len(centers))]) * label_mm[0]
    order = np.argsort(-depth, kind="stable")
    shown: list[int] = []
    for n, i in enumerate(order):
        nearer = order[:n]
        if np.any(np.linalg.norm(flat[nearer] - flat[i], axis=1) < radius):
            continue  # behind a nearer sphere
        if any(abs(flat[i, 0] - flat[j, 0]) < (width[i] + width[j]) / 2
               and abs(flat[i, 1] - flat[j, 1]) < label_mm[1] for j in shown):
            continue  # its id would overprint a nearer one
        shown.append(int(i))
    return sorted(shown)


def _sphere_quads(centers: NDArray[np.float64], radius: float, *, n_theta: int = 14,
                  n_phi: int = 8) -> NDArray[np.float64]:
    """(m, 4, 3) quadrilaterals of a latitude-longitude sphere around every centre."""
    theta = np.linspace(0, 2 * np.pi, n_theta + 1)
    phi = np.linspace(0, np.pi, n_phi + 1)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    grid = np.stack([np.cos(t) * np.sin(p), np.sin(t) * np.sin(p), np.cos(p)], -1)
    quads = np.stack([grid[:-1, :-1], grid[1:, :-1], grid[1:, 1:], grid[:-1, 1:]], axis=2)
    unit = quads.reshape(-1, 4, 3) * radius
    return (centers[:, None, None, :] + unit[None]).reshape(-1, 4, 3)


def _surface_triangles(mask: Volume) -> NDArray[np.float64]:
    """(m, 3, 3) triangles of a mask's surface in RAS mm, about MAX_FACES_3D of them.

    A large mask is first averaged over blocks of voxels about equally long in mm (so thin
    slices are merged less than wide pixels are), and the surface is the 0.5 level of the
    block averages: it stays within about half a block of the voxel surface.
    """
    array = np.asarray(mask.array) != 0
    if not array.any():
        raise MaskError("the GTV mask is empty; pass a mask with at least one non-zero voxel")
    box = bounding_box(array)
    sub = array[box]
    voxel = np.asarray(mask.voxel_size_mm, dtype=float)
    # Marching cubes makes about two triangles per block face on the surface.
    face_mm2 = np.prod(voxel) / voxel
    area = sum(int(np.count_nonzero(np.diff(np.pad(sub, 1), axis=a))) * face_mm2[a]
               for a in range(3))
    block_mm = np.sqrt(2.0 * area / MAX_FACES_3D)
    factor = np.clip(np.round(block_mm / voxel), 1, None).astype(int)
    verts_ijk, faces = mask_surface_ijk(array, block_vox=factor, box=box)
    return mask.ijk_to_ras(verts_ijk)[faces]


#: Largest number of panels in the vertex montage (one per axial layer through a centre).
MAX_MONTAGE_PANELS = 48
MONTAGE_COLUMNS = 4
#: The montage has many small panels: a lower resolution than the overview keeps it quick.
MONTAGE_DPI = 85


def montage_layers(geo: OverviewGeometry, centers_ras_mm: ArrayLike) -> list[int]:
    """Axial layers of the canonical grid nearest to each vertex centre, sorted from superior
    to inferior, without repeats."""
    centers = _as_centres(centers_ras_mm)
    axial = geo.panels[0]
    columns = geo.affine[:3, :3]
    step = float(axial.normal_ras @ columns[:, axial.normal_axis])
    offsets = (centers - geo.affine[:3, 3]) @ axial.normal_ras
    n = geo.shape[axial.normal_axis]
    layers = {int(np.clip(np.rint(o / step), 0, n - 1)) for o in offsets}
    return sorted(layers, reverse=True)


def axial_panel_at(geo: OverviewGeometry, centers_ras_mm: ArrayLike, *, diameter_mm: float,
                   layer: int) -> PanelGeometry:
    """The overview's axial panel moved to ``layer``, with that plane's sphere cuts."""
    centers = _as_centres(centers_ras_mm)
    axial = geo.panels[0]
    columns = geo.affine[:3, :3]
    origin = geo.affine[:3, 3]
    step = float(axial.normal_ras @ columns[:, axial.normal_axis])
    radius = diameter_mm / 2.0
    point = axial.plane_point_ras_mm + (layer - axial.layer) * columns[:, axial.normal_axis]
    cuts = []
    for idx, c in enumerate(centers):
        d = abs(float((c - origin) @ axial.normal_ras) - layer * step)
        if d < radius:
            cuts.append(VertexCut(idx + 1, float(axial.h_dir_ras @ c),
                                  float(axial.v_dir_ras @ c),
                                  float(np.sqrt(radius**2 - d**2)), d))
    axis = _WORLD_AXIS_NAMES[axial.normal_axis]
    ids = _id_ranges([c.vertex_id for c in cuts]) or "none"
    label = f"axial {axis} = {point[axial.normal_axis]:.1f} mm: vertices {ids}"
    return dataclasses.replace(axial, layer=layer, plane_point_ras_mm=point, label=label,
                               cuts=tuple(cuts))


def _id_ranges(ids: list[int]) -> str:
    """``[1, 2, 3, 5, 7, 8]`` -> ``'1-3, 5, 7-8'``."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def render_vertex_montage(
    path: str | Path,
    *,
    ct: Volume,
    gtv: Volume,
    lattice_target: Volume | None,
    centers_ras_mm: ArrayLike,
    diameter_mm: float,
    oars: Mapping[str, Volume] = _NO_OARS,
    stv: Volume | None = None,
    title: str = "",
    window: tuple[float, float] = DEFAULT_WINDOW_HU,
    context_mm: float = DEFAULT_CONTEXT_MM,
) -> Path | None:
    """Write a PNG with one axial panel per slice through a vertex centre (the slice nearest
    to each centre; at most :data:`MAX_MONTAGE_PANELS`, superior first). Same drawing as
    :func:`render_overview`. Returns None (and writes nothing) without vertices."""
    centers = _as_centres(centers_ras_mm)
    if not len(centers):
        return None
    level, width = (float(w) for w in window)
    geo = overview_geometry(gtv, centers, diameter_mm=diameter_mm, context_mm=context_mm)
    layers = montage_layers(geo, centers)
    shown = layers[:MAX_MONTAGE_PANELS]
    ct_c = geo.canonical(np.asarray(ct.array))
    overlays = [_Overlay("GTV", geo.canonical(np.asarray(gtv.array)), _GTV_COLOR, "-", 1.6)]
    if lattice_target is not None:
        overlays.append(_Overlay("LATTICE target", geo.canonical(np.asarray(lattice_target.array)),
                                 _TARGET_COLOR, "--", 1.4))
    if stv is not None:
        overlays.append(_Overlay("STV (SCART)", geo.canonical(np.asarray(stv.array)),
                                 _STV_COLOR, ":", 1.6))
    for n, (oar_name, oar) in enumerate(oars.items()):
        overlays.append(_Overlay(oar_name, geo.canonical(np.asarray(oar.array)),
                                 _OAR_COLORS[n % len(_OAR_COLORS)], "-", 1.3))
    cols = min(MONTAGE_COLUMNS, len(shown))
    rows = -(-len(shown) // cols)
    fig = Figure(figsize=(4.4 * cols, 4.3 * rows + 0.8), dpi=MONTAGE_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(shown):]:
        ax.set_axis_off()
    for ax, layer in zip(axes.flat, shown):
        panel = axial_panel_at(geo, centers, diameter_mm=diameter_mm, layer=layer)
        _draw_panel(ax, panel, ct_c, overlays, vmin=level - width / 2, vmax=level + width / 2,
                    oblique=geo.oblique_deg > AXIS_ALIGNED_TOLERANCE_DEG,
                    n_vertices=len(centers))
        ax.set_title(panel.label, fontsize=9)
    more = (f"; {len(layers) - len(shown)} more slices not shown"
            if len(layers) > len(shown) else "")
    fig.suptitle(f"{title + ' - ' if title else ''}every axial slice through a vertex centre "
                 f"({len(shown)} slices, {len(centers)} vertices{more}; window L {level:.0f} / "
                 f"W {width:.0f}; radiological view)\nGTV solid red, LATTICE target dashed "
                 "yellow" + (", STV dotted orange" if stv is not None else "")
                 + (", OARs in their colours" if oars else "")
                 + ", vertex spheres cyan (true cross-sections)", fontsize=11)
    # Fixed margins: tight_layout would cost a second full draw of every panel.
    height_in = 4.3 * rows + 0.8
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.45 / height_in,
                        top=1 - 0.95 / height_in, wspace=0.3, hspace=0.28)
    out = Path(path)
    try:
        fig.savefig(out, format="png", dpi=MONTAGE_DPI)
    except OSError as exc:
        raise OutputWriteError(f"cannot write the montage '{out}': {exc}") from exc
    return out
