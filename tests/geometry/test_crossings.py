"""lattice.geometry.crossings: crossing outlines against brute force and drawn cases."""

from __future__ import annotations

import numpy as np
import pytest

from lattice.geometry.crossings import crossing_slices, overlap_slices


def _square(x, y, s):
    return np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], dtype=float)


def _brute_cross(segs):
    """Any two segments whose ends lie strictly on both sides of the other's line."""

    def side(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    for i in range(len(segs)):
        for j in range(i + 1, len(segs)):
            p0, p1, q0, q1 = segs[i][:2], segs[i][2:], segs[j][:2], segs[j][2:]
            if side(p0, p1, q0) * side(p0, p1, q1) < 0 and side(q0, q1, p0) * side(q0, q1, p1) < 0:
                return True
    return False


@pytest.mark.parametrize("seed", range(40))
def test_crossings_equal_brute_force_on_random_rings(seed):
    rng = np.random.default_rng(seed)
    rings = [(0, rng.uniform(0, 20, size=(int(rng.integers(3, 9)), 2))) for _ in range(2)]
    segs = [np.concatenate([r, np.roll(r, -1, axis=0)], axis=1) for _, r in rings]
    assert (crossing_slices(rings) == [0]) == _brute_cross(np.concatenate(segs))


def test_drawn_cases():
    circle = np.c_[np.cos(np.linspace(0, 2 * np.pi, 200, endpoint=False)), np.sin(
        np.linspace(0, 2 * np.pi, 200, endpoint=False))] * 30  # fmt: skip
    assert crossing_slices([(0, circle), (0, circle * 0.5)]) == []  # a hole
    assert crossing_slices([(0, _square(0, 0, 10)), (0, _square(20, 0, 10))]) == []
    assert crossing_slices([(0, _square(0, 0, 10)), (0, _square(10, 0, 10))]) == []  # touching
    assert crossing_slices([(4, _square(0, 0, 10)), (4, _square(5, 5, 10))]) == [4]
    assert crossing_slices([(4, _square(0, 0, 10)), (5, _square(5, 5, 10))]) == []  # 2 slices
    bow_tie = np.array([[0, 0], [10, 10], [10, 0], [0, 10]], dtype=float)
    assert crossing_slices([(2, bow_tie), (7, circle)]) == [2]


def test_overlap_of_filled_rings():
    a = np.arange(0, 50)
    assert overlap_slices({0: [a, a[10:20]]}) == []  # nested: a hole
    assert overlap_slices({0: [a, np.arange(60, 80)]}) == []  # disjoint
    assert overlap_slices({0: [a, np.arange(40, 80)]}) == [0]  # overlapping
    assert overlap_slices({3: [a], 1: [a, np.arange(45, 55)], 2: [a, a]}) == [1]
