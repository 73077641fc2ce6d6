"""Placement checked against the independent oracles of ``oracles.py``."""

from __future__ import annotations

import numpy as np
import pytest
from oracles import (
    best_random_translation_count,
    check_rules,
    ellipsoid,
    grid,
    oracle_depth,
    world_of,
)
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist

from lattice.planning.placement import plan_vertices
from lattice.planning.rules import Oar
from lattice.volume import Volume

# -- tests -----------------------------------------------------------------------------------

LOBULATED = dict(shape=(46, 42, 30), voxel=(2.0, 2.2, 3.0))


def lobulated_gtv(affine, shape):
    m = ellipsoid(shape, affine, np.array([0.0, 10.0, 20.0]), np.array([34.0, 28.0, 30.0]))
    m |= ellipsoid(shape, affine, np.array([22.0, 26.0, 40.0]), np.array([18.0, 16.0, 20.0]))
    return m


@pytest.mark.parametrize("pattern", ["sc", "bcc", "fcc", "hcp"])
def test_count_at_least_best_of_1500_random_translations(pattern):
    aff = grid(LOBULATED["shape"], LOBULATED["voxel"])
    mask = lobulated_gtv(aff, LOBULATED["shape"])
    kw = dict(s=20.0, d=10.0, margin=3.0)
    plan = plan_vertices(
        Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3, pattern=pattern
    )
    check_rules(plan, mask, aff, **kw)
    best = best_random_translation_count(mask, aff, pattern, **kw)
    assert plan.n_vertices >= best


def test_oar_clearance_holds_and_costs_vertices():
    shape, vox = LOBULATED["shape"], LOBULATED["voxel"]
    aff = grid(shape, vox)
    mask = lobulated_gtv(aff, shape)
    cord = ellipsoid(shape, aff, np.array([0.0, -22.0, 20.0]), np.array([6.0, 6.0, 60.0]))
    cord &= ~mask
    free = plan_vertices(Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3)
    plan = plan_vertices(
        Volume(mask, aff),
        diameter_mm=10,
        min_spacing_mm=20,
        gtv_margin_mm=3,
        oars=[Oar("cord", Volume(cord, aff), 12.0)],
    )
    check_rules(plan, mask, aff, s=20, d=10, margin=3, oars=[(cord, 12.0)])
    assert plan.n_vertices <= free.n_vertices
    assert np.all(plan.oar_distance_mm["cord"] >= 12 + 5 - 1e-9)
    best = best_random_translation_count(
        mask, aff, "hcp", s=20, d=10, margin=3, oars=[(cord, 12.0)]
    )
    assert plan.n_vertices >= best


def test_reported_depth_and_distances_match_oracle():
    aff = grid(LOBULATED["shape"], LOBULATED["voxel"])
    mask = lobulated_gtv(aff, LOBULATED["shape"])
    plan = plan_vertices(Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3)
    c = plan.centers_ras_mm
    np.testing.assert_allclose(plan.depth_mm, oracle_depth(mask, aff, c), atol=1e-9)
    nn = cKDTree(c).query(c, k=2)[0][:, 1]
    np.testing.assert_allclose(plan.nearest_vertex_mm, nn, atol=1e-9)
    ijk = plan.centers_ijk
    np.testing.assert_allclose(ijk @ aff[:3, :3].T + aff[:3, 3], c, atol=1e-9)


def test_vertices_lie_in_the_lattice_target():
    aff = grid(LOBULATED["shape"], LOBULATED["voxel"])
    mask = lobulated_gtv(aff, LOBULATED["shape"])
    plan = plan_vertices(Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3)
    ijk = np.rint(plan.centers_ijk).astype(int)
    assert plan.lattice_target.array[tuple(ijk.T)].all()


def test_sphere_gtv_analytic_bound_on_oblique_grid():
    """Centres of 10 mm vertices with 4 mm margin in a 30 mm-radius sphere lie within 21 mm of
    its centre (plus half a voxel diagonal for the voxelised surface)."""
    shape, vox = (40, 40, 28), (1.8, 1.8, 2.5)
    aff = grid(shape, vox, oblique_deg=25.0, origin=(-20.0, -50.0, -30.0))
    centre = world_of(shape, aff).mean(axis=0)
    mask = ellipsoid(shape, aff, centre, np.array([30.0, 30.0, 30.0]))
    plan = plan_vertices(Volume(mask, aff), diameter_mm=10, min_spacing_mm=16, gtv_margin_mm=4)
    check_rules(plan, mask, aff, s=16, d=10, margin=4)
    half_diag = 0.5 * np.linalg.norm(vox)
    assert np.linalg.norm(plan.centers_ras_mm - centre, axis=1).max() <= 21.0 + half_diag
    assert plan.n_vertices >= 5


