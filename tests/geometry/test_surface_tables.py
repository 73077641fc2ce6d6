"""The voxel tables of lattice.geometry.surface against the straightforward code they replaced
(kept here as oracles): the same float32 values bit for bit, on anisotropic grids, for the
depth and the distance metric, with holes, empty slices and several pieces."""

from __future__ import annotations

import edt
import numpy as np
import pytest

from lattice import forking
from lattice.forking import Forked
from lattice.geometry import surface, surface_tables
from lattice.geometry.surface import SlabSolid
from lattice.geometry.surface_tables import stack_slabs as _stack


def _oracle_stack(e, dz, exact_to_mm, *, inside_metric):
    """One pass over every offset m on the whole array (the code before the blocked rounds)."""
    first = np.ascontiguousarray(np.moveaxis(e, 2, 0), dtype=np.float32)
    e2 = np.square(first)
    out2 = e2.copy()
    nk = out2.shape[0]
    z_cap = np.full(nk, np.inf, dtype=np.float32)
    reach = int(np.ceil(exact_to_mm / dz + 0.5)) + 1

    def unfinished():
        finite = np.isfinite(out2)
        return (
            float(np.max(out2, initial=0.0, where=finite)),
            not inside_metric and not bool(finite.all()),
        )

    limit2, open_inf = unfinished()
    for m in range(1, reach + 1):
        zc = (m - 0.5) * dz
        if m % 4 == 1 and m > 1:
            limit2, open_inf = unfinished()
        if zc * zc >= limit2 and not open_inf:
            break
        z2 = np.float32(zc * zc)
        if m < nk:
            np.minimum(out2[:-m], e2[m:] + z2, out=out2[:-m])
            np.minimum(out2[m:], e2[:-m] + z2, out=out2[m:])
        if inside_metric and m <= nk:
            z_cap[nk - m] = min(z_cap[nk - m], np.float32(zc))
            z_cap[m - 1] = min(z_cap[m - 1], np.float32(zc))
    out = np.where(out2 < e2, np.sqrt(out2), first)
    if inside_metric:
        np.minimum(out, z_cap[:, None, None], out=out)
    result = np.moveaxis(out, 0, 2)
    if inside_metric:
        result[e == 0] = 0.0
    return result


def _oracle_vertex_edt(plane, vox):
    """Distance from each pixel centre of a padded slice to the nearest marching-squares
    vertex: uint8 features on the half-pixel grid, edt's multi-label path (the old code)."""
    feat = np.ones((2 * plane.shape[0] - 1, 2 * plane.shape[1] - 1), dtype=np.uint8)
    feat[1::2, ::2][plane[:-1] != plane[1:]] = 0
    feat[::2, 1::2][plane[:, :-1] != plane[:, 1:]] = 0
    aniso = (float(vox[0]) / 2, float(vox[1]) / 2)
    return edt.edt(feat, anisotropy=aniso, black_border=False, parallel=1)[::2, ::2]


def _phantom(shape=(31, 27, 19)):
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    r2 = ((i - 15) / 11.0) ** 2 + ((j - 13) / 9.0) ** 2 + ((k - 9) / 7.5) ** 2
    mask = r2 <= 1.0
    mask &= ~(r2 <= 0.12)  # a hole
    mask[:, :, 4] = False  # an empty slice
    mask[1:4, 2:5, 15:18] = True  # a second piece
    return mask


@pytest.mark.parametrize("vox", [(0.9, 1.3, 2.1), (1.2, 0.7, 0.8)])
@pytest.mark.parametrize("inside_metric", [True, False])
@pytest.mark.parametrize("block", [1 << 18, 64])
@pytest.mark.parametrize("threaded", [False, True])
def test_blocked_stack_equals_the_plain_offset_loop(
    vox, inside_metric, block, threaded, monkeypatch
):
    monkeypatch.setattr(surface_tables, "_STACK_BLOCK", block)
    # Threaded: every table's blocks split between two threads, however small.
    monkeypatch.setattr(surface_tables, "_THREADED_VOXELS", 0 if threaded else 1 << 60)
    monkeypatch.setattr(forking, "usable_cpus", lambda: 2)
    monkeypatch.delenv(forking.FORK_ENV, raising=False)
    calls = []
    real = surface_tables.on_two_threads
    monkeypatch.setattr(surface_tables, "on_two_threads", lambda *a: calls.append(1) or real(*a))
    mask = _phantom()
    solid = SlabSolid(mask, np.array(vox))
    e = solid._mask_bounds(mask, 9.0, inside_metric=inside_metric)
    for exact_to_mm in (3.0, 9.0, 40.0):  # stops on reach, and on the values (40 mm)
        got = _stack(e, vox[2], exact_to_mm, inside_metric=inside_metric)
        want = _oracle_stack(e, vox[2], exact_to_mm, inside_metric=inside_metric)
        np.testing.assert_array_equal(got, want)
    # One block of 2^18 voxels holds the whole phantom: only the 64-voxel blocks can split.
    assert bool(calls) == (threaded and block == 64)


