"""Lesion measurements: volume, RECIST-style axial diameters, 3-D maximum diameter, sphericity,
and size rules such as a trial's eligibility threshold.

The outline of the mask on each slice is the marching-squares contour at the level half-way
between inside and outside voxel centres (the same outline the RTSTRUCT export writes), so a
diameter spans the lesion's edges, not its outermost voxel centres: an analytic shape is
measured within a fraction of a voxel. "Axial" means the slices of the grid (the planes of
constant k), which for a CT are the axial images a physicist measures on.

- **Long axis**: the longest distance between two points of the outline on one slice, over
  all slices (RECIST 1.1 longest diameter); the slice where it occurs is reported.
- **Short axis**: on that slice, the longest chord perpendicular to the long axis (RECIST's
  perpendicular diameter), measured on the convex hull of the outline.
- **3-D maximum diameter**: the longest distance between two points of the surface (marching
  cubes), found on its convex hull.
- **Sphericity**: (36 pi V^2)^(1/3) / A with V and A the volume and area of that surface,
  both of the same closed mesh (IBSI definition; 1 for a sphere, lower for elongated or rough
  shapes; a voxelised surface has a few per cent more area than the smooth one, so real
  spheres score ~0.9). By the isoperimetric inequality it never exceeds 1. (The voxel count
  is larger than the mesh's volume, which cuts the corner voxels: with it, one voxel scored
  2.2 and a 13-voxel nodule 1.005.)
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import MaskError, ParameterError
from ..geometry.margins import bounding_box, mask_surface_ijk
from ..volume import Volume


@dataclass(frozen=True)
class LesionMeasurements:
    """Size and shape of a lesion mask; lengths in mm, points RAS+ mm.

    Attributes
    ----------
    volume_cc : float
        Voxel count x voxel volume.
    long_axis_mm, short_axis_mm : float
        RECIST-style longest diameter on one slice and the longest chord perpendicular to it
        on the same slice.
    axial_slice_index : int
        k index of that slice.
    long_axis_ras_mm, short_axis_ras_mm : (2, 3) ndarray of float
        End points of the two diameters.
    max_diameter_3d_mm : float
        Longest distance between two surface points.
    max_diameter_ras_mm : (2, 3) ndarray of float
        Its end points.
    surface_area_mm2 : float
        Area of the marching-cubes surface.
    sphericity : float
        (36 pi V^2)^(1/3) / A, V and A the volume and area of that surface; in (0, 1].
    """

    volume_cc: float
    long_axis_mm: float
    short_axis_mm: float
    axial_slice_index: int
    long_axis_ras_mm: NDArray[np.float64]
    short_axis_ras_mm: NDArray[np.float64]
    max_diameter_3d_mm: float
    max_diameter_ras_mm: NDArray[np.float64]
    surface_area_mm2: float
    sphericity: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, lengths rounded to 1 µm."""

        def pts(a: NDArray[np.float64]) -> list[list[float]]:
            return [[round(float(v), 3) for v in p] for p in a]

        return {
            "volume_cc": round(self.volume_cc, 3),
            "long_axis_mm": round(self.long_axis_mm, 3),
            "short_axis_mm": round(self.short_axis_mm, 3),
            "axial_slice_index": self.axial_slice_index,
            "long_axis_ras_mm": pts(self.long_axis_ras_mm),
            "short_axis_ras_mm": pts(self.short_axis_ras_mm),
            "max_diameter_3d_mm": round(self.max_diameter_3d_mm, 3),
            "max_diameter_ras_mm": pts(self.max_diameter_ras_mm),
            "surface_area_mm2": round(self.surface_area_mm2, 1),
            "sphericity": round(self.sphericity, 4),
        }


def measure_lesion(mask: Volume) -> LesionMeasurements:
    """Measure a lesion mask (see the module docstring for the definitions).

    Parameters
    ----------
    mask : Volume
        Boolean mask (the whole mask is one lesion, several pieces included).

    Raises
    ------
    MaskError
        An empty mask.
    """
    array = np.asarray(mask.array, dtype=bool)
    if not array.any():
        raise MaskError("the lesion mask is empty; nothing to measure")
    mask.check_not_sheared(name="lesion mask")
    box = bounding_box(array, pad_vox=0)
    crop = mask.crop(box)
    long_mm, short_mm, k, long_pts, short_pts = _axial_diameters(crop)
    max_mm, max_pts, area, enclosed_mm3 = _surface_measures(crop)
    volume_mm3 = float(np.count_nonzero(array)) * mask.voxel_volume_cc * 1000.0
    sphericity = float((36.0 * np.pi * enclosed_mm3**2) ** (1.0 / 3.0) / area)
    return LesionMeasurements(
        volume_cc=volume_mm3 / 1000.0,
        long_axis_mm=long_mm,
        short_axis_mm=short_mm,
        axial_slice_index=k + box[2].start,
        long_axis_ras_mm=long_pts,
        short_axis_ras_mm=short_pts,
        max_diameter_3d_mm=max_mm,
        max_diameter_ras_mm=max_pts,
        surface_area_mm2=area,
        sphericity=sphericity,
    )


