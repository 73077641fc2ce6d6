"""Support shells and SCART rings (lattice.geometry.rings, lattice.planning.support) against
brute force: every voxel centre's distance computed in a loop over the sphere centres, or over
every mask voxel centre (scipy ``cdist`` in world mm, from the affine only), on small grids
with anisotropic voxels and flipped or oblique axes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import voxel_centers_ras_mm
from scipy.spatial.distance import cdist

from lattice.errors import ParameterError
from lattice.geometry.rings import label_of_distance, mask_ring_labels, sphere_ring_labels
from lattice.planning.support import (
    SupportOptions,
    parse_ring_bounds,
    ring_name,
    support_rings,
)
from lattice.volume import Volume

#: Voxels whose brute-force distance lies this close to a ring bound may fall on either side
#: (the fast path's float32 EDT); they are left out of the exact comparisons.
TIE_MM = 1e-3


def brute_labels(distance: np.ndarray, bounds) -> np.ndarray:
    """Label k where bounds[k-1] < d <= bounds[k], by a loop over the rings."""
    out = np.zeros(distance.shape, dtype=np.uint8)
    for k, (a, b) in enumerate(zip(bounds, bounds[1:]), start=1):
        out[(distance > a) & (distance <= b)] = k
    return out


def near_bound(distance: np.ndarray, bounds) -> np.ndarray:
    return np.min(np.abs(distance[..., None] - np.asarray(bounds, float)), axis=-1) < TIE_MM


@pytest.mark.parametrize("kind", ["lps", "oblique"])
def test_sphere_rings_equal_brute_force_distance(make_volume, ellipsoid_mask, kind):
    vol = make_volume((34, 30, 16), (1.3, 1.7, 2.6), kind, center_ras_mm=(0, 0, 0))
    gtv = vol.with_array(ellipsoid_mask(vol, [0.0, 0.0, 0.0], [20.0, 18.0, 16.0]))
    centers = np.array([[-6.0, 2.0, 1.0], [7.5, -3.0, -2.0], [0.5, 8.0, 5.0]])
    diameter, bounds = 6.0, (0, 3, 8, 20)
    got = sphere_ring_labels(gtv, centers, diameter_mm=diameter, bounds_mm=bounds).array
    world = voxel_centers_ras_mm(vol.shape, vol.affine)
    distance = np.full(vol.shape, np.inf)
    for c in centers:  # the union's distance: the nearest sphere surface
        distance = np.minimum(distance, np.linalg.norm(world - c, axis=-1) - diameter / 2)
    want = brute_labels(distance, bounds) * np.asarray(gtv.array, dtype=bool)
    assert got.dtype == np.uint8 and set(np.unique(got)) == {0, 1, 2, 3}
    assert np.array_equal(got, want)
    # No ring voxel inside a sphere (d <= 0) and none outside the GTV.
    assert not np.any((got > 0) & (distance <= 0))
    assert not np.any((got > 0) & ~np.asarray(gtv.array, dtype=bool))


def test_sphere_rings_flip_invariant(make_volume, ellipsoid_mask):
    """The same world rings whatever the array's axis directions."""
    vol = make_volume((24, 22, 12), (1.5, 1.2, 2.5), "identity-like", center_ras_mm=(0, 0, 0))
    gtv = vol.with_array(ellipsoid_mask(vol, [0.0, 0.0, 0.0], [14.0, 12.0, 12.0]))
    centers = np.array([[-3.0, 1.0, 0.5], [4.0, -2.0, -1.0]])
    base = sphere_ring_labels(gtv, centers, diameter_mm=5.0, bounds_mm=(0, 4, 9)).array
    flipped_affine = gtv.affine @ np.diag([-1.0, 1.0, -1.0, 1.0])
    flipped_affine[:3, 3] = gtv.ijk_to_ras([[23, 0, 11]])[0]
    flipped = Volume(np.asarray(gtv.array)[::-1, :, ::-1], flipped_affine)
    got = sphere_ring_labels(flipped, centers, diameter_mm=5.0, bounds_mm=(0, 4, 9)).array
    assert base.any() and np.array_equal(got[::-1, :, ::-1], base)


