"""Traced RTSTRUCT contours against scikit-image's find_contours, ring for ring: the same
points from the same start, in the same order (the writer used to call it slice by slice)."""

from __future__ import annotations

import numpy as np
import pytest
from nibabel.affines import apply_affine
from skimage.measure import find_contours

from lattice.io import rtstruct_contours
from lattice.io.rtstruct_contours import _drop_collinear, crop_contours, traced_rings
from lattice.volume import Volume


@pytest.mark.parametrize("fill", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_traced_rings_are_find_contours_rings(fill):
    # Random images: saddle cells, holes, islands in holes, one-pixel pieces, rings joined
    # from pieces in every order.
    rng = np.random.default_rng(int(fill * 10))
    images = np.zeros((12, 21, 27), dtype=bool)
    images[:, 1:-1, 1:-1] = rng.random((12, 19, 25)) < fill
    images[4] = False
    images[5, 1:-1, 1:-1] = True
    for image, got in zip(images, traced_rings(images)):
        want = [line[:-1] for line in find_contours(image.astype(np.float32), 0.5)]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def _oracle_crop_contours(crop, start_ijk, lps_affine):
    """crop_contours as it was: find_contours on each padded slice of the padded box."""
    from lattice.geometry.margins import bounding_box

    out = []
    if not crop.any():
        return out
    box = bounding_box(crop, pad_vox=1)
    array = crop[box]
    offset = np.array([box[0].start + start_ijk[0], box[1].start + start_ijk[1]], dtype=float)
    for kk in np.flatnonzero(array.any(axis=(0, 1))):
        k = int(kk) + box[2].start + start_ijk[2]
        padded = np.pad(array[:, :, kk], 1).astype(np.float32)
        for line in find_contours(padded, 0.5):
            line = _drop_collinear(line[:-1]) - 1.0 + offset
            if len(line) < 3:
                continue
            ijk = np.column_stack([line, np.full(len(line), float(k))])
            out.append((k, apply_affine(lps_affine, ijk)))
    return out


@pytest.mark.parametrize("affine_kind", ["identity-like", "lps", "oblique"])
def test_crop_contours_equal_the_slice_by_slice_tracing(
    affine_kind, make_volume, ellipsoid_mask, monkeypatch
):
    monkeypatch.setattr(rtstruct_contours, "_TRACE_BLOCK", 2_000)  # a few slices per block
    base = make_volume((30, 26, 18), (0.9, 1.3, 2.1), affine_kind)
    centre = base.ijk_to_ras([14.0, 12.0, 9.0])
    arr = ellipsoid_mask(base, centre, (11.0, 8.0, 14.0))
    arr &= ~ellipsoid_mask(base, centre, 3.5)  # holes
    arr[:, :, 5] = False  # a slice without the mask between slices with it
    arr[0:3, 0:4, 12:14] = True  # a piece at the array's edge
    mask = Volume(arr, base.affine)
    for crop, start in ((arr, (0, 0, 0)), (arr[2:, 1:, 3:], (2, 1, 3))):
        got = crop_contours(crop, start, mask.lps_affine)
        want = _oracle_crop_contours(crop, start, mask.lps_affine)
        assert [k for k, _ in got] == [k for k, _ in want]
        for (_, g), (_, w) in zip(got, want):
            np.testing.assert_array_equal(g, w)