def _axial_diameters(
    crop: Volume,
) -> tuple[float, float, int, NDArray[np.float64], NDArray[np.float64]]:
    """Longest in-slice diameter over the slices, and the perpendicular chord on its slice."""
    size = crop.voxel_size_mm
    best: tuple[float, int, NDArray[np.float64], int, int] | None = None
    for kk, points in _outline_points(crop.array):
        xy = points * size[:2]  # in-plane mm (the grid is orthogonal)
        if best is not None and _diameter_bound(xy) <= best[0] + 1e-9:
            continue  # it would not be picked below
        hull = _hull_of_unique(xy)
        d = np.linalg.norm(hull[:, None, :] - hull[None, :, :], axis=-1)
        ia, ib = np.unravel_index(int(np.argmax(d)), d.shape)
        if best is None or d[ia, ib] > best[0] + 1e-9:
            best = (float(d[ia, ib]), kk, hull, int(ia), int(ib))
    assert best is not None
    long_mm, k, hull, a, b = best
    p, q = hull[a], hull[b]
    short_mm, s0, s1 = _perpendicular_chord(hull, p, q)

    def to_ras(points_xy: NDArray[np.float64]) -> NDArray[np.float64]:
        ijk = np.column_stack([points_xy / size[:2], np.full(len(points_xy), float(k))])
        return crop.ijk_to_ras(ijk)

    return long_mm, short_mm, k, to_ras(np.array([p, q])), to_ras(np.array([s0, s1]))


#: Directions of :func:`_diameter_bound`, and the bound's factor: every direction lies
#: within pi / (2 n) of one of them, so the widest extent is at least cos(pi / (2 n)) of
#: the diameter.
_BOUND_DIRECTIONS = np.array([(np.cos(a), np.sin(a)) for a in np.arange(8) * np.pi / 8]).T
_BOUND_FACTOR = 1.0 / np.cos(np.pi / 16)


def _diameter_bound(xy: NDArray[np.float64]) -> float:
    """An upper bound on the greatest distance between two of the points ``(n, 2)``: the
    widest of their extents along eight directions over cos(pi / 16), raised by 1e-9 of
    itself for the rounding of the projections (about 1e-16 of the coordinates each)."""
    along = xy @ _BOUND_DIRECTIONS
    widest = float(np.max(along.max(axis=0) - along.min(axis=0)))
    return widest * _BOUND_FACTOR * (1.0 + 1e-9) + 1e-12


def _outline_points(array: NDArray[np.bool_]) -> list[tuple[int, NDArray[np.float64]]]:
    """Per slice k, the in-plane index points (i, j) half-way between each inside voxel and
    each of its outside in-plane neighbours (the vertices of the marching-squares outline at
    level 0.5), each once and sorted by i then j (``np.unique(points, axis=0)``'s order),
    found for all slices at once.

    The points are whole multiples of a half: they are sorted and made unique as integers
    (twice the indices, one key per point with the slice first), which keeps the order.
    """
    nk = array.shape[2]
    framed = np.zeros((nk, array.shape[0] + 2, array.shape[1] + 2), dtype=bool)
    framed[:, 1:-1, 1:-1] = np.moveaxis(array, 2, 0)  # slices first, framed with outside
    # Edges between neighbours along i (the point i - 1/2 of the framed row pair) and along j.
    k0, t0, j0 = np.nonzero(framed[:, 1:, 1:-1] ^ framed[:, :-1, 1:-1])
    k1, i1, t1 = np.nonzero(framed[:, 1:-1, 1:] ^ framed[:, 1:-1, :-1])
    k = np.concatenate([k0, k1]).astype(np.int64)
    twice_i = np.concatenate([2 * t0 - 1, 2 * i1]).astype(np.int64)
    twice_j = np.concatenate([2 * j0, 2 * t1 - 1]).astype(np.int64)
    width_i, width_j = 2 * array.shape[0] + 3, 2 * array.shape[1] + 3
    keys = np.unique((k * width_i + twice_i + 1) * width_j + twice_j + 1)
    rest, twice_j = np.divmod(keys, width_j)
    k, twice_i = np.divmod(rest, width_i)
    points = np.column_stack([twice_i - 1, twice_j - 1]) * 0.5
    ks, starts = np.unique(k, return_index=True)
    return [(int(kk), part) for kk, part in zip(ks, np.split(points, starts[1:]))]


def _hull_of_unique(unique: NDArray[np.float64]) -> NDArray[np.float64]:
    """Vertices of the convex hull of distinct 2-D points, in order (all points if
    degenerate); ``unique`` sorted as ``np.unique(points, axis=0)`` sorts them."""
    from scipy.spatial import ConvexHull, QhullError

    if len(unique) < 3:
        return unique
    try:
        return unique[ConvexHull(unique).vertices]
    except QhullError:  # collinear points (a one-voxel-wide line)
        return unique


