"""Self-tests of the independent TPS-surface checker (tests/tps_checker.py).

The checker is validated against shapes whose solid is known in closed form (a box of
voxels, a single voxel, a digital cylinder, a box with a cavity and a hole), against dense
sampling of the solid's boundary, and against its own fast path. Nothing here uses lattice.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO_ROOT, rotation_about_axis
from matplotlib.path import Path as MplPath
from scipy.spatial import cKDTree
from tps_checker import (
    Solid,
    best_translation_count,
    ct_dicom_affine,
    distance_to_segments,
    inside_even_odd,
    lattice_cell,
    lattice_points_covering,
    load_mask_solid,
    read_rtstruct_polygons_ras,
)

VOX = (0.9, 1.2, 2.5)


def grid_affine(vox=VOX, *, flip=(), perm=(0, 1, 2), rot_deg=0.0, origin=(-20.0, 13.0, 7.0)):
    """Orthogonal affine: scaled axes, optional axis flips/permutation and a rotation."""
    lin = np.diag(vox).astype(float)
    for ax in flip:
        lin[:, ax] *= -1
    lin = lin[:, list(perm)]
    if rot_deg:
        lin = rotation_about_axis([1.0, 2.0, 3.0], rot_deg) @ lin
    a = np.eye(4)
    a[:3, :3] = lin
    a[:3, 3] = origin
    return a


def to_world(affine, ijk):
    return np.asarray(ijk, float) @ affine[:3, :3].T + affine[:3, 3]


def world_from_mm(affine, uvw):
    """World point of grid-frame mm coordinates (u, v, w)."""
    sp = np.linalg.norm(affine[:3, :3], axis=0)
    return to_world(affine, np.asarray(uvw, float) / sp)


# -- primitives ----------------------------------------------------------------------------


def test_segment_distance_and_crossing_number():
    square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
    hole = np.array([[1, 1], [3, 1], [3, 3], [1, 3]], float)
    a = np.concatenate([square, hole])
    b = np.concatenate([np.roll(square, -1, 0), np.roll(hole, -1, 0)])
    q = np.array([[0.5, 2.0], [2.0, 2.0], [5.0, 5.0], [3.5, 0.25], [-1.0, 2.0]])
    np.testing.assert_array_equal(inside_even_odd(q, a, b), [True, False, False, True, False])
    np.testing.assert_allclose(
        distance_to_segments(q, a, b), [0.5, 1.0, np.sqrt(2), 0.25, 1.0], atol=1e-15
    )


# -- the box: a cuboid (vertical edges chamfered by half a voxel) --------------------------

BOX = (slice(3, 15), slice(4, 13), slice(2, 8))


@pytest.mark.parametrize("kind", ["plain", "flipped", "permuted", "oblique"])
def test_box_mask_is_the_cuboid_half_a_voxel_beyond_the_outer_centres(kind):
    shape = (18, 17, 10)
    mask = np.zeros(shape, bool)
    mask[BOX] = True
    aff = grid_affine()
    if kind == "flipped":
        mask, aff = (
            mask[::-1, :, ::-1],
            aff
            @ np.array(
                [[-1, 0, 0, shape[0] - 1], [0, 1, 0, 0], [0, 0, -1, shape[2] - 1], [0, 0, 0, 1]]
            ),
        )
    elif kind == "permuted":
        perm = np.zeros((4, 4))
        perm[[1, 2, 0, 3], [0, 1, 2, 3]] = 1  # new axis n is old axis perm...
        mask = np.transpose(mask, (1, 2, 0))
        aff = aff @ perm
    elif kind == "oblique":
        aff = grid_affine(rot_deg=23.0)
    solid = Solid.from_mask(mask, aff)
    # The cuboid in the *original* index frame, world via the original (or rotated) affine.
    base = grid_affine(rot_deg=23.0) if kind == "oblique" else grid_affine()
    lo = np.array([3, 4, 2]) - 0.5
    hi = np.array([14, 12, 7]) + 0.5
    vox = np.array(VOX)
    rng = np.random.default_rng(1)
    ijk = rng.uniform(lo - 1.5, hi + 1.5, size=(4000, 3))
    # Away from the four edges along the slice axis, where marching squares cuts the
    # corners (the slice axis is the original k, or the original i once permuted).
    # Judged at the nearest point of the uncut cuboid (the clamped position).
    plane = [1, 2] if kind == "permuted" else [0, 1]
    near = np.clip(ijk, lo, hi)[:, plane]
    near_edge = np.all(np.minimum(np.abs(near - lo[plane]), np.abs(near - hi[plane])) < 2.0, axis=1)
    ijk = ijk[~near_edge]
    pts = to_world(base, ijk)
    mm = ijk * vox
    inside = np.all((ijk > lo) & (ijk < hi), axis=1)
    face = np.min(np.concatenate([mm - lo * vox, hi * vox - mm], axis=1), axis=1)
    gap = np.maximum(0.0, np.maximum(lo * vox - mm, mm - hi * vox))
    expected_depth = np.where(inside, face, 0.0)
    expected_dist = np.where(inside, 0.0, np.linalg.norm(gap, axis=1))
    np.testing.assert_allclose(solid.depth(pts), expected_depth, atol=1e-9)
    np.testing.assert_allclose(solid.distance(pts), expected_dist, atol=1e-9)
    np.testing.assert_array_equal(solid.contains(pts), inside)


def test_box_corner_is_cut_by_half_a_voxel():
    mask = np.zeros((18, 17, 10), bool)
    mask[BOX] = True
    aff = grid_affine()
    solid = Solid.from_mask(mask, aff)
    dx, dy, _ = VOX
    corner = to_world(aff, [[2.5, 3.5, 4.0]])  # the cuboid's corner, mid-stack
    # Distance to the chamfer from (dx/2, 0) to (0, dy/2) relative to the corner.
    expected = 0.5 * dx * dy / np.hypot(dx, dy)
    assert solid.depth(corner)[0] == 0.0
    np.testing.assert_allclose(solid.distance(corner), expected, atol=1e-12)


# -- a single voxel: a diamond prism -------------------------------------------------------


def test_single_voxel_is_a_diamond_prism():
    mask = np.zeros((5, 5, 5), bool)
    mask[2, 2, 2] = True
    for aff in (grid_affine(), grid_affine(flip=(1,), rot_deg=40.0)):
        solid = Solid.from_mask(mask, aff)
        dx, dy, dz = VOX
        c = np.array([2.0, 2.0, 2.0])
        edge = 1.0 / np.hypot(2 / dx, 2 / dy)  # centre to the diamond's edge, in-plane
        pts = to_world(
            aff,
            [
                c,
                c + [1, 0, 0],
                c + [0, 0, 1],
                c + [0.5, 0.5, 0],
                c + [0.5 + 0.3 / dx, 0, 0.5 + 0.4 / dz],
                c + [0, 0, 0.3],
                c + [0.25, 0, 0],
            ],
        )
        np.testing.assert_allclose(
            solid.depth(pts),
            [
                min(edge, dz / 2),
                0,
                0,
                0,
                0,
                min(edge, dz / 2 - 0.3 * dz),
                min(0.25 * dx * dy / np.hypot(dx, dy) * 1.0, dz / 2),
            ],
            atol=1e-12,
        )
        np.testing.assert_allclose(
            solid.distance(pts), [0, dx / 2, dz / 2, edge, 0.5, 0, 0], atol=1e-12
        )


# -- a digital cylinder along k: in-plane depth vs its own midpoint polygon ----------------


def midpoint_outline(slice_mask, dx, dy):
    """Outline segments of a binary slice without saddles, built by hand: in every cell of
    four neighbouring centres, the segment(s) joining the midpoints of its mixed edges."""
    m = np.pad(slice_mask, 1)
    segs = []
    for i in range(m.shape[0] - 1):
        for j in range(m.shape[1] - 1):
            corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]
            vals = [m[c] for c in corners]
            if all(vals) or not any(vals):
                continue
            assert not (vals[0] == vals[2] and vals[1] == vals[3]), "saddle"
            mids = [
                (
                    (corners[e][0] + corners[(e + 1) % 4][0]) / 2,
                    (corners[e][1] + corners[(e + 1) % 4][1]) / 2,
                )
                for e in range(4)
                if vals[e] != vals[(e + 1) % 4]
            ]
            assert len(mids) == 2
            segs.append([[(x - 1) * dx, (y - 1) * dy] for x, y in mids])
    segs = np.array(segs, float)
    return segs[:, 0], segs[:, 1]


def test_cylinder_depth_in_plane_matches_the_midpoint_polygon():
    dx, dy, dz = 0.7, 0.8, 3.0
    shape = (40, 36, 12)
    aff = grid_affine((dx, dy, dz))
    ii, jj = np.meshgrid(np.arange(shape[0]) * dx, np.arange(shape[1]) * dy, indexing="ij")
    cx, cy, radius = 19.3 * dx, 17.6 * dy, 10.2
    disk = (ii - cx) ** 2 + (jj - cy) ** 2 <= radius**2
    mask = np.zeros(shape, bool)
    mask[:, :, 1:11] = disk[:, :, None]
    solid = Solid.from_mask(mask, aff)
    a, b = midpoint_outline(disk, dx, dy)
    rng = np.random.default_rng(2)
    uv = rng.uniform([cx - 12, cy - 12], [cx + 12, cy + 12], size=(3000, 2))
    w = rng.uniform(4.5, 6.5, size=3000) * dz  # far from the stack's ends (k 0.5 .. 10.5)
    pts = world_from_mm(aff, np.column_stack([uv, w]))
    d_edge = np.min(np.hypot(*(uv[:, None, :] - nearest_on(a, b, uv)).transpose(2, 0, 1)), axis=1)
    inside = MplPath(ordered_loop(a, b)).contains_points(uv)
    z_room = np.minimum(w - 0.5 * dz, 10.5 * dz - w)
    np.testing.assert_allclose(
        solid.depth(pts), np.where(inside, np.minimum(d_edge, z_room), 0), atol=1e-9
    )
    np.testing.assert_allclose(solid.distance(pts), np.where(inside, 0, d_edge), atol=1e-9)
    # And the polygon is the circle to within half a voxel.
    r = np.hypot(uv[:, 0] - cx, uv[:, 1] - cy)
    far = np.abs(r - radius) > 1.0
    assert np.all(inside[far] == (r[far] < radius))


def nearest_on(a, b, q):
    """(n, m, 2) nearest point of each segment to each point, plainly."""
    ab = b - a
    t = np.clip(np.einsum("nmk,mk->nm", q[:, None, :] - a[None], ab) / np.sum(ab * ab, 1), 0, 1)
    return a[None] + t[..., None] * ab[None]


def ordered_loop(a, b):
    """Chain unordered segments into one closed loop (a single outline)."""
    key = lambda p: (round(p[0], 9), round(p[1], 9))  # noqa: E731
    nxt = {}
    for p, r in zip(a, b):
        nxt.setdefault(key(p), []).append(r)
        nxt.setdefault(key(r), []).append(p)
    start = a[0]
    loop, prev, cur = [start], None, start
    while True:
        options = [p for p in nxt[key(cur)] if prev is None or key(p) != key(prev)]
        prev, cur = cur, options[0]
        if key(cur) == key(start):
            break
        loop.append(cur)
    assert len(loop) == len(a)
    return np.array(loop)


# -- holes: an in-slice hole (even-odd) and a closed cavity --------------------------------


def test_box_with_a_cavity_and_a_through_hole():
    dx, dy, dz = 1.0, 1.0, 2.5
    aff = grid_affine((dx, dy, dz), rot_deg=10.0)
    mask = np.zeros((22, 22, 12), bool)
    mask[2:20, 2:20, 1:11] = True
    mask[8:12, 8:12, 4:8] = False  # cavity: slices 4..7
    solid = Solid.from_mask(mask, aff)
    assert len(solid.slabs[5].a) > len(solid.slabs[2].a)  # outer + inner outline
    centre = [9.5, 9.5, 5.0]
    p = to_world(aff, [centre])
    assert solid.depth(p)[0] == 0.0 and not solid.contains(p)[0]
    # To the cavity wall in-plane (at i = 7.5 / 11.5): 2 mm; to slab 3's top face: 1.5 dz.
    np.testing.assert_allclose(solid.distance(p), 2.0, atol=1e-12)
    # In the wall between the cavity and the outside, mid-slab 5: 1 mm from the cavity wall
    # at i = 7.5 and 5 mm from the outer wall at i = 1.5.
    np.testing.assert_allclose(solid.depth(to_world(aff, [[6.5, 9.5, 5.0]])), 1.0, atol=1e-12)
    # Above the cavity, in slab 8 (k 7.5 .. 8.5): 0.2 slice gaps from the cavity's roof.
    np.testing.assert_allclose(solid.depth(to_world(aff, [[9.5, 9.5, 7.7]])), 0.2 * dz, atol=1e-12)
    # Through-hole in every slice: points in it are outside, the walls 1 mm away.
    mask2 = np.zeros((22, 22, 12), bool)
    mask2[2:20, 2:20, 1:11] = True
    mask2[8:12, 8:12, :] = False
    s2 = Solid.from_mask(mask2, aff)
    pts = to_world(aff, [[9.5, 9.5, 5.0], [9.5, 8.5, 5.0], [9.5, 8.5, 0.0]])
    # The last one is in the empty slab 0: 1 mm in-plane and 1.25 mm in w from slab 1.
    np.testing.assert_allclose(s2.distance(pts), [2.0, 1.0, np.hypot(1.0, 1.25)], atol=1e-12)


# -- dense sampling of the boundary --------------------------------------------------------


def even_odd_mpl(polys, q):
    """Even-odd membership with matplotlib's point-in-polygon (an independent test)."""
    parity = np.zeros(len(q), bool)
    for poly in polys:
        parity ^= MplPath(poly).contains_points(q)
    return parity


