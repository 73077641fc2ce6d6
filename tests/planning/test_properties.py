"""Property-based tests of the planner (issue 6, item 3): random shapes, grids and parameters.

For every drawn case :func:`lattice.planning.placement.plan_vertices` must either

* return a plan whose ``plan.json`` document (``plan.to_dict``, strict JSON round trip) the
  independent verifier :func:`lattice.analysis.verify.verify_plan` accepts, and whose vertices obey
  every rule when measured here with plain numpy / scipy (KD-trees over voxel centres and
  ``scipy.ndimage.distance_transform_edt`` with ``sampling``; no lattice code), or
* raise one of the documented errors (:class:`lattice.errors.LatticeError` subclasses), of
  the class the input calls for (nonsense parameters: ParameterError, and so on).

Any other exception (including a numpy RuntimeWarning, which pytest turns into an error
here) fails the test. Besides the rules (GTV margin, spacing, OAR clearance, shell depth,
slice planes, co-planar rule, vertex counts), the LATTICE target must equal the GTV eroded by
the margin, reported depths and OAR distances must be exact, an empty plan must say why, and
a plan must not be empty where a ball wider than the lattice's covering radius is allowed.

What is drawn
    Grids: 1-40 voxels per axis (at most ~20k voxels), voxel sizes 0.5-4 mm in-plane and
    0.5-5 mm between slices; affines that are diagonal, flip and permute the axes, or are an
    oblique proper rotation times diag(voxel sizes), always with a random translation.
    Shapes: world-space ellipsoids, index boxes (often touching the border), unions of blobs,
    ellipsoids with random holes, one- or two-voxel thin slabs, a few scattered voxels, empty
    and full masks; stored as bool, uint8, float or a label map (sometimes with two labels).
    OARs: 0-2 masks (blobs, boxes, a ring around the GTV, an organ inside the GTV, empty),
    sometimes on another grid or with a repeated name, with clearances that may be zero,
    negative, NaN or infinite. Parameters: diameters, spacings and margins from sensible to
    nonsense (0, negative, NaN, inf, spacing < diameter, huge margins), every pattern, both
    modes and orientation searches, slice snapping, max/min vertex counts, ``count`` and the
    co-planar rule, including invalid combinations. At most one parameter is nonsense at a
    time, and radius + margin are usually fitted below the GTV's deepest point, so that most
    examples get as far as a plan. Spacings stay above 1/16 of the grid's size (the search's
    work grows as (size / spacing)^3; see test_tiny_spacing_is_refused_before_it_exhausts_memory).

Running longer
    The profile is derandomized (the same examples on every run) and small enough for CI.
    ``LATTICE_PROPERTY_EXAMPLES=2000`` raises the number of examples of every test here, and
    ``LATTICE_PROPERTY_RANDOM=1`` draws new random examples on each run instead, e.g.::

        LATTICE_PROPERTY_EXAMPLES=2000 LATTICE_PROPERTY_RANDOM=1 \\
            .venv/bin/python -m pytest tests/planning/test_properties.py -q -p no:cacheprovider \\
            --hypothesis-show-statistics

    ``--hypothesis-show-statistics`` shows how the examples ended (plan with vertices,
    empty plan, which error and why). ``LATTICE_PROPERTY_NO_SHRINK=1`` reports a failure
    without minimising it first (shrinking a slow example can take minutes).

The last tests are the minimal reproducers of what this suite found.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, event, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.spatial.distance import pdist
from tps_checker import Solid

from lattice.analysis.verify import verify_plan
from lattice.errors import GridMismatchError, LatticeError, MaskError, ParameterError
from lattice.planning.parameters import MIN_DIAMETER_MM
from lattice.planning.placement import plan_vertices
from lattice.planning.plan import MAX_LENGTH_MM
from lattice.planning.rules import Oar
from lattice.volume import Volume

# -- settings ----------------------------------------------------------------------------------

_EXAMPLES = int(os.environ.get("LATTICE_PROPERTY_EXAMPLES", "0") or 0)
_RANDOM = os.environ.get("LATTICE_PROPERTY_RANDOM", "") not in ("", "0")
_NO_SHRINK = os.environ.get("LATTICE_PROPERTY_NO_SHRINK", "") not in ("", "0")


def _profile(default_examples: int) -> settings:
    """Fixed, derandomized profile: CI runs the same examples every time."""
    return settings(
        max_examples=_EXAMPLES or default_examples,
        derandomize=not _RANDOM,
        database=None,  # nothing written into the working tree
        deadline=None,
        print_blob=True,
        # No explain phase: its line tracer makes a failing example take many minutes.
        phases=[Phase.explicit, Phase.reuse, Phase.generate]
        if _NO_SHRINK
        else [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


#: Largest number of voxels of a drawn grid (keeps each example well under a second).
MAX_VOXELS = 20_000
#: Distances measured here and by the planner agree to float rounding; rules are checked
#: with this much forgiveness (mm), the verifier's own tolerance is 1e-6 mm.
TOL_MM = 1e-7
#: Largest covering radius of the four lattices as a multiple of the spacing (simple cubic,
#: sqrt(3)/2; bcc 0.65, fcc and hcp 0.71): every ball this large holds a lattice point in
#: every pose.
COVERING_RADIUS_FACTOR = math.sqrt(3.0) / 2.0

#: Spacings drawn are at least the grid's largest extent over this, and half a voxel (keeps
#: the search small: its work grows as (extent / spacing)^3).
SPACINGS_PER_GRID = 16.0

NONSENSE = [0.0, -1.0, -1e-9, math.nan, math.inf, -math.inf]


# -- independent geometry (numpy / scipy only) -------------------------------------------------


def _world(shape, affine):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return ijk.astype(float) @ affine[:3, :3].T + affine[:3, 3]


def _nearest_voxel(shape, affine, pts):
    """Index of each point's nearest voxel centre, and whether it lies in the array."""
    ijk = np.linalg.solve(affine[:3, :3], (pts - affine[:3, 3]).T).T
    near = np.rint(ijk).astype(np.int64)
    ok = np.all((near >= 0) & (near < np.array(shape)), axis=1)
    return ijk, near, ok


