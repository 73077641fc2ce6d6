"""The verifier's brute-force TPS distances against the straightforward slab-by-slab loop they
replaced (kept here as the oracle): identical values, point for point, on anisotropic, flipped
and oblique grids, for depth and distance, capped and not, with holes and empty slices."""

from __future__ import annotations

import numpy as np
import pytest
from nibabel.affines import apply_affine

from lattice.analysis import verify_geometry
from lattice.analysis.verify_geometry import _Slabs
from lattice.volume import Volume


def _oracle_rings(mask: Volume, k: int) -> list[np.ndarray]:
    from skimage.measure import find_contours

    plane = np.asarray(mask.array[:, :, k], dtype=bool)
    ii = np.flatnonzero(plane.any(axis=1))
    if len(ii) == 0:
        return []
    jj = np.flatnonzero(plane.any(axis=0))
    sub = plane[ii[0] : ii[-1] + 1, jj[0] : jj[-1] + 1]
    off = np.array([ii[0], jj[0]], dtype=np.float64) - 1.0
    return [line[:-1] + off for line in find_contours(np.pad(sub, 1).astype(float), 0.5)]


def _oracle_segments(mask: Volume, k: int) -> np.ndarray | None:
    vox = mask.voxel_size_mm
    rings = (
        [np.asarray(r)[:, :2] * vox[:2] for r in _oracle_rings(mask, k)]
        if 0 <= k < mask.shape[2]
        else []
    )
    segs = [np.column_stack([r, np.roll(r, -1, axis=0)]) for r in rings if len(r) >= 2]
    return np.concatenate(segs) if segs else None


