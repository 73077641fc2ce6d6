"""Where the overview panels cut the grid: planes, crop, circles and edge letters, from
world-space arithmetic alone (no matplotlib, no CT values).

:func:`~lattice.render.slices.render_overview` writes one PNG with an axial, a coronal and a
sagittal panel through the planes that cut the most vertex spheres. Panels follow the
radiological convention whatever the storage order of the arrays: the grid is first brought
to the closest canonical (RAS) orientation with :mod:`nibabel.orientations`, which only flips
and transposes axes, so every displayed pixel is an original voxel. Then

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
which needs no CT values, so it can be tested against world-space arithmetic alone; the
vertex montage moves its axial panel through :func:`axial_panel_at`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import MaskError, ParameterError
from ..grid import Grid
from ..volume import Volume

PanelName = Literal["axial", "coronal", "sagittal"]

#: Margin in mm around the GTV (and any vertex sphere) shown in every panel: enough anatomy
#: to judge where the tumour sits while keeping it large in the frame.
DEFAULT_CONTEXT_MM = 25.0


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
#: Names of the world (RAS) axes.
WORLD_AXIS_NAMES = ("x", "y", "z")
_POSITIVE_LETTERS = ("R", "A", "S")
_NEGATIVE_LETTERS = ("L", "P", "I")


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
        from nibabel.orientations import apply_orientation

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
    centers = as_centres(centers_ras_mm)
    if not (np.isfinite(diameter_mm) and diameter_mm > 0):
        raise ParameterError(f"diameter_mm must be a positive number, got {diameter_mm!r}")
    if not (np.isfinite(context_mm) and context_mm >= 0):
        raise ParameterError(f"context_mm must be >= 0 mm, got {context_mm!r}")
    radius = 0.5 * float(diameter_mm)
    # nibabel takes ~0.35 s to import: not with `lattice --help` (plan_writer imports this)
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ornt = io_orientation(gtv.affine)
    affine = gtv.affine @ inv_ornt_aff(ornt, gtv.shape)
    mask = apply_orientation(np.asarray(gtv.array), ornt)
    shape = (int(mask.shape[0]), int(mask.shape[1]), int(mask.shape[2]))
    if mask.dtype != np.bool_:
        mask = mask != 0
    centroid_ijk, box_lo, box_hi = _extent_ijk(mask)

    canonical = Grid(shape, affine)
    voxel_size = canonical.voxel_size_mm
    if len(centers):
        # The projection of a sphere on any axis is R wide on each side: exact for oblique grids.
        centers_ijk = canonical.ras_to_ijk(centers)
        box_lo = np.minimum(box_lo, (centers_ijk - radius / voxel_size).min(axis=0))
        box_hi = np.maximum(box_hi, (centers_ijk + radius / voxel_size).max(axis=0))
    context = context_mm / voxel_size
    crop_lo = np.clip(np.floor(box_lo - context), 0, np.array(shape) - 1).astype(int)
    crop_hi = np.clip(np.ceil(box_hi + context), 0, np.array(shape) - 1).astype(int) + 1

    cos_to_axis = np.abs(np.diag(canonical.directions)).clip(0.0, 1.0)
    oblique_deg = float(np.degrees(np.arccos(cos_to_axis.min())))
    crop = _Crop(canonical, crop_lo, crop_hi, oblique_deg > AXIS_ALIGNED_TOLERANCE_DEG)
    panels = tuple(
        _panel(name, a, h, v, crop, centers, radius, centroid_ijk[a]) for name, a, h, v in _PANELS
    )
    return OverviewGeometry(
        ornt=ornt,
        affine=affine,
        shape=shape,
        oblique_deg=oblique_deg,
        n_vertices=len(centers),
        panels=panels,
    )


def _extent_ijk(
    mask: NDArray[np.bool_],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Centroid and bounding box (first and last index per axis) of a boolean mask.

    Per-axis voxel counts give the bounding box and the centroid in three passes, without
    materialising the index list of a possibly very large mask.

    Raises
    ------
    MaskError
        An empty mask.
    """
    counts = [np.count_nonzero(mask, axis=tuple(b for b in range(3) if b != a)) for a in range(3)]
    n_voxels = int(counts[0].sum())
    if n_voxels == 0:
        raise MaskError("the GTV mask is empty; pass a mask with at least one non-zero voxel")
    centroid_ijk = np.array([np.dot(np.arange(len(c)), c) / n_voxels for c in counts])
    box_lo = np.array([np.flatnonzero(c)[0] for c in counts], dtype=float)
    box_hi = np.array([np.flatnonzero(c)[-1] for c in counts], dtype=float)
    return centroid_ijk, box_lo, box_hi