def oracle_depth(mask, affine, pts):
    """Depth below the mask's TPS surface (tests/tps_checker.py: marching-squares outlines
    extruded half a slice gap, exact segment distances), and whether each point is inside
    the solid."""
    solid = Solid.from_mask(mask, affine)
    pts = np.atleast_2d(pts)
    return solid.depth(pts), solid.contains(pts)


def oracle_distance(mask, affine, pts):
    """Distance to the mask's TPS solid (tests/tps_checker.py)."""
    return Solid.from_mask(mask, affine).distance(np.atleast_2d(pts))


def edt_depth(mask, voxel_mm):
    """Depth of every voxel centre (scipy EDT with sampling; the border counts as outside)."""
    d = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=voxel_mm)
    return d[1:-1, 1:-1, 1:-1]


# -- strategies --------------------------------------------------------------------------------


def _rotation_from_quaternion(q):
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@st.composite
def grids(draw):
    """(shape, affine, kind): a voxel grid with an orthogonal, possibly flipped or oblique,
    affine."""
    shape = [draw(st.integers(1, 40)) for _ in range(3)]
    while np.prod(shape) > MAX_VOXELS:
        a = int(np.argmax(shape))
        shape[a] = max(1, shape[a] * 2 // 3)
    vox = np.array(
        [draw(st.floats(0.5, 4.0)), draw(st.floats(0.5, 4.0)), draw(st.floats(0.5, 5.0))]
    )
    kind = draw(st.sampled_from(["diagonal", "flip-permute", "oblique", "oblique-flipped"]))
    rot = np.eye(3)
    if kind in ("flip-permute", "oblique-flipped"):
        perm = draw(st.permutations([0, 1, 2]))
        signs = draw(st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3))
        rot = np.eye(3)[:, perm] * np.array(signs)
    if kind.startswith("oblique"):
        q = np.array(draw(st.tuples(*[st.floats(-1.0, 1.0)] * 4)))
        if np.linalg.norm(q) < 0.1:
            q = np.array([0.9, 0.3, -0.2, 0.1])
        rot = _rotation_from_quaternion(q) @ rot
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(vox)
    affine[:3, 3] = draw(st.tuples(*[st.floats(-300.0, 300.0)] * 3))
    return tuple(shape), affine, kind


#: GTV shapes, the usual ones more often.
SHAPE_KINDS = [
    "ellipsoid",
    "ellipsoid",
    "blobs",
    "blobs",
    "holes",
    "box",
    "box",
    "thin",
    "tiny",
    "full",
]


def rarely(draw, percent: int) -> bool:
    """True in about ``percent`` % of the examples; shrinks to False (the common case)."""
    return draw(st.integers(0, 99)) >= 100 - percent


