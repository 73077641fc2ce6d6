"""The 3-D picture: the GTV surface, the vertex spheres, the cold spheres and the OARs,
seen from two viewpoints in orthographic projection along world axes, with RAS mm scales."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import ArrayLike, NDArray

from ..errors import MaskError
from ..geometry.margins import decimated_surface_ijk
from ..volume import Volume
from .layout import WORLD_AXIS_NAMES, as_centres
from .style import (
    COLD_COLOR,
    FIGURE_DPI,
    GTV_COLOR,
    NO_OARS,
    OAR_COLORS,
    VERTEX_COLOR,
    save_png,
)

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
LETTER_COLOR = "#b36b00"


def render_3d(
    path: str | Path,
    *,
    gtv: Volume,
    centers_ras_mm: ArrayLike,
    diameter_mm: float,
    oars: Mapping[str, Volume] = NO_OARS,
    title: str = "",
    cold_centers_ras_mm: ArrayLike | None = None,
    cold_diameter_mm: float | None = None,
) -> Path:
    """Write a PNG with the GTV surface, the vertex spheres and the OARs in 3-D, seen from
    two viewpoints (:data:`VIEWS_3D`), with RAS mm scales and R/L, A/P, S/I letters.
    ``cold_centers_ras_mm`` (m, 3) with ``cold_diameter_mm``: the cold spheres, drawn as
    the vertex spheres are, in :data:`~lattice.render.style.COLD_COLOR` (no ids).

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
    centers = as_centres(centers_ras_mm)
    gtv_tris = _surface_triangles(gtv)
    oar_tris = {name: _surface_triangles(m) for name, m in oars.items() if np.any(m.array)}
    oar_colors = {name: OAR_COLORS[k % len(OAR_COLORS)] for k, name in enumerate(oar_tris)}
    radius = diameter_mm / 2.0
    cold = np.zeros((0, 3)) if cold_centers_ras_mm is None else as_centres(cold_centers_ras_mm)
    cold_radius = radius if cold_diameter_mm is None else cold_diameter_mm / 2.0
    spheres = [_shaded_spheres(centers, radius, VERTEX_COLOR)]
    if len(cold):
        spheres.append(_shaded_spheres(cold, cold_radius, COLD_COLOR))
    everything = np.concatenate(
        [
            gtv_tris.reshape(-1, 3),
            *[t.reshape(-1, 3) for t in oar_tris.values()],
            centers - radius,
            centers + radius,
            cold - cold_radius,
            cold + cold_radius,
        ]
    )
    lo, hi = everything.min(axis=0) - 2.0, everything.max(axis=0) + 2.0

    surfaces = [(gtv_tris, to_rgba(GTV_COLOR, 0.18))]
    surfaces += [(tris, to_rgba(oar_colors[name], 0.3)) for name, tris in oar_tris.items()]
    fig = Figure(figsize=(11.0, 5.8), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    # One scale for both views (the coarser of the two that fit in a 0.41 x 0.74 frame), so
    # that they compare directly.
    rect_w, rect_h = 0.41 * fig.bbox.width, 0.74 * fig.bbox.height
    mm_per_px = max(
        max(
            (hi[w.h_axis] - lo[w.h_axis]) / (rect_w - 2 * LETTER_BAND_PX),
            (hi[w.v_axis] - lo[w.v_axis]) / (rect_h - 2 * LETTER_BAND_PX),
        )
        for w in VIEWS_3D
    )
    hidden = 0
    for n, view in enumerate(VIEWS_3D):
        toward = np.array(view.toward_camera)
        h, v = view.h_axis, view.v_axis
        # The frame at that scale, the views side by side about the middle of the figure
        width = ((hi[h] - lo[h]) / mm_per_px + 2 * LETTER_BAND_PX) / fig.bbox.width
        height = ((hi[v] - lo[v]) / mm_per_px + 2 * LETTER_BAND_PX) / fig.bbox.height
        left = 0.48 - width if n == 0 else 0.57
        ax = fig.add_axes((left, 0.15 + (0.74 - height) / 2, width, height))
        # The GTV envelope first, far to near; then the OAR and sphere faces, far to near:
        # the spheres lie inside the GTV by construction and stay the legend's colour, while
        # an OAR in front of a sphere still covers it.
        _draw_faces(ax, [surfaces[0]], None, toward, (h, v))
        _draw_faces(ax, surfaces[1:], spheres, toward, (h, v))
        # A bold 7 pt digit is about 5 pt wide and 7 pt high, plus a 2 pt gap around it.
        pt_mm = FIGURE_DPI / 72.0 * mm_per_px
        shown = _labelled(centers, toward, radius, (h, v), (5.0 * pt_mm, 9.0 * pt_mm))
        shown = [i for i in shown if not _behind(centers[i], cold, cold_radius, toward, (h, v))]
        hidden = max(hidden, len(centers) - len(shown))
        _draw_ids(ax, centers, shown, (h, v))
        _frame_3d(ax, view, lo, hi, mm_per_px)
        ax.set_title(view.title, fontsize=10)
    _legend_3d(fig, diameter_mm, len(cold), 2 * cold_radius, oar_colors)
    note = f"; ids of {hidden} hidden vertices in vertices.png" if hidden else ""
    fig.suptitle(
        f"{title + ' - ' if title else ''}{len(centers)} vertices, orthographic "
        f"views, RAS mm{note}",
        fontsize=10,
    )
    return save_png(fig, path, dpi=FIGURE_DPI, what="3-D picture")


def _legend_3d(
    fig: Figure,
    diameter_mm: float,
    n_cold: int,
    cold_diameter_mm: float,
    oar_colors: Mapping[str, str],
) -> None:
    """The legend under the views: GTV, vertex spheres, cold spheres (when any), OARs."""
    cold = f"{n_cold} cold sphere{'s' * (n_cold != 1)} (D {cold_diameter_mm:g} mm)"
    handles = [
        Patch(facecolor=GTV_COLOR, alpha=0.4, label="GTV"),
        Patch(facecolor=VERTEX_COLOR, label=f"vertex spheres (D {diameter_mm:g} mm)"),
        *([Patch(facecolor=COLD_COLOR, label=cold)] if n_cold else []),
        *[Patch(facecolor=c, alpha=0.6, label=f"OAR {name}") for name, c in oar_colors.items()],
    ]
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False
    )


