"""Contours of a plan's structures on the CT's slice planes, as an RTSTRUCT holds them.

Vertex spheres are analytic circles where each slice plane cuts the sphere
(:data:`CIRCLE_POINTS` points on the circle: the polygon's area is 0.16 % below the
circle's); other structures are traced from their voxel masks (marching squares at the
voxel-centre level, in world coordinates). For readers that OR contours instead of the
even-odd rule, :func:`keyhole_contours` joins each hole to its outline by a zero-width cut.
The dataset writer is :mod:`lattice.io.rtstruct_write`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..grid import Grid
from ..volume import Volume

#: Points per vertex circle. A regular N-gon inscribed in a circle has area
#: N sin(2 pi / N) / (2 pi) of it: 0.9984 for 64.
CIRCLE_POINTS = 64
Contour = tuple[int, NDArray[np.float64]]  # slice index, (m, 3) LPS mm


def slice_planes(
    grid: Grid | Volume,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Origins (K, 3), unit normal, and unit in-plane axes u (along i), v (along j), LPS."""
    lps = grid.lps_affine
    size = grid.voxel_size_mm
    origins = lps[:3, 3] + np.arange(grid.shape[2])[:, None] * lps[:3, 2]
    return origins, lps[:3, 2] / size[2], lps[:3, 0] / size[0], lps[:3, 1] / size[1]


def sphere_contours(
    center_lps_mm: NDArray[np.float64],
    radius_mm: float,
    grid: Grid | Volume,
    *,
    points: int = CIRCLE_POINTS,
) -> list[Contour]:
    """Exact circles where the slice planes of ``grid`` cut a sphere (every plane that does)."""
    origins, normal, u, v = slice_planes(grid)
    c = np.asarray(center_lps_mm, dtype=np.float64)
    theta = 2.0 * np.pi * np.arange(points) / points
    ring = np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * v
    out = []
    for k, d in enumerate((c - origins) @ normal):
        if abs(d) < radius_mm:
            rho = float(np.sqrt(radius_mm**2 - d**2))
            out.append((k, (c - d * normal) + rho * ring))
    return out


def contour_volume_mm3(contours: Sequence[Contour], grid: Grid | Volume) -> float:
    """The volume a TPS rebuilds from contours on the slices of ``grid``: the sum of the
    polygon areas (shoelace, in the slice plane) x the slice gap."""
    origins, _, u, v = slice_planes(grid)
    total = 0.0
    for k, points in contours:
        x, y = (points - origins[k]) @ u, (points - origins[k]) @ v
        total += 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))
    return total * float(grid.voxel_size_mm[2])


def sphere_tps_volume_mm3(
    center_lps_mm: NDArray[np.float64], radius_mm: float, grid: Grid | Volume
) -> float:
    """The volume a TPS rebuilds from the circles :func:`sphere_contours` exports."""
    return contour_volume_mm3(sphere_contours(center_lps_mm, radius_mm, grid), grid)


def mask_contours(mask: Volume) -> list[Contour]:
    """Closed contours of a boolean mask on each of its k slices, LPS mm.

    Marching squares at level 0.5 on the padded slice gives closed polygons through the
    midpoints between inside and outside voxel centres; holes come out as separate contours,
    which readers fill with the even-odd rule. Collinear points are dropped.
    """
    return crop_contours(np.asarray(mask.array), (0, 0, 0), mask.lps_affine)


