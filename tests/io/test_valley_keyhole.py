"""``--valley-contours keyhole``: LATTICE_VALLEY without inner contours.

A reader that ORs the contours of a slice (plastimatch by default) turns the valley written
with holes into the whole GTV. Keyhole polygons join each hole to its outline by a zero-width
cut. Checked here with code of the tests' own (no lattice geometry): the region is the same
(rasterised with the even-odd rule before, OR-ed after), there is one polygon per outer
outline per slice, no point is new, and each polygon is simple apart from its cuts: two edges
meet only at shared ends, or lie on each other as the two sides of a cut.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_redirected as run
from dicom_oracle import read_series_geometry, read_structures
from skimage.draw import polygon2mask

from lattice.io.dicom_series import derived_series
from lattice.io.rtstruct_contours import keyhole_contours, slice_planes
from lattice.io.rtstruct_write import plan_rois
from lattice.planning.plan import Plan, PlanParameters
from lattice.volume import Volume

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "STS_001"


def circle(center, radius, n=64, clockwise=False):
    t = 2 * np.pi * np.arange(n) / n
    ring = np.column_stack([center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)])
    return ring[::-1] if clockwise else ring


def square(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def to_3d(grid: Volume, k: int, ring2d):
    """Points of slice k of ``grid`` (LPS) at in-plane coordinates (along i, along j), mm."""
    origins, _, u, v = slice_planes(grid)
    return origins[k] + ring2d[:, :1] * u + ring2d[:, 1:] * v


def in_plane(grid: Volume, k: int, points):
    origins, _, u, v = slice_planes(grid)
    return np.column_stack([(points - origins[k]) @ u, (points - origins[k]) @ v])


def raster(rings, *, mode, scale=4.0, size=480):
    """Rasterise 2-D rings (mm) on a fine grid: even-odd (XOR) or union (OR)."""
    out = np.zeros((size, size), dtype=bool)
    for ring in rings:
        m = polygon2mask((size, size), ring * scale + 20)
        out = out ^ m if mode == "xor" else out | m
    return out


def segments_cross(p, q, r, s, eps=1e-9):
    """Whether segments pq and rs share a point other than a common end (both ways:
    crossing, touching, collinear overlap)."""

    def orient(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return 0 if abs(v) < eps else (1 if v > 0 else -1)

    def on(a, b, c):  # c on segment ab (collinear assumed)
        return (
            min(a[0], b[0]) - eps <= c[0] <= max(a[0], b[0]) + eps
            and min(a[1], b[1]) - eps <= c[1] <= max(a[1], b[1]) + eps
        )

    shared = [a for a in (p, q) for b in (r, s) if np.allclose(a, b, atol=eps)]
    o1, o2, o3, o4 = orient(p, q, r), orient(p, q, s), orient(r, s, p), orient(r, s, q)
    if o1 * o2 < 0 and o3 * o4 < 0:
        return True
    touching = [
        c
        for c, o, a, b in ((r, o1, p, q), (s, o2, p, q), (p, o3, r, s), (q, o4, r, s))
        if o == 0 and on(a, b, c)
    ]
    return any(not any(np.allclose(c, sh, atol=eps) for sh in shared) for c in touching)


def check_simple_but_for_cuts(ring):
    """Every pair of edges is disjoint, adjacent, or the two sides of a cut (the same
    segment both ways); return the number of cut pairs."""
    n = len(ring)
    edges = [(ring[i], ring[(i + 1) % n]) for i in range(n)]
    cuts = 0
    for i in range(n):
        for j in range(i + 1, n):
            (p, q), (r, s) = edges[i], edges[j]
            if np.allclose(p, s) and np.allclose(q, r):
                cuts += 1  # the two sides of a zero-width cut
                continue
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbours share one end
            assert not segments_cross(p, q, r, s), (i, j, p, q, r, s)
    return cuts


CASES = {
    # name: (rings of one slice, expected number of keyhole polygons)
    "three holes": (
        [square(0, 0, 100, 100), circle((30, 30), 10), circle((70, 30), 10), circle((50, 72), 12)],
        1,
    ),
    "holes in a ring with an island": (
        [
            square(0, 0, 100, 100),
            square(35, 35, 65, 65)[::-1],  # GTV with a cavity
            square(42, 42, 58, 58),  # an island in it
            circle((15, 50), 8),
            circle((85, 50), 8),
            circle((50, 15), 8),  # valley holes
            circle((50, 50), 3),
        ],
        2,
    ),  # a hole in the island
    "two outlines": (
        [
            square(0, 0, 40, 40),
            circle((20, 20), 10),
            square(50, 0, 110, 40),
            circle((65, 20), 9),
            circle((92, 20), 9),
        ],
        2,
    ),
    "hole close to the outline, no hole": (
        [square(0, 0, 100, 60), circle((50, 30), 29.5), square(120, 0, 150, 30)],
        2,
    ),
    "concave outline hiding a hole": (
        [
            np.array(
                [[0, 0], [100, 0], [100, 100], [60, 100], [60, 20], [40, 20], [40, 100], [0, 100]],
                float,
            ),
            circle((20, 60), 10),
            circle((80, 60), 10),
            circle((50, 10), 5),
        ],
        1,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_keyhole_same_region_one_polygon_per_outline(name, make_volume):
    rings, expected = CASES[name]
    grid = make_volume((8, 8, 3), (1.0, 1.0, 2.5), "oblique")
    contours = [(1, to_3d(grid, 1, r)) for r in rings]
    out = keyhole_contours(contours, grid)
    assert len(out) == expected
    points_in = np.concatenate([c for _, c in contours])
    _, normal, _, _ = slice_planes(grid)
    origins = slice_planes(grid)[0]
    cuts = 0
    for k, points in out:
        assert k == 1
        # Only points of the input (no point moved or added), all on the slice plane.
        assert all(np.any(np.all(points_in == p, axis=1)) for p in points)
        assert np.abs((points - origins[1]) @ normal).max() < 1e-9
        cuts += check_simple_but_for_cuts(in_plane(grid, 1, points))
    assert cuts == len(rings) - expected  # one cut per hole
    before = raster([in_plane(grid, 1, c) for _, c in contours], mode="xor")
    after = raster([in_plane(grid, 1, c) for _, c in out], mode="or")
    # Pixels on a zero-width cut may go either way: at most a few per cut.
    assert (before ^ after).sum() <= 8 * 480 / 100 * cuts + 4, (before ^ after).sum()


def test_touching_circles(make_volume):
    """Vertices exactly D apart on one slice plane: their 64-gons share a point."""
    grid = make_volume((8, 8, 3), (1.0, 1.0, 2.5), "identity-like")
    rings = [square(0, 0, 100, 60), circle((30, 30), 15), circle((60, 30), 15)]
    out = keyhole_contours([(0, to_3d(grid, 0, r)) for r in rings], grid)
    assert len(out) == 1
    before = raster(rings, mode="xor")
    after = raster([in_plane(grid, 0, c) for _, c in out], mode="or")
    assert (before ^ after).sum() <= 200


@pytest.fixture(scope="module")
def plan_two_ways(tmp_path_factory):
    """The sample case planned with each valley encoding (one vertex layout)."""
    folder = tmp_path_factory.mktemp("valley")
    outs = {}
    for mode in ("holes", "keyhole"):
        outs[mode] = folder / mode
        code, _, err = run(
            [
                "plan",
                "--ct",
                SAMPLE / "ct.nii.gz",
                "--gtv",
                SAMPLE / "gtv.nii.gz",
                "--out",
                outs[mode],
                "--no-picture",
                "--mesh-format",
                "none",
                "--valley-contours",
                mode,
            ]
        )
        assert code == 0, err
    return outs


def test_keyhole_valley_in_rtstruct(plan_two_ways):
    """Keyhole: one polygon per slice where the GTV has one outline, and OR-ing its polygons
    gives the even-odd region of the holes encoding."""
    geometry = read_series_geometry(plan_two_ways["holes"] / "ct_dicom")
    holes = read_structures(plan_two_ways["holes"] / "rtstruct.dcm")
    keyhole = read_structures(plan_two_ways["keyhole"] / "rtstruct.dcm")
    assert holes["GTV"] and len(holes["GTV"]) == len(keyhole["GTV"])  # GTV unchanged
    along = geometry["positions"] @ geometry["normal"]

    def by_slice(contours):
        out: dict[int, list] = {}
        for c in contours:
            k = int(np.argmin(np.abs(along - c["points"][0] @ geometry["normal"])))
            out.setdefault(k, []).append(c["points"])
        return out

    h, kh, gtv = (
        by_slice(holes["LATTICE_VALLEY"]),
        by_slice(keyhole["LATTICE_VALLEY"]),
        by_slice(holes["GTV"]),
    )
    assert set(h) == set(kh)
    with_holes = [k for k in h if len(h[k]) > len(gtv[k])]
    assert with_holes, "no slice with a vertex hole"
    origin = geometry["positions"][0]
    u, v = geometry["row_dir"], geometry["col_dir"]

    def flat(points):
        return np.column_stack([(points - origin) @ u, (points - origin) @ v]) / 4 + 30

    for k in with_holes:
        assert len(kh[k]) == len(gtv[k])  # one polygon per GTV outline
        before = raster([flat(p) for p in h[k]], mode="xor", scale=4)
        after = raster([flat(p) for p in kh[k]], mode="or", scale=4)
        assert (before ^ after).sum() <= 0.01 * before.sum(), k
    doc = json.loads((plan_two_ways["keyhole"] / "plan.json").read_text())
    assert doc["vertices"]


def test_valley_contours_refused_values(tmp_path):
    code, _, err = run(
        [
            "plan",
            "--ct",
            SAMPLE / "ct.nii.gz",
            "--gtv",
            SAMPLE / "gtv.nii.gz",
            "--out",
            tmp_path / "o",
            "--valley-contours",
            "xor",
        ]
    )
    assert code == 2 and "invalid choice" in err and "keyhole" in err


def test_plan_rois_keyhole_on_traced_valley(make_volume, ellipsoid_mask):
    """Margin below half an in-plane voxel diagonal: the valley is traced from the voxels,
    and its holes are joined too."""
    grid = make_volume((40, 40, 12), (1.0, 1.0, 3.0), "lps")
    center = (-12.0, 25.0, 40.0)
    gtv = Volume(ellipsoid_mask(grid, center, (18.0, 18.0, 15.0)), grid.affine)
    centers = np.array(
        [[center[0] - 7, center[1], center[2]], [center[0] + 7, center[1], center[2]]]
    )
    plan = Plan(
        PlanParameters(diameter_mm=8.0, min_spacing_mm=10.0, gtv_margin_mm=0.5),
        gtv=gtv,
        lattice_target=gtv,
        centers_ras_mm=centers,
        depth_mm=np.array([10.0, 10.0]),
        oar_distance_mm={},
        search={},
    )
    series = derived_series(grid, patient_id="K")
    holes = {r.name: r for r in plan_rois(plan, series.grid, gtv=True)}
    keyhole = {r.name: r for r in plan_rois(plan, series.grid, valley_contours="keyhole")}
    n_holes = len(holes["LATTICE_VALLEY"].contours)
    n_key = len(keyhole["LATTICE_VALLEY"].contours)
    assert n_key < n_holes and n_key == len(holes["GTV"].contours)
    with pytest.raises(ValueError, match="valley_contours"):
        plan_rois(plan, series.grid, valley_contours="xor")


def test_batch_passes_the_dicom_options(tmp_path, capsys):
    """--valley-contours and --patient-position as batch defaults, and as a manifest column."""
    import csv

    import pydicom

    from lattice_cli.main import main

    manifest = tmp_path / "cohort.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["case", "ct", "gtv", "patient_position"])
        writer.writeheader()
        writer.writerow(
            {
                "case": "S1",
                "ct": str(SAMPLE / "ct.nii.gz"),
                "gtv": str(SAMPLE / "gtv.nii.gz"),
                "patient_position": "FFS",
            }
        )
    out = tmp_path / "out"
    assert (
        main(
            [
                "batch",
                str(manifest),
                "--out",
                str(out),
                "--workers",
                "1",
                "--no-picture",
                "--mesh-format",
                "none",
                "--valley-contours",
                "keyhole",
            ]
        )
        == 0
    )
    capsys.readouterr()
    plan_dir = out / "S1"
    structures = read_structures(plan_dir / "rtstruct.dcm")
    assert len(structures["LATTICE_VALLEY"]) == len(structures["GTV"])  # keyhole
    ct = pydicom.dcmread(sorted((plan_dir / "ct_dicom").iterdir())[0], stop_before_pixels=True)
    assert ct.PatientPosition == "FFS"
