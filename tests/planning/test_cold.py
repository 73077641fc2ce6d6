"""Tests of cold (valley) sphere placement: analytic lattices, brute-force oracles, invariants."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.spatial import Delaunay
from scipy.spatial.distance import cdist, pdist
from scipy.spatial.transform import Rotation

from lattice.planning.cold import (
    DEFAULT_COLD_GAP_MM,
    ColdSites,
    cold_sites,
    cold_sphere_entries,
)

SPACING_MM = 30.0
#: Analytic sites and returned sites are the same points up to rounding; 0.1 mm is the
#: acceptance of issue 14.
SITE_TOL_MM = 0.1

ROTATION = Rotation.from_euler("zyx", [20.0, 35.0, -50.0], degrees=True)
OFFSET_MM = np.array([3.3, -7.1, 12.9])


# --- analytic phantoms -------------------------------------------------------------------


def _periodic(cell: np.ndarray, basis_frac: np.ndarray, radius_mm: float) -> np.ndarray:
    """Points cell.T @ (n + b) for integer n, within ``radius_mm`` of the origin, (k, 3)."""
    reach = int(np.ceil(radius_mm / np.min(np.linalg.norm(cell, axis=1)))) + 2
    ints = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)), dtype=float)
    frac = (ints[:, None, :] + basis_frac[None, :, :]).reshape(-1, 3)
    points = frac @ cell
    return points[np.linalg.norm(points, axis=1) <= radius_mm]


def _pattern(name: str, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(cell, peak basis, hole basis, hole-to-peak distance) for nearest-neighbour s.

    The holes are the largest empty spheres: SC cube centres; BCC tetrahedral sites
    (a/2, a/4, 0) and their images on every cube face, a = 2s/sqrt(3), at a*sqrt(5)/4 from
    four peaks (two corners, two body centres), the BCC octahedral sites at a/2 being
    saddles, not maxima; FCC octahedral sites (body centre, edge midpoints), a = s*sqrt(2);
    HCP octahedral sites above the C hollows, half way between the A and B layers.
    """
    if name == "sc":
        return np.eye(3) * s, np.zeros((1, 3)), np.full((1, 3), 0.5), s * np.sqrt(3) / 2
    if name == "bcc":
        a = 2 * s / np.sqrt(3)
        in_face = [(0.25, 0.5), (0.75, 0.5), (0.5, 0.25), (0.5, 0.75)]
        holes = []
        for axis in range(3):
            others = [k for k in range(3) if k != axis]
            for u, v in in_face:
                site = np.zeros(3)
                site[others] = (u, v)
                holes.append(site)
        peaks = np.array([[0, 0, 0], [0.5, 0.5, 0.5]])
        return np.eye(3) * a, peaks, np.array(holes), a * np.sqrt(5) / 4
    if name == "fcc":
        a = s * np.sqrt(2)
        peaks = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
        holes = np.array([[0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])
        return np.eye(3) * a, peaks, holes, a / 2
    if name == "hcp":
        h = s * np.sqrt(2.0 / 3.0)
        cell = np.array([[s, 0, 0], [s / 2, s * np.sqrt(3) / 2, 0], [0, 0, 2 * h]])
        peaks = np.array([[0, 0, 0], [1 / 3, 1 / 3, 0.5]])
        holes = np.array([[2 / 3, 2 / 3, 0.25], [2 / 3, 2 / 3, 0.75]])
        return cell, peaks, holes, s / np.sqrt(2)
    raise AssertionError(name)


def _lattice(
    name: str, radius_mm: float, rotated: bool, spacing_mm: float = SPACING_MM
) -> tuple[np.ndarray, np.ndarray, float]:
    cell, peak_basis, hole_basis, hole_mm = _pattern(name, spacing_mm)
    peaks = _periodic(cell, peak_basis, radius_mm)
    holes = _periodic(cell, hole_basis, radius_mm + SPACING_MM)
    if rotated:
        peaks = ROTATION.apply(peaks) + OFFSET_MM
        holes = ROTATION.apply(holes) + OFFSET_MM
    return peaks, holes, hole_mm


def _box_slack(half_width_mm: float, margin_mm: float, cold_radius_mm: float):
    def slack(points: np.ndarray) -> np.ndarray:
        return np.min(half_width_mm - np.abs(points), axis=1) - margin_mm - cold_radius_mm

    return slack


def _ball_slack(radius_mm: float, margin_mm: float, cold_radius_mm: float):
    def slack(points: np.ndarray) -> np.ndarray:
        return radius_mm - np.linalg.norm(points, axis=1) - margin_mm - cold_radius_mm

    return slack


def _random_packing(rng: np.random.Generator, *, n_tries: int, radius_mm: float, s_mm: float):
    """Dart-throwing packing of centres >= s_mm apart in a ball (a `max`-like arrangement)."""
    kept: list[np.ndarray] = []
    for _ in range(n_tries):
        p = rng.uniform(-radius_mm, radius_mm, 3)
        if np.linalg.norm(p) > radius_mm:
            continue
        if all(np.linalg.norm(p - q) >= s_mm for q in kept):
            kept.append(p)
    return np.array(kept)


def _nearest_peak_mm(points: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    return cdist(points, peaks).min(axis=1)


# --- analytic: perfect lattices ----------------------------------------------------------


@pytest.mark.parametrize("rotated", [False, True], ids=["aligned", "rotated"])
@pytest.mark.parametrize("pattern", ["sc", "bcc", "fcc", "hcp"])
def test_perfect_lattice_sites_are_the_interstitial_sites(pattern: str, rotated: bool) -> None:
    # D 6 mm, gap 13 mm: a hole needs >= 19 mm to the nearest peak, which keeps SC (26.0),
    # BCC tetrahedral (19.4) and FCC/HCP octahedral (21.2) holes and drops the FCC/HCP
    # tetrahedral ones (18.4); 12 mm spacing is below every kept hole-to-hole distance
    # (BCC tetrahedral 12.25 mm), so thinning removes nothing.
    radius_mm = 110.0
    peaks, holes, hole_mm = _lattice(pattern, radius_mm, rotated)
    centre = OFFSET_MM if rotated else np.zeros(3)
    sites = cold_sites(
        peaks,
        peak_diameter_mm=6.0,
        cold_gap_mm=13.0,
        min_spacing_mm=12.0,
        slack_fn=_box_slack(500.0, 5.0, 3.0),
    )
    window_mm = radius_mm - 1.5 * SPACING_MM
    found = sites.centers_ras_mm
    for a, b, label in ((found, holes, "returned"), (holes, found, "analytic")):
        inner = a[np.linalg.norm(a - centre, axis=1) < window_mm]
        assert inner.shape[0] >= 10, label
        assert cdist(inner, b).min(axis=1).max() < SITE_TOL_MM, label
    inner = np.linalg.norm(sites.centers_ras_mm - centre, axis=1) < window_mm
    np.testing.assert_allclose(sites.nearest_peak_mm[inner], hole_mm, atol=1e-6)


@pytest.mark.parametrize("pattern", ["fcc", "hcp"])
def test_default_gap_keeps_octahedral_and_drops_tetrahedral_holes(pattern: str) -> None:
    # The usual D 15 mm, S 30 mm, cold D = D: octahedral holes leave 6.2 mm, tetrahedral 3.4.
    peaks, holes, hole_mm = _lattice(pattern, 100.0, rotated=False)
    sites = cold_sites(
        peaks, peak_diameter_mm=15.0, min_spacing_mm=15.0, slack_fn=_box_slack(500.0, 5.0, 7.5)
    )
    assert sites.gap_mm == DEFAULT_COLD_GAP_MM
    assert sites.diameter_mm == 15.0
    assert len(sites) > 10
    assert cdist(sites.centers_ras_mm, holes).min(axis=1).max() < SITE_TOL_MM
    np.testing.assert_allclose(sites.nearest_peak_mm, hole_mm, atol=1e-6)


def test_cold_spacing_equal_to_peak_spacing_keeps_fcc_and_halves_hcp_columns() -> None:
    # The planner builds lattices at S * (1 + 1e-9) (patterns.SPACING_GUARD), so FCC
    # octahedral holes, exactly S apart, all survive min_spacing_mm = S; HCP octahedral
    # holes are S*sqrt(2/3) = 24.5 mm apart along c, so every other one in a column goes.
    s_guarded = SPACING_MM * (1 + 1e-9)
    common = dict(
        peak_diameter_mm=15.0, min_spacing_mm=SPACING_MM, slack_fn=_box_slack(500.0, 5.0, 7.5)
    )
    peaks, holes, _ = _lattice("fcc", 100.0, rotated=True, spacing_mm=s_guarded)
    found = cold_sites(peaks, **common).centers_ras_mm
    inner = holes[np.linalg.norm(holes - OFFSET_MM, axis=1) < 100.0 - 1.5 * SPACING_MM]
    assert cdist(inner, found).min(axis=1).max() < SITE_TOL_MM
    peaks, holes, _ = _lattice("hcp", 100.0, rotated=True, spacing_mm=s_guarded)
    thinned = cold_sites(peaks, **common).centers_ras_mm
    everything = cold_sites(peaks, **{**common, "min_spacing_mm": 15.0}).centers_ras_mm
    assert pdist(thinned).min() >= SPACING_MM
    assert 0.4 * len(everything) <= len(thinned) <= 0.6 * len(everything)
    assert cdist(thinned, holes).min(axis=1).max() < SITE_TOL_MM


def test_bcc_holes_are_too_small_for_default_sizes() -> None:
    # BCC tetrahedral holes leave 19.4 - 15 = 4.4 mm < 5 mm at D 15 mm, S 30 mm.
    peaks, _, _ = _lattice("bcc", 90.0, rotated=False)
    sites = cold_sites(
        peaks, peak_diameter_mm=15.0, min_spacing_mm=15.0, slack_fn=_box_slack(500.0, 5.0, 7.5)
    )
    assert len(sites) == 0
    assert sites.centers_ras_mm.shape == (0, 3)


# --- oracle and invariants: irregular packings -------------------------------------------


def _brute_force_local_maxima(peaks: np.ndarray) -> np.ndarray:
    """Empty circumspheres of every 4 peaks whose centre is in the hull of its nearest peaks."""
    found = []
    for quad in itertools.combinations(range(peaks.shape[0]), 4):
        p = peaks[list(quad)]
        edges = p[1:] - p[0]
        if abs(np.linalg.det(edges)) < 1e-6:
            continue
        c = p[0] + np.linalg.solve(edges, 0.5 * np.sum(edges**2, axis=1))
        d = np.linalg.norm(peaks - c, axis=1)
        r = np.linalg.norm(p[0] - c)
        if d.min() < r - 1e-7:
            continue
        nearest = peaks[d <= r + 1e-7]
        # c in conv(nearest): lambda >= 0, sum lambda = 1, nearest.T @ lambda = c
        a_eq = np.vstack([nearest.T, np.ones(nearest.shape[0])])
        lp = linprog(np.zeros(nearest.shape[0]), A_eq=a_eq, b_eq=np.append(c, 1.0))
        if lp.status == 0:
            found.append(c)
    return np.unique(np.round(np.array(found), 6), axis=0)


def test_unfiltered_sites_equal_brute_force_local_maxima() -> None:
    rng = np.random.default_rng(7)
    peaks = _random_packing(rng, n_tries=400, radius_mm=35.0, s_mm=21.0)
    assert 10 <= peaks.shape[0] <= 20
    sites = cold_sites(
        peaks,
        peak_diameter_mm=1e-3,
        cold_diameter_mm=1e-3,
        cold_gap_mm=0.0,
        min_spacing_mm=0.0,
        slack_fn=lambda x: np.ones(x.shape[0]),
    )
    expected = _brute_force_local_maxima(peaks)
    assert expected.shape[0] >= 1
    assert sites.centers_ras_mm.shape == expected.shape
    assert cdist(sites.centers_ras_mm, expected).min(axis=1).max() < 1e-4
    assert cdist(expected, sites.centers_ras_mm).min(axis=1).max() < 1e-4


@pytest.fixture(scope="module")
def irregular_case():
    rng = np.random.default_rng(2026)
    gtv_radius_mm, margin_mm, peak_d, cold_d = 60.0, 5.0, 8.0, 8.0
    peaks = _random_packing(
        rng, n_tries=3000, radius_mm=gtv_radius_mm - margin_mm - peak_d / 2, s_mm=20.0
    )
    kwargs = dict(
        peak_diameter_mm=peak_d,
        cold_diameter_mm=cold_d,
        min_spacing_mm=12.0,
        slack_fn=_ball_slack(gtv_radius_mm, margin_mm, cold_d / 2),
    )
    return peaks, kwargs, cold_sites(peaks, **kwargs)


def test_every_site_keeps_gap_spacing_and_margin(irregular_case) -> None:
    peaks, kwargs, sites = irregular_case
    centres = sites.centers_ras_mm
    assert len(sites) >= 5
    # brute force over every peak, not the k-d tree the module uses
    gaps = cdist(centres, peaks) - kwargs["peak_diameter_mm"] / 2 - sites.diameter_mm / 2
    assert gaps.min() >= DEFAULT_COLD_GAP_MM
    assert pdist(centres).min() >= kwargs["min_spacing_mm"]
    depth = 60.0 - np.linalg.norm(centres, axis=1)  # independent of the slack callback
    assert depth.min() >= 5.0 + sites.diameter_mm / 2
    np.testing.assert_allclose(sites.nearest_peak_mm, _nearest_peak_mm(centres, peaks))
    assert np.all(np.diff(sites.nearest_peak_mm) <= 1e-9)


def test_irregular_sites_are_local_maxima_of_nearest_peak_distance(irregular_case) -> None:
    peaks, _, sites = irregular_case
    directions = np.random.default_rng(1).normal(size=(500, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    for centre, depth in zip(sites.centers_ras_mm, sites.nearest_peak_mm):
        for step_mm in (0.01, 0.3):
            moved = _nearest_peak_mm(centre + step_mm * directions, peaks)
            # a maximum may be flat to second order along a face: |step|^2 / depth
            assert moved.max() <= depth + step_mm**2 / depth + 1e-9


def test_sites_lie_inside_the_hull_of_the_peaks(irregular_case) -> None:
    peaks, _, sites = irregular_case
    assert np.all(Delaunay(peaks).find_simplex(sites.centers_ras_mm) >= 0)


def test_thinning_keeps_the_deepest_hole_first(irregular_case) -> None:
    peaks, kwargs, _ = irregular_case
    loose = cold_sites(peaks, **{**kwargs, "min_spacing_mm": 0.0})
    tight = cold_sites(peaks, **{**kwargs, "min_spacing_mm": 40.0})
    assert len(tight) < len(loose)
    np.testing.assert_allclose(tight.centers_ras_mm[0], loose.centers_ras_mm[0])
    assert pdist(tight.centers_ras_mm).min() >= 40.0
    # greedy: every dropped site is closer than the spacing to a deeper kept one
    kept = tight.centers_ras_mm
    for centre, depth in zip(loose.centers_ras_mm, loose.nearest_peak_mm):
        d = np.linalg.norm(kept - centre, axis=1)
        if d.min() > 1e-9:
            assert np.any((d < 40.0) & (tight.nearest_peak_mm >= depth - 1e-9))


def test_result_is_deterministic_and_independent_of_peak_order(irregular_case) -> None:
    peaks, kwargs, sites = irregular_case
    again = cold_sites(peaks, **kwargs)
    np.testing.assert_array_equal(again.centers_ras_mm, sites.centers_ras_mm)
    shuffled = peaks[np.random.default_rng(3).permutation(peaks.shape[0])]
    other = cold_sites(shuffled, **kwargs)
    np.testing.assert_allclose(other.centers_ras_mm, sites.centers_ras_mm, atol=1e-9)
    np.testing.assert_allclose(other.nearest_peak_mm, sites.nearest_peak_mm, atol=1e-9)


def test_inputs_are_not_mutated(irregular_case) -> None:
    peaks, kwargs, _ = irregular_case
    before = peaks.copy()

    def scribbling_slack(points: np.ndarray) -> np.ndarray:
        out = kwargs["slack_fn"](points)
        points[:] = 0.0
        return out

    cold_sites(peaks, **{**kwargs, "slack_fn": scribbling_slack})
    np.testing.assert_array_equal(peaks, before)


def test_slack_rejects_sites_outside_the_target() -> None:
    peaks, _, _ = _lattice("sc", 110.0, rotated=False)
    common = dict(peak_diameter_mm=6.0, cold_gap_mm=5.0, min_spacing_mm=12.0)
    everywhere = cold_sites(peaks, slack_fn=_box_slack(500.0, 5.0, 3.0), **common)
    small = cold_sites(peaks, slack_fn=_box_slack(40.0, 5.0, 3.0), **common)
    assert 0 < len(small) < len(everywhere)
    assert np.abs(small.centers_ras_mm).max() <= 40.0 - 5.0 - 3.0
    # 40 - 8 = 32 mm: the cube centres at +-15 mm (8 of them) pass, those at 45 mm do not
    assert len(small) == 8


# --- degenerate inputs and errors --------------------------------------------------------


@pytest.mark.parametrize(
    "peaks",
    [
        np.zeros((0, 3)),
        np.array([[0.0, 0, 0], [30, 0, 0], [0, 30, 0]]),
        np.array([[x, y, 0.0] for x in (0, 30, 60) for y in (0, 30, 60)]),
    ],
    ids=["none", "three", "one-plane"],
)
def test_arrangements_without_holes_give_no_sites(peaks: np.ndarray) -> None:
    sites = cold_sites(
        peaks, peak_diameter_mm=6.0, min_spacing_mm=10.0, slack_fn=lambda x: np.ones(len(x))
    )
    assert isinstance(sites, ColdSites)
    assert sites.centers_ras_mm.shape == (0, 3)
    assert sites.nearest_peak_mm.shape == (0,)


def test_regular_tetrahedron_has_its_centre_as_the_hole() -> None:
    peaks = np.array([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) * 20.0
    sites = cold_sites(
        peaks, peak_diameter_mm=6.0, min_spacing_mm=10.0, slack_fn=lambda x: np.ones(len(x))
    )
    np.testing.assert_allclose(sites.centers_ras_mm, [[0.0, 0.0, 0.0]], atol=1e-9)
    np.testing.assert_allclose(sites.nearest_peak_mm, [20.0 * np.sqrt(3)])


@pytest.mark.parametrize("n_peaks", [12, 30, 60])
def test_shell_of_peaks_has_its_centre_as_the_hole(n_peaks: int) -> None:
    # every peak on one sphere: one Delaunay cell, all its tetrahedra share the centre
    i = np.arange(n_peaks) + 0.5
    polar, azimuth = np.arccos(1 - 2 * i / n_peaks), np.pi * (1 + np.sqrt(5)) * i
    unit = np.c_[np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)]
    sites = cold_sites(
        40.0 * unit + OFFSET_MM,
        peak_diameter_mm=15.0,
        min_spacing_mm=0.0,
        slack_fn=lambda x: np.ones(len(x)),
    )
    np.testing.assert_allclose(sites.centers_ras_mm, [OFFSET_MM], atol=1e-6)
    np.testing.assert_allclose(sites.nearest_peak_mm, [40.0], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(peak_diameter_mm=0.0), "peak_diameter_mm"),
        (dict(cold_diameter_mm=-1.0), "cold_diameter_mm"),
        (dict(cold_gap_mm=-0.5), "cold_gap_mm"),
        (dict(min_spacing_mm=float("nan")), "min_spacing_mm"),
    ],
)
def test_bad_sizes_are_rejected(kwargs: dict, match: str) -> None:
    args = dict(peak_diameter_mm=6.0, min_spacing_mm=10.0, slack_fn=lambda x: np.ones(len(x)))
    with pytest.raises(ValueError, match=match):
        cold_sites(np.zeros((5, 3)), **{**args, **kwargs})


def test_bad_peak_array_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        cold_sites(np.zeros((4, 2)), peak_diameter_mm=6.0, min_spacing_mm=1.0, slack_fn=len)
    with pytest.raises(ValueError, match="finite"):
        bad = np.full((5, 3), np.nan)
        cold_sites(bad, peak_diameter_mm=6.0, min_spacing_mm=1.0, slack_fn=len)


def test_slack_of_wrong_shape_is_rejected() -> None:
    peaks, _, _ = _lattice("sc", 70.0, rotated=False)
    with pytest.raises(ValueError, match="slack_fn must return"):
        cold_sites(peaks, peak_diameter_mm=6.0, min_spacing_mm=1.0, slack_fn=lambda x: 1.0)


# --- plan.json records -------------------------------------------------------------------


def test_entries_carry_ids_names_both_frames_and_distances() -> None:
    sites = ColdSites(
        np.array([[10.0, -20.0, 30.0], [1.0, 2.0, 3.0]]), np.array([25.0, 21.0]), 15.0, 5.0
    )
    entries = cold_sphere_entries(sites)
    assert [e["id"] for e in entries] == [1, 2]
    assert [e["name"] for e in entries] == ["COLD_01", "COLD_02"]
    assert entries[0]["center_ras_mm"] == [10.0, -20.0, 30.0]
    assert entries[0]["center_lps_mm"] == [-10.0, 20.0, 30.0]
    assert entries[1]["diameter_mm"] == 15.0
    assert entries[1]["nearest_peak_mm"] == 21.0
    assert all(type(v) is float for e in entries for v in e["center_lps_mm"])


def test_a_bad_size_is_a_parameter_error_naming_the_parameter():
    from lattice.errors import ParameterError

    with pytest.raises(ParameterError, match="cold_gap_mm must be a non-negative") as info:
        cold_sites(
            np.array([[0.0, 0, 0], [20, 0, 0]]),
            peak_diameter_mm=10,
            cold_gap_mm=-1.0,
            min_spacing_mm=20,
            slack_fn=lambda points: np.full(len(points), 10.0),
        )
    assert info.value.parameter == "cold_gap_mm"
    assert info.value.render({"cold_gap_mm": "--cold-gap-mm"}).startswith("--cold-gap-mm")


@pytest.mark.parametrize(
    "kwargs, named",
    [({"cold_diameter_mm": 10.0}, "cold_diameter_mm"), ({"cold_gap_mm": 3.0}, "cold_gap_mm")],
)
def test_cold_sizes_without_cold_spheres_are_refused_by_the_library(
    make_volume, ellipsoid_mask, kwargs, named
):
    from lattice.errors import ParameterError
    from lattice.planning.placement import plan_vertices

    vol = make_volume((40, 40, 40), (2.0, 2.0, 2.0), "identity-like")
    gtv = vol.with_array(ellipsoid_mask(vol, vol.ijk_to_ras(np.array([[20.0, 20, 20]]))[0], 30.0))
    with pytest.raises(ParameterError, match="only applies to cold spheres") as info:
        plan_vertices(gtv, **kwargs)
    assert info.value.parameters == (named, "cold_spheres")
    plan = plan_vertices(gtv, cold_spheres=True, **kwargs)  # with cold spheres: planned
    assert plan.cold is not None