def sample_boundary(polys_by_k, dz, k_lo, k_hi, step):
    """Points on the solid's boundary: lateral walls and the faces between slabs."""
    out = []
    ws = lambda k: np.linspace(  # noqa: E731
        k * dz - dz / 2,
        k * dz + dz / 2,
        int(np.ceil(dz / step)) + 1,
    )
    for k, polys in polys_by_k.items():
        for poly in polys:
            closed = np.vstack([poly, poly[:1]])
            for p0, p1 in zip(closed[:-1], closed[1:]):
                n = int(np.ceil(np.linalg.norm(p1 - p0) / step)) + 1
                t = np.linspace(0, 1, n)[:, None]
                line = p0 + t * (p1 - p0)
                w = ws(k)
                out.append(np.column_stack([np.repeat(line, len(w), 0), np.tile(w, len(line))]))
    allpts = np.concatenate([np.concatenate(v) for v in polys_by_k.values()])
    lo, hi = allpts.min(0) - step, allpts.max(0) + step
    gu, gv = np.meshgrid(
        np.arange(lo[0], hi[0], step), np.arange(lo[1], hi[1], step), indexing="ij"
    )
    g = np.column_stack([gu.ravel(), gv.ravel()])
    member = {
        k: even_odd_mpl(polys_by_k.get(k, []), g) if k in polys_by_k else np.zeros(len(g), bool)
        for k in range(k_lo - 1, k_hi + 2)
    }
    for k in range(k_lo - 1, k_hi + 1):
        face = member[k] ^ member[k + 1]
        out.append(np.column_stack([g[face], np.full(face.sum(), k * dz + dz / 2)]))
    return np.concatenate(out)


