"""Maximal packing, stage 3: continuous refinement, insertions and kicks relaxed by L-BFGS
on a penalty over the interpolated slack (see :mod:`lattice.planning.packing`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from nibabel.affines import apply_affine
from numpy.typing import NDArray
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist

from .rules import RuleField

#: Continuous stage. Centres within MOVE_RADIUS_SPACINGS * S of a new centre may move: a wide
#: neighbourhood lets the packing shift as a whole. Total count over the six sarcoma settings
#: of the acceptance table, 5 s each: 2 S: 418, 4 S: 443, 6 S: 446, everything: 443 (each
#: move costs more).
MOVE_RADIUS_SPACINGS = 6.0
#: The penalty aims at S + SPACING_PAD_MM and at an interpolated slack of SLACK_PAD_MM, so
#: that a configuration the optimiser calls feasible nearly always is: trilinear interpolation
#: of the slack overestimates it by at most ~h^2 / (8 * depth), ~0.1 mm for 3.3 mm slices.
SPACING_PAD_MM = 0.02
SLACK_PAD_MM = 0.2
#: A relaxation succeeds when its penalty is below this: every single overlap or violation
#: is then below half its pad, so the exact checks (which decide) almost always pass.
ACCEPT_PENALTY = (SPACING_PAD_MM / 2) ** 2
RELAX_MAX_ITERATIONS = 150
#: Overlaps by dense distance matrices up to this many pairs, by KD-tree pair lists above.
DENSE_PAIRS_MAX = 20000
#: L-BFGS memory, and its stall rule: give up when the penalty fell by less than
#: STALL_DECREASE over the last STALL_WINDOW iterations (a local minimum above zero).
LBFGS_HISTORY = 8
STALL_WINDOW = 10
STALL_DECREASE = 0.03
#: Insertion gives up after this many failed holes in a row, then kicks.
MAX_FAILED_HOLES = 10
#: Kicks: random displacement (mm, per axis, normal) of the centres near a random centre,
#: then a relaxation with the same count. The stage ends after MAX_KICKS_WITHOUT_GAIN kicks
#: in a row without a new centre.
KICK_MM = 3.0
MAX_KICKS_WITHOUT_GAIN = 5


class _SlackInterpolator:
    """Trilinear interpolation of the voxel slack, with its gradient, at world points."""

    _CORNERS = np.array(list(np.ndindex(2, 2, 2)))

    def __init__(self, field: RuleField) -> None:
        s = field.slack_vox.astype(np.float64)
        # Interpolation needs two voxels per axis. The box is one voxel thick only along an
        # array axis of length 1 (a single-slice image): repeat that layer, so the slack is
        # constant across it (its base index would otherwise be -1 and read other voxels).
        s = np.pad(s, [(0, max(2 - n, 0)) for n in s.shape], mode="edge")
        # OAR distances beyond their reach may be inf; any large finite value works there.
        self.flat = np.where(np.isfinite(s), s, 1e3).ravel()
        self.shape = np.array(s.shape)
        self.strides = np.array([s.shape[1] * s.shape[2], s.shape[2], 1])
        self.corner_offsets = self._CORNERS @ self.strides
        # RAS mm -> fractional index of the field's box (the box starts at box_lo).
        self.to_box_ijk = np.linalg.inv(field.gtv.affine)
        self.to_box_ijk[:3, 3] -= field.box_lo
        self.lin = self.to_box_ijk[:3, :3]  # the gradient's chain rule
        self.sign = np.where(self._CORNERS == 1, 1.0, -1.0)

    def __call__(self, pts: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        idx = apply_affine(self.to_box_ijk, pts)
        base = np.clip(np.floor(idx).astype(np.int64), 0, self.shape - 2)
        t = idx - base
        v = self.flat[(base @ self.strides)[:, None] + self.corner_offsets]
        w = np.stack([1 - t, t], axis=1)  # (n, 2, 3)
        c = self._CORNERS
        wx, wy, wz = w[:, c[:, 0], 0], w[:, c[:, 1], 1], w[:, c[:, 2], 2]
        value = (v * wx * wy * wz).sum(1)
        grad = np.stack(
            [
                (v * self.sign[:, 0] * wy * wz).sum(1),
                (v * wx * self.sign[:, 1] * wz).sum(1),
                (v * wx * wy * self.sign[:, 2]).sum(1),
            ],
            1,
        )
        return value, grad @ self.lin


def _relax(
    moving: NDArray[np.float64],
    fixed: NDArray[np.float64],
    spacing: float,
    slack: _SlackInterpolator,
) -> tuple[NDArray[np.float64], float]:
    """Move ``moving`` to remove overlaps (with each other and ``fixed``) and violations.

    Minimises ``sum max(0, S' - d_ij)^2 + sum max(0, pad - slack_i)^2`` with L-BFGS, S' and
    pad the padded targets. Returns the points and the final penalty.
    """
    target = spacing + SPACING_PAD_MM
    m = len(moving)
    overlap = (_DenseOverlap if m * (m + len(fixed)) <= DENSE_PAIRS_MAX else _TreeOverlap)(
        m, fixed, target
    )

    def penalty(x: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        p = x.reshape(m, 3)
        value, grad = overlap(p)
        s, gs = slack(p)
        short = np.maximum(SLACK_PAD_MM - s, 0.0)
        value += float(short @ short)
        grad -= 2.0 * short[:, None] * gs
        return value, grad.ravel()

    x, value = _lbfgs(penalty, moving.ravel(), ACCEPT_PENALTY)
    return x.reshape(m, 3), value


class _DenseOverlap:
    """``sum max(0, target - d)^2`` over moving-moving and moving-fixed pairs, all pairs."""

    def __init__(self, m: int, fixed: NDArray[np.float64], target: float) -> None:
        self.fixed, self.target = fixed, target
        self.weight = np.ones((m, m + len(fixed)))
        self.weight[:, :m] = 0.5  # pairs among moving points appear twice
        self.diag = np.arange(m)

    def __call__(self, p: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        dv = p[:, None, :] - np.vstack([p, self.fixed])[None]
        # Coincident points (d = 0) get no push apart rather than an infinite one.
        d = np.maximum(np.sqrt(np.einsum("ijk,ijk->ij", dv, dv)), 1e-9)
        d[self.diag, self.diag] = np.inf
        over = np.maximum(self.target - d, 0.0)
        value = float((self.weight * over * over).sum())
        return value, np.einsum("ij,ijk->ik", -2.0 * over / d, dv)


class _TreeOverlap:
    """The same sum over the pairs closer than target only, found with KD-trees."""

    def __init__(self, m: int, fixed: NDArray[np.float64], target: float) -> None:
        self.m, self.fixed, self.target = m, fixed, target
        self.fixed_tree = cKDTree(fixed) if len(fixed) else None

    def __call__(self, p: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        tree = cKDTree(p)
        pairs = tree.query_pairs(self.target, output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
        dv = p[i] - p[j]
        if self.fixed_tree is not None:
            near = tree.sparse_distance_matrix(self.fixed_tree, self.target, output_type="ndarray")
            i = np.concatenate([i, near["i"]])
            dv = np.vstack([dv, p[near["i"]] - self.fixed[near["j"]]])
        d = np.maximum(np.sqrt(np.einsum("ij,ij->i", dv, dv)), 1e-9)
        over = np.maximum(self.target - d, 0.0)
        push = (-2.0 * over / d)[:, None] * dv
        grad = np.zeros((self.m, 3))
        for c in range(3):
            grad[:, c] = np.bincount(i, push[:, c], minlength=self.m) - np.bincount(
                j, push[: len(j), c], minlength=self.m
            )
        return float(over @ over), grad


def _lbfgs(
    fun: Any, x: NDArray[np.float64], good_enough: float
) -> tuple[NDArray[np.float64], float]:
    """Minimise ``fun`` (value, gradient) by L-BFGS with a backtracking line search.

    Written out rather than scipy's L-BFGS-B because (a) it stops as soon as the value is
    ``good_enough`` or the descent stalls (most relaxations fail, and fail slowly), and
    (b) scipy's version calls threaded BLAS on tiny vectors, which on a busy 2-core machine
    was measured 20x slower.
    """
    value, grad = fun(x)
    history: list[tuple[NDArray[np.float64], NDArray[np.float64], float]] = []
    trail = [value]
    for it in range(RELAX_MAX_ITERATIONS):
        if value <= good_enough:
            break
        if it >= 2 * STALL_WINDOW and value > (1 - STALL_DECREASE) * trail[-STALL_WINDOW]:
            break
        q = grad.copy()
        alphas = []
        for s, y, rho in reversed(history):
            a = rho * (s @ q)
            q -= a * y
            alphas.append(a)
        if history:
            s, y, _ = history[-1]
            q *= (s @ y) / (y @ y)
        else:  # first step: move no point by more than 1 mm
            q *= 1.0 / max(float(np.abs(grad).max()), 1.0)
        for (s, y, rho), a in zip(history, reversed(alphas)):
            q += s * (a - rho * (y @ q))
        direction = -q
        slope = float(grad @ direction)
        if slope >= 0:  # not a descent direction: restart from the gradient
            history.clear()
            direction = -grad / max(float(np.abs(grad).max()), 1.0)
            slope = float(grad @ direction)
        step = 1.0
        while True:
            x_new = x + step * direction
            v_new, g_new = fun(x_new)
            if v_new <= value + 1e-4 * step * slope:
                break
            step *= 0.5
            if step < 1e-8:
                return x, value
        s, y = x_new - x, g_new - grad
        sy = float(s @ y)
        if sy > 1e-12:
            history.append((s, y, 1.0 / sy))
            if len(history) > LBFGS_HISTORY:
                history.pop(0)
        x, value, grad = x_new, v_new, g_new
        trail.append(value)
    return x, value


class Refiner:
    """Continuous stage: insert centres into holes and relax, kick when stuck."""

    def __init__(
        self, field: RuleField, cand: NDArray[np.float64], spacing: float, rng: np.random.Generator
    ) -> None:
        self.field = field
        self.cand = cand
        self.spacing = spacing
        self.rng = rng
        self.tree = cKDTree(cand) if len(cand) else None
        self.slack = _SlackInterpolator(field)
        #: Overlap of each candidate with the current centres: sum of (S - d)^2.
        self.crowding = np.zeros(len(cand))

    def _crowd(self, pts: NDArray[np.float64], sign: float) -> None:
        if self.tree is None or len(pts) == 0:
            return
        lists = self.tree.query_ball_point(pts, self.spacing)
        owner = np.repeat(np.arange(len(pts)), [len(x) for x in lists])
        if len(owner) == 0:
            return
        ids = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
        d = np.linalg.norm(self.cand[ids] - pts[owner], axis=1)
        np.add.at(self.crowding, ids, sign * (self.spacing - d) ** 2)

    def _try(
        self, pts: NDArray[np.float64], centre: NDArray[np.float64], new: NDArray[np.float64] | None
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64]] | None:
        """Relax the centres near ``centre`` (plus ``new``); the new set, or None."""
        s = self.spacing
        d = np.linalg.norm(pts - centre, axis=1)
        move = d < MOVE_RADIUS_SPACINGS * s
        moving = pts[move] if new is None else np.vstack([pts[move], new])
        if new is None:
            moving = moving + self.rng.normal(0.0, KICK_MM, moving.shape)
        fixed = pts[~move & (d < (MOVE_RADIUS_SPACINGS + 2) * s)]
        moved, value = _relax(moving, fixed, s, self.slack)
        if value > ACCEPT_PENALTY or not self.field.classify(moved)[0].all():
            return None
        rest = pts[~move]
        if len(rest) and cKDTree(rest).query(moved)[0].min() < s:
            return None
        if len(moved) > 1 and pdist(moved).min() < s:
            return None
        return np.vstack([rest, moved]), move, moved

    def run(
        self, pts: NDArray[np.float64], deadline: float, cap: int | None
    ) -> tuple[NDArray[np.float64], dict[str, Any]]:
        self._crowd(pts, 1.0)
        failed: list[NDArray[np.float64]] = []  # holes that failed since their area changed
        tried = kept = kicks = misses = idle_kicks = 0
        stop = "converged"
        while True:
            if cap is not None and len(pts) >= cap:
                stop = "max_vertices"
                break
            if time.perf_counter() > deadline:
                stop = "time"
                break
            hole = self._next_hole(failed) if misses < MAX_FAILED_HOLES else None
            if hole is None:
                if idle_kicks >= MAX_KICKS_WITHOUT_GAIN or len(pts) == 0:
                    break
                kicks += 1
                idle_kicks += 1
                centre = pts[int(self.rng.integers(len(pts)))]
                result = self._try(pts, centre, None)
                misses = 0
                if result is not None:
                    pts = self._accept(pts, result, failed)
                continue
            tried += 1
            result = self._try(pts, hole, hole[None])
            if result is None:
                failed.append(hole)
                misses += 1
                continue
            kept += 1
            misses = idle_kicks = 0
            pts = self._accept(pts, result, failed)
        return pts, {
            "insertions_tried": tried,
            "insertions_kept": kept,
            "kicks": kicks,
            "stopped_by": stop,
        }

    def _accept(self, pts: NDArray[np.float64], result: tuple, failed: list) -> NDArray:
        new_pts, move, moved = result
        self._crowd(pts[move], -1.0)
        self._crowd(moved, 1.0)
        # Holes near a change may work now.
        reach = (MOVE_RADIUS_SPACINGS + 1) * self.spacing
        changed = np.vstack([pts[move], moved])
        failed[:] = [h for h in failed if np.linalg.norm(changed - h, axis=1).min() >= reach]
        return new_pts

    def _next_hole(self, failed: list[NDArray[np.float64]]) -> NDArray[np.float64] | None:
        """The least crowded candidate at least S/2 from every failed hole."""
        if len(self.cand) == 0:
            return None
        order = np.argsort(self.crowding, kind="stable")
        bad = np.array(failed) if failed else np.zeros((0, 3))
        for k in order[:4096].tolist():
            q = self.cand[k]
            if len(bad) == 0 or np.linalg.norm(bad - q, axis=1).min() >= self.spacing / 2:
                return q
        return None