@dataclass(frozen=True)
class _Crop:
    """The canonical grid and the index box ``[lo, hi)`` every panel shows."""

    grid: Grid
    lo: NDArray[np.int_]
    hi: NDArray[np.int_]
    oblique: bool


def _panel(
    name: PanelName,
    a: int,
    h: int,
    v: int,
    crop: _Crop,
    centers: NDArray[np.float64],
    radius: float,
    centroid_layer: float,
) -> PanelGeometry:
    """The panel normal to grid axis ``a`` showing axes ``h`` and ``v``."""
    affine = crop.grid.affine
    columns, origin = affine[:3, :3], affine[:3, 3]
    directions, voxel_size = crop.grid.directions, crop.grid.voxel_size_mm
    normal = np.cross(directions[:, h], directions[:, v])
    normal /= np.linalg.norm(normal)
    if normal @ columns[:, a] < 0:
        normal = -normal
    layer_step = float(normal @ columns[:, a])  # distance between layers along the normal
    offsets = (centers - origin) @ normal  # signed distance of each centre from layer 0
    layer = _richest_layer(offsets, layer_step, crop.grid.shape[a], radius, centroid_layer)

    ijk_centre = (crop.lo + crop.hi - 1) / 2.0
    ijk_centre[a] = layer
    from nibabel.affines import apply_affine

    point = apply_affine(affine, ijk_centre)
    h_dir, v_dir = directions[:, h], directions[:, v]
    u0, v0 = float(h_dir @ origin), float(v_dir @ origin)
    extent = (
        float(u0 + (crop.lo[h] - 0.5) * voxel_size[h]),
        float(u0 + (crop.hi[h] - 0.5) * voxel_size[h]),
        float(v0 + (crop.lo[v] - 0.5) * voxel_size[v]),
        float(v0 + (crop.hi[v] - 0.5) * voxel_size[v]),
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
    axis_name = WORLD_AXIS_NAMES[a]
    label = (
        f"{name} {axis_name} = {point[a]:.1f} mm"
        if not crop.oblique
        else f"{name} (tilted) {axis_name} \u2248 {point[a]:.1f} mm at centre"
    )
    return PanelGeometry(
        name=name,
        normal_axis=a,
        h_axis=h,
        v_axis=v,
        layer=layer,
        h_range=(int(crop.lo[h]), int(crop.hi[h])),
        v_range=(int(crop.lo[v]), int(crop.hi[v])),
        h_dir_ras=h_dir.copy(),
        v_dir_ras=v_dir.copy(),
        normal_ras=normal,
        plane_point_ras_mm=point,
        extent_mm=extent,
        voxel_size_mm=(float(voxel_size[h]), float(voxel_size[v])),
        # u grows towards the image left and v towards the top (radiological convention)
        edge_letters={
            "left": direction_letters(h_dir),
            "right": direction_letters(-h_dir),
            "top": direction_letters(v_dir),
            "bottom": direction_letters(-v_dir),
        },
        label=label,
        cuts=tuple(cuts),
    )


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


def direction_letters(direction: NDArray[np.float64]) -> str:
    """Patient orientation letters of a world (RAS) direction, dominant axis first (a second
    letter when its component is at least :data:`SECOND_LETTER_MIN_COMPONENT`)."""
    order = np.argsort(-np.abs(direction), kind="stable")
    letters = []
    for rank, axis in enumerate(order):
        component = direction[axis]
        if rank > 0 and abs(component) < SECOND_LETTER_MIN_COMPONENT:
            break
        letters.append(_POSITIVE_LETTERS[axis] if component > 0 else _NEGATIVE_LETTERS[axis])
    return "".join(letters)


def as_centres(centers_ras_mm: ArrayLike) -> NDArray[np.float64]:
    """(n, 3) float64 vertex centres (RAS mm) from an array-like; ``(0, 3)`` when empty.

    Raises
    ------
    ParameterError
        If the centres are not a finite (n, 3) array.
    """
    centers = np.asarray(centers_ras_mm, dtype=np.float64)
    if centers.size == 0:
        return np.zeros((0, 3))
    if centers.ndim != 2 or centers.shape[1] != 3 or not np.all(np.isfinite(centers)):
        raise ParameterError(
            f"centers_ras_mm must be a finite (n, 3) array of RAS points in mm, got shape "
            f"{centers.shape}; stack the vertex centres as rows"
        )
    return centers


def montage_layers(geo: OverviewGeometry, centers_ras_mm: ArrayLike) -> list[int]:
    """Axial layers of the canonical grid nearest to each vertex centre, sorted from superior
    to inferior, without repeats."""
    centers = as_centres(centers_ras_mm)
    axial = geo.panels[0]
    columns = geo.affine[:3, :3]
    step = float(axial.normal_ras @ columns[:, axial.normal_axis])
    offsets = (centers - geo.affine[:3, 3]) @ axial.normal_ras
    n = geo.shape[axial.normal_axis]
    layers = {int(np.clip(np.rint(o / step), 0, n - 1)) for o in offsets}
    return sorted(layers, reverse=True)


def montage_slices(
    geo: OverviewGeometry, centers_ras_mm: ArrayLike, *, tolerance_mm: float
) -> list[tuple[int, tuple[int, ...]]]:
    """The fewest axial layers of the canonical grid such that every centre lies within
    ``tolerance_mm`` of a chosen layer's plane, superior first, each with the (0-based)
    indices of the centres it stands for.

    A centre with no layer that close (slices thicker than ``2 * tolerance_mm``) stands on its
    nearest layer, so ``tolerance_mm=0`` gives :func:`montage_layers`. Each centre allows an
    interval of layers; the intervals are stabbed greedily from the superior end (optimal in
    one dimension), and each group's layer is then the one of its common interval nearest to
    the middle of its centres.
    """
    centers = as_centres(centers_ras_mm)
    axial = geo.panels[0]
    step = float(axial.normal_ras @ geo.affine[:3, axial.normal_axis])
    offsets = (centers - geo.affine[:3, 3]) @ axial.normal_ras / step  # in layers
    n = geo.shape[axial.normal_axis]
    tol = max(float(tolerance_mm), 0.0) / step
    nearest = np.clip(np.rint(offsets), 0, n - 1).astype(int)
    lo = np.clip(np.ceil(offsets - tol), 0, n - 1).astype(int)
    hi = np.clip(np.floor(offsets + tol), 0, n - 1).astype(int)
    alone = lo > hi  # no layer within the tolerance
    lo[alone], hi[alone] = nearest[alone], nearest[alone]
    slices = []
    left = list(np.lexsort((-hi, -lo)))  # superior first
    while left:
        top = int(lo[left[0]])
        members = [i for i in left if hi[i] >= top]
        left = [i for i in left if hi[i] < top]
        middle = 0.5 * (offsets[members].min() + offsets[members].max())
        layer = int(np.clip(np.rint(middle), top, hi[members].min()))
        slices.append((layer, tuple(sorted(int(i) for i in members))))
    return sorted(slices, reverse=True)


def axial_panel_at(
    geo: OverviewGeometry, centers_ras_mm: ArrayLike, *, diameter_mm: float, layer: int
) -> PanelGeometry:
    """The overview's axial panel moved to ``layer``, with that plane's sphere cuts."""
    centers = as_centres(centers_ras_mm)
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
            cuts.append(
                VertexCut(
                    idx + 1,
                    float(axial.h_dir_ras @ c),
                    float(axial.v_dir_ras @ c),
                    float(np.sqrt(radius**2 - d**2)),
                    d,
                )
            )
    axis = WORLD_AXIS_NAMES[axial.normal_axis]
    ids = _id_ranges([c.vertex_id for c in cuts]) or "none"
    label = f"axial {axis} = {point[axial.normal_axis]:.1f} mm: vertices {ids}"
    return dataclasses.replace(
        axial, layer=layer, plane_point_ras_mm=point, label=label, cuts=tuple(cuts)
    )


def _id_ranges(ids: list[int]) -> str:
    """``[1, 2, 3, 5, 7, 8]`` -> ``'1-3, 5, 7-8'``."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