def test_against_dense_sampling_of_the_boundary():
    rng = np.random.default_rng(7)
    shape = (16, 15, 7)
    dx, dy, dz = 0.9, 1.1, 2.0
    aff = grid_affine((dx, dy, dz), flip=(0,), rot_deg=31.0)
    # A lumpy blob with a notch, so slices differ and outlines have concave parts.
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1) * [dx, dy, dz]
    c = np.array([7.5 * dx, 7 * dy, 3 * dz])
    r = np.linalg.norm((ijk - c) / [5.5, 6.0, 5.5], axis=-1)
    mask = (r < 1.0) & ~((ijk[..., 0] > c[0]) & (np.abs(ijk[..., 1] - c[1]) < 1.2))
    mask |= rng.random(shape) < 0.03
    solid = Solid.from_mask(mask, aff)
    from skimage.measure import find_contours

    polys = {}
    for k in range(shape[2]):
        if mask[:, :, k].any():
            cs = find_contours(np.pad(mask[:, :, k].astype(float), 1), 0.5)
            polys[k] = [(cc[:-1] - 1.0) * [dx, dy] for cc in cs]
    step = 0.06
    boundary = sample_boundary(polys, dz, min(polys), max(polys), step)
    tree = cKDTree(boundary)
    uvw = rng.uniform([-1.0, -1.0, -2.0], np.array(shape) * [dx, dy, dz] + 1.0, (3000, 3))
    pts = world_from_mm(aff, uvw)
    brute = tree.query(uvw)[0]
    k0 = np.floor(uvw[:, 2] / dz + 0.5).astype(int)
    inside = np.zeros(len(uvw), bool)
    for k, pl in polys.items():
        sel = k0 == k
        inside[sel] = even_odd_mpl(pl, uvw[sel, :2])
    depth, dist = solid.depth(pts), solid.distance(pts)
    np.testing.assert_array_equal(depth > 0, inside)
    got = np.where(inside, depth, dist)
    assert np.all(got <= brute + 1e-9)  # samples lie on the boundary
    assert np.all(brute <= got + step * 1.5)  # the sampling is dense
    assert np.count_nonzero(inside) > 300 and np.count_nonzero(~inside) > 300