@pytest.mark.parametrize("storage", ["flip0", "flip2", "flip01", "flip012"])
def test_world_result_independent_of_storage_order(storage):
    """Flipping array axes keeps the slice axis, so the TPS solid and the plan are the same.
    (Permuting axes changes which planes are slices, hence the solid: see the next test.)"""
    shape, vox = (36, 32, 24), (2.0, 2.5, 3.0)
    aff = grid(shape, vox)
    mask = lobulated_gtv(aff, shape)
    ref = plan_vertices(Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3)

    arr, a = mask, aff.copy()
    for axis in {"flip0": [0], "flip2": [2], "flip01": [0, 1], "flip012": [0, 1, 2]}[storage]:
        arr = np.flip(arr, axis)
        a[:3, 3] = a[:3, 3] + a[:3, axis] * (arr.shape[axis] - 1)
        a[:3, axis] = -a[:3, axis]
    # the stored phantom is the same physical object
    assert np.allclose(
        np.sort(world_of(arr.shape, a)[arr.ravel()], axis=0),
        np.sort(world_of(shape, aff)[mask.ravel()], axis=0),
    )
    other = plan_vertices(
        Volume(np.ascontiguousarray(arr), a), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3
    )
    assert other.n_vertices == ref.n_vertices
    np.testing.assert_allclose(other.centers_ras_mm, ref.centers_ras_mm, atol=1e-6)


def test_permuted_storage_slices_the_gtv_along_another_axis():
    """A permuted array has other slice planes: its TPS solid differs (so may the plan), and
    each plan obeys the rules under its own slicing (checked by the independent checker)."""
    shape, vox = (36, 32, 24), (2.0, 2.5, 3.0)
    aff = grid(shape, vox)
    mask = lobulated_gtv(aff, shape)
    perm = (2, 0, 1)
    arr = np.ascontiguousarray(np.transpose(mask, perm))
    a = np.column_stack([aff[:, perm[0]], aff[:, perm[1]], aff[:, perm[2]], aff[:, 3]])
    for m, affine in ((mask, aff), (arr, a)):
        plan = plan_vertices(Volume(m, affine), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3)
        assert plan.n_vertices >= 5
        check_rules(plan, m, affine, s=20, d=10, margin=3)
    # The same world point is deeper or shallower depending on the slicing.
    probe = world_of(shape, aff)[mask.ravel()][:500]
    d1, d2 = oracle_depth(mask, aff, probe), oracle_depth(arr, a, probe)
    assert np.abs(d1 - d2).max() > 0.1


def test_snap_to_slices_puts_centres_on_slice_planes():
    aff = grid(LOBULATED["shape"], LOBULATED["voxel"])
    mask = lobulated_gtv(aff, LOBULATED["shape"])
    for pattern in ("hcp", "sc"):
        plan = plan_vertices(
            Volume(mask, aff),
            diameter_mm=10,
            min_spacing_mm=20,
            gtv_margin_mm=3,
            pattern=pattern,
            snap_to_slices=True,
        )
        check_rules(plan, mask, aff, s=20, d=10, margin=3)
        k = (np.linalg.solve(aff[:3, :3], (plan.centers_ras_mm - aff[:3, 3]).T))[2]
        np.testing.assert_allclose(k, np.round(k), atol=1e-6)


def test_max_vertices_keeps_at_most_n_and_rules_hold():
    aff = grid(LOBULATED["shape"], LOBULATED["voxel"])
    mask = lobulated_gtv(aff, LOBULATED["shape"])
    full = plan_vertices(Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3)
    assert full.n_vertices > 4
    plan = plan_vertices(
        Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3, max_vertices=4
    )
    assert plan.n_vertices == 4
    check_rules(plan, mask, aff, s=20, d=10, margin=3)


def test_same_inputs_same_plan():
    aff = grid(LOBULATED["shape"], LOBULATED["voxel"])
    mask = lobulated_gtv(aff, LOBULATED["shape"])
    a = plan_vertices(Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3)
    b = plan_vertices(
        Volume(mask.copy(), aff.copy()), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3
    )
    assert np.array_equal(a.centers_ras_mm, b.centers_ras_mm)
    assert a.search == {**b.search, "seconds": a.search["seconds"]}