@pytest.mark.parametrize("kind", ["lps", "oblique"])
def test_mask_rings_equal_brute_force_edt(make_volume, ellipsoid_mask, kind):
    vol = make_volume((36, 32, 18), (1.4, 1.1, 2.3), kind, center_ras_mm=(0, 0, 0))
    mask = ellipsoid_mask(vol, [2.0, -1.0, 0.0], [9.0, 7.0, 8.0])
    bounds = (2, 5, 9)
    got = mask_ring_labels(mask, voxel_size_mm=vol.voxel_size_mm, bounds_mm=bounds)
    world = voxel_centers_ras_mm(vol.shape, vol.affine).reshape(-1, 3)
    distance = cdist(world, world[mask.ravel()]).min(axis=1).reshape(vol.shape)
    want = brute_labels(distance, bounds)
    ties = near_bound(distance, bounds)
    assert got[~ties].any()
    assert np.array_equal(got[~ties], want[~ties])
    clip = np.zeros(vol.shape, dtype=bool)
    clip[:, : vol.shape[1] // 2] = True
    clipped = mask_ring_labels(mask, voxel_size_mm=vol.voxel_size_mm, bounds_mm=bounds, clip=clip)
    assert np.array_equal(clipped, np.where(clip, got, 0))


def test_label_of_distance_is_open_below_closed_above():
    d = np.array([-1.0, 0.0, 1e-9, 5.0, 5.0 + 1e-9, 15.0, 15.1])
    assert label_of_distance(d, (0, 5, 15)).tolist() == [0, 0, 1, 1, 2, 2, 0]


@pytest.mark.parametrize(
    "text,why",
    [
        ("0,15,5", "increase"),
        ("5,0", "increase"),
        ("-5,5", "negative"),
        ("0,five", "not a number"),
        ("0,5,5,10", "repeats"),
        ("5", "two bounds"),
        ("0,2.5", "whole mm"),
        ("0,nan", "finite"),
        ("0,1000", "above"),
        ("", "not a number"),
    ],
)
def test_bad_bounds_are_one_line_parameter_errors(text, why):
    with pytest.raises(ParameterError) as info:
        parse_ring_bounds(text, name="shells_mm")
    message = info.value.render({"shells_mm": "--shells-mm"})
    assert why in message and "--shells-mm" in message and "\n" not in message


def test_ring_names_fit_sixteen_characters():
    assert ring_name("shell", 0, 5) == "LATTICE_SH00_05"
    assert ring_name("shell", 95, 100) == "LATTICE_SH95_100"
    assert ring_name("gtv_ring", 2, 12) == "GTV_RING02_12"
    assert ring_name("stv_ring", 100, 150) == "STV_RING100_150"
    with pytest.raises(ParameterError, match="16 characters"):
        SupportOptions(shells_mm="0,100,150")
    with pytest.raises(ParameterError, match="body"):
        SupportOptions(body="body.nii.gz")


def test_scart_rings_need_an_stv(make_volume, ellipsoid_mask):
    vol = make_volume((20, 20, 10), (1.5, 1.5, 2.0), center_ras_mm=(0, 0, 0))
    gtv = vol.with_array(ellipsoid_mask(vol, [0.0, 0.0, 0.0], [8.0, 8.0, 8.0]))
    with pytest.raises(ParameterError, match="STV"):
        support_rings(
            gtv, np.zeros((1, 3)), diameter_mm=4.0, options=SupportOptions(scart_ring_mm="2,12")
        )


def test_support_rings_records_and_body_clip(make_volume, ellipsoid_mask):
    vol = make_volume((30, 28, 14), (1.5, 1.25, 2.5), "lps", center_ras_mm=(0, 0, 0))
    gtv, stv, body = (
        vol.with_array(ellipsoid_mask(vol, [0.0, 0.0, 0.0], radii))
        for radii in ([12.0, 10.0, 10.0], [6.0, 5.0, 5.0], [18.0, 16.0, 14.0])
    )
    centers = np.array([[-3.0, 0.0, 0.0], [4.0, 1.0, 0.0]])
    options = SupportOptions(shells_mm="0,5,10", body="in memory", scart_ring_mm="2,6")
    rings = support_rings(
        gtv, centers, diameter_mm=5.0, options=options, stv=stv, body=body, body_label="body"
    )
    assert rings.shells is not None and rings.gtv_rings is not None
    assert rings.stv_rings is not None
    body_a = np.asarray(body.array, dtype=bool)
    assert not np.any((rings.shells.array > 0) & ~body_a)
    assert np.any((rings.shells.array > 0) & ~np.asarray(gtv.array, dtype=bool))  # past GTV
    names = [r.name for r in rings.records]
    assert names == [
        "LATTICE_SH00_05",
        "LATTICE_SH05_10",
        "GTV_RING02_06",
        "STV_RING02_06",
    ]
    for r in rings.records:
        volume = {"shell": rings.shells, "gtv_ring": rings.gtv_rings, "stv_ring": rings.stv_rings}[
            r.kind
        ]
        n = int(np.count_nonzero(np.asarray(volume.array) == r.label))
        assert r.volume_cc == pytest.approx(n * vol.voxel_volume_cc) and n > 0
    doc = rings.document()
    assert [s["name"] for s in doc["shells"]] == names[:2]
    assert [s["around"] for s in doc["scart_rings"]] == ["GTV", "STV"]
    assert rings.parameters() == {"shells_mm": [0, 5, 10], "body": "body", "scart_ring_mm": [2, 6]}