# -- the fast decision and the count reference ---------------------------------------------


def test_fast_depth_decision_equals_the_exact_depth():
    path = REPO_ROOT / "sample_data" / "STS_001" / "gtv.nii.gz"
    solid = load_mask_solid(path)
    box = solid.world_bounds()
    rng = np.random.default_rng(3)
    pts = rng.uniform(box[0] - 5, box[1] + 5, size=(20000, 3))
    for threshold in (12.5, 8.0):
        exact = solid.depth(pts, cap=threshold) >= threshold
        np.testing.assert_array_equal(solid.depth_at_least(pts, threshold), exact)
        assert 100 < exact.sum() < len(pts) - 100
    full = solid.depth(pts[:3000])
    np.testing.assert_allclose(np.minimum(full, 12.5), solid.depth(pts[:3000], cap=12.5), atol=0)


@pytest.mark.parametrize("pattern", ["sc", "bcc", "fcc", "hcp"])
def test_textbook_lattices_have_the_nearest_neighbour_distance(pattern):
    pts, _ = lattice_points_covering(pattern, 30.0, np.zeros(3), np.full(3, 60.0))
    d = cKDTree(pts).query(pts, k=2)[0][:, 1]
    np.testing.assert_allclose(d.min(), 30.0, rtol=1e-12)
    cell, motif = lattice_cell(pattern, 30.0)
    density = len(motif) / abs(np.linalg.det(cell)) * 30.0**3
    expected = {"sc": 1.0, "bcc": 3 * np.sqrt(3) / 4, "fcc": np.sqrt(2), "hcp": np.sqrt(2)}
    np.testing.assert_allclose(density, expected[pattern], rtol=1e-12)


