"""Erosion and depth in millimetres: brute-force oracle, analytic spheres, the array border.

The oracle never calls lattice: the depth of a mask voxel is its distance to the nearest
background voxel centre, where the background includes a one-voxel frame around the array
(the border counts as outside), found by brute force over every pair with ``cdist``. A voxel
survives erosion by ``margin`` iff that distance is > margin (erosion by a closed ball).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from lattice.errors import MaskError, ParameterError
from lattice.geometry.margins import bounding_box, depth_in_box_mm, depth_mm, erode_mm

#: Anisotropic voxel sizes for the oracle blobs (none a multiple of another).
ORACLE_VOXEL_MM = [(0.9, 1.3, 2.1), (1.0, 1.0, 2.5), (0.7, 1.7, 1.1)]
#: Margins that are no distance between two voxel centres of any oracle grid (checked below),
#: so float rounding at an exact tie cannot decide the outcome.
ORACLE_MARGINS_MM = (0.45, 1.234, 2.05, 3.1, 4.77)


def oracle_depth_mm(mask, voxel_size_mm):
    """Distance of every mask voxel centre to the nearest background centre (frame included).

    Returns an (I, J, K) float array, 0 outside the mask. Brute force over all pairs.
    """
    vox = np.asarray(voxel_size_mm, dtype=float)
    framed = np.pad(mask, 1, mode="constant", constant_values=False)
    background = (np.argwhere(~framed) - 1) * vox
    inside = np.argwhere(mask)
    out = np.zeros(mask.shape)
    if len(inside):
        out[tuple(inside.T)] = cdist(inside * vox, background).min(axis=1)
    return out


def random_blob(rng, shape):
    """A union of random balls (index space), some cut by the array border, with pepper holes."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    mask = np.zeros(shape, bool)
    for _ in range(rng.integers(2, 5)):
        centre = rng.uniform(-1, np.array(shape))
        radii = rng.uniform(2.0, 6.0, size=3)
        mask |= np.sum(((ijk - centre) / radii) ** 2, axis=-1) <= 1.0
    holes = rng.random(shape) < 0.02
    return mask & ~holes


def test_oracle_margins_are_not_exact_voxel_distances():
    for vox in ORACLE_VOXEL_MM:
        steps = np.array(list(itertools.product(range(21), repeat=3)), dtype=float)
        d = np.linalg.norm(steps * np.asarray(vox), axis=1)
        for margin in ORACLE_MARGINS_MM:
            assert np.abs(d - margin).min() > 1e-3, (vox, margin)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("voxel_size_mm", ORACLE_VOXEL_MM)
def test_erosion_equals_brute_force(seed, voxel_size_mm):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(10, 19, size=3))
    mask = random_blob(rng, shape)
    assert mask.any() and not mask.all()
    depth = oracle_depth_mm(mask, voxel_size_mm)
    for margin in ORACLE_MARGINS_MM:
        expected = mask & (depth > margin)
        got = erode_mm(mask, margin, voxel_size_mm=voxel_size_mm)
        assert got.dtype == bool and got.shape == mask.shape
        np.testing.assert_array_equal(got, expected, err_msg=f"margin {margin} mm")


@pytest.mark.parametrize("seed", range(3))
def test_depth_equals_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    vox = ORACLE_VOXEL_MM[seed % len(ORACLE_VOXEL_MM)]
    mask = random_blob(rng, (14, 12, 11))
    expected = oracle_depth_mm(mask, vox)
    got = depth_mm(mask, voxel_size_mm=vox)
    assert got.shape == mask.shape
    # float32 output: ~1e-7 relative rounding of distances of a few tens of mm.
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    box_depth, box = depth_in_box_mm(mask, voxel_size_mm=vox)
    np.testing.assert_allclose(box_depth, expected[box], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "voxel_mm, margin_mm",
    [(1.0, 2.0), (0.7, 2.1), (1.1, 2.2), (0.98, 1.96), (3.27, 3.27), (0.1, 0.5), (1.25, 5.0)],
)
def test_voxel_exactly_at_the_margin_is_removed(voxel_mm, margin_mm):
    # A row of voxels in a full array: voxel i (0-based) is (i + 1) voxels from the frame.
    # With margin = k voxels the voxels exactly k voxels deep are *on* the closed ball's
    # boundary and are removed, whatever the float rounding of k * voxel_mm.
    k = round(margin_mm / voxel_mm)
    n = 2 * k + 5
    mask = np.ones((n, 1, 1), bool)
    got = erode_mm(mask, margin_mm, voxel_size_mm=(voxel_mm, 1e3, 1e3))[:, 0, 0]
    expected = np.zeros(n, bool)
    expected[k : n - k] = True  # depth (i + 1) * voxel > k * voxel  <=>  k <= i < n - k
    np.testing.assert_array_equal(got, expected)


