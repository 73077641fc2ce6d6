"""The regular lattices of lattice/geometry/patterns.py against brute force and textbook values.

Every check is computed independently of the module's own bookkeeping: nearest-neighbour
distances and neighbour shells by brute force (``pdist`` over a generated block of points),
densities by counting points in a large ball and from the analytic volume per vertex,
symmetries and primitive translations by matching point sets with a KD-tree.

Spacing S is the true nearest-neighbour distance for every pattern (docs/patterns.md); for
BCC the cube edge is therefore a = 2 S / sqrt(3) (S is half the body diagonal), and the
volume per vertex is a^3 / 2 = 4 S^3 / (3 sqrt 3).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist
from scipy.spatial.transform import Rotation

from lattice.errors import ParameterError
from lattice.geometry.patterns import PATTERNS, SPACING_GUARD, make_pattern

S = 30.0
#: Matching tolerance of point sets (mm): the cells are built in float64 from S ~ 30 mm.
MATCH_TOL_MM = 1e-7

#: Volume per vertex (mm^3 / S^3), derived by hand for S = nearest-neighbour distance:
#: SC: cube edge S; BCC: 2 points in a cube of edge 2S/sqrt(3); FCC: 4 points in a cube of
#: edge sqrt(2) S; HCP: 2 points in a hexagonal prism of base sqrt(3)/2 S^2, height
#: sqrt(8/3) S.
VOLUME_PER_VERTEX = {
    "sc": 1.0,
    "bcc": 4.0 / (3.0 * np.sqrt(3.0)),
    "fcc": 1.0 / np.sqrt(2.0),
    "hcp": 1.0 / np.sqrt(2.0),
}
#: First two neighbour shells: (distance / S, number of neighbours), textbook values.
SHELLS = {
    "sc": [(1.0, 6), (np.sqrt(2.0), 12)],
    "bcc": [(1.0, 8), (2.0 / np.sqrt(3.0), 6)],
    "fcc": [(1.0, 12), (np.sqrt(2.0), 6)],
    "hcp": [(1.0, 12), (np.sqrt(2.0), 6)],
}
#: Distance between adjacent point layers normal to z (/ S) in the canonical orientation:
#: cubic (100) layers for SC, BCC and FCC, close-packed layers for HCP.
LAYER_STEP = {
    "sc": 1.0,
    "bcc": 1.0 / np.sqrt(3.0),
    "fcc": 1.0 / np.sqrt(2.0),
    "hcp": np.sqrt(2.0 / 3.0),
}
#: Smallest rotation about z mapping the lattice onto a translate of itself (deg).
SYMMETRY_DEG = {"sc": 90.0, "bcc": 90.0, "fcc": 90.0, "hcp": 60.0}


def block(pattern, radius_mm):
    """Lattice points within ``radius_mm`` of the origin, from the cell and motif."""
    cell, motif = pattern.cell_mm, pattern.motif_frac
    n = int(np.ceil(radius_mm / min(np.linalg.norm(cell, axis=0)) * 2)) + 2
    r = np.arange(-n, n + 1)
    idx = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    pts = (idx[:, None, :] + motif[None]).reshape(-1, 3) @ cell.T
    return pts[np.linalg.norm(pts, axis=1) <= radius_mm]


def maps_onto_itself(points, moved, radius_mm):
    """Whether every moved point well inside the ball lands on a point of ``points``."""
    inner = moved[np.linalg.norm(moved, axis=1) <= radius_mm - 2 * S]
    dist, _ = cKDTree(points).query(inner)
    return len(inner) > 50 and bool(np.all(dist < MATCH_TOL_MM))


def test_the_patterns_are_the_four_with_analytic_values():
    # A new pattern must get its analytic values in the tables above.
    assert set(PATTERNS) == set(VOLUME_PER_VERTEX) == {"sc", "bcc", "fcc", "hcp"}


@pytest.mark.parametrize("name", PATTERNS)
def test_nearest_neighbour_distance_is_the_spacing(name):
    pts = block(make_pattern(name, min_spacing_mm=S), 4 * S)
    d = pdist(pts)
    # The cells carry a relative guard of SPACING_GUARD: never closer, at most that further.
    assert d.min() >= S
    assert d.min() <= S * (1 + 10 * SPACING_GUARD)


@pytest.mark.parametrize("name", PATTERNS)
def test_points_in_ball_is_the_brute_force_block(name):
    p = make_pattern(name, min_spacing_mm=S)
    got = p.points_in_ball(2.5 * S)
    want = block(p, 2.5 * S)
    assert len(got) == len(want)
    dist, _ = cKDTree(want).query(got)
    assert np.all(dist < MATCH_TOL_MM)


@pytest.mark.parametrize("name", PATTERNS)
def test_neighbour_shells_match_the_textbook(name):
    pts = make_pattern(name, min_spacing_mm=S).points_in_ball(3 * S)
    # The origin is a lattice point: its neighbours' distances, brute force.
    assert np.min(np.linalg.norm(pts, axis=1)) < MATCH_TOL_MM
    r = np.linalg.norm(pts, axis=1) / S
    r = r[r > 1e-9]
    for distance, count in SHELLS[name]:
        assert np.count_nonzero(np.abs(r - distance) < 1e-6) == count
    # Nothing between the first two shells.
    first, second = SHELLS[name][0][0], SHELLS[name][1][0]
    assert not np.any((r > first + 1e-6) & (r < second - 1e-6))


@pytest.mark.parametrize("name", PATTERNS)
def test_density_is_the_analytic_volume_per_vertex(name):
    p = make_pattern(name, min_spacing_mm=S)
    s = S * (1 + SPACING_GUARD)
    assert p.density_per_mm3 == pytest.approx(1.0 / (VOLUME_PER_VERTEX[name] * s**3), rel=1e-12)
    # Counted: points in a ball of radius R over its volume (surface effects ~ 3 S / R).
    radius = 10 * S
    counted = len(block(p, radius)) / (4.0 / 3.0 * np.pi * radius**3)
    assert counted == pytest.approx(1.0 / (VOLUME_PER_VERTEX[name] * S**3), rel=0.02)


@pytest.mark.parametrize("name", PATTERNS)
def test_primitive_cell_holds_the_analytic_volume_and_generates_the_translations(name):
    p = make_pattern(name, min_spacing_mm=S)
    prim = p.primitive_mm
    s = S * (1 + SPACING_GUARD)
    per_cell = 2 if name == "hcp" else 1  # hcp is not a Bravais lattice: 2 points per cell
    assert abs(np.linalg.det(prim)) == pytest.approx(
        per_cell * VOLUME_PER_VERTEX[name] * s**3, rel=1e-12
    )
    radius = 5 * S
    pts = block(p, radius)
    for v in prim.T:
        assert maps_onto_itself(pts, pts + v, radius)
    # Every cell vector is an integer combination of the primitive vectors.
    coeff = np.linalg.solve(prim, p.cell_mm)
    np.testing.assert_allclose(coeff, np.rint(coeff), atol=1e-9)
    # Motif points that translate the lattice onto itself: every one in the cubic BCC and
    # FCC cells (2 and 4 primitive cells each), none but the origin in HCP.
    motif = p.motif_mm[1:]
    translations = [m for m in motif if maps_onto_itself(pts, pts + m, radius)]
    assert len(translations) == len(p.motif_frac) // per_cell - 1


@pytest.mark.parametrize("name", PATTERNS)
def test_layers_normal_to_z_are_the_layer_step_apart(name):
    p = make_pattern(name, min_spacing_mm=S)
    z = np.unique(np.round(p.points_in_ball(4 * S)[:, 2], 6))
    steps = np.diff(z)
    np.testing.assert_allclose(steps, LAYER_STEP[name] * S, rtol=1e-6)
    assert p.layer_step_mm == pytest.approx(LAYER_STEP[name] * S, rel=1e-8)


@pytest.mark.parametrize("name", PATTERNS)
def test_rotation_by_the_symmetry_angle_maps_the_lattice_onto_a_translate(name):
    p = make_pattern(name, min_spacing_mm=S)
    assert p.symmetry_deg == SYMMETRY_DEG[name]
    radius = 5 * S
    pts = block(p, radius)

    def is_symmetry(angle_deg):
        rotated = Rotation.from_euler("z", angle_deg, degrees=True).apply(pts)
        # The rotated origin is the origin, so the translation is a lattice point: one of the
        # motif points, modulo the cell.
        return any(maps_onto_itself(pts, rotated + m, radius) for m in p.motif_mm)

    assert is_symmetry(p.symmetry_deg)
    assert not is_symmetry(p.symmetry_deg / 2)
    assert not is_symmetry(p.symmetry_deg / 3)


def test_hcp_stacks_close_packed_layers_abab():
    p = make_pattern("hcp", min_spacing_mm=S)
    pts = p.points_in_ball(4 * S)
    step = p.layer_step_mm
    layers = [pts[np.abs(pts[:, 2] - k * step) < 1e-6][:, :2] for k in range(3)]
    # Each layer is a triangular lattice of spacing S ...
    for xy in layers:
        assert pdist(xy).min() == pytest.approx(S, rel=1e-8)
    # ... layer 2 sits exactly above layer 0 (ABAB, not ABC as in FCC's close-packed layers).
    d02, _ = cKDTree(layers[0]).query(layers[2][np.linalg.norm(layers[2], axis=1) < 2 * S])
    d01, _ = cKDTree(layers[0]).query(layers[1][np.linalg.norm(layers[1], axis=1) < 2 * S])
    assert np.all(d02 < MATCH_TOL_MM)
    np.testing.assert_allclose(d01, S / np.sqrt(3.0), rtol=1e-8)


@pytest.mark.parametrize("name", PATTERNS)
@pytest.mark.parametrize("spacing_mm", [0.5, 17.3, 42.43])
def test_every_spacing_scales_the_cell(name, spacing_mm):
    pts = block(make_pattern(name, min_spacing_mm=spacing_mm), 3 * spacing_mm)
    assert pdist(pts).min() == pytest.approx(spacing_mm, rel=1e-8)
    assert pdist(pts).min() >= spacing_mm


@pytest.mark.parametrize("name", PATTERNS)
def test_stretching_along_z_never_brings_points_closer(name):
    p = make_pattern(name, min_spacing_mm=S)
    stretched = p.stretched_z(1.37)
    pts = block(stretched, 4 * S)
    assert pdist(pts).min() >= S
    z = np.unique(np.round(pts[:, 2], 6))
    np.testing.assert_allclose(np.diff(z), 1.37 * LAYER_STEP[name] * S, rtol=1e-6)
    assert stretched.layer_step_mm == pytest.approx(1.37 * p.layer_step_mm)
    assert stretched.density_per_mm3 == pytest.approx(p.density_per_mm3 / 1.37)
    with pytest.raises(ValueError):
        p.stretched_z(0.9)


def test_unknown_pattern_lists_the_valid_ones():
    with pytest.raises(ParameterError) as info:
        make_pattern("diamond", min_spacing_mm=S)
    message = str(info.value)
    assert "'diamond'" in message
    for name in PATTERNS:
        assert name in message


@pytest.mark.parametrize("spacing_mm", [0.0, -3.0, np.nan, np.inf])
def test_spacing_must_be_a_positive_finite_number(spacing_mm):
    with pytest.raises(ParameterError):
        make_pattern("hcp", min_spacing_mm=spacing_mm)