def test_count_reference_recounts_exactly():
    path = REPO_ROOT / "sample_data" / "STS_001" / "gtv.nii.gz"
    solid = load_mask_solid(path)
    best, counts = best_translation_count(
        solid, "hcp", spacing=30, diameter=15, margin=5, n_translations=40, seed=5
    )
    rng = np.random.default_rng(5)
    cell, _ = lattice_cell("hcp", 30.0)
    shifts = rng.random((40, 3)) @ cell.T
    box = solid.world_bounds()
    base, _ = lattice_points_covering("hcp", 30.0, box[0], box[1])
    for t in (0, 17, int(np.argmax(counts))):
        d = solid.depth(base + shifts[t])
        assert counts[t] == np.count_nonzero(d >= 12.5)
    assert best == counts.max() >= 5


# -- RTSTRUCT polygons ---------------------------------------------------------------------


def write_rtstruct(path, rois):
    """A minimal RTSTRUCT: rois = {name: [(n, 3) LPS polygons]}."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    for n, (name, polys) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = n, name
        ds.StructureSetROISequence.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = n
        rc.ContourSequence = Sequence()
        for poly in polys:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(poly)
            c.ContourData = [f"{x:.6f}" for x in np.asarray(poly).ravel()]
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    return path


def test_rtstruct_square_with_hole(tmp_path):
    aff = grid_affine((1.0, 1.0, 3.0), flip=(0, 1), origin=(10.0, 20.0, -30.0))

    def ring(ijk_corners, k):
        return np.array([to_world(aff, [[i, j, k]])[0] * [-1, -1, 1] for i, j in ijk_corners])

    outer = [(0, 0), (20, 0), (20, 20), (0, 20)]
    inner = [(5, 5), (15, 5), (15, 15), (5, 15)]
    polys = [ring(outer, k) for k in range(2, 6)] + [ring(inner, k) for k in (3, 4)]
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": polys, "other": polys[:1]})
    assert len(read_rtstruct_polygons_ras(path, "GTV")) == 6
    solid = Solid.from_rtstruct(path, "GTV", aff)
    assert sorted(solid.slabs) == [2, 3, 4, 5]
    pts = to_world(
        aff,
        [
            [10, 10, 3.5],
            [10, 10, 2],
            [2, 10, 3],
            [10, 10, 5.4],
            [2.5, 3, 4],
            [10, 10, 7],
            [10, 10, 5.6],
        ],
    )
    # In the hole (slab 4): outside; in slab 2 under the hole: 1.5 mm from the hole's floor;
    # beside the hole: 2 mm from the outer edge; 0.3 mm below the top face; beyond: 0.
    np.testing.assert_allclose(solid.depth(pts), [0, 1.5, 2, 0.3, 2.5, 0, 0], atol=1e-9)
    # From the hole: 5 mm to its walls, 3 mm to the full slabs 2 and 5; above the top: 4.5.
    np.testing.assert_allclose(solid.distance(pts)[[0, 5, 6]], [3.0, 4.5, 0.3], atol=1e-9)
    off = [ring(outer, 2.3)]
    bad = write_rtstruct(tmp_path / "bad.dcm", {"GTV": off})
    with pytest.raises(ValueError, match="slice plane"):
        Solid.from_rtstruct(bad, "GTV", aff)
    with pytest.raises(KeyError):
        Solid.from_rtstruct(path, "nope", aff)


def test_real_rtstruct_polygons_follow_the_rasterised_mask(shared_data):
    """STS_001: the CT geometry read by hand equals the NIfTI's; the RTSTRUCT solid and the
    mask's marching-squares solid agree to about a voxel (they are different outlines)."""
    case = shared_data / "STS_001"
    img = nib.load(case / "gtv.nii.gz")
    aff = ct_dicom_affine(case / "dicom" / "image")
    np.testing.assert_allclose(aff, img.affine, atol=1e-3)
    rs = Solid.from_rtstruct(case / "dicom" / "mask" / "RS.dcm", "GTV_Mass_CT", aff)
    mk = load_mask_solid(case / "gtv.nii.gz")
    assert rs.k_range == mk.k_range
    box = mk.world_bounds()
    pts = np.random.default_rng(4).uniform(box[0], box[1], size=(3000, 3))
    d_rs, d_mk = rs.depth(pts), mk.depth(pts)
    both = (d_rs > 2) & (d_mk > 2)
    assert both.sum() > 300
    assert np.abs(d_rs[both] - d_mk[both]).max() < 1.5


