"""Independent geometry oracles for the tests: brute force with numpy, scipy and the TPS
surface checker of ``tps_checker.py``.

Nothing here calls lattice's rule code. Depth and OAR distance follow the TPS surface model
(README "Definitions"): the distance to the outside of (depth), or to (OAR distance), the
solid rebuilt from the marching-squares outline of each slice extruded half a slice gap each
side, measured by ``tps_checker.Solid`` over every outline segment. Lattices are built from
the textbook formulas.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist
from tps_checker import Solid, best_translation_count

# -- phantoms defined in world space ---------------------------------------------------------


def grid(shape, voxel_mm, *, flip=(), perm=(0, 1, 2), oblique_deg=0.0, origin=(-40, -30, -20)):
    """Affine for a grid; flips/permutations/rotation change storage, not the world."""
    a = np.diag([*voxel_mm, 1.0]).astype(float)
    if oblique_deg:
        t = np.deg2rad(oblique_deg)
        axis = np.array([1.0, 2.0, 3.0]) / np.sqrt(14.0)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rot = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k
        a[:3, :3] = rot @ a[:3, :3]
    a[:3, 3] = origin
    return a


def world_of(shape, affine):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return ijk.reshape(-1, 3) @ affine[:3, :3].T + affine[:3, 3]


def ellipsoid(shape, affine, centre, radii):
    p = world_of(shape, affine)
    return (np.sum(((p - centre) / radii) ** 2, axis=1) <= 1.0).reshape(shape)


def crop_to_mask(mask, affine):
    """The mask's bounding box grown by one voxel, with the matching affine.

    Exact for depth: clamping a background voxel's indices into the grown box moves it
    towards every point inside the box, and the box's outer layer is all background.
    """
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - 1, 0)
    hi = np.minimum(idx.max(0) + 2, mask.shape)
    sub = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    a = affine.copy()
    a[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    return sub, a


def background_tree(mask, affine):
    """KD-tree of every background voxel centre, with a one-voxel background frame."""
    padded = np.pad(mask, 1)
    ijk = np.argwhere(~padded) - 1.0
    return cKDTree(ijk @ affine[:3, :3].T + affine[:3, 3])


def in_mask(mask, affine, pts):
    """Whether each point's nearest voxel centre is a mask voxel (beyond the array: no)."""
    ijk = np.rint(np.linalg.solve(affine[:3, :3], (pts - affine[:3, 3]).T).T).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(mask.shape)), axis=1)
    out = np.zeros(len(pts), bool)
    out[ok] = mask[tuple(ijk[ok].T)]
    return out


def oracle_depth(mask, affine, pts):
    """Depth (mm) of world points below the mask's TPS surface (0 outside)."""
    return Solid.from_mask(mask, affine).depth(np.atleast_2d(pts))


def mask_distance(mask, affine, pts):
    """Distance (mm) from world points to the mask's TPS solid (0 inside)."""
    return Solid.from_mask(mask, affine).distance(np.atleast_2d(pts))


# -- textbook lattices -----------------------------------------------------------------------


def textbook_lattice(pattern, s):
    if pattern == "sc":
        return s * np.eye(3), np.zeros((1, 3))
    if pattern == "bcc":
        return 2 * s / np.sqrt(3) * np.eye(3), np.array([[0, 0, 0], [0.5, 0.5, 0.5]])
    if pattern == "fcc":
        return np.sqrt(2) * s * np.eye(3), np.array(
            [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
        )
    c = s * np.sqrt(8 / 3)
    cell = np.array([[s, s / 2, 0], [0, s * np.sqrt(3) / 2, 0], [0, 0, c]])
    return cell, np.array([[0, 0, 0], [1 / 3, 1 / 3, 0.5]])


def lattice_points(pattern, s, lo, hi):
    cell, motif = textbook_lattice(pattern, s)
    n = int(np.ceil(np.linalg.norm(hi - lo) / min(np.linalg.norm(cell, axis=0)))) + 2
    r = np.arange(-n, n + 1)
    idx = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    pts = ((idx[:, None, :] + motif[None]).reshape(-1, 3)) @ cell.T + (lo + hi) / 2
    return pts, cell


def best_random_translation_count(mask, affine, pattern, *, s, d, margin, oars=(), n=1500, seed=0):
    """Best count over n random translations of the unrotated lattice (brute force, TPS
    surface model)."""
    gtv = Solid.from_mask(mask, affine)
    solids = [(Solid.from_mask(m, affine), c) for m, c in oars]
    best, _ = best_translation_count(
        gtv, pattern, spacing=s, diameter=d, margin=margin, oars=solids, n_translations=n, seed=seed
    )
    return best


def check_rules(plan, mask, affine, *, s, d, margin, oars=()):
    """Assert every rule with the oracle; return the centres."""
    c = plan.centers_ras_mm
    assert len(c) > 0
    assert np.all(oracle_depth(mask, affine, c) >= margin + d / 2 - 1e-9)
    if len(c) > 1:
        assert pdist(c).min() >= s
    for m, clearance in oars:
        assert np.all(mask_distance(m, affine, c) >= clearance + d / 2 - 1e-9)
    return c