@st.composite
def shapes(draw, shape, affine, kinds=tuple(SHAPE_KINDS)):
    """A boolean mask on the grid: (mask, kind)."""
    kind = draw(st.sampled_from(kinds))
    if rarely(draw, 4):
        kind = "empty"
    sh = np.array(shape)
    vox = np.linalg.norm(affine[:3, :3], axis=0)
    extent = float(np.max(sh * vox))
    world = _world(shape, affine)

    def ellipsoid():
        """World-space ellipsoid; never empty (its centre's voxel at least), so that the
        empty masks come from ``kind == 'empty'`` alone."""
        u = np.array(
            draw(
                st.tuples(
                    *[
                        st.floats(-0.2, 1.2) if rarely(draw, 20) else st.floats(0.0, 1.0)
                        for _ in range(3)
                    ]
                )
            )
        )
        centre_ijk = u * (sh - 1)
        centre = centre_ijk @ affine[:3, :3].T + affine[:3, 3]
        radii = np.array(draw(st.tuples(*[st.integers(2, 40)] * 3))) / 100 * extent + 0.5
        out = np.sum(((world - centre) / radii) ** 2, axis=-1) <= 1.0
        out[tuple(np.clip(np.rint(centre_ijk), 0, sh - 1).astype(int))] = True
        return out

    if kind == "ellipsoid":
        mask = ellipsoid()
    elif kind == "box":
        mask = np.zeros(shape, bool)
        lo = [draw(st.integers(0, (n - 1) // 2)) for n in shape]
        hi = [
            draw(st.integers(a + 1, n)) if rarely(draw, 30) else n - draw(st.integers(0, a))
            for a, n in zip(lo, shape)
        ]
        mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    elif kind == "blobs":
        mask = np.zeros(shape, bool)
        for _ in range(draw(st.integers(1, 4))):
            mask |= ellipsoid()
    elif kind == "holes":
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        mask = ellipsoid() & (rng.random(shape) > draw(st.floats(0.0, 0.3)))
    elif kind == "thin":
        axis = draw(st.integers(0, 2))
        k0 = draw(st.integers(0, shape[axis] - 1))
        slab = np.zeros(shape, bool)
        index = [slice(None)] * 3
        index[axis] = slice(k0, k0 + draw(st.integers(1, 2)))
        slab[tuple(index)] = True
        mask = slab & (ellipsoid() | draw(st.booleans()))
    elif kind == "tiny":
        mask = np.zeros(shape, bool)
        for _ in range(draw(st.integers(1, 3))):
            mask[tuple(draw(st.integers(0, n - 1)) for n in shape)] = True
    elif kind == "full":
        mask = np.ones(shape, bool)
    else:
        mask = np.zeros(shape, bool)
    return mask, kind


@dataclass
class Scene:
    """A drawn case: the stored GTV and OARs, their true masks, and what is wrong with them."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    grid_kind: str
    gtv_kind: str
    gtv: Volume  # as passed to the planner (possibly not bool)
    gtv_mask: np.ndarray  # what the stored values mean
    gtv_dtype: str
    oars: list[Oar] = field(default_factory=list)
    oar_masks: dict[str, np.ndarray] = field(default_factory=dict)
    #: Why the masks cannot be planned on (an error is required), or None.
    mask_problem: type[LatticeError] | None = None

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example
        oars = ", ".join(
            f"{o.name}: {int(np.count_nonzero(self.oar_masks.get(o.name, 0)))} "
            f"vox, clearance {o.clearance_mm!r}"
            for o in self.oars
        )
        return (
            f"Scene(shape={self.shape}, grid={self.grid_kind}, "
            f"voxel={np.round(np.linalg.norm(self.affine[:3, :3], axis=0), 4).tolist()}, "
            f"gtv={self.gtv_kind}/{self.gtv_dtype} "
            f"{int(np.count_nonzero(self.gtv_mask))} vox, oars=[{oars}], "
            f"mask_problem={getattr(self.mask_problem, '__name__', None)},\n"
            f"  affine={self.affine.tolist()})"
        )


def _stored(draw, mask):
    """The mask as stored values: (array, dtype name, two-label map?)."""
    how = draw(st.sampled_from(["bool", "bool", "bool", "uint8", "float", "label"]))
    if rarely(draw, 5):
        how = "labels"
    if how == "uint8":
        return mask.astype(np.uint8), how, False
    if how == "float":  # a probability map: > 0.5 is inside
        return np.where(mask, 0.75, 0.25).astype(np.float32), how, False
    if how == "label":
        return np.where(mask, 3, 0).astype(np.int16), how, False
    if how == "labels":  # a second label on one voxel: ambiguous if both are present
        data = np.where(mask, 1, 0).astype(np.int16)
        data[tuple(draw(st.integers(0, n - 1)) for n in mask.shape)] = 2
        return data, how, len(np.unique(data[data != 0])) > 1
    return mask, how, False


@st.composite
def scenes(draw):
    shape, affine, grid_kind = draw(grids())
    mask, gtv_kind = draw(shapes(shape, affine))
    data, dtype, ambiguous = _stored(draw, mask)
    if dtype == "labels":
        mask = data != 0
    scene = Scene(shape, affine, grid_kind, gtv_kind, Volume(data, affine), mask, dtype)
    if not mask.any():
        scene.mask_problem = MaskError
    elif ambiguous:
        scene.mask_problem = MaskError
    names = ["cord", "bowel"]
    for k in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["shape", "shape", "ring", "inside"]))
        if rarely(draw, 5):
            kind = "empty"
        if kind == "shape":
            organ, _ = draw(shapes(shape, affine, kinds=("ellipsoid", "box", "blobs", "tiny")))
        elif kind == "ring":  # touching the GTV from outside
            organ = ndimage.binary_dilation(mask, iterations=draw(st.integers(1, 3))) & ~mask
        elif kind == "inside":  # part of the GTV is organ
            organ = mask & draw(shapes(shape, affine, kinds=("ellipsoid", "box")))[0]
            if not organ.any():
                organ = mask.copy()
        else:
            organ = np.zeros(shape, bool)
        name = names[0] if rarely(draw, 5) else names[k]
        clearance = draw(st.one_of(st.floats(0.0, 15.0), st.just(0.0)))
        if rarely(draw, 5):
            clearance = draw(st.sampled_from([*NONSENSE, 1e6]))
        oar_affine = affine
        oar_data = organ.astype(np.uint8) if draw(st.booleans()) else organ
        if rarely(draw, 5):  # not on the GTV grid
            if draw(st.booleans()):
                oar_affine = affine.copy()
                oar_affine[:3, 3] += draw(st.sampled_from([0.01, 1.0, -2.5]))
            else:
                oar_data = np.pad(oar_data, ((0, 1), (0, 0), (0, 0)))
            if organ.any() and scene.mask_problem is None:
                scene.mask_problem = GridMismatchError
        if not organ.any() and scene.mask_problem is None:
            scene.mask_problem = MaskError
        scene.oars.append(Oar(name, Volume(oar_data, oar_affine), clearance))
        scene.oar_masks[name] = organ
    if len({o.name for o in scene.oars}) != len(scene.oars):
        scene.mask_problem = MaskError
    return scene


def _bad_number(value, *, positive):
    return not math.isfinite(value) or (value <= 0 if positive else value < 0)


#: One parameter made nonsense at a time (or none), so most examples get to plan.
BREAKS = [
    "diameter",
    "spacing",
    "spacing < diameter",
    "margin",
    "too long",
    "pattern",
    "mode",
    "shell width",
    "orientation search",
    "snap with 3d",
    "rotation step",
    "translation steps",
    "vertex counts",
    "count",
    "coplanar",
]


@st.composite
def parameters(draw, scene, *, pattern=None, valid=False, coarse=False):
    """Keyword arguments of plan_vertices: valid, or (sometimes, unless ``valid``) with one
    nonsense value. ``coarse``: spacings twice as large (fewer vertices, faster)."""
    vox = np.linalg.norm(scene.affine[:3, :3], axis=0)
    # Mostly relative to the voxel diagonal (the radius + margin must exceed half of it).
    diameter = draw(
        st.floats(0.01, 1.0)
        if rarely(draw, 10)
        else st.floats(1.0, 25.0)
        if rarely(draw, 30)
        else st.floats(0.5, 6.0).map(lambda f: f * float(np.linalg.norm(vox)))
    )
    ratio = draw(st.one_of(st.floats(1.0, 3.0), st.just(1.0)))
    margin = draw(
        st.sampled_from([4000.0, float(vox.max())]) if rarely(draw, 10) else st.floats(0.0, 8.0)
    )
    deepest = float(edt_depth(scene.gtv_mask, vox).max()) if scene.gtv_mask.any() else 0.0
    band = 0.5 * float(np.linalg.norm(vox))
    if not rarely(draw, 40) and deepest > band:
        # Fit radius + margin between the grid's limit and the GTV's deepest point, split at
        # random, so that most examples get vertices.
        need = band + (deepest - band) * draw(st.integers(5, 95)) / 100
        radius = need * draw(st.integers(10, 100)) / 100
        diameter, margin = 2 * radius, need - radius
    # The search's memory grows with the lattice points per cell translation: spacings far
    # below the grid's size exhaust it (see test_tiny_spacing_is_refused_before_it_exhausts_memory).
    per_grid = SPACINGS_PER_GRID / (2 if coarse else 1)
    floor = max(float(np.max(np.array(scene.shape) * vox)) / per_grid, float(vox.min()) / 2)
    kw = dict(
        diameter_mm=diameter,
        min_spacing_mm=max(diameter * ratio, floor),
        gtv_margin_mm=margin,
        oars=scene.oars,
    )
    kw["pattern"] = pattern or draw(st.sampled_from(["sc", "bcc", "fcc", "hcp"]))
    kw["mode"] = draw(st.sampled_from(["fill", "fill", "shell"]))
    if kw["mode"] == "shell" and draw(st.booleans()):
        kw["shell_width_mm"] = draw(st.floats(0.1, 15.0))
    kw["orientation_search"] = draw(st.sampled_from(["axial", "axial", "3d"]))
    if kw["orientation_search"] == "axial" and pattern != "max":
        kw["snap_to_slices"] = draw(st.booleans())
    # Coarse searches keep each example fast.
    kw["rotation_step_deg"] = draw(st.one_of(st.floats(15.0, 90.0), st.just(90.0)))
    kw["translation_steps"] = draw(st.integers(1, 5))
    which = draw(st.sampled_from(["none", "none", "none", "max", "min", "both", "count"]))
    if which in ("max", "both"):
        kw["max_vertices"] = draw(st.integers(1, 12))
    if which in ("min", "both"):
        kw["min_vertices"] = draw(st.integers(1, min(kw.get("max_vertices", 4), 4)))
    if which == "count" and pattern != "max":
        kw["count"] = draw(st.integers(1, 4))
    if rarely(draw, 20):
        kw["coplanar_mm"] = draw(st.one_of(st.floats(0.0, 20.0), st.just(0.0)))
        kw["coplanar_spacing_mm"] = draw(st.floats(1.0, 60.0))

    if not valid and rarely(draw, 25):
        broken = draw(
            st.sampled_from(BREAKS + (["max with snap or count"] if pattern == "max" else []))
        )
        nonsense = draw(st.sampled_from(NONSENSE))
        if broken == "diameter":
            kw["diameter_mm"] = nonsense
        elif broken == "spacing":
            kw["min_spacing_mm"] = nonsense
        elif broken == "spacing < diameter":
            kw["min_spacing_mm"] = diameter * draw(st.floats(0.1, 0.999))
        elif broken == "margin":
            kw["gtv_margin_mm"] = draw(st.sampled_from(NONSENSE[1:]))
        elif broken == "too long":  # beyond any patient: a unit mistake
            huge = draw(st.sampled_from([MAX_LENGTH_MM * 1.001, 1e9, 1e300]))
            which = draw(st.sampled_from(["diameter_mm", "min_spacing_mm", "gtv_margin_mm"]))
            kw[which] = huge
            if which == "diameter_mm":
                kw["min_spacing_mm"] = huge
        elif broken == "pattern":
            kw["pattern"] = draw(st.sampled_from(["HCP", "cubic", ""]))
        elif broken == "mode":
            kw["mode"] = draw(st.sampled_from(["edge", "Shell"]))
        elif broken == "shell width":
            kw["shell_width_mm"] = nonsense if kw["mode"] == "shell" else 5.0
        elif broken == "orientation search":
            kw["orientation_search"] = "sagittal"
        elif broken == "snap with 3d":
            kw["snap_to_slices"], kw["orientation_search"] = True, "3d"
        elif broken == "rotation step":
            kw["rotation_step_deg"] = draw(st.sampled_from([0.0, -5.0, 90.5, math.nan]))
        elif broken == "translation steps":
            kw["translation_steps"] = draw(st.sampled_from([0, -1, 65]))
        elif broken == "vertex counts":
            kw[draw(st.sampled_from(["max_vertices", "min_vertices"]))] = 0
            if draw(st.booleans()):
                kw["max_vertices"], kw["min_vertices"] = 2, 3
        elif broken == "count":
            kw["count"] = draw(st.sampled_from([0, -2, 3]))
            if kw["count"] == 3:  # count and max_vertices do not combine
                kw["max_vertices"] = 5
        elif broken == "max with snap or count":
            kw["orientation_search"] = "axial"
            kw["snap_to_slices" if draw(st.booleans()) else "count"] = 2
        else:
            kw["coplanar_mm"] = draw(st.sampled_from([*NONSENSE[1:], 10.0]))
            kw["coplanar_spacing_mm"] = draw(st.sampled_from([*NONSENSE, None]))
    return kw


def nonsense_parameters(kw) -> list[str]:
    """The documented parameter rules ``kw`` breaks (each must raise ParameterError)."""
    bad = []
    d, s, m = kw["diameter_mm"], kw["min_spacing_mm"], kw["gtv_margin_mm"]
    if _bad_number(d, positive=True) or d < MIN_DIAMETER_MM:
        bad.append("diameter")
    if _bad_number(s, positive=True):
        bad.append("spacing")
    if not bad and s < d:
        bad.append("spacing < diameter")
    if _bad_number(m, positive=False):
        bad.append("margin")
    lengths = [d, s, m, *(float(o.clearance_mm) for o in kw["oars"])]
    if any(math.isfinite(v) and v > MAX_LENGTH_MM for v in lengths):
        bad.append("too long")
    if any(_bad_number(float(o.clearance_mm), positive=False) for o in kw["oars"]):
        bad.append("clearance")
    if kw["pattern"] not in ("sc", "bcc", "fcc", "hcp", "max"):
        bad.append("pattern")
    if kw["pattern"] == "max" and (kw.get("snap_to_slices") or kw.get("count") is not None):
        bad.append("max with snap or count")
    if kw["mode"] not in ("fill", "shell"):
        bad.append("mode")
    width = kw.get("shell_width_mm")
    if width is not None and (_bad_number(width, positive=True) or kw["mode"] != "shell"):
        bad.append("shell width")
    if kw["orientation_search"] not in ("axial", "3d"):
        bad.append("orientation search")
    if kw.get("snap_to_slices") and kw["orientation_search"] == "3d":
        bad.append("snap with 3d")
    mx, mn, count = kw.get("max_vertices"), kw.get("min_vertices"), kw.get("count")
    if mx is not None and mx < 1 or mn is not None and mn < 1:
        bad.append("vertex counts")
    if mx is not None and mn is not None and mn > mx:
        bad.append("min > max")
    if count is not None and (count < 1 or mx is not None):
        bad.append("count")
    cp, cs = kw.get("coplanar_mm"), kw.get("coplanar_spacing_mm")
    if cp is not None and cp != 0:  # 0 turns the rule off
        if cs is None or _bad_number(cp, positive=True) or _bad_number(cs, positive=True):
            bad.append("coplanar")
    step = kw.get("rotation_step_deg", 5.0)
    if not (math.isfinite(step) and 0 < step <= 90):
        bad.append("rotation step")
    if not 1 <= kw.get("translation_steps", 12) <= 64:
        bad.append("translation steps")
    return bad


# -- the property ------------------------------------------------------------------------------


def _plan_or_documented_error(scene: Scene, kw: dict):
    """Plan; check that an error, if any, is a documented one of the right class."""
    bad = nonsense_parameters(kw)
    try:
        plan = plan_vertices(scene.gtv, **kw)
    except LatticeError as exc:
        event(f"raised {type(exc).__name__}" + (" (nonsense parameters)" if bad else ""))
        vox = np.linalg.norm(scene.affine[:3, :3], axis=0)
        # Documented: radius + margin must exceed half the voxel diagonal.
        too_fine = not bad and (
            kw["gtv_margin_mm"] + kw["diameter_mm"] / 2 <= 0.5 * np.linalg.norm(vox)
        )
        why = (
            "parameters: " + bad[0]
            if bad
            else "masks"
            if scene.mask_problem
            else "grid too coarse"
            if too_fine
            else "too few vertices"
        )
        event(f"  because of {why}")
        if bad:
            assert isinstance(exc, ParameterError), (bad, exc)
        elif scene.mask_problem is not None:
            # Mask content is checked before the grid rule, OAR grids after it.
            assert isinstance(exc, (MaskError, GridMismatchError)) or (
                too_fine
                and scene.mask_problem is GridMismatchError
                and isinstance(exc, ParameterError)
            ), (scene.mask_problem, exc)
        else:
            # Valid input: only the documented 'cannot plan' errors.
            assert isinstance(exc, ParameterError), exc
            required = kw.get("min_vertices") or kw.get("count")
            assert too_fine or required, exc
        return None
    assert not bad, f"nonsense parameters {bad} were accepted"
    event("plan with vertices" if plan.n_vertices else "empty plan")
    assert scene.mask_problem is None, f"expected {scene.mask_problem.__name__}, got a plan"
    return plan


def check_plan(scene: Scene, kw: dict, plan) -> None:
    """Verifier and independent geometry agree that every rule holds."""
    doc = plan.to_dict(inputs={"gtv": {"path": "gtv.nii.gz"}})
    doc = json.loads(json.dumps(doc, allow_nan=False))  # plan.json is strict JSON
    oar_vols = {o.name: o.mask for o in scene.oars}
    for exact_depth in (True, False):  # False: as the CLI checks before writing
        report = verify_plan(doc, gtv=scene.gtv, oars=oar_vols, check_reported_depth=exact_depth)
        assert report.ok, [v.message for v in report.violations]
    assert report.n_vertices == plan.n_vertices == len(doc["vertices"])

    gtv, aff = scene.gtv_mask, scene.affine
    d, m = float(kw["diameter_mm"]), float(kw["gtv_margin_mm"])
    need = m + d / 2
    c = plan.centers_ras_mm
    n = len(c)
    assert c.shape == (n, 3) and np.all(np.isfinite(c))
    np.testing.assert_array_equal(
        np.array([v["center_ras_mm"] for v in doc["vertices"]]).reshape(-1, 3), c
    )

    # The LATTICE target: the GTV's voxel centres deeper than the margin below its TPS
    # surface (independent checker).
    target = plan.lattice_target.array
    assert not (target & ~gtv).any()
    ijk = np.argwhere(gtv)
    if len(ijk):
        depth_vox = Solid.from_mask(gtv, aff).depth(ijk @ aff[:3, :3].T + aff[:3, 3])
        clear = np.abs(depth_vox - m) > 1e-6  # a tie within float rounding either way
        assert np.array_equal(target[tuple(ijk[clear].T)], depth_vox[clear] > m)

    # Rules, measured from the masks.
    if n:
        depth, inside = oracle_depth(gtv, aff, c)
        assert inside.all(), "a vertex centre is outside the GTV"
        assert np.all(depth >= need - TOL_MM), (depth.min(), need)
        np.testing.assert_allclose(plan.depth_mm, depth, atol=1e-6)
        if kw["mode"] == "shell":
            width = kw.get("shell_width_mm") or d / 2
            assert np.all(depth <= need + width + TOL_MM), (depth.max(), need + width)
        for o in scene.oars:
            dist = oracle_distance(scene.oar_masks[o.name], aff, c)
            assert np.all(dist >= o.clearance_mm + d / 2 - TOL_MM), (o.name, dist.min())
            np.testing.assert_allclose(plan.oar_distance_mm[o.name], dist, atol=1e-6)
        if kw.get("snap_to_slices"):
            ijk, _, _ = _nearest_voxel(gtv.shape, aff, c)
            assert np.allclose(ijk[:, 2], np.round(ijk[:, 2]), atol=1e-6)
    if n > 1:
        pair = pdist(c)
        assert pair.min() >= kw["min_spacing_mm"] - TOL_MM, pair.min()
        if kw.get("coplanar_mm"):
            dz = pdist(c[:, 2:])
            assert np.all(pair[dz < kw["coplanar_mm"] - 1e-9] >= kw["coplanar_spacing_mm"] - TOL_MM)
    if kw.get("max_vertices") is not None:
        assert n <= kw["max_vertices"]
    if kw.get("min_vertices") is not None:
        assert n >= kw["min_vertices"]
    if kw.get("count") is not None:
        assert n == kw["count"]
    if n == 0:
        assert plan.warnings, "an empty plan must say why"

    # Completeness: where a ball wider than the lattice's covering radius is allowed, every
    # lattice pose holds a vertex, so the plan cannot be empty. The slack (1-Lipschitz) at
    # voxel centres, from the EDTs.
    # ('max' starts from the best lattice and never loses a vertex.)
    if not kw.get("snap_to_slices") and len(ijk):
        slack = depth_vox - need
        if kw["mode"] == "shell":
            slack = np.minimum(slack, need + (kw.get("shell_width_mm") or d / 2) - depth_vox)
        centres_vox = ijk @ aff[:3, :3].T + aff[:3, 3]
        for o in scene.oars:
            dist = oracle_distance(scene.oar_masks[o.name], aff, centres_vox)
            slack = np.minimum(slack, dist - (o.clearance_mm + d / 2))
        if float(slack.max()) > COVERING_RADIUS_FACTOR * kw["min_spacing_mm"] + 1e-6:
            event("room for a whole lattice cell")
            assert n > 0, f"room for a ball of radius {float(slack.max()):.3f} mm but no vertex"


@_profile(250)
@given(data=st.data())
def test_lattice_plans_verify_or_raise_documented_errors(data):
    scene = data.draw(scenes(), label="scene")
    kw = data.draw(parameters(scene), label="parameters")
    plan = _plan_or_documented_error(scene, kw)
    if plan is not None:
        check_plan(scene, kw, plan)


@_profile(12)
@given(data=st.data())
def test_maximal_packing_plans_verify(data):
    """``pattern='max'`` (irregular packing) obeys the same rules; few examples, it is slow."""
    scene = data.draw(scenes(), label="scene")
    kw = data.draw(parameters(scene, pattern="max", coarse=True), label="parameters")
    kw["time_budget_s"] = data.draw(st.sampled_from([0.05, 0.2]), label="time_budget_s")
    plan = _plan_or_documented_error(scene, kw)
    if plan is not None:
        check_plan(scene, kw, plan)


def restored(mask, affine, perm, flips):
    """The same voxels (the same world) stored with flipped and permuted array axes."""
    a = np.array(affine, dtype=float)
    for axis in np.flatnonzero(flips):
        mask = np.flip(mask, axis)
        a[:3, 3] += a[:3, axis] * (mask.shape[axis] - 1)
        a[:3, axis] = -a[:3, axis]
    a[:3, :3] = a[:3, :3][:, list(perm)]
    return np.ascontiguousarray(np.transpose(mask, perm)), a


@_profile(25)
@given(data=st.data())
def test_vertex_count_does_not_depend_on_array_storage(data):
    """Flipping the array axes or swapping the two in-plane ones (the affine following, so
    every voxel keeps its world position) changes storage, not the case: the same number of
    vertices fit. A permutation that moves the k axis slices the GTV along other planes, a
    different TPS solid (tests/planning/test_placement.py checks both plans under their own
    slicing).
    (Slice snapping is left out: it follows the k axis by design.)"""
    scene = data.draw(scenes(), label="scene")
    assume(scene.mask_problem is None)
    kw = data.draw(parameters(scene, valid=True, coarse=True), label="parameters")
    kw["snap_to_slices"] = False
    perm = data.draw(st.sampled_from([(0, 1, 2), (1, 0, 2)]), label="perm")
    flips = data.draw(st.tuples(*[st.booleans()] * 3), label="flips")
    try:
        plan = plan_vertices(scene.gtv, **kw)
    except LatticeError:
        return
    gtv, aff = restored(scene.gtv_mask, scene.affine, perm, flips)
    oars = [
        Oar(
            o.name,
            Volume(*restored(scene.oar_masks[o.name], scene.affine, perm, flips)),
            o.clearance_mm,
        )
        for o in scene.oars
    ]
    other = plan_vertices(Volume(gtv, aff), **{**kw, "oars": oars})
    event("plan with vertices" if plan.n_vertices else "empty plan")
    assert other.n_vertices == plan.n_vertices


# -- reproducers of what this suite found ------------------------------------------------------


def _verified(plan, gtv: Volume, oars: dict[str, Volume]) -> None:
    report = verify_plan(
        json.loads(json.dumps(plan.to_dict(), allow_nan=False)), gtv=gtv, oars=oars
    )
    assert report.ok, [v.message for v in report.violations]


@pytest.mark.parametrize("shape", [(1, 1, 1), (30, 30, 1)])
def test_maximal_packing_of_a_single_slice_image(shape):
    """Found here: ``pattern='max'`` on an image one voxel thick along an axis raised an
    IndexError (the packer's slack interpolation assumed two voxels per axis).

    Under the TPS surface model a one-slice GTV is a slab one slice gap thick, so no point is
    deeper than half a gap, which is less than the half voxel diagonal a radius + margin must
    exceed: the plan is empty and says why (or the parameters are refused), never a crash.
    A thin stack of slices is planned along the short axis instead.
    """
    ii, jj = np.mgrid[: shape[0], : shape[1]]
    disc = (((ii - (shape[0] - 1) / 2) ** 2 + (jj - (shape[1] - 1) / 2) ** 2) <= 144)[..., None]
    small = (
        disc
        & ((((ii - (shape[0] - 1) / 2) ** 2 + (jj - (shape[1] - 1) / 2) ** 2) <= 25)[..., None])
    )
    gtv = Volume(small, np.diag([0.5, 0.5, 0.5, 1.0]))
    try:
        # Small and coarse: with no vertex possible every candidate is settled exactly.
        plan = plan_vertices(
            gtv,
            diameter_mm=1.0,
            min_spacing_mm=2.0,
            gtv_margin_mm=0.0,
            pattern="max",
            time_budget_s=0.1,
            rotation_step_deg=45,
            translation_steps=3,
        )
    except ParameterError:
        pass
    else:
        assert plan.n_vertices == 0 and plan.warnings
    if shape[0] == 1:
        return
    # The disc stood on its edge and four voxels thick: room for vertices.
    slab = np.repeat(np.transpose(disc, (2, 0, 1)), 4, axis=0)
    gtv = Volume(slab, np.diag([0.5, 0.5, 0.5, 1.0]))
    plan = plan_vertices(
        gtv,
        diameter_mm=1.0,
        min_spacing_mm=4.0,
        gtv_margin_mm=0.0,
        pattern="max",
        time_budget_s=0.1,
    )
    assert plan.n_vertices >= 1
    _verified(plan, gtv, {})


def test_reported_distance_to_an_oar_around_the_vertex():
    """Found here: a centre inside an OAR's voxels (allowed there when the clearance is 0 and
    the radius is below half a voxel diagonal) was reported at its distance to the organ's
    surface voxels, not to the nearest organ voxel; the verifier flagged the values.

    Under the TPS surface model a point inside the organ's solid is at distance 0, so with
    clearance 0 the vertices sit in the half of the GTV the organ leaves free, and their
    reported distances to the organ's solid match the independent checker.
    """
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    ijk = np.argwhere(np.ones((12, 12, 12), bool))
    gtv = (np.linalg.norm(ijk - 5.5, axis=1) <= 5).reshape(12, 12, 12)
    organ = gtv.copy()
    organ[:6] = False
    plan = plan_vertices(
        Volume(gtv, aff),
        diameter_mm=1.5,
        min_spacing_mm=3.0,
        gtv_margin_mm=4.0,
        oars=[Oar("organ", Volume(organ, aff), 0.0)],
        rotation_step_deg=30,
        translation_steps=3,
    )
    assert plan.n_vertices > 0
    dist = oracle_distance(organ, aff, plan.centers_ras_mm)
    np.testing.assert_allclose(plan.oar_distance_mm["organ"], dist, atol=1e-9)
    assert np.all(dist >= 0.75 - 1e-9)
    _verified(plan, Volume(gtv, aff), {"organ": Volume(organ, aff)})


_TINY_SPACING = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
import numpy as np
from lattice.errors import LatticeError
from lattice.planning.placement import plan_vertices
from lattice.planning.plan import MAX_LENGTH_MM
from lattice.volume import Volume
ijk = np.argwhere(np.ones((20, 20, 20), bool))
gtv = (np.linalg.norm(ijk - 9.5, axis=1) <= 8).reshape(20, 20, 20)  # 32 mm across
try:
    plan_vertices(Volume(gtv, np.diag([2.0, 2.0, 2.0, 1.0])), diameter_mm={d},
                  min_spacing_mm={s}, gtv_margin_mm=2.0)
except LatticeError as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize("diameter, spacing", [(0.05, 0.05), (1.0, 1.0)])
def test_tiny_spacing_is_refused_before_it_exhausts_memory(diameter, spacing):
    """Found here: tiny spacings exhausted memory (MemoryError). Run in a child limited to
    2 GiB of address space, so that a regression fails fast and safely; the planner must
    refuse such a spacing with a ParameterError that names a workable spacing."""
    resource = pytest.importorskip("resource")
    assert resource  # the child sets the limit (POSIX only)
    code = _TINY_SPACING.format(d=diameter, s=spacing)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert "MemoryError" not in done.stderr, done.stderr[-300:]
    assert done.returncode == 0, done.stderr[-500:]
    assert (
        done.stdout.startswith("ParameterError") and "use a spacing of at least" in done.stdout
    ), done.stdout