# -- analytic shapes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "voxel_size_mm, kind, rel_tol",
    [
        ((1.0, 1.0, 1.0), "identity-like", 0.04),
        ((1.0, 1.0, 2.5), "oblique", 0.06),
        ((0.8, 1.1, 2.0), "lps", 0.06),
    ],
)
def test_sphere_of_20mm_eroded_by_5mm_is_the_15mm_sphere(
    make_volume, ellipsoid_mask, voxel_size_mm, kind, rel_tol
):
    # Tolerance: the outside of a voxelised 20 mm sphere begins up to about a voxel beyond
    # 20 mm, so the eroded surface lies a fraction of a voxel outside 15 mm: measured +2.5 %
    # volume at 1 mm, +5 % with 2-2.5 mm slices (a 0.25 mm radius error).
    shape = tuple(int(np.ceil(50 / v)) for v in voxel_size_mm)
    vol = make_volume(shape, voxel_size_mm, kind)
    centre = vol.ijk_to_ras((np.array(shape) - 1) / 2)[0] + [0.3, -0.2, 0.1]
    gtv = ellipsoid_mask(vol, centre, 20.0)
    eroded = erode_mm(gtv, 5.0, voxel_size_mm=voxel_size_mm)

    voxel_cc = np.prod(voxel_size_mm) / 1000
    sphere15_cc = 4 / 3 * np.pi * 15.0**3 / 1000
    assert eroded.sum() * voxel_cc == pytest.approx(sphere15_cc, rel=rel_tol)

    # Exact containment: every voxel centre closer than 15 mm to the centre is kept, none
    # beyond 15 mm + a full voxel diagonal (the outside starts within half a diagonal of
    # 20 mm, and the nearest outside centre is within another half diagonal).
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    r = np.linalg.norm(ijk @ vol.affine[:3, :3].T + vol.affine[:3, 3] - centre, axis=-1)
    diagonal = float(np.linalg.norm(voxel_size_mm))
    assert eroded[r < 15.0].all()
    assert not eroded[r >= 15.0 + diagonal].any()


def test_ellipsoid_erosion_shrinks_each_semi_axis_by_the_margin(make_volume, ellipsoid_mask):
    vol = make_volume((60, 50, 30), (1.0, 1.0, 2.0), "identity-like")
    centre = vol.ijk_to_ras((np.array(vol.shape) - 1) / 2)[0]
    gtv = ellipsoid_mask(vol, centre, (25.0, 18.0, 22.0))
    eroded = erode_mm(gtv, 6.0, voxel_size_mm=vol.voxel_size_mm)
    pts = np.argwhere(eroded) @ vol.affine[:3, :3].T + vol.affine[:3, 3] - centre
    extent = np.abs(pts).max(axis=0)
    # Along each principal axis the erosion of an ellipsoid by a ball is the semi-axis minus
    # the margin; the voxel grid adds at most one voxel edge.
    np.testing.assert_array_less(extent, np.array([19.0, 12.0, 16.0]) + vol.voxel_size_mm)
    np.testing.assert_array_less(np.array([19.0, 12.0, 16.0]) - vol.voxel_size_mm, extent)


# -- the array border is outside -------------------------------------------------------------


def test_full_array_is_eroded_from_the_border():
    mask = np.ones((10, 12, 8), bool)
    got = erode_mm(mask, 2.5, voxel_size_mm=(1.0, 1.0, 1.0))
    expected = np.zeros_like(mask)
    # Voxel i is i + 1 voxels from the frame below and n - i from the frame above.
    expected[2:8, 2:10, 2:6] = True
    np.testing.assert_array_equal(got, expected)


def test_mask_touching_the_border_is_eroded_as_if_padded(make_volume, ellipsoid_mask):
    vol = make_volume((40, 40, 16), (1.0, 1.0, 2.5), "oblique")
    top = vol.ijk_to_ras([19.5, 19.5, 15])[0]
    gtv = ellipsoid_mask(vol, top, (15.0, 12.0, 20.0))  # cut open by the last slice
    assert gtv[..., -1].any()
    eroded = erode_mm(gtv, 5.0, voxel_size_mm=vol.voxel_size_mm)
    # Nothing survives within 5 mm of the last slice: slices K-1, K-2 (2.5, 5.0 mm).
    assert not eroded[..., -2:].any()
    assert eroded[..., -3].any()
    # Same answer as eroding the mask placed inside a larger, empty array.
    padded = np.pad(gtv, 3)
    bigger = erode_mm(padded, 5.0, voxel_size_mm=vol.voxel_size_mm)[3:-3, 3:-3, 3:-3]
    np.testing.assert_array_equal(eroded, bigger)


