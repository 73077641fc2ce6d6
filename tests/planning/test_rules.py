"""The rule field of lattice/planning/rules.py against the independent TPS surface checker.

The oracle (``tests/tps_checker.py``, no lattice code) rebuilds each structure's solid from
its marching-squares slice outlines and measures depths and distances exactly over every
outline segment. The rule field decides from voxel tables and settles the uncertain points
with its own exact distances; both must give the same answer at every point that is not
within the float tolerance of a rule boundary.

Phantoms are analytic (ellipsoids and a box defined in world space) on anisotropic grids
whose affines are oblique, or flipped and permuted, so an axis or sign mix-up shows. Test
points are drawn where it is hard: bisected onto the rule boundary from both sides.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rotation_about_axis, voxel_centers_ras_mm
from tps_checker import Solid

from lattice.errors import GridMismatchError, ParameterError
from lattice.planning.rules import Oar, RuleField
from lattice.volume import Volume

VOX_MM = (0.9, 1.2, 2.5)
D_MM, MARGIN_MM = 10.0, 3.0
#: Points whose oracle slack is within this of 0 may go either way (float rounding of two
#: independent exact computations, ~1e-12 mm, with a wide safety factor).
BOUNDARY_TOL_MM = 1e-6
CENTRE_RAS_MM = np.array([-12.0, 25.0, 40.0])


def affine(shape, kind):
    """Anisotropic grid centred on CENTRE_RAS_MM: 'oblique' (rotated ~20 deg about a
    non-coordinate axis) or 'flipped' (i runs along world +y, j along world -x, k along
    world -z: a permuted, reflected storage order)."""
    if kind == "flipped":
        lin = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]) @ np.diag(VOX_MM)
    else:
        lin = rotation_about_axis([1.0, 2.0, 3.0], 20.0) @ np.diag(VOX_MM)
    a = np.eye(4)
    a[:3, :3] = lin
    a[:3, 3] = CENTRE_RAS_MM - lin @ ((np.array(shape) - 1) / 2)
    return a


def ellipsoid(shape, aff, centre, radii, rotation=None):
    p = voxel_centers_ras_mm(shape, aff) - centre
    if rotation is not None:
        p = p @ rotation  # world -> ellipsoid frame
    return np.sum((p / np.asarray(radii)) ** 2, axis=-1) <= 1.0


def box(shape, aff, lo, hi):
    p = voxel_centers_ras_mm(shape, aff)
    return np.all((p >= lo) & (p <= hi), axis=-1)


class Case:
    """A rule field and the oracle's slack of the same rules."""

    def __init__(self, kind, *, with_oar=False, shell_width_mm=None):
        shape = (52, 44, 24)
        aff = affine(shape, kind)
        tilt = rotation_about_axis([0.2, 1.0, 0.4], 30.0)
        gtv = ellipsoid(shape, aff, CENTRE_RAS_MM, (19.0, 15.0, 22.0), tilt)
        oars = []
        self.oar_solids = []
        if with_oar:
            # An ellipsoid overlapping the GTV's right side and a box below it.
            cord = ellipsoid(shape, aff, CENTRE_RAS_MM + [14.0, 3.0, 0.0], (5.0, 6.0, 40.0))
            plate = box(shape, aff, CENTRE_RAS_MM + [-30, -30, -30], CENTRE_RAS_MM + [30, 30, -14])
            oars = [Oar("cord", Volume(cord, aff), 4.0), Oar("plate", Volume(plate, aff), 2.0)]
            self.oar_solids = [
                (Solid.from_mask(o.mask.array, aff), o.clearance_mm + D_MM / 2) for o in oars
            ]
        self.max_depth_mm = (
            None if shell_width_mm is None else MARGIN_MM + D_MM / 2 + shell_width_mm
        )
        self.field = RuleField(
            Volume(gtv, aff),
            oars,
            diameter_mm=D_MM,
            gtv_margin_mm=MARGIN_MM,
            max_depth_mm=self.max_depth_mm,
        )
        self.gtv_solid = Solid.from_mask(gtv, aff)
        self.gtv, self.affine = gtv, aff

    def oracle_slack(self, pts):
        depth = self.gtv_solid.depth(pts)
        slack = depth - (MARGIN_MM + D_MM / 2)
        if self.max_depth_mm is not None:
            slack = np.minimum(slack, self.max_depth_mm - depth)
        for solid, need in self.oar_solids:
            slack = np.minimum(slack, solid.distance(pts) - need)
        return slack

    def boundary_points(self, n, seed):
        """Points on both sides of the rule boundary, bisected to within ~1e-3 mm of it,
        and the uniform points they came from."""
        rng = np.random.default_rng(seed)
        idx = np.argwhere(self.gtv)
        lo, hi = idx.min(0) - 1.0, idx.max(0) + 1.0
        # Half uniform over the GTV's box, half jittered GTV voxels (the allowed region is a
        # small part of the box).
        inside = idx[rng.integers(len(idx), size=10 * n)] + rng.uniform(-0.5, 0.5, (10 * n, 3))
        ijk = np.concatenate([rng.uniform(lo, hi, (10 * n, 3)), inside])
        pts = ijk @ self.affine[:3, :3].T + self.affine[:3, 3]
        slack = self.oracle_slack(pts)
        good, bad = pts[slack > 0], pts[slack < 0]
        assert len(good) >= 30 and len(bad) >= 30, "phantom too small for the rules"
        a, b = good[rng.integers(len(good), size=n)], bad[rng.integers(len(bad), size=n)]
        for _ in range(14):
            mid = (a + b) / 2
            ok = self.oracle_slack(mid) >= 0
            a = np.where(ok[:, None], mid, a)
            b = np.where(ok[:, None], b, mid)
        return np.concatenate([a, b, pts[::20][:n]])