def test_sheared_affine_is_refused():
    aff = grid_affine()
    aff[:3, 2] += 0.3 * aff[:3, 0]
    with pytest.raises(ValueError, match="orthogonal"):
        Solid.from_mask(np.ones((3, 3, 3), bool), aff)


def test_flips_and_transposes_give_the_same_solid():
    """Marching squares with fully connected background (skimage's default) resolves
    saddles by connectivity, not orientation: a speckled mask stored flipped or with i and j
    swapped (and the matching affine) is the same solid in world space."""
    rng = np.random.default_rng(11)
    mask = rng.random((14, 13, 6)) < 0.55
    aff = grid_affine((0.9, 1.1, 2.5), rot_deg=15.0)
    flip = np.array([[-1, 0, 0, 13], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    swap = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    flipk = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 5], [0, 0, 0, 1]], float)
    variants = [
        (mask, aff),
        (mask[::-1], aff @ flip),
        (mask.transpose(1, 0, 2), aff @ swap),
        (mask[:, :, ::-1], aff @ flipk),
    ]
    box = Solid.from_mask(mask, aff).world_bounds()
    pts = rng.uniform(box[0], box[1], size=(3000, 3))
    ref_d = ref_o = None
    for m, a in variants:
        s = Solid.from_mask(m, a)
        d, o = s.depth(pts), s.distance(pts)
        np.testing.assert_array_equal(d > 0, o == 0)
        if ref_d is None:
            ref_d, ref_o = d, o
        np.testing.assert_allclose(d, ref_d, atol=1e-9)
        np.testing.assert_allclose(o, ref_o, atol=1e-9)