def test_no_room_gives_empty_plan_with_warning():
    shape, vox = (20, 20, 12), (2.0, 2.0, 3.0)
    aff = grid(shape, vox)
    centre = world_of(shape, aff).mean(axis=0)
    mask = ellipsoid(shape, aff, centre, np.array([9.0, 9.0, 9.0]))
    plan = plan_vertices(Volume(mask, aff), diameter_mm=15, min_spacing_mm=30, gtv_margin_mm=5)
    assert plan.n_vertices == 0
    assert plan.warnings and "room" in plan.warnings[0]
    assert plan.summary()["n_vertices"] == 0


def test_disconnected_pieces_all_receive_vertices():
    shape, vox = (60, 30, 24), (2.0, 2.0, 2.5)
    aff = grid(shape, vox)
    a = ellipsoid(shape, aff, np.array([-15.0, 0.0, 10.0]), np.array([20.0, 20.0, 20.0]))
    b = ellipsoid(shape, aff, np.array([55.0, 0.0, 10.0]), np.array([20.0, 20.0, 20.0]))
    plan = plan_vertices(Volume(a | b, aff), diameter_mm=10, min_spacing_mm=16, gtv_margin_mm=3)
    check_rules(plan, a | b, aff, s=16, d=10, margin=3)
    x = plan.centers_ras_mm[:, 0]
    assert (x < 20).any() and (x > 20).any()


def test_orientation_search_3d_never_worse_than_axial():
    aff = grid(LOBULATED["shape"], LOBULATED["voxel"])
    mask = lobulated_gtv(aff, LOBULATED["shape"])
    axial = plan_vertices(
        Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3, pattern="sc"
    )
    full = plan_vertices(
        Volume(mask, aff),
        diameter_mm=10,
        min_spacing_mm=20,
        gtv_margin_mm=3,
        pattern="sc",
        orientation_search="3d",
        rotation_step_deg=10,
    )
    check_rules(full, mask, aff, s=20, d=10, margin=3)
    assert full.n_vertices >= axial.n_vertices - 1


def test_count_places_exactly_n_further_apart_than_the_minimum():
    aff = grid(LOBULATED["shape"], LOBULATED["voxel"])
    mask = lobulated_gtv(aff, LOBULATED["shape"])
    free = plan_vertices(Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3)
    n = free.n_vertices // 2
    plan = plan_vertices(
        Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3, count=n
    )
    assert plan.n_vertices == n
    spread = pdist(plan.centers_ras_mm).min()
    assert spread > 20.0 + 2.0  # the bisection moved them apart
    check_rules(plan, mask, aff, s=spread, d=10, margin=3)


def test_impossible_count_or_min_vertices_is_a_parameter_error():
    from lattice.errors import ParameterError

    aff = grid(LOBULATED["shape"], LOBULATED["voxel"])
    mask = lobulated_gtv(aff, LOBULATED["shape"])
    with pytest.raises(ParameterError, match="count"):
        plan_vertices(
            Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3, count=500
        )
    # The library names its parameter (min_vertices); the command line renders it as
    # --min-vertices (issue 13: no CLI flag names in library messages).
    with pytest.raises(ParameterError, match="min.vertices") as caught:
        plan_vertices(
            Volume(mask, aff), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3, min_vertices=500
        )
    assert caught.value.parameter == "min_vertices"
    assert "--min-vertices" in caught.value.render({"min_vertices": "--min-vertices"})


def test_pose_tie_break_equals_the_sorted_room_of_the_kept_vertices():
    """search._tie against the full sort it replaced: the kept-th largest allowed slack."""
    from lattice.planning.search import _tie

    rng = np.random.default_rng(5)
    est = rng.normal(size=(300, 40)).astype(np.float32)
    est[:, ::7] = np.round(est[:, ::7], 1)  # ties
    allowed = rng.random((300, 40)) < rng.random((300, 1))
    for cap in (None, 0, 1, 5, 40):
        kept = allowed.sum(axis=1) if cap is None else np.minimum(allowed.sum(axis=1), cap)
        room = -np.sort(-np.where(allowed, est, -np.inf), axis=1)
        want = np.where(kept > 0, room[np.arange(300), np.maximum(kept - 1, 0)], -np.inf)
        np.testing.assert_array_equal(_tie(allowed, est, kept, allowed.sum(axis=1)), want)


