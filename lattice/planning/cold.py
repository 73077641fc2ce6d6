"""Cold (valley) spheres: low-dose optimiser targets in the holes of a vertex arrangement.

One definition serves every arrangement (a lattice pattern, ``max`` packing, a shell,
``--count``): a hole is a *local maximum of the distance to the nearest peak centre*.
For a finite point set that function is piecewise smooth, and its local maxima are exactly
the Voronoi vertices that lie inside their own Delaunay cell (the largest empty spheres
"between" the peaks; a Voronoi vertex outside its cell is not a maximum, since moving away
from the cell increases the distance). Each Delaunay tetrahedron's circumcentre is the
Voronoi vertex dual to it, so

    sites = { circumcentre(T) : T a Delaunay tetrahedron of the peaks, circumcentre in T }

computed exactly by Qhull (``scipy.spatial.Delaunay``), no sampling grid. Co-spherical
peaks (every perfect lattice) split one cell into several tetrahedra with the same
circumcentre; those copies are merged within :data:`SITE_MERGE_TOL_MM`.

On perfect lattices with nearest-neighbour distance S this gives the classical
interstitial sites (see ``docs/domain.md`` section 3 for the patterns):

- SC: the cube body centres, S*sqrt(3)/2 = 0.866 S from eight peaks;
- BCC (cube edge a = 2S/sqrt(3)): the tetrahedral sites (a/2, a/4, 0) and their images on
  every cube face, a*sqrt(5)/4 = 0.645 S from four peaks (two corners, two body centres);
- FCC and HCP: the octahedral sites, S/sqrt(2) = 0.707 S from six peaks, and the
  tetrahedral sites, S*sqrt(6)/4 = 0.612 S from four.

The BCC octahedral sites (face centres, edge midpoints, 0.577 S) lie on Voronoi faces and
are not maxima. In FCC and HCP the tetrahedral holes are the smaller ones; the gap rule
removes them at the usual sizes (D 15 mm, S 30 mm, gap 5 mm: a cold sphere of diameter D
at a tetrahedral site would leave 3.4 mm to the peaks, at an octahedral site 6.2 mm),
leaving the octahedral sites that LatticeRT uses (``docs/domain.md`` section 7).

A site is kept when (1) the surface-to-surface gap to every peak sphere is at least
``cold_gap_mm``, (2) ``slack_fn`` says the cold sphere lies inside the GTV by the margin,
and then (3) the survivors are thinned greedily, deepest hole first, so that cold spheres
keep ``min_spacing_mm`` among themselves.

Holes outside the convex hull of the peaks (between the outer peaks and the GTV surface)
are not holes of the arrangement and are not returned; fewer than four peaks, or peaks
all in one plane, have no holes and give an empty result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice.errors import ParameterError

__all__ = [
    "DEFAULT_COLD_GAP_MM",
    "SITE_MERGE_TOL_MM",
    "ColdSites",
    "cold_sites",
    "cold_sphere_entries",
]

#: Default least surface-to-surface gap (mm) between a cold sphere and any peak sphere.
#: The optimiser asks for >= the peak dose on the peak sphere and a low dose on the cold
#: sphere; the fall-off between them must be deliverable. The 80-20 % penumbra of a 6 MV
#: MLC-shaped field is 1.7 mm at 1.5 cm depth and 3.7-3.9 mm at 10 cm depth (J Appl Clin
#: Med Phys 2011;12(3):142, doi:10.1120/jacmp.v12i3.3475, table 2), so 5 mm holds one
#: full penumbra at depth with a margin. It is also the inner boundary of LatticeRT's
#: first support shell (0-5 mm, docs/domain.md section 7): a cold sphere never reaches
#: into the ring that shapes the steepest fall-off. At the usual D 15 mm, S 30 mm it keeps
#: the octahedral holes of FCC/HCP (6.2 mm free) and SC cube centres (11 mm) and drops the
#: tetrahedral holes (3.4 mm).
DEFAULT_COLD_GAP_MM = 5.0

#: Sites closer than this (mm) are one site. Circumcentres of co-spherical peaks (the
#: copies of one lattice hole) agree to ~1e-10 mm; distinct holes of any arrangement that
#: passes the spacing rules are millimetres apart. 0.01 mm is far from both and far below
#: the 0.1 mm acceptance and any voxel.
SITE_MERGE_TOL_MM = 0.01

#: A circumcentre counts as inside its tetrahedron when every barycentric coordinate is
#: >= -this (dimensionless). Lattice holes lie exactly on shared faces or edges of the
#: tetrahedra that split their cell (octahedra, cubes); rounding puts them at ~1e-12 off.
_BARYCENTRIC_TOL = 1e-7

#: Tetrahedra with |det(edges)| below this fraction of (longest edge)^3 are flat slivers
#: (Qhull's triangulation of co-spherical cells can emit them); their circumcentre is
#: ill-defined and their cell's other tetrahedra carry the same hole.
_FLAT_TET_REL = 1e-9

#: Nearest-peak distances equal within this (mm) are ties, broken by coordinates, so the
#: thinning order does not depend on rounding noise or on the order of the peaks.
_TIE_TOL_MM = 1e-6

SlackFn = Callable[[NDArray[np.float64]], NDArray[np.float64]]


@dataclass(frozen=True, eq=False)
class ColdSites:
    """Centres of the cold spheres, deepest hole first.

    Attributes
    ----------
    centers_ras_mm : (m, 3) ndarray of float
        Cold-sphere centres, RAS mm.
    nearest_peak_mm : (m,) ndarray of float
        Distance from each centre to the nearest peak centre, mm (non-increasing).
    diameter_mm : float
        Cold-sphere diameter, mm.
    gap_mm : float
        Least surface-to-surface gap to any peak sphere that was enforced, mm.
    """

    centers_ras_mm: NDArray[np.float64]
    nearest_peak_mm: NDArray[np.float64]
    diameter_mm: float
    gap_mm: float

    def __len__(self) -> int:
        return int(self.centers_ras_mm.shape[0])


def cold_sites(
    peaks_ras_mm: NDArray[np.float64],
    *,
    peak_diameter_mm: float,
    cold_diameter_mm: float | None = None,
    cold_gap_mm: float = DEFAULT_COLD_GAP_MM,
    min_spacing_mm: float,
    slack_fn: SlackFn,
) -> ColdSites:
    """Place cold spheres at the holes of a peak arrangement.

    Parameters
    ----------
    peaks_ras_mm : (n, 3) array_like of float
        Peak (vertex) sphere centres, RAS mm.
    peak_diameter_mm : float
        Peak sphere diameter D, mm (> 0).
    cold_diameter_mm : float, optional
        Cold sphere diameter, mm (> 0). Default: ``peak_diameter_mm``.
    cold_gap_mm : float
        Least surface-to-surface gap from a cold sphere to every peak sphere, mm (>= 0):
        a centre needs nearest-peak distance >= D/2 + cold radius + gap.
        Default :data:`DEFAULT_COLD_GAP_MM`.
    min_spacing_mm : float
        Least centre-to-centre distance between two cold spheres, mm (>= 0).
    slack_fn : callable
        ``slack_fn(points (k, 3) RAS mm) -> (k,) float``: the margin slack of a cold-sphere
        centre, >= 0 when the sphere lies inside the GTV by the margin under the planner's
        surface model (in the planner, the rule field's exact slack for the cold radius).
        Called once, on the candidate sites only, which all lie inside the convex hull of
        the peaks (so inside the GTV's bounding box when the peaks are).

    Returns
    -------
    ColdSites
        Centres and nearest-peak distances, ordered by decreasing nearest-peak distance,
        ties by x, then y, then z. Empty (shape (0, 3)) for fewer than 4 peaks, coplanar
        peaks, or when no hole passes the rules.

    Raises
    ------
    ParameterError (a ValueError)
        If ``peaks_ras_mm`` is not (n, 3) finite, a size is not positive or a gap/spacing
        negative, or ``slack_fn`` does not return one finite value per point.

    Notes
    -----
    Thinning is greedy: sites are taken deepest first and each one taken removes every
    remaining site closer than ``min_spacing_mm``, so every dropped site has a deeper kept
    one within the spacing. The deepest holes are where the valley dose can go lowest, so
    they are the cold targets worth keeping. An exact maximum independent set
    (``scipy.optimize.milp``) would maximise the count instead, trading deep holes for
    more shallow ones, has many equal optima (so needs a tie-breaking objective to be
    deterministic) and grows exponentially in the worst case; the count of cold spheres
    is not a goal. On a perfect lattice whose holes are at least ``min_spacing_mm`` apart
    nothing is removed (the planner builds lattices at ``S * (1 + 1e-9)``, so holes exactly
    S apart survive ``min_spacing_mm = S``).

    The gap and spacing tests are exact (no tolerance), so the returned spheres satisfy
    them as stated; a hole exactly at the gap threshold may fall either way by rounding.
    """
    peaks = _validated_points(peaks_ras_mm)
    cold_d = peak_diameter_mm if cold_diameter_mm is None else cold_diameter_mm
    _check_sizes(peak_diameter_mm, cold_d, cold_gap_mm, min_spacing_mm)
    empty = ColdSites(np.zeros((0, 3)), np.zeros(0), float(cold_d), float(cold_gap_mm))
    candidates = _local_maxima_of_nearest_distance(peaks)
    if candidates.shape[0] == 0:
        return empty
    from scipy.spatial import cKDTree  # ~0.4 s to import: not with the CLI's parser

    nearest = cKDTree(peaks).query(candidates)[0]
    keep = nearest >= 0.5 * peak_diameter_mm + 0.5 * cold_d + cold_gap_mm
    candidates, nearest = candidates[keep], nearest[keep]
    merged = _greedy_thin(candidates, nearest, SITE_MERGE_TOL_MM)
    candidates, nearest = candidates[merged], nearest[merged]
    if candidates.shape[0] == 0:
        return empty
    slack = _evaluated_slack(slack_fn, candidates)
    candidates, nearest = candidates[slack >= 0.0], nearest[slack >= 0.0]
    chosen = _greedy_thin(candidates, nearest, min_spacing_mm)
    return ColdSites(candidates[chosen], nearest[chosen], float(cold_d), float(cold_gap_mm))


def cold_sphere_entries(sites: ColdSites, *, name_prefix: str = "COLD") -> list[dict[str, object]]:
    """The plan.json ``cold_spheres`` records of a :class:`ColdSites`.

    Parameters
    ----------
    sites : ColdSites
        As returned by :func:`cold_sites`.
    name_prefix : str
        Names are ``f"{name_prefix}_{id:02d}"``: ``COLD_01``..., the names of the per-sphere
        ROIs (``--cold-rois each``), as a vertex's name is its ROI's.

    Returns
    -------
    list of dict
        One record per sphere, ids from 1 in the order of ``sites``: ``id``, ``name``,
        ``center_ras_mm``, ``center_lps_mm`` (x and y negated), ``diameter_mm``,
        ``nearest_peak_mm``; plain floats, ready for ``json.dump``.
    """
    ras_to_lps = np.array([-1.0, -1.0, 1.0])
    entries = []
    for index, (center, nearest) in enumerate(zip(sites.centers_ras_mm, sites.nearest_peak_mm)):
        entries.append(
            {
                "id": index + 1,
                "name": f"{name_prefix}_{index + 1:02d}",
                "center_ras_mm": [float(v) for v in center],
                "center_lps_mm": [float(v) for v in center * ras_to_lps],
                "diameter_mm": float(sites.diameter_mm),
                "nearest_peak_mm": float(nearest),
            }
        )
    return entries


def _local_maxima_of_nearest_distance(peaks: NDArray[np.float64]) -> NDArray[np.float64]:
    """Circumcentres of the Delaunay tetrahedra that contain them, (k, 3) mm.

    A circumcentre inside (or on) its tetrahedron lies in the convex hull of its nearest
    peaks, which is the condition for a local maximum of the nearest-peak distance; every
    maximum is found this way because the Delaunay cell of the hole is split into
    tetrahedra sharing its circumcentre. Copies are not merged here.
    """
    from scipy.spatial import Delaunay, QhullError  # when used (see above)

    if peaks.shape[0] < 4:
        return np.zeros((0, 3))
    try:
        tri = Delaunay(peaks)
    except QhullError:  # all peaks in one plane (or on one line): no 3-D holes
        return np.zeros((0, 3))
    corners = peaks[tri.simplices]  # (t, 4, 3)
    edges = corners[:, 1:, :] - corners[:, :1, :]  # (t, 3, 3)
    scale = np.max(np.linalg.norm(edges, axis=2), axis=1)
    solid = np.abs(np.linalg.det(edges)) > _FLAT_TET_REL * scale**3
    corners, edges = corners[solid], edges[solid]
    # |c - p0|^2 = |c - pi|^2  <=>  2 (pi - p0) . (c - p0) = |pi - p0|^2
    rhs = 0.5 * np.einsum("tij,tij->ti", edges, edges)
    centers = corners[:, 0, :] + np.linalg.solve(edges, rhs[..., None])[..., 0]
    # barycentric coordinates of c: c - p0 = edges^T @ lam[1:], lam[0] = 1 - sum(lam[1:])
    lam = np.linalg.solve(np.transpose(edges, (0, 2, 1)), (centers - corners[:, 0, :])[..., None])
    lam = lam[..., 0]
    inside = np.all(lam >= -_BARYCENTRIC_TOL, axis=1) & (lam.sum(axis=1) <= 1 + _BARYCENTRIC_TOL)
    return np.asarray(centers[inside], dtype=float)


def _preference_order(
    points: NDArray[np.float64], nearest: NDArray[np.float64]
) -> NDArray[np.intp]:
    """Indices, deepest first; ties (within :data:`_TIE_TOL_MM`) by x, y, z ascending."""
    depth_key = -np.round(nearest / _TIE_TOL_MM)
    rounded = np.round(points / _TIE_TOL_MM)
    order = np.lexsort((rounded[:, 2], rounded[:, 1], rounded[:, 0], depth_key))
    return np.asarray(order, dtype=np.intp)


def _greedy_thin(
    points: NDArray[np.float64], nearest: NDArray[np.float64], spacing_mm: float
) -> NDArray[np.intp]:
    """Indices of a greedy thinning, in preference order, pairwise >= ``spacing_mm``."""
    order = _preference_order(points, nearest)
    if spacing_mm <= 0.0 or points.shape[0] < 2:
        return np.asarray(order, dtype=np.intp)
    from scipy.spatial import cKDTree

    tree = cKDTree(points)
    removed = np.zeros(points.shape[0], dtype=bool)
    chosen = []
    for index in order:
        if removed[index]:
            continue
        chosen.append(index)
        near = np.asarray(tree.query_ball_point(points[index], spacing_mm), dtype=np.intp)
        too_close = np.linalg.norm(points[near] - points[index], axis=1) < spacing_mm
        removed[near[too_close]] = True
    return np.asarray(chosen, dtype=np.intp)


def _validated_points(points_ras_mm: NDArray[np.float64]) -> NDArray[np.float64]:
    points = np.asarray(points_ras_mm, dtype=float)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ParameterError(
            f"peak centres must be an (n, 3) array of RAS mm, got shape {points.shape}; "
            "pass one row per vertex"
        )
    if not np.all(np.isfinite(points)):
        raise ParameterError("peak centres contain NaN or infinite values; pass finite RAS mm")
    return points


def _check_sizes(peak_d: float, cold_d: float, gap: float, spacing: float) -> None:
    for name, value in (("peak_diameter_mm", peak_d), ("cold_diameter_mm", cold_d)):
        if not (np.isfinite(value) and value > 0):
            raise ParameterError(
                f"{{{name}}} must be a positive number of mm, got {value!r}", parameters=[name]
            )
    for name, value in (("cold_gap_mm", gap), ("min_spacing_mm", spacing)):
        if not (np.isfinite(value) and value >= 0):
            raise ParameterError(
                f"{{{name}}} must be a non-negative number of mm, got {value!r}",
                parameters=[name],
            )


def _evaluated_slack(slack_fn: SlackFn, points: NDArray[np.float64]) -> NDArray[np.float64]:
    slack = np.asarray(slack_fn(points.copy()), dtype=float)
    if slack.shape != (points.shape[0],) or not np.all(np.isfinite(slack)):
        raise ParameterError(
            f"slack_fn must return {points.shape[0]} finite values for {points.shape[0]} "
            f"points, got shape {slack.shape}; return one slack (mm) per point"
        )
    return slack