def _perpendicular_chord(
    hull: NDArray[np.float64], p: NDArray[np.float64], q: NDArray[np.float64]
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Longest chord of a convex polygon perpendicular to the segment p-q, with its ends.

    Chord length along the axis is concave and piecewise linear for a convex polygon, so
    its maximum is at one of the vertices' positions along the axis.
    """
    u = (q - p) / np.linalg.norm(q - p)
    e = np.array([-u[1], u[0]])
    if len(hull) < 3:
        return 0.0, p, p
    along = (hull - p) @ u
    across = (hull - p) @ e
    nxt = np.roll(np.arange(len(hull)), -1)
    best = (0.0, p, p)
    for t in along:
        a0, a1 = along - t, along[nxt] - t
        crossing = a0 * a1 <= 0
        if not crossing.any():
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(a0 != a1, a0 / (a0 - a1), 0.0)
        y = across + w * (across[nxt] - across)
        ys = y[crossing]
        length = float(ys.max() - ys.min())
        if length > best[0]:
            best = (length, p + t * u + ys.min() * e, p + t * u + ys.max() * e)
    return best


def _surface_measures(crop: Volume) -> tuple[float, NDArray[np.float64], float, float]:
    """3-D maximum diameter (with end points), area (mm^2) and enclosed volume (mm^3) of the
    marching-cubes surface."""
    from scipy.spatial import ConvexHull, QhullError
    from scipy.spatial.distance import pdist
    from skimage.measure import mesh_surface_area

    verts_ijk, faces = mask_surface_ijk(crop.array)
    world = crop.ijk_to_ras(verts_ijk)
    area = float(mesh_surface_area(world, faces))
    # The mask is padded, so the surface is closed: its volume is the sum of the signed
    # tetrahedra from the origin to each face (divergence theorem; the sign follows the
    # affine's handedness).
    tri = world[faces]
    enclosed = abs(
        float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6.0
    )
    try:
        candidates = world[ConvexHull(world).vertices]
    except QhullError:  # a flat lesion (one slice): every point is a candidate
        candidates = np.unique(world, axis=0)
    d = pdist(candidates)
    a, b = _pair_of(int(np.argmax(d)), len(candidates))
    return float(d.max()), candidates[[a, b]], area, enclosed


def _pair_of(index: int, n: int) -> tuple[int, int]:
    """The pair (i, j), i < j, at ``index`` of a condensed distance vector of n points."""
    i = int(n - 2 - np.floor(np.sqrt(-8 * index + 4 * n * (n - 1) - 7) / 2.0 - 0.5))
    j = int(index + i + 1 - n * (n - 1) // 2 + (n - i) * ((n - i) - 1) // 2)
    return i, j


# --- size rules -----------------------------------------------------------------------------

#: Measurements a size rule may test.
RULE_METRICS = ("long_axis_mm", "short_axis_mm", "max_diameter_3d_mm", "volume_cc")
_OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class SizeRule:
    """A threshold on one measurement, e.g. ``short_axis_mm > 30``."""

    metric: str
    op: str
    threshold: float
    source: str = ""

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    def check(self, m: LesionMeasurements) -> bool:
        return bool(_OPERATORS[self.op](getattr(m, self.metric), self.threshold))


#: Size rules of the seed trials (docs/vocabulary.md, "Lesion-size rules").
TRIAL_RULES = {
    "NCT06987370": SizeRule(
        "short_axis_mm",
        ">",
        30.0,
        "NCT06987370 (SFRT/SCART, bone metastases): soft-tissue mass shortest diameter > 30 mm",
    ),
    "NCT05602415": SizeRule(
        "long_axis_mm", ">=", 50.0, "NCT05602415 (soft-tissue sarcoma, RECIST 1.1): lesion >= 5 cm"
    ),
}


def parse_size_rule(text: str) -> SizeRule:
    """``'short_axis_mm>30'`` (or a trial id of :data:`TRIAL_RULES`) -> :class:`SizeRule`.

    Raises
    ------
    ParameterError
        Not ``METRIC OP NUMBER`` with a known metric and operator.
    """
    if text in TRIAL_RULES:
        return TRIAL_RULES[text]
    match = re.fullmatch(r"\s*([a-z_0-9]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*", text)
    if not match or match.group(1) not in RULE_METRICS:
        raise ParameterError(
            f"size rule {text!r} is not METRIC OP NUMBER with METRIC one of "
            f"{', '.join(RULE_METRICS)} and OP one of > >= < <= (e.g. 'short_axis_mm>30'), "
            f"nor a trial id ({', '.join(TRIAL_RULES)})"
        )
    try:
        threshold = float(match.group(3))
    except ValueError:
        raise ParameterError(f"size rule {text!r}: {match.group(3)!r} is not a number") from None
    return SizeRule(match.group(1), match.group(2), threshold, "user rule")


def evaluate_rules(m: LesionMeasurements, rules: list[SizeRule]) -> list[dict[str, Any]]:
    """Each rule with the measured value and whether the lesion meets it."""
    return [
        {
            "rule": str(r),
            "source": r.source,
            "value": round(getattr(m, r.metric), 3),
            "met": r.check(m),
        }
        for r in rules
    ]