def _oracle_inplane(s: np.ndarray | None, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if s is None:
        return np.full(len(q), np.inf), np.zeros(len(q), dtype=bool)
    a, ab = s[None, :, :2], (s[:, 2:] - s[:, :2])[None]
    rel = q[:, None, :] - a
    t = np.clip(np.sum(rel * ab, axis=2) / np.maximum(np.sum(ab * ab, axis=2), 1e-300), 0.0, 1.0)
    dist = np.sqrt(np.min(np.sum((rel - t[..., None] * ab) ** 2, axis=2), axis=1))
    y0, y1 = s[None, :, 1], s[None, :, 3]
    qy = q[:, 1:2]
    spans = (np.minimum(y0, y1) <= qy) & (qy < np.maximum(y0, y1))
    with np.errstate(divide="ignore", invalid="ignore"):
        x = s[None, :, 0] + (qy - y0) / (y1 - y0) * (s[None, :, 2] - s[None, :, 0])
    inside = np.count_nonzero(spans & (x > q[:, :1]), axis=1) % 2 == 1
    return dist, inside


def _oracle_measure(mask: Volume, pts: np.ndarray, *, depth: bool, cap_mm: float) -> np.ndarray:
    """The slab-by-slab loop of the verifier before its in-plane work was batched."""
    vox = mask.voxel_size_mm
    dz = float(vox[2])
    uvw = apply_affine(np.linalg.inv(mask.affine), pts) * vox
    j0 = np.rint(uvw[:, 2] / dz).astype(np.int64)
    best = np.full(len(pts), cap_mm)
    live = np.ones(len(pts), dtype=bool)
    for k in np.unique(j0):
        rows = np.flatnonzero(j0 == k)
        e, inside = _oracle_inplane(_oracle_segments(mask, int(k)), uvw[rows, :2])
        if depth:
            best[rows] = np.where(inside, np.minimum(best[rows], e), 0.0)
            live[rows] = inside
        else:
            best[rows] = np.where(inside, 0.0, np.minimum(best[rows], e))
    nk = mask.shape[2]
    m = 0
    while True:
        m += 1
        live &= (m - 1) * dz < best
        if not live.any() or (j0[live].max() - m < -1 and j0[live].min() + m > nk):
            break
        for sign in (-1, 1):
            j = j0 + sign * m
            for k in np.unique(j[live]):
                rows = np.flatnonzero(live & (j == k))
                z = np.maximum(np.abs(uvw[rows, 2] - k * dz) - 0.5 * dz, 0.0)
                e, inside = _oracle_inplane(_oracle_segments(mask, int(k)), uvw[rows, :2])
                e = np.where(inside, e, 0.0) if depth else np.where(inside, 0.0, e)
                best[rows] = np.minimum(best[rows], np.hypot(e, z))
    return best


@pytest.mark.parametrize("affine_kind", ["identity-like", "lps", "oblique"])
@pytest.mark.parametrize("cap_mm", [np.inf, 4.0])
def test_batched_slabs_equal_the_slab_by_slab_loop(
    affine_kind, cap_mm, make_volume, ellipsoid_mask, monkeypatch
):
    # Small blocks so that the pair blocking and the padded segment table are exercised.
    monkeypatch.setattr(verify_geometry, "_PAIR_BLOCK", 3_000)
    monkeypatch.setattr(verify_geometry, "_OUTLINE_BLOCK", 3_000)  # two slices per block
    base = make_volume((34, 30, 22), (0.9, 1.3, 2.1), affine_kind)
    centre = base.ijk_to_ras([16.0, 14.0, 10.0])
    arr = ellipsoid_mask(base, centre, (11.0, 8.0, 14.0))
    arr &= ~ellipsoid_mask(base, centre, 3.5)  # a hole: even-odd inside test
    arr[:, :, 6] = False  # an empty slice inside the solid
    arr[2:5, 3:6, 17:19] = True  # a second, small piece
    mask = Volume(arr, base.affine)
    rng = np.random.default_rng(7)
    ijk = np.column_stack(
        [rng.uniform(-3, s + 2, 400) for s in mask.shape]
    )  # inside, outside and beyond the array
    pts = mask.ijk_to_ras(ijk)
    for depth in (True, False):
        got = _Slabs(mask).measure(pts, depth=depth, cap_mm=cap_mm)
        want = _oracle_measure(mask, pts, depth=depth, cap_mm=cap_mm)
        np.testing.assert_array_equal(got, want)


def _ring_segments(image: np.ndarray) -> np.ndarray:
    """The directed segments of find_contours' rings of a framed image, sorted by rows."""
    from skimage.measure import find_contours

    rings = [line[:-1] for line in find_contours(image.astype(float), 0.5)]
    segs = [np.column_stack([r, np.roll(r, -1, axis=0)]) for r in rings]
    s = np.concatenate(segs) if segs else np.zeros((0, 4))
    return s[np.lexsort(s.T[::-1])]


@pytest.mark.parametrize("fill", [0.15, 0.5, 0.85])
def test_outline_segments_are_the_segments_of_find_contours_rings(fill):
    # Random images are full of saddle cells, holes and one-pixel pieces.
    rng = np.random.default_rng(int(fill * 100))
    images = np.zeros((6, 19, 23), dtype=bool)
    images[:, 1:-1, 1:-1] = rng.random((6, 17, 21)) < fill
    images[2] = False  # an empty image
    images[3, 1:-1, 1:-1] = True  # a full one
    for image, got in zip(images, verify_geometry._outline_segments(images)):
        np.testing.assert_array_equal(got[np.lexsort(got.T[::-1])], _ring_segments(image))


def test_empty_mask_gives_zero_depth_and_infinite_distance(make_volume):
    mask = Volume(np.zeros((8, 9, 7), dtype=bool), make_volume((8, 9, 7), 1.0).affine)
    pts = mask.ijk_to_ras(np.array([[3.0, 4.0, 3.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(_Slabs(mask).measure(pts, depth=True), [0.0, 0.0])
    np.testing.assert_array_equal(_Slabs(mask).measure(pts, depth=False), [np.inf, np.inf])