def crop_contours(
    crop: NDArray[np.bool_], start_ijk: tuple[int, int, int], lps_affine: NDArray[np.float64]
) -> list[Contour]:
    """:func:`mask_contours` of a mask known by its crop: ``crop`` (I, J, K) bool is the mask
    from voxel ``start_ijk`` on, ``lps_affine`` the whole mask's ijk -> LPS affine.

    The same numbers as :func:`mask_contours` of the whole mask (the traced slices and the
    index arithmetic are the same) when the crop holds every voxel of the mask and one voxel
    around it, or reaches the edge of the whole grid where it does not.
    """
    from nibabel.affines import apply_affine  # nibabel ~0.35 s: not with the CLI's parser

    from ..geometry.margins import bounding_box

    out: list[Contour] = []
    if not crop.any():
        return out
    box = bounding_box(crop, pad_vox=1)  # contours of the crop: same, much faster
    array = crop[box]
    offset = np.array([box[0].start + start_ijk[0], box[1].start + start_ijk[1]], dtype=np.float64)
    traced = np.flatnonzero(array.any(axis=(0, 1)))
    ni, nj = array.shape[0] + 2, array.shape[1] + 2
    step = max(1, _TRACE_BLOCK // (ni * nj))
    for a in range(0, len(traced), step):
        chunk = traced[a : a + step]
        framed = np.zeros((len(chunk), ni, nj), dtype=bool)  # each slice padded by one
        framed[:, 1:-1, 1:-1] = np.moveaxis(array[:, :, chunk], 2, 0)
        for kk, rings in zip(chunk.tolist(), traced_rings(framed)):
            k = kk + box[2].start + start_ijk[2]
            for ring in rings:
                # -1 undoes the padding.
                line = _drop_collinear(ring) - 1.0 + offset
                if len(line) < 3:
                    continue
                ijk = np.column_stack([line, np.full(len(line), float(k))])
                out.append((k, apply_affine(lps_affine, ijk)))
    return out


#: Pixels per block of slices traced together (memory: a dozen arrays of that many bools).
_TRACE_BLOCK = 1_000_000

# A cell is 2 x 2 pixels, corners ul (r, c), ur (r, c+1), ll (r+1, c), lr (r+1, c+1); its
# edges top, bottom, left, right have their midpoints at these offsets from (r, c).
_MIDPOINT = np.array([(0.0, 0.5), (1.0, 0.5), (0.5, 0.0), (0.5, 1.0)])
_CORNER = np.array([(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)])


def traced_rings(images: NDArray[np.bool_]) -> list[list[NDArray[np.float64]]]:
    """Per image of a stack ``(n, R, C)`` framed with background, the closed outlines at level
    0.5 as scikit-image's ``find_contours(image, 0.5)`` returns them (the same rings, each
    from the same point, in the same order; the repeated end point left out), traced with
    array operations.

    The outline crosses every boundary edge (between an inside and an outside pixel) at its
    midpoint. A cell (2 x 2 pixels) with two boundary edges joins their midpoints; a saddle
    cell (two inside pixels diagonally opposite) cuts off each inside corner on its own (the
    outside is the connected phase, find_contours' default), the segment at its top edge
    first. Segments run with their cell's inside corners on the same side as find_contours'
    do, and are numbered in its scan order (cells row by row). find_contours joins them in
    that order: a ring is listed where its first segment comes, and starts at the end point
    of its last segment (the one that closed it).
    """
    n_img = len(images)
    ul, ur = images[:, :-1, :-1], images[:, :-1, 1:]
    ll, lr = images[:, 1:, :-1], images[:, 1:, 1:]
    img, r, c = np.nonzero((ul ^ ur) | (ul ^ ll) | (ul ^ lr))  # cells the outline crosses
    corners = [m[img, r, c] for m in (ul, ur, ll, lr)]
    edges = (
        corners[0] ^ corners[1],
        corners[2] ^ corners[3],
        corners[0] ^ corners[2],
        corners[1] ^ corners[3],
    )
    saddle_ad = corners[0] & corners[3] & ~corners[1] & ~corners[2]
    saddle_bc = corners[1] & corners[2] & ~corners[0] & ~corners[3]
    two = ~(saddle_ad | saddle_bc)
    first_inside = np.argmax(np.column_stack(corners), axis=1)
    # (edge, edge, the inside corner that sets the direction, cells, slot in the cell)
    jobs = [
        (e0, e1, first_inside, two & edges[e0] & edges[e1], 0)
        for e0 in range(4)
        for e1 in range(e0 + 1, 4)
    ]
    jobs += [
        (0, 2, np.zeros_like(first_inside), saddle_ad, 0),
        (1, 3, np.full_like(first_inside, 3), saddle_ad, 1),
        (0, 3, np.ones_like(first_inside), saddle_bc, 0),
        (1, 2, np.full_like(first_inside, 2), saddle_bc, 1),
    ]
    base = np.column_stack([r, c]).astype(np.float64)
    starts, ends, scan = [], [], []
    for e0, e1, inside, cells, slot in jobs:
        at = np.flatnonzero(cells)
        p, q, w = base[at] + _MIDPOINT[e0], base[at] + _MIDPOINT[e1], base[at] + _CORNER[inside[at]]
        d, v = q - p, w - p
        flip = d[:, 0] * v[:, 1] - d[:, 1] * v[:, 0] > 0  # the other way round
        p[flip], q[flip] = q[flip], p[flip].copy()
        starts.append(p)
        ends.append(q)
        scan.append(2 * at + slot)  # cells are in scan order already
    order = np.argsort(np.concatenate(scan))
    p, q = np.concatenate(starts)[order], np.concatenate(ends)[order]
    owner = img[np.concatenate(scan)[order] // 2]
    # Points as integer keys (image, 2r, 2c): each is where one segment starts and one ends.
    width_r, width_c = 2 * images.shape[1] + 1, 2 * images.shape[2] + 1

    def key(points: NDArray[np.float64]) -> NDArray[np.int64]:
        twice = np.rint(2.0 * points).astype(np.int64)
        return (owner * width_r + twice[:, 0]) * width_c + twice[:, 1]

    from_key = key(p)
    by_start = np.argsort(from_key)
    succ = by_start[np.searchsorted(from_key[by_start], key(q))]
    first, last = _cycle_extremes(succ)
    # Each ring runs from its last segment's end point: segments by their steps from there.
    n = len(succ)
    rank = np.zeros(n, dtype=np.int64)
    is_last = np.arange(n) == last
    rank[~is_last] = 1
    nxt = np.where(is_last, np.arange(n), succ)
    while not np.array_equal(nxt, last):  # pointer doubling: steps to the last segment
        rank += rank[nxt]
        nxt = nxt[nxt]
    order = np.lexsort((-rank, first))
    rings, sizes = np.unique(first, return_counts=True)
    out: list[list[NDArray[np.float64]]] = [[] for _ in range(n_img)]
    # A ring is listed where its first segment comes (np.unique sorts them so).
    for ring, points in zip(rings.tolist(), np.split(p[order], np.cumsum(sizes)[:-1])):
        out[int(owner[ring])].append(points)
    return out


def _cycle_extremes(succ: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The least and the greatest member of the cycle of the permutation ``succ`` through
    each element, by pointer doubling: after round t each holds the extremes of the 2**t
    elements from it on, and once a round changes nothing they are the whole cycle's."""
    least, most, nxt = np.arange(len(succ)), np.arange(len(succ)), succ
    while True:
        new_least, new_most = np.minimum(least, least[nxt]), np.maximum(most, most[nxt])
        if np.array_equal(new_least, least) and np.array_equal(new_most, most):
            return least, most
        least, most, nxt = new_least, new_most, nxt[nxt]


def _drop_collinear(ring: NDArray[np.float64]) -> NDArray[np.float64]:
    """A closed polygon without its points that lie on a straight line between neighbours."""
    before = ring - np.roll(ring, 1, axis=0)
    after = np.roll(ring, -1, axis=0) - ring
    turn = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return ring[np.abs(turn) > 1e-9]


def keyhole_contours(contours: Sequence[Contour], grid: Grid | Volume) -> list[Contour]:
    """The same region without inner contours: on each slice, every hole is joined to the
    outline around it by a zero-width cut, so each outer outline becomes one polygon.

    The contours of a slice must not cross one another (nested is fine, as traced outlines
    and the vertex circles are). Nesting is read with the even-odd rule: a contour inside an
    odd number of others is a hole of the innermost one around it; one inside an even number
    (an island in a hole) is an outline of its own, with its own holes. Each cut joins a
    vertex of a hole to a vertex of the outline (or of a hole already joined to it) that it
    sees without crossing or touching any edge, the shortest such pair first; the polygon
    runs out along the cut, around the hole and back. No point is moved or added, so every
    contour stays exactly on its slice plane, and the polygon is simple apart from the cut,
    whose two sides coincide.
    """
    origins, _, u, v = slice_planes(grid)
    by_slice: dict[int, list[NDArray[np.float64]]] = {}
    for k, points in contours:
        by_slice.setdefault(k, []).append(points)
    out: list[Contour] = []
    for k in sorted(by_slice):
        rings = by_slice[k]
        flat = [np.column_stack([(r - origins[k]) @ u, (r - origins[k]) @ v]) for r in rings]
        points = np.concatenate(rings)
        for polygon in _keyhole_slice(flat):
            out.append((k, points[polygon]))
    return out


def _signed_area(xy: NDArray[np.float64]) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _inside(points: NDArray[np.float64], ring: NDArray[np.float64]) -> bool:
    """Whether most of ``points`` lie inside the closed polygon ``ring`` (crossing number;
    most, so that a point a ring shares with another, as touching circles do, is outvoted)."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = ring[None, :, 0], ring[None, :, 1]
    x1, y1 = np.roll(x0, -1, axis=1), np.roll(y0, -1, axis=1)
    straddle = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    odd = np.count_nonzero(straddle & (at > x), axis=1) % 2 == 1
    return 2 * int(np.count_nonzero(odd)) > len(points)


def _keyhole_slice(rings: Sequence[NDArray[np.float64]]) -> list[NDArray[np.intp]]:
    """Keyhole polygons of one slice's rings (2-D), as indices into their concatenation."""
    starts = np.cumsum([0, *(len(r) for r in rings)])
    n = len(rings)
    inside = np.zeros((n, n), dtype=bool)  # inside[i, j]: ring j lies inside ring i
    for i in range(n):
        for j in range(n):
            if i != j:
                inside[i, j] = _inside(rings[j], rings[i])
    depth = inside.sum(axis=0)
    xy = np.concatenate(rings)
    polygons = []
    for o in (int(v) for v in np.flatnonzero(depth % 2 == 0)):
        holes = [j for j in range(n) if inside[o, j] and depth[j] == depth[o] + 1]
        outline = np.arange(starts[o], starts[o + 1])
        if not holes:
            polygons.append(outline)
            continue
        if _signed_area(rings[o]) < 0:  # outlines anticlockwise, holes clockwise
            outline = outline[::-1]
        hole_rings = [np.arange(starts[j], starts[j + 1]) for j in holes]
        hole_rings = [h if _signed_area(xy[h]) < 0 else h[::-1] for h in hole_rings]
        polygons.append(_join_holes(xy, outline, hole_rings))
    return polygons


def _join_holes(
    xy: NDArray[np.float64], outline: NDArray[np.intp], holes: list[NDArray[np.intp]]
) -> NDArray[np.intp]:
    """One polygon: ``outline`` (anticlockwise) with every hole (clockwise) joined to it."""
    merged = list(outline)
    remaining = list(holes)
    scale = float(np.ptp(xy[outline], axis=0).max()) or 1.0
    eps = 1e-9 * scale
    while remaining:
        joined = False
        for hole in list(remaining):
            others = [h for h in remaining if h is not hole]
            bridge = _find_bridge(xy, np.asarray(merged), hole, others, eps)
            if bridge is None:
                continue
            t, a = bridge
            loop = [int(hole[(a + j) % len(hole)]) for j in range(len(hole))]
            merged = merged[: t + 1] + loop + [int(hole[a])] + merged[t:]
            remaining = [h for h in remaining if h is not hole]
            joined = True
        if not joined:
            raise ValueError(
                "cannot join a hole of LATTICE_VALLEY to its outline (contours "
                "that touch or cross); write it with valley_contours='holes'"
            )
    return np.asarray(merged, dtype=np.intp)


def _cross(o: Any, a: Any, b: Any) -> Any:
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (
        b[..., 0] - o[..., 0]
    )


def _in_wedge(apex: NDArray, before: NDArray, after: NDArray, target: NDArray) -> bool:
    """Whether the direction apex -> target points into the polygon at ``apex`` (interior to
    the left: between apex -> after and apex -> before, turning anticlockwise)."""

    def angle(p: NDArray) -> float:
        d, ref = p - apex, after - apex
        return float(np.arctan2(ref[0] * d[1] - ref[1] * d[0], ref @ d) % (2 * np.pi))

    a = angle(target)
    return 0.0 < a < (angle(before) or 2 * np.pi)


def _find_bridge(
    xy: NDArray[np.float64],
    merged: NDArray[np.intp],
    hole: NDArray[np.intp],
    others: list[NDArray[np.intp]],
    eps: float,
) -> tuple[int, int] | None:
    """(position in ``merged``, position in ``hole``) of the shortest cut between them that
    crosses and touches no edge and enters both at their vertices, or None."""
    rings = [merged, hole, *others]
    starts = np.concatenate([r for r in rings])
    ends = np.concatenate([np.roll(r, -1) for r in rings])
    e0, e1 = xy[starts], xy[ends]
    vertices = xy[np.unique(starts)]
    a_xy, b_xy = xy[hole], xy[merged]
    d2 = ((a_xy[:, None, :] - b_xy[None, :, :]) ** 2).sum(axis=-1)
    for flat in np.argsort(d2, axis=None, kind="stable"):
        a, t = divmod(int(flat), len(merged))
        p, q = a_xy[a], b_xy[t]
        if d2[a, t] <= eps * eps:
            continue
        # No edge crossed: edges with an end at p or q are left out (they meet the cut there).
        at_end = (
            np.all(np.abs(e0 - p) <= eps, axis=1)
            | np.all(np.abs(e1 - p) <= eps, axis=1)
            | np.all(np.abs(e0 - q) <= eps, axis=1)
            | np.all(np.abs(e1 - q) <= eps, axis=1)
        )
        c1, c2 = _cross(p, q, e0), _cross(p, q, e1)
        c3, c4 = _cross(e0, e1, p), _cross(e0, e1, q)
        if np.any(~at_end & (c1 * c2 < 0) & (c3 * c4 < 0)):
            continue
        # No vertex on the cut (other than its ends).
        pq = q - p
        s = np.clip(((vertices - p) @ pq) / (pq @ pq), 0.0, 1.0)
        near = np.linalg.norm(vertices - (p + s[:, None] * pq), axis=1) <= eps
        ends_ = (np.linalg.norm(vertices - p, axis=1) <= eps) | (
            np.linalg.norm(vertices - q, axis=1) <= eps
        )
        if np.any(near & ~ends_):
            continue
        # Into the region at both ends; at a point the outline passes twice (an earlier cut),
        # the pass whose corner holds the cut.
        m = len(hole)
        if not _in_wedge(p, a_xy[(a - 1) % m], a_xy[(a + 1) % m], q):
            continue
        n = len(merged)
        for pos in np.flatnonzero(merged == merged[t]):
            if _in_wedge(q, b_xy[(pos - 1) % n], b_xy[(pos + 1) % n], p):
                return int(pos), a
    return None