CASES = {
    "fill, oblique": dict(kind="oblique"),
    "fill with OARs, flipped": dict(kind="flipped", with_oar=True),
    "shell with OARs, oblique": dict(kind="oblique", with_oar=True, shell_width_mm=4.0),
    "shell, flipped": dict(kind="flipped", shell_width_mm=2.5),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    c = Case(**CASES[request.param])
    c.points = c.boundary_points(200, seed=1)
    c.want = c.oracle_slack(c.points)
    return c


@pytest.mark.parametrize("kind", ["oblique", "flipped"])
def test_the_grids_are_anisotropic_and_not_diagonal(kind):
    aff = affine((10, 10, 10), kind)
    np.testing.assert_allclose(np.linalg.norm(aff[:3, :3], axis=0), VOX_MM)
    assert np.abs(aff[:3, :3] - np.diag(np.diag(aff[:3, :3]))).max() > 0.1
    if kind == "flipped":
        assert np.linalg.det(aff[:3, :3]) < 0  # a reflection: the storage order is flipped


def test_classification_near_the_rule_boundary_matches_the_oracle(case):
    pts, want = case.points, case.want
    allowed, estimate = case.field.classify(pts)
    clear = np.abs(want) > BOUNDARY_TOL_MM
    assert np.count_nonzero(clear) > 0.9 * len(pts)
    # The bisected points are within a few µm of the boundary: the exact path is exercised.
    assert np.count_nonzero(np.abs(want) < 0.01) >= 300
    mismatch = clear & (allowed != (want >= 0))
    assert not mismatch.any(), (pts[mismatch][:5], want[mismatch][:5])
    assert allowed.any() and not allowed.all()
    # The estimate is a lower bound of the slack at the nearest voxel centre, at most the
    # table's bound gap below it, and that centre is at most band_mm from the point.
    band = case.field.band_mm + case.field.table_gap_mm + 1e-4
    finite = np.isfinite(estimate)
    assert np.all(want[finite] - estimate[finite] <= band)
    # It is no more than band above the slack where it can allow a point. (Where the GTV term
    # alone forbids, the table skips the OAR terms, so the estimate may be higher there.)
    chance = finite & (estimate > -case.field.band_mm)
    assert np.all(estimate[chance] - want[chance] <= band)


def test_classification_does_not_depend_on_the_shape_of_the_point_array(case):
    pts = case.points[:120]
    flat, _ = case.field.classify(pts)
    shaped, _ = case.field.classify(pts.reshape(4, 30, 3))
    np.testing.assert_array_equal(shaped.reshape(-1), flat)


def test_exact_slack_and_distances_equal_the_oracle(case):
    pts = case.points[::4]
    np.testing.assert_allclose(case.field.exact_slack(pts), case.want[::4], atol=1e-9)
    np.testing.assert_allclose(case.field.depth_mm(pts), case.gtv_solid.depth(pts), atol=1e-9)
    dist = case.field.oar_distance_mm(pts)
    assert list(dist) == [o.name for o in case.field.oars]
    for (solid, _), name in zip(case.oar_solids, dist):
        np.testing.assert_allclose(dist[name], solid.distance(pts), atol=1e-9)


def test_lattice_target_is_the_voxels_deeper_than_the_margin(case):
    field = case.field
    centres = voxel_centers_ras_mm(case.gtv.shape, case.affine)[field.box].reshape(-1, 3)
    got = field.deeper_than(MARGIN_MM).ravel()
    depth = case.gtv_solid.depth(centres)
    clear = np.abs(depth - MARGIN_MM) > BOUNDARY_TOL_MM
    assert got.any() and not got.all()
    np.testing.assert_array_equal(got[clear], depth[clear] > MARGIN_MM)


def test_points_outside_the_gtv_box_are_forbidden(case):
    idx = np.argwhere(case.gtv)
    far_ijk = np.array([idx.min(0) - 3.0, idx.max(0) + 3.0, [-50.0, 0.0, 0.0]])
    far = far_ijk @ case.affine[:3, :3].T + case.affine[:3, 3]
    allowed, estimate = case.field.classify(far)
    assert not allowed.any()
    assert np.all(estimate == -np.inf)


def test_shell_mode_refuses_centres_deeper_than_the_shell():
    fill = Case("oblique")
    shell = Case("oblique", shell_width_mm=2.0)
    rng = np.random.default_rng(4)
    idx = np.argwhere(fill.gtv)
    ijk = idx[rng.integers(len(idx), size=3000)] + rng.uniform(-0.5, 0.5, (3000, 3))
    pts = ijk @ fill.affine[:3, :3].T + fill.affine[:3, 3]
    depth = fill.gtv_solid.depth(pts)
    need = MARGIN_MM + D_MM / 2
    deep = depth > shell.max_depth_mm + BOUNDARY_TOL_MM
    within = (depth > need + BOUNDARY_TOL_MM) & (depth < shell.max_depth_mm - BOUNDARY_TOL_MM)
    assert deep.sum() > 20 and within.sum() > 20
    allowed_fill, _ = fill.field.classify(pts)
    allowed_shell, _ = shell.field.classify(pts)
    assert allowed_fill[deep].all() and not allowed_shell[deep].any()
    assert allowed_fill[within].all() and allowed_shell[within].all()


def test_a_larger_clearance_only_removes_points():
    near = Case("flipped", with_oar=True)
    gtv, aff = near.gtv, near.affine
    oars = near.field.oars
    wider = RuleField(
        Volume(gtv, aff),
        [Oar(o.name, o.mask, o.clearance_mm + 3.0) for o in oars],
        diameter_mm=D_MM,
        gtv_margin_mm=MARGIN_MM,
    )
    pts = near.boundary_points(100, seed=5)
    a_near, _ = near.field.classify(pts)
    a_wide, _ = wider.classify(pts)
    assert np.all(a_near >= a_wide) and np.count_nonzero(a_near & ~a_wide) > 0


def test_an_oar_on_another_grid_is_refused():
    shape = (20, 20, 10)
    aff = affine(shape, "oblique")
    gtv = Volume(ellipsoid(shape, aff, CENTRE_RAS_MM, (8.0, 8.0, 8.0)), aff)
    moved = aff.copy()
    moved[:3, 3] += [3.0, 0.0, 0.0]
    oar = Oar("cord", Volume(np.zeros(shape, bool), moved), 5.0)
    with pytest.raises(GridMismatchError):
        RuleField(gtv, [oar], diameter_mm=D_MM, gtv_margin_mm=MARGIN_MM)


def test_a_rule_shallower_than_half_a_voxel_is_refused():
    shape = (20, 20, 10)
    aff = affine(shape, "oblique")
    gtv = Volume(ellipsoid(shape, aff, CENTRE_RAS_MM, (8.0, 8.0, 8.0)), aff)
    half_diagonal = 0.5 * np.linalg.norm(VOX_MM)
    with pytest.raises(ParameterError, match="half the voxel diagonal"):
        RuleField(gtv, [], diameter_mm=half_diagonal, gtv_margin_mm=0.0)


# -- the table look-ups against their straightforward form -----------------------------------


def _nearest_bounds_oracle(field, box_ijk):
    """Slack bounds at the nearest voxel centre, read one point at a time (-inf outside)."""
    lo = np.full(len(box_ijk), -np.inf)
    hi = np.full(len(box_ijk), -np.inf)
    for n, p in enumerate(np.rint(box_ijk).astype(int)):
        if np.all((p >= 0) & (p < field.slack_vox.shape)):
            lo[n], hi[n] = field.slack_vox[tuple(p)], field.slack_vox_hi[tuple(p)]
    return lo, hi


def _corner_bounds_oracle(field, box_ijk):
    """The 8-corner slack bounds as first written: one corner at a time, one point at a time."""
    lower, upper = [], []
    for p in box_ijk:
        lo_p, hi_p = -np.inf, np.inf
        for corner in np.ndindex(2, 2, 2):
            c = np.floor(p) + corner
            dist = np.linalg.norm((p - c) * field.gtv.voxel_size_mm)
            inside = np.all((c >= 0) & (c < field.slack_vox.shape))
            s_lo = float(field.slack_vox[tuple(c.astype(int))]) if inside else -np.inf
            s_hi = (
                float(field.slack_vox_hi[tuple(c.astype(int))])
                if inside
                else float(np.float32(-field.need_depth_mm))
            )
            lo_p, hi_p = max(lo_p, s_lo - dist), min(hi_p, s_hi + dist)
        lower.append(lo_p)
        upper.append(hi_p)
    return np.array(lower), np.array(upper)


def _box_points(case, n, seed):
    """Fractional box indices near the rule boundary and beyond the box on every side."""
    field = case.field
    near = field.world_to_box_index(case.points)
    rng = np.random.default_rng(seed)
    shape = np.array(field.slack_vox.shape)
    wide = rng.uniform(-3.0, shape + 2.0, (n, 3))
    return np.concatenate([near, wide])


def test_nearest_voxel_lookups_equal_a_point_by_point_reading(case):
    field = case.field
    ijk = _box_points(case, 400, seed=2)
    lo, hi = _nearest_bounds_oracle(field, ijk)
    np.testing.assert_array_equal(field.lookup(ijk), lo)
    np.testing.assert_array_equal(field.lookup_upper(ijk), hi)
    _, est = field.bound(ijk)
    np.testing.assert_array_equal(est, lo)


def test_corner_bounds_equal_the_corner_by_corner_oracle(case):
    field = case.field
    ijk = _box_points(case, 400, seed=3)
    lower, upper = field._corner_bounds(ijk)
    want_lower, want_upper = _corner_bounds_oracle(field, ijk)
    # The oracle sums the corner distance in another order (np.linalg.norm per point), so the two
    # agree to rounding only: 1-ulp differences appear on some machines (CI saw 1.8e-15 mm).
    np.testing.assert_allclose(lower, want_lower, rtol=0, atol=1e-12)
    np.testing.assert_allclose(upper, want_upper, rtol=0, atol=1e-12)


def test_bound_states_follow_from_the_oracle_bounds(case):
    """bound()'s three-way decision, rebuilt from the point-by-point bounds."""
    from lattice.geometry.margins import EDT_TOLERANCE_MM as tol
    from lattice.planning.rules import ALLOWED, FORBIDDEN, UNDECIDED

    field = case.field
    ijk = _box_points(case, 400, seed=4)
    state, _ = field.bound(ijk)
    lo, hi = _nearest_bounds_oracle(field, ijk)
    off = np.linalg.norm((ijk - np.rint(ijk)) * field.gtv.voxel_size_mm, axis=-1)
    lower, upper = _corner_bounds_oracle(field, ijk)
    want = np.where(lo >= field.band_mm + tol, ALLOWED, FORBIDDEN)
    unsure = (lo > -field.band_mm - field.table_gap_mm - tol) & (want == FORBIDDEN)
    sub = np.where(lo >= off + tol, ALLOWED, FORBIDDEN)
    maybe = unsure & (hi > -off - tol) & (sub == FORBIDDEN)
    sub = np.where(
        maybe, np.where(lower >= tol, ALLOWED, np.where(upper >= -tol, UNDECIDED, FORBIDDEN)), sub
    )
    want = np.where(unsure, sub, want)
    assert state.dtype == np.int8
    np.testing.assert_array_equal(state, want)
    assert (state == UNDECIDED).any() and (state == ALLOWED).any()


def test_bounds_of_many_poses_read_by_two_threads_equal_one_call(case, monkeypatch):
    from lattice import forking
    from lattice.planning import search

    field = case.field
    ijk = _box_points(case, 400, seed=5)
    poses = ijk[None, :, :] + np.random.default_rng(6).normal(0.0, 2.0, (7, 1, 3))  # 7 poses
    want_state, want_est = field.bound(poses)
    monkeypatch.setattr(search, "THREADED_POINTS", 0)
    monkeypatch.setattr(forking, "usable_cpus", lambda: 2)
    monkeypatch.delenv(forking.FORK_ENV, raising=False)
    threads = []
    real = forking.threading.Thread

    def counted(*args, **kwargs):
        threads.append(kwargs.get("name"))
        return real(*args, **kwargs)

    monkeypatch.setattr(forking.threading, "Thread", counted)
    state, est = search._bound(field, poses)
    assert threads.count("lattice-second") == 1  # the second half went to a thread
    np.testing.assert_array_equal(state, want_state)
    np.testing.assert_array_equal(est, want_est)
    assert state.shape == est.shape == poses.shape[:2]