@pytest.mark.parametrize("flip", [False, True])
def test_covering_radius_equals_brute_force_on_blocks_that_do_not_divide_the_box(flip):
    """plan.covering_radius_mm's two-stage block bound against every GTV voxel's distance,
    on an anisotropic grid (flipped and permuted, or oblique), box sides not multiples of
    the block edge, and centres both inside and far outside the GTV."""
    from conftest import rotation_about_axis
    from scipy.spatial.distance import cdist

    from lattice.planning.covering import COVERING_BLOCK_VOX, covering_radius_mm

    rng = np.random.default_rng(7 + flip)
    shape = (23, 18, 13)
    lin = (
        np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
        if flip
        else rotation_about_axis([1.0, 2.0, 3.0], 25.0)
    ) @ np.diag([0.9, 1.3, 2.7])
    aff = np.eye(4)
    aff[:3, :3], aff[:3, 3] = lin, [10.0, -4.0, 30.0]
    ijk = np.argwhere(np.ones(shape, dtype=bool))
    mask = (rng.random(shape) < 0.7) & (np.linalg.norm((ijk - 9) / [9, 8, 7], axis=1) < 1).reshape(
        shape
    )
    assert any(n % COVERING_BLOCK_VOX for n in np.ptp(np.array(np.nonzero(mask)), axis=1) + 1)
    ras = ijk @ lin.T + aff[:3, 3]
    for centres in (ras[rng.choice(len(ras), 5)], ras[rng.choice(len(ras), 1)] + 80.0):
        brute = cdist(ras[mask.ravel()], centres).min(axis=1).max()
        assert covering_radius_mm(Volume(mask, aff), centres) == brute


@pytest.mark.parametrize("clearance_mm", [0.0, 5.0])
def test_an_oar_covering_the_gtv_is_named_as_the_reason(make_affine, ellipsoid_mask, clearance_mm):
    """An OAR that holds the whole GTV (the GTV's own file given as an OAR) left the advice
    "use a smaller diameter, margin or OAR clearance", which no value could follow."""
    shape, vox = (50, 50, 30), (1.0, 1.0, 2.0)
    affine = make_affine(shape, vox, "lps")
    centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
    gtv = Volume(ellipsoid_mask((shape, affine), centre, 20.0), affine)
    alone = plan_vertices(gtv, diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=2)
    assert alone.n_vertices > 0
    covered = plan_vertices(
        gtv, oars=[Oar("gtv copy", gtv, clearance_mm)], diameter_mm=10, min_spacing_mm=20,
        gtv_margin_mm=2,
    )  # fmt: skip
    assert covered.n_vertices == 0
    assert covered.warnings[0].startswith(
        "no room for a vertex: OAR 'gtv copy' covers every point of the GTV 7 mm deep "
        "(100 % of the GTV's voxels), so no OAR clearance lets a vertex in"
    ), covered.warnings


def test_an_empty_shell_plan_names_the_shell_width(make_affine, ellipsoid_mask):
    """Shell mode: the advice was to change the diameter, margin or clearance, never the shell
    width, even where the shell is what leaves no room."""
    shape, vox = (50, 50, 30), (1.0, 1.0, 2.0)
    affine = make_affine(shape, vox, "lps")
    centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
    gtv = Volume(ellipsoid_mask((shape, affine), centre, 20.0), affine)
    core = ellipsoid_mask((shape, affine), centre, 6.0)
    # An OAR over the GTV's outer 14 mm: the shell (centres 7 to 12 mm deep) lies inside it,
    # while the centre (6 mm from it) is clear of it.
    ring = Oar("ring", Volume(gtv.array & ~core, affine), 0.0)
    keywords = {"diameter_mm": 10, "min_spacing_mm": 20, "gtv_margin_mm": 2}
    assert plan_vertices(gtv, oars=[ring], **keywords).n_vertices > 0  # fill: the centre
    shell = plan_vertices(gtv, oars=[ring], mode="shell", shell_width_mm=5, **keywords)
    assert shell.n_vertices == 0
    assert shell.warnings[0] == (
        "no room for a vertex: no point of the shell of centres 7 to 12 mm deep (width 5 mm) "
        "is clear of every OAR; use a wider shell width, or a smaller diameter, margin or OAR "
        "clearance"
    )
    # No OAR, a shell 1 um wide and lattice points 60 mm apart: the search finds no pose
    # with a point in it.
    thin = plan_vertices(
        gtv, mode="shell", shell_width_mm=0.001, **{**keywords, "min_spacing_mm": 60}
    )
    assert thin.n_vertices == 0
    assert (
        "or outside the shell of centres 7 to 7.001 mm deep (width 0.001 mm); use a "
        "wider shell width, or a smaller" in thin.warnings[0]
    )