def _draw_ids(
    ax: Axes, centers: NDArray[np.float64], shown: Iterable[int], hv: tuple[int, int]
) -> None:
    """The 1-based ids of the ``shown`` vertices at their centres (world axes ``hv``)."""
    h, v = hv
    for i in shown:
        ax.text(
            centers[i, h],
            centers[i, v],
            str(i + 1),
            fontsize=7,
            fontweight="bold",
            ha="center",
            va="center",
            color="black",
            zorder=10,
        )


def _shaded_spheres(
    centers: NDArray[np.float64], radius: float, color: str
) -> tuple[NDArray[np.float64], NDArray[np.float64], str]:
    """The quads (m, 4, 3) of a sphere around every centre, their outward unit normals
    (m, 3) and the spheres' colour, for :func:`_draw_faces`."""
    quads = _sphere_quads(centers, radius, n_theta=24, n_phi=12)
    outward = quads.mean(axis=1) - np.repeat(centers, len(quads) // max(len(centers), 1), axis=0)
    outward /= np.linalg.norm(outward, axis=1, keepdims=True).clip(1e-12)
    return quads, outward, color


def _draw_faces(
    ax: Axes,
    surfaces: list[tuple[NDArray[np.float64], tuple]],
    spheres: list[tuple[NDArray[np.float64], NDArray[np.float64], str]] | None,
    toward: NDArray[np.float64],
    axes: tuple[int, int],
) -> None:
    """Paint surface triangles (m, 3, 3) with their RGBA colours and, optionally, sets of
    sphere quads (m, 4, 3) with their outward unit normals and colour, far to near, in one
    collection.

    ``toward`` is the unit vector to the camera; ``axes`` are the world axes shown
    horizontally and vertically.
    """
    polys, colours, depths = [], [], []
    for tris, rgba in surfaces:
        normal = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
        facing = np.abs(normal @ toward) / np.linalg.norm(normal, axis=1).clip(1e-12)
        rgb = np.outer(0.8 + 0.2 * facing, rgba[:3])  # a little shape from shading
        colours.append(np.column_stack([rgb, np.full(len(tris), rgba[3])]))
        polys.append(tris)
        depths.append(tris.mean(axis=1) @ toward)
    for quads, outward, color in spheres or []:
        if not len(quads):
            continue
        lit = outward @ toward
        front = lit > 0  # the back half of an opaque sphere is never seen
        brightness = 0.55 + 0.45 * lit[front]  # the legend colour facing the camera
        rgb = np.outer(brightness, to_rgba(color)[:3])
        colours.append(np.column_stack([rgb, np.ones(len(rgb))]))
        polys.append(quads[front])
        depths.append(quads[front].mean(axis=1) @ toward)
    if not polys:
        return
    order = np.argsort(np.concatenate(depths), kind="stable")  # far to near
    h, v = axes
    # triangles as quads with a repeated corner: one (m, 4, 2) array is fast to draw
    faces = np.concatenate(
        [
            np.concatenate([p, p[:, -1:]], axis=1)[..., (h, v)]
            if p.shape[1] == 3
            else p[..., (h, v)]
            for p in polys
        ]
    )[order]
    face_rgba = np.concatenate(colours)[order]
    # Antialiased translucent faces leave no visible seams; an opaque face's own
    # colour as a thin edge closes the seams between sphere faces.
    edges = face_rgba.copy()
    edges[edges[:, 3] < 1, 3] = 0.0
    ax.add_collection(
        PolyCollection(
            faces,  # type: ignore[arg-type]  # an array: fast
            facecolors=face_rgba,
            edgecolors=edges,
            linewidths=0.4,
        ),
        autolim=False,  # the limits are set by _frame_3d; the faces' extents cost ~0.1 s
    )


def _frame_3d(
    ax: Axes, view: View3D, lo: NDArray[np.float64], hi: NDArray[np.float64], mm_per_px: float
) -> None:
    """Equal mm scales, limits with an empty band of :data:`LETTER_BAND_PX` around the
    scene, the orientation letters in that band, and the axis labels."""
    h, v = view.h_axis, view.v_axis
    band = LETTER_BAND_PX * mm_per_px
    h_lo, h_hi, v_lo, v_hi = lo[h] - band, hi[h] + band, lo[v] - band, hi[v] + band
    ax.set_xlim(h_hi, h_lo)  # the coordinate grows towards the image left
    ax.set_ylim(v_lo, v_hi)
    ax.set_aspect("equal", adjustable="box")
    h_mid, v_mid = (h_lo + h_hi) / 2, (v_lo + v_hi) / 2
    for x, y, letter in (
        (h_hi - band / 2, v_mid, view.h_letters[0]),
        (h_lo + band / 2, v_mid, view.h_letters[1]),
        (h_mid, v_hi - band / 2, "S"),
        (h_mid, v_lo + band / 2, "I"),
    ):
        ax.text(
            x,
            y,
            letter,
            fontsize=12,
            fontweight="bold",
            color=LETTER_COLOR,
            ha="center",
            va="center",
            zorder=11,
        )
    ax.set_xlabel(f"{WORLD_AXIS_NAMES[h]} RAS (mm)", fontsize=8)
    ax.set_ylabel(f"{WORLD_AXIS_NAMES[v]} RAS (mm)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_facecolor("#f4f4f4")


def _behind(
    point: NDArray[np.float64],
    centers: NDArray[np.float64],
    radius: float,
    toward: NDArray[np.float64],
    axes: tuple[int, int],
) -> bool:
    """Whether ``point`` is hidden by one of the spheres (``centers``, ``radius``) nearer
    the camera (``toward``) whose outline covers it in the view (world axes ``axes``)."""
    if not len(centers):
        return False
    nearer = centers @ toward > point @ toward
    flat = np.linalg.norm(centers[:, list(axes)] - point[list(axes)], axis=1)
    return bool(np.any(nearer & (flat < radius)))


def _labelled(
    centers: NDArray[np.float64],
    toward: NDArray[np.float64],
    radius: float,
    axes: tuple[int, int],
    label_mm: tuple[float, float],
) -> list[int]:
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
        if any(
            abs(flat[i, 0] - flat[j, 0]) < (width[i] + width[j]) / 2
            and abs(flat[i, 1] - flat[j, 1]) < label_mm[1]
            for j in shown
        ):
            continue  # its id would overprint a nearer one
        shown.append(int(i))
    return sorted(shown)


def _sphere_quads(
    centers: NDArray[np.float64], radius: float, *, n_theta: int = 14, n_phi: int = 8
) -> NDArray[np.float64]:
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
    verts_ijk, faces = decimated_surface_ijk(
        array, voxel_size_mm=mask.voxel_size_mm, max_faces=MAX_FACES_3D
    )
    return mask.ijk_to_ras(verts_ijk)[faces]