def _organ_table(rng, nk=60, organ=(25, 29)):
    """In-plane distances (i, j, k) of an organ seen on slices ``organ`` only (inf on the
    others, as the distance metric has them), with float32 values that make ties: some
    equal to the squared slab gaps' roots, many zeros."""
    e = np.full((9, 7, nk), np.inf, dtype=np.float32)
    lo, hi = organ
    vals = rng.choice(np.float32([0.0, 0.5, 1.5, 2.5, 7.25]), size=(9, 7, hi - lo))
    e[:, :, lo:hi] = vals + rng.random((9, 7, hi - lo), dtype=np.float32) * (vals > 1)
    return e


@pytest.mark.parametrize("inside_metric", [True, False])
@pytest.mark.parametrize("block", [1 << 18, 7 * 60 * 2])
def test_stacking_skips_only_what_it_cannot_lower(inside_metric, block, monkeypatch):
    """A tall table with the organ on 4 of 60 slices: the same values as the plain loop
    (bit for bit), and the runs of slices that are skipped are provably left as they were."""
    monkeypatch.setattr(surface_tables, "_STACK_BLOCK", block)
    rng = np.random.default_rng(3)
    e = _organ_table(rng)
    if inside_metric:
        e[np.isinf(e)] = 0.0
    for dz, exact_to_mm in ((1.0, 20.0), (0.5, 3.0), (2.0, 70.0)):
        got = _stack(e, dz, exact_to_mm, inside_metric=inside_metric)
        want = _oracle_stack(e, dz, exact_to_mm, inside_metric=inside_metric)
        np.testing.assert_array_equal(got, want)
    # A NaN (never made by the tables' EDTs) spreads as in the plain loop, not skipped.
    e[2, 3, 27] = np.nan
    e[4, 1, 40] = np.nan
    got = _stack(e, 1.0, 20.0, inside_metric=inside_metric)
    want = _oracle_stack(e, 1.0, 20.0, inside_metric=inside_metric)
    np.testing.assert_array_equal(got, want)  # NaN where NaN


def test_lowered_slices_leave_out_only_slices_no_sum_lowers():
    """Brute force: every slice outside a run keeps its values under that offset's sums,
    and the organ's table gives short runs (the work saved)."""
    rng = np.random.default_rng(5)
    e2 = np.square(np.moveaxis(_organ_table(rng), 2, 0))
    nk = e2.shape[0]
    out2 = e2.copy()
    # Slices 30-44 already near, at the squared gap to slab 28 (the organ's last, with
    # zeros): a tie for the offset k - 28, which lowers nothing; every other slice a float32
    # step above it, where that offset does lower.
    gaps = np.square(np.arange(30, 45, dtype=np.float32) - 28 - np.float32(0.5))
    gaps[1::2] = np.nextafter(gaps[1::2], np.float32(np.inf))
    out2[30:45] = gaps[:, None, None]
    smallest = e2.reshape(nk, -1).min(axis=1)
    largest = out2.reshape(nk, -1).max(axis=1)
    lengths = []
    for m in range(1, 12):
        z2 = np.float32((m - 0.5) ** 2)
        up, down = surface_tables.lowered_slices(smallest, largest, z2, m)
        for (lo, hi), src, first, last in ((up, m, 0, nk - m), (down, -m, m, nk)):
            lengths.append(hi - lo)
            for k in range(first, last):
                if lo <= k < hi:
                    continue
                lowered = np.minimum(out2[k], e2[k + src] + z2)
                np.testing.assert_array_equal(lowered, out2[k])
    # Only slabs 25-28 are finite: each run is at most 4 slices long, of up to 59.
    assert max(lengths) <= 4 and min(lengths) == 0
    # The ties are left out, the slices a step above them kept (slab 28, offset k - 28).
    for k in range(30, 45):
        _, (lo, hi) = surface_tables.lowered_slices(
            smallest, largest, np.float32((k - 28 - 0.5) ** 2), k - 28
        )
        assert (lo <= k < hi) == (k % 2 == 1)


@pytest.mark.parametrize("vox", [(0.9, 1.3, 2.1), (0.5, 0.5, 3.0)])
def test_vertex_distances_equal_the_uint8_edt(vox):
    mask = _phantom()
    solid = SlabSolid(mask, np.array(vox))
    got = solid._mask_bounds(mask, 5.0, inside_metric=True)
    padded = np.pad(mask, ((1, 1), (1, 1), (0, 0)))
    for k in range(mask.shape[2]):
        if not mask[:, :, k].any():
            continue
        want = _oracle_vertex_edt(padded[:, :, k], vox)[1:-1, 1:-1]
        inside = mask[:, :, k]
        np.testing.assert_array_equal(got[:, :, k][inside], want[inside])
        assert np.all(got[:, :, k][~inside] == 0)