# -- invariants and parameters ---------------------------------------------------------------


def test_erosion_follows_flips_and_axis_permutations():
    rng = np.random.default_rng(7)
    mask = random_blob(rng, (16, 13, 11))
    vox = np.array([0.9, 1.3, 2.1])
    base = erode_mm(mask, 2.05, voxel_size_mm=vox)
    flipped = erode_mm(mask[::-1, :, ::-1], 2.05, voxel_size_mm=vox)
    np.testing.assert_array_equal(flipped, base[::-1, :, ::-1])
    perm = (2, 0, 1)
    permuted = erode_mm(mask.transpose(perm), 2.05, voxel_size_mm=vox[list(perm)])
    np.testing.assert_array_equal(permuted, base.transpose(perm))


def test_erosion_does_not_modify_its_input():
    mask = random_blob(np.random.default_rng(3), (12, 12, 12))
    before = mask.copy()
    erode_mm(mask, 1.5, voxel_size_mm=(1.0, 1.0, 2.0))
    np.testing.assert_array_equal(mask, before)


def test_zero_margin_keeps_the_mask_and_empty_stays_empty():
    mask = random_blob(np.random.default_rng(4), (12, 12, 12))
    np.testing.assert_array_equal(erode_mm(mask, 0.0, voxel_size_mm=(1, 1, 2)), mask)
    empty = np.zeros((5, 5, 5), bool)
    assert not erode_mm(empty, 1.0, voxel_size_mm=(1, 1, 1)).any()
    assert not depth_mm(empty, voxel_size_mm=(1, 1, 1)).any()


def test_margin_larger_than_the_mask_gives_an_empty_mask():
    mask = np.zeros((20, 20, 20), bool)
    mask[5:15, 5:15, 5:15] = True
    assert not erode_mm(mask, 5.0, voxel_size_mm=(1, 1, 1)).any()


@pytest.mark.parametrize("margin", [-5.0, -1e-9, float("nan"), float("inf")])
def test_bad_margin_is_a_parameter_error(margin):
    with pytest.raises(ParameterError, match="margin"):
        erode_mm(np.ones((3, 3, 3), bool), margin, voxel_size_mm=(1, 1, 1))


def test_bounding_box_pads_and_clips_and_rejects_empty():
    mask = np.zeros((10, 10, 10), bool)
    mask[0, 4:6, 8] = True
    box = bounding_box(mask, pad_vox=2)
    assert box == (slice(0, 3), slice(2, 8), slice(6, 10))
    with pytest.raises(MaskError):
        bounding_box(np.zeros((3, 3, 3), bool))


def test_real_gtv_touching_the_volume_ends_is_eroded_from_them(shared_data):
    import nibabel as nib

    path = shared_data / "STS_044" / "gtv.nii.gz"
    if not path.exists():
        pytest.skip("STS_044 not in ../shared/data")
    img = nib.load(path)
    gtv = np.asanyarray(img.dataobj) > 0
    vox = img.header.get_zooms()[:3]  # 0.98 x 0.98 x 3.27 mm
    assert gtv[:, :, 0].any() or gtv[:, :, -1].any()  # why the case is here
    eroded = erode_mm(gtv, 5.0, voxel_size_mm=vox)
    # The first and last slices are 3.27 mm from the outside beyond the border: <= 5 mm.
    assert not eroded[:, :, 0].any() and not eroded[:, :, -1].any()
    padded = erode_mm(np.pad(gtv, 2), 5.0, voxel_size_mm=vox)[2:-2, 2:-2, 2:-2]
    np.testing.assert_array_equal(eroded, padded)


@pytest.mark.parametrize("order", ["C", "F"])
def test_bounding_box_matches_argwhere_in_both_memory_orders(order):
    rng = np.random.default_rng(7)
    for _ in range(150):
        shape = tuple(int(v) for v in rng.integers(1, 9, 3))
        m = np.zeros(shape, dtype=bool, order=order)
        m[tuple(int(rng.integers(0, s)) for s in shape)] = True
        m |= rng.random(shape) < 0.05
        idx = np.argwhere(m)
        expected = tuple(
            slice(max(int(idx[:, a].min()) - 1, 0), min(int(idx[:, a].max()) + 2, shape[a]))
            for a in range(3)
        )
        assert bounding_box(m, pad_vox=1) == expected