@pytest.mark.parametrize("inside_metric", [True, False])
def test_vertex_tables_are_the_same_when_a_child_computes_half_the_slices(
    inside_metric, monkeypatch
):
    mask = _phantom()
    solid = SlabSolid(mask, np.array([0.9, 1.3, 2.1]))
    monkeypatch.setattr(surface_tables, "_SPLIT_PIXELS", 1 << 60)
    alone = solid._mask_bounds(mask, 5.0, inside_metric=inside_metric)
    used = []
    real = surface_tables.split_work
    monkeypatch.setattr(surface_tables, "split_work", lambda *a, **k: used.append(real(*a, **k)))
    monkeypatch.setattr(surface_tables, "_SPLIT_PIXELS", 0)
    # Whatever threads earlier tests left:
    monkeypatch.setattr(forking, "may_split", lambda: True)
    monkeypatch.setattr(surface_tables, "may_split", lambda: True)
    shared = solid._mask_bounds(mask, 5.0, inside_metric=inside_metric)
    assert used == [True]  # a child did part of it
    np.testing.assert_array_equal(shared, alone)
    # The table is this process's own: a later child writing into it changes nothing here.
    before = shared.copy()
    Forked(lambda: shared.__setitem__((3, 4, 5), -7.0)).result()
    np.testing.assert_array_equal(shared, before)


def _oracle_inplane_many(solid, ks, q_uv):
    """One :meth:`SlabSolid._inplane` call per distinct slice (the code before batching)."""
    dist = np.full(len(ks), np.inf)
    inside = np.zeros(len(ks), dtype=bool)
    for k in np.unique(ks):
        rows = np.flatnonzero(ks == k)
        dist[rows], inside[rows] = solid._inplane(int(k), q_uv[rows])
    return dist, inside


@pytest.mark.parametrize("vox", [(0.9, 1.3, 2.1), (1.2, 0.7, 0.8)])
@pytest.mark.parametrize("polygons", [False, True])
def test_batched_inplane_equals_one_call_per_slice(vox, polygons, monkeypatch):
    monkeypatch.setattr(surface_tables, "_FEW_BLOCK", 5_000)  # several blocks
    mask = _phantom()
    rings = None
    if polygons:
        # Oblique-ish free polygons: a rotated square and a triangle on a few slices.
        t = np.deg2rad(np.arange(0, 360, 7.0) + 3.0)
        ring = np.column_stack([15 + 9 * np.cos(t), 13 + 7 * np.sin(t)])
        rings = tuple((k, ring * (0.6 + 0.03 * k)) for k in range(2, 16))
        rings += ((9, np.array([[3.0, 3.0], [8.0, 4.0], [5.0, 9.5]])),)
    solid = SlabSolid(mask, np.array(vox), rings_ijk=rings)
    rng = np.random.default_rng(3)
    n = 3000
    ks = rng.integers(-2, mask.shape[2] + 2, n)
    ks[:700] = 9  # one slice with many points: its own call, the tree path
    q_uv = rng.uniform(-3, 33, (n, 2)) * np.array(vox[:2])
    got = solid._inplane_many(ks, q_uv)
    want = _oracle_inplane_many(solid, ks, q_uv)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    for inside_metric in (True, False):
        uvw = np.column_stack([q_uv, ks * vox[2] + rng.uniform(-0.6, 0.6, n) * vox[2]])
        fast = solid._query(uvw, np.inf, inside_metric=inside_metric)
        monkeypatch.setattr(SlabSolid, "_inplane_many", _oracle_inplane_many)
        slow = solid._query(uvw, np.inf, inside_metric=inside_metric)
        monkeypatch.undo()
        monkeypatch.setattr(surface_tables, "_FEW_BLOCK", 5_000)
        np.testing.assert_array_equal(fast, slow)


def test_stacked_marching_squares_equal_the_per_image_segments():
    from lattice.geometry.outline import marching_squares_segments, marching_squares_stack

    rng = np.random.default_rng(5)
    images = rng.random((6, 13, 17)) < 0.45  # saddles and every other case
    images[2] = False  # an empty image
    got = marching_squares_stack(images)
    for image, seg in zip(images, got):
        np.testing.assert_array_equal(seg, marching_squares_segments(image))


@pytest.mark.parametrize("block", [1 << 22, 50])
def test_outlines_made_together_equal_the_per_slice_crop(block, monkeypatch):
    from lattice.geometry.outline import marching_squares_segments

    monkeypatch.setattr(surface, "_OUTLINE_BLOCK", block)
    mask = np.zeros((40, 36, 24), dtype=bool)
    mask[5:37, 3:33, 2:22] = _phantom((32, 30, 20))
    vox = np.array([0.9, 1.3, 2.1])
    solid = SlabSolid(mask, vox)
    for k in range(mask.shape[2]):
        plane = mask[:, :, k]
        got = solid.outline(k)
        if not plane.any():
            assert got is None
            continue
        # The straightforward way: crop the slice to its own box, frame, shift back.
        rows = np.flatnonzero(plane.any(axis=1))
        cols = np.flatnonzero(plane.any(axis=0))
        sub = np.pad(plane[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 1)
        seg = marching_squares_segments(sub)
        off = np.array([rows[0], cols[0]], dtype=np.float64) - 1.0
        seg[:, :2] += off
        seg[:, 2:] += off
        seg[:, :2] *= vox[:2]
        seg[:, 2:] *= vox[:2]
        np.testing.assert_array_equal(got.segments, seg)
