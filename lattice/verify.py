"""Independent verification of a written plan: every rule recomputed from the masks.

The verifier reads what a plan *says* (``plan.json``: parameters, grid and the written vertex
centres) and checks it against what the masks *are*, with its own distance computation. It
shares no code with the planner's rule field or search (:mod:`lattice.rules`,
:mod:`lattice.placement`), so a bug there cannot hide itself here. Only the containers
(:class:`~lattice.volume.Volume`, :class:`~lattice.grid.Grid`), the mask reader, the
bounding-box helper (:func:`lattice.margins.bounding_box`) and the error classes are shared.

Distances follow the TPS surface model (README "Definitions", :mod:`lattice.surface`): the GTV
and each OAR are the solids a TPS rebuilds from slice outlines (the RTSTRUCT's polygons when
the mask came from DICOM, marching squares at 0.5 of each slice otherwise), each extruded half
a slice gap above and below its plane.

- **depth** of a centre: its distance to the outside of the GTV solid (0 outside it);
- **OAR distance**: its distance to the OAR solid (0 inside it).

Both are computed by brute force here (every segment of every slab in reach, crossing-number
inside tests; see :class:`_Slabs`), not with the planner's voxel tables, trees or bounds.

Rules (from ``plan["parameters"]``, radius R = D/2):

=============== ==================================================================
gtv_margin      depth >= gtv_margin_mm + R
spacing         every pair of centres >= min_spacing_mm apart
oar_clearance   distance to each OAR >= its clearance + R
slice_plane     with snap_to_slices: each centre's k index is a whole number
max_vertices    n <= max_vertices, when set
min_vertices    n >= min_vertices, when set
coplanar        with coplanar_mm and coplanar_spacing_mm: centres closer than coplanar_mm
                in z (world, superior-inferior) are >= coplanar_spacing_mm apart
shell_depth     in shell mode: depth <= gtv_margin_mm + R + shell_width_mm
reported_values the per-vertex numbers written in plan.json agree with the recomputation
input_files     the input files still have the checksums recorded at planning
=============== ==================================================================
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from nibabel.affines import apply_affine
from numpy.typing import NDArray

from .errors import GridMismatchError, InputFileError
from .grid import Grid, ras_to_lps
from .io import load_grid, load_mask, mask_from_array, sha256_file
from .volume import Volume

#: Rule checks forgive this much (mm). Centres are written with full float precision, so a
#: recomputed distance differs from the planner's only by float rounding (~1e-12 mm on
#: 100 mm); 1 nm is far above that and far below anything of clinical meaning.
RULE_TOLERANCE_MM = 1e-6

#: Reported per-vertex values may differ from the recomputation by this much (mm): the
#: planner rounds derived distances to 1 µm (an error of at most 0.5 µm).
REPORT_TOLERANCE_MM = 1e-3

#: With snap_to_slices a centre's k index must be a whole number within this: the planner
#: rounds k and maps back to the world, which leaves ~1e-12 of float rounding.
SLICE_INDEX_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Violation:
    """One broken rule.

    Attributes
    ----------
    rule : str
        Rule name (see the module docstring), e.g. ``"gtv_margin"``.
    vertex_ids : tuple of int
        Ids (``vertex["id"]``) of the vertices involved; empty for plan-level findings.
    message : str
        What is wrong, in the units and words of the rule.
    """

    rule: str
    vertex_ids: tuple[int, ...]
    message: str


@dataclass(frozen=True)
class VerificationReport:
    """Outcome of verifying a plan.

    Attributes
    ----------
    violations : tuple of Violation
    warnings : tuple of str
        Things the verifier could not check or that look odd without breaking a rule.
    n_vertices : int
    checks : tuple of dict
        One entry per rule checked: ``{"rule": str, "worst_slack_mm": float or None,
        "detail": str}`` (plus ``"oar"`` for OAR clearances). The worst slack is the
        smallest room left by any vertex (negative when violated); None when the rule has no
        distance (a count) or nothing to measure (no vertices).
    """

    violations: tuple[Violation, ...]
    warnings: tuple[str, ...]
    n_vertices: int
    checks: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when no rule is violated."""
        return not self.violations

    @property
    def violated_rules(self) -> tuple[str, ...]:
        """Names of the violated rules, each once, in order of first appearance."""
        return tuple(dict.fromkeys(v.rule for v in self.violations))


# -- reading the plan document ----------------------------------------------------------------

@dataclass(frozen=True)
class _Rules:
    diameter_mm: float
    min_spacing_mm: float
    gtv_margin_mm: float
    oar_clearance_mm: dict[str, float]
    snap_to_slices: bool
    max_vertices: int | None
    min_vertices: int | None
    coplanar_mm: float | None
    coplanar_spacing_mm: float | None
    shell_width_mm: float | None

    @property
    def radius_mm(self) -> float:
        return self.diameter_mm / 2.0


def _bad(source: str, what: str) -> InputFileError:
    return InputFileError(f"{source}: {what}; write the plan again with `lattice plan`")


def _number(value: Any, name: str, source: str, *, minimum: float = 0.0,
            optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or value < minimum:
        raise _bad(source, f"{name} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def _parse_rules(params: Any, source: str) -> _Rules:
    if not isinstance(params, Mapping):
        raise _bad(source, "'parameters' is missing or not an object")
    for key in ("diameter_mm", "min_spacing_mm", "gtv_margin_mm"):
        if key not in params:
            raise _bad(source, f"parameters.{key} is missing")
    clearances = params.get("oar_clearance_mm") or {}
    if not isinstance(clearances, Mapping):
        raise _bad(source, "parameters.oar_clearance_mm is not an object")
    counts = {}
    for key in ("max_vertices", "min_vertices"):
        value = params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            raise _bad(source, f"parameters.{key} must be a whole number, got {value!r}")
        counts[key] = value
    diameter = _number(params["diameter_mm"], "parameters.diameter_mm", source, minimum=0)
    assert diameter is not None
    coplanar = _number(params.get("coplanar_mm"), "parameters.coplanar_mm", source,
                       optional=True)
    coplanar_spacing = _number(params.get("coplanar_spacing_mm"),
                               "parameters.coplanar_spacing_mm", source, optional=True)
    # Shell mode: the deepest allowed centre is margin + R + width (width defaults to R).
    # Documents without a "mode" key (older or other writers) are in shell mode when they
    # name a width; in "fill" mode a width left in the parameters is not a rule.
    mode = params.get("mode")
    width = _number(params.get("shell_width_mm"), "parameters.shell_width_mm", source,
                    optional=True)
    if mode == "shell" and width is None:
        width = diameter / 2.0
    elif mode is not None and mode != "shell":
        width = None
    return _Rules(
        diameter_mm=diameter,
        min_spacing_mm=_number(params["min_spacing_mm"], "parameters.min_spacing_mm",
                               source),  # type: ignore[arg-type]
        gtv_margin_mm=_number(params["gtv_margin_mm"], "parameters.gtv_margin_mm",
                              source),  # type: ignore[arg-type]
        oar_clearance_mm={str(k): float(_number(v, f"parameters.oar_clearance_mm.{k}",
                                                source) or 0.0)
                          for k, v in clearances.items()},
        snap_to_slices=bool(params.get("snap_to_slices", False)),
        max_vertices=counts["max_vertices"],
        min_vertices=counts["min_vertices"],
        coplanar_mm=coplanar if coplanar_spacing is not None else None,
        coplanar_spacing_mm=coplanar_spacing if coplanar is not None else None,
        shell_width_mm=width,
    )


def _parse_grid(grid: Any, source: str) -> Grid:
    """The plan's grid (shape and affine)."""
    try:
        shape = tuple(int(n) for n in grid["shape"])
        affine = np.array(grid["affine"], dtype=np.float64)
    except (TypeError, KeyError, ValueError) as exc:
        raise _bad(source, f"'grid' lacks a valid shape and affine ({exc})") from None
    if len(shape) != 3 or affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise _bad(source, f"'grid' has shape {shape} and a {affine.shape} affine; "
                           "expected 3 sizes and a 4x4 affine")
    return Grid(shape, affine)  # type: ignore[arg-type]  # three sizes: checked above


def _parse_vertices(vertices: Any, source: str) -> tuple[list[Mapping[str, Any]],
                                                         NDArray[np.float64]]:
    if not isinstance(vertices, list):
        raise _bad(source, "'vertices' is missing or not a list")
    centres = []
    for i, v in enumerate(vertices):
        if not isinstance(v, Mapping) or "center_ras_mm" not in v:
            raise _bad(source, f"vertex {i + 1} has no center_ras_mm")
        try:
            c = np.array(v["center_ras_mm"], dtype=np.float64)
        except (TypeError, ValueError):
            c = np.zeros(0)
        if c.shape != (3,) or not np.all(np.isfinite(c)):
            raise _bad(source, f"vertex {i + 1} has center_ras_mm {v['center_ras_mm']!r}; "
                               "expected three finite numbers")
        centres.append(c)
    return vertices, np.array(centres, dtype=np.float64).reshape(-1, 3)


# -- distances --------------------------------------------------------------------------------

def _slice_rings(mask: Volume, k: int) -> list[NDArray[np.float64]]:
    """Closed outlines (voxel indices i, j) of slice k: the mask's own polygons when it was
    rasterised from an RTSTRUCT, otherwise marching squares at 0.5 of the padded slice."""
    from skimage.measure import find_contours

    from .surface import ContourVolume

    if isinstance(mask, ContourVolume):
        return [ring for kk, ring in mask.rings_ijk if kk == k]
    plane = np.asarray(mask.array[:, :, k], dtype=bool)
    ii = np.flatnonzero(plane.any(axis=1))
    if len(ii) == 0:
        return []
    jj = np.flatnonzero(plane.any(axis=0))
    sub = plane[ii[0]:ii[-1] + 1, jj[0]:jj[-1] + 1]  # same outlines, shifted back below
    off = np.array([ii[0], jj[0]], dtype=np.float64) - 1.0
    return [line[:-1] + off for line in find_contours(np.pad(sub, 1).astype(float), 0.5)]


class _Slabs:
    """Brute-force distances to the TPS solid of a mask (README "Definitions").

    Each slice's outline is extruded half a slice gap each side. In the grid frame
    ``(i dx, j dy, k dz)`` the distance from a point to the outside of the solid (depth) is the
    least ``sqrt(e_j^2 + z_j^2)`` over slabs j (e_j: in-plane distance to slab j's outline
    when inside it, else 0; z_j: distance to the slab's extent), and the distance to the solid
    the same with e_j = 0 inside and the distance to the outline outside. Every segment of a
    slab is measured, and inside-ness is the crossing number: no tables, trees or shortcuts,
    so this shares nothing with the planner's fast path beyond the definition.
    """

    def __init__(self, mask: Volume) -> None:
        self.mask = mask
        self.vox = mask.voxel_size_mm
        self.inv = np.linalg.inv(mask.affine)
        self._segs: dict[int, NDArray[np.float64] | None] = {}

    def segments(self, k: int) -> NDArray[np.float64] | None:
        """(n, 4) segments (u0, v0, u1, v1) of slice k in mm, None for an empty slice."""
        if k not in self._segs:
            rings = ([np.asarray(r, dtype=np.float64)[:, :2] * self.vox[:2]
                      for r in _slice_rings(self.mask, k)]
                     if 0 <= k < self.mask.shape[2] else [])
            segs = [np.column_stack([r, np.roll(r, -1, axis=0)]) for r in rings if len(r) >= 2]
            self._segs[k] = np.concatenate(segs) if segs else None
        return self._segs[k]

    def _inplane(self, k: int, q: NDArray[np.float64]
                 ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Distance to slice k's outline and even-odd inside-ness of points ``q (m, 2)``."""
        s = self.segments(k)
        if s is None:
            return np.full(len(q), np.inf), np.zeros(len(q), dtype=bool)
        a, ab = s[None, :, :2], (s[:, 2:] - s[:, :2])[None]
        rel = q[:, None, :] - a
        t = np.clip(np.sum(rel * ab, axis=2) / np.maximum(np.sum(ab * ab, axis=2), 1e-300),
                    0.0, 1.0)
        dist = np.sqrt(np.min(np.sum((rel - t[..., None] * ab) ** 2, axis=2), axis=1))
        y0, y1 = s[None, :, 1], s[None, :, 3]
        qy = q[:, 1:2]
        spans = (np.minimum(y0, y1) <= qy) & (qy < np.maximum(y0, y1))
        with np.errstate(divide="ignore", invalid="ignore"):
            x = s[None, :, 0] + (qy - y0) / (y1 - y0) * (s[None, :, 2] - s[None, :, 0])
        inside = np.count_nonzero(spans & (x > q[:, :1]), axis=1) % 2 == 1
        return dist, inside

    def measure(self, points_ras_mm: NDArray[np.float64], *, depth: bool,
                cap_mm: float = np.inf) -> NDArray[np.float64]:
        """Depth below (``depth=True``) or distance to the solid of each point, capped."""
        n = len(points_ras_mm)
        if n == 0:
            return np.zeros(0)
        dz = float(self.vox[2])
        uvw = apply_affine(self.inv, points_ras_mm) * self.vox
        j0 = np.rint(uvw[:, 2] / dz).astype(np.int64)
        best = np.full(n, cap_mm, dtype=np.float64)
        live = np.ones(n, dtype=bool)
        for k in np.unique(j0):  # the own slab
            rows = np.flatnonzero(j0 == k)
            e, inside = self._inplane(int(k), uvw[rows, :2])
            if depth:
                best[rows] = np.where(inside, np.minimum(best[rows], e), 0.0)
                live[rows] = inside
            else:
                best[rows] = np.where(inside, 0.0, np.minimum(best[rows], e))
        nk = self.mask.shape[2]
        m = 0
        while True:
            m += 1
            live &= (m - 1) * dz < best  # slab j0 +- m is at least (m - 1) dz away
            if not live.any() or (j0[live].max() - m < -1 and j0[live].min() + m > nk):
                break
            for sign in (-1, 1):
                j = j0 + sign * m
                for k in np.unique(j[live]):
                    rows = np.flatnonzero(live & (j == k))
                    z = np.maximum(np.abs(uvw[rows, 2] - k * dz) - 0.5 * dz, 0.0)
                    e, inside = self._inplane(int(k), uvw[rows, :2])
                    if depth:
                        term = np.hypot(np.where(inside, e, 0.0), z)
                    else:
                        term = np.hypot(np.where(inside, 0.0, e), z)  # inf on empty slabs
                    best[rows] = np.minimum(best[rows], term)
        return best


def _depth_mm(gtv: Volume, points_ras_mm: NDArray[np.float64], *,
              cap_mm: float | None = None) -> NDArray[np.float64]:
    """Depth (mm) of each point below the GTV's TPS surface (0 outside), capped."""
    return _Slabs(gtv).measure(points_ras_mm, depth=True,
                               cap_mm=np.inf if cap_mm is None else cap_mm)


def _distance_to_mask_mm(mask: Volume, points_ras_mm: NDArray[np.float64], *,
                         cap_mm: float | None = None) -> NDArray[np.float64]:
    """Distance (mm) from each point to the OAR's TPS solid (0 inside), capped."""
    if len(points_ras_mm) == 0:
        return np.zeros(0)
    return _Slabs(mask).measure(points_ras_mm, depth=False,
                                cap_mm=np.inf if cap_mm is None else cap_mm)


# -- formatting -------------------------------------------------------------------------------

def _fmt(mm: float) -> str:
    """A distance for a message: to 1 µm, without trailing zeros; tiny values in full."""
    if mm != 0 and abs(mm) < 1e-3:
        return f"{mm:.2g}"
    return f"{mm:.3f}".rstrip("0").rstrip(".")


def _pt(p: Any) -> str:
    return "(" + ", ".join(_fmt(float(v)) for v in p) + ")"


# -- the checks -------------------------------------------------------------------------------

def _check_on_grid(mask: Volume | Grid, grid: Grid, *, name: str, note: str = "") -> None:
    """Raise GridMismatchError unless ``mask`` lies on the plan's grid."""
    try:
        grid.check_same_grid(mask, name="the plan's grid", other_name=name)
    except GridMismatchError as exc:
        if note:
            raise GridMismatchError(f"{exc} ({note})") from None
        raise


class _Checker:
    """Accumulates violations and per-rule worst slacks for one plan."""

    def __init__(self, names: list[str], ids: list[int]) -> None:
        self.names = names
        self.ids = ids
        self.violations: list[Violation] = []
        self.checks: list[dict[str, Any]] = []

    def worst(self, rule: str, slack: NDArray[np.float64] | None, detail: str,
              **extra: Any) -> None:
        value = None if slack is None or len(slack) == 0 else round(float(np.min(slack)), 6)
        self.checks.append({"rule": rule, "worst_slack_mm": value, "detail": detail, **extra})

    def add(self, rule: str, vertices: tuple[int, ...], message: str) -> None:
        self.violations.append(Violation(rule, tuple(self.ids[i] for i in vertices), message))


def verify_plan(plan_doc: Mapping[str, Any], *, gtv: Volume,
                oars: Mapping[str, Volume] | None = None,
                check_reported_depth: bool = True) -> VerificationReport:
    """Recompute every rule of a plan document from the masks and the written centres.

    Parameters
    ----------
    plan_doc : mapping
        The ``plan.json`` document (see :meth:`lattice.plan.Plan.to_dict`).
    gtv : Volume
        GTV mask on the plan's grid (bool, or values :func:`lattice.io.mask_from_array`
        accepts).
    oars : mapping of str to Volume, optional
        OAR masks by the names in ``parameters.oar_clearance_mm``. An OAR with a clearance
        but no mask is a violation (its rule cannot be checked); a mask without a clearance
        is ignored with a warning.
    check_reported_depth : bool
        Also recompute every vertex's exact depth to cross-check the reported ``depth_mm``.
        Without it, depths are searched only as deep as the rules need (much faster for
        vertices deep in a large GTV); every rule is still checked exactly.

    Returns
    -------
    VerificationReport

    Raises
    ------
    InputFileError
        The document lacks parameters, grid or vertex centres, or holds bad values.
    MaskError
        A mask is empty or an ambiguous label map.
    GridMismatchError
        A mask is not on the plan's grid.

    Examples
    --------
    >>> report = verify_plan(plan.to_dict(), gtv=gtv)  # doctest: +SKIP
    >>> report.ok, report.violated_rules                # doctest: +SKIP
    (True, ())
    """
    source = "the plan document"
    if not isinstance(plan_doc, Mapping):
        raise _bad(source, f"expected a JSON object, got {type(plan_doc).__name__}")
    oars = dict(oars or {})
    rules = _parse_rules(plan_doc.get("parameters"), source)
    grid = _parse_grid(plan_doc.get("grid"), source)
    records, centres = _parse_vertices(plan_doc.get("vertices"), source)
    n = len(centres)

    _check_on_grid(gtv, grid, name="the GTV mask")
    gtv_mask = gtv if gtv.array.dtype == bool else gtv.with_array(
        mask_from_array(np.asarray(gtv.array), name="the GTV mask"))
    oar_masks = {}
    for name, vol in oars.items():
        _check_on_grid(vol, grid, name=f"OAR mask '{name}'")
        oar_masks[name] = vol if vol.array.dtype == bool else vol.with_array(
            mask_from_array(np.asarray(vol.array), name=f"OAR mask '{name}'"))

    names = [str(v.get("name") or f"vertex {v.get('id', i + 1)}") for i, v in enumerate(records)]
    ids = [int(v["id"]) if isinstance(v.get("id"), int) else i + 1
           for i, v in enumerate(records)]
    chk = _Checker(names, ids)
    warnings: list[str] = []
    if n == 0:
        warnings.append("the plan has no vertices: nothing to verify but its inputs")
    r = rules.radius_mm

    # GTV margin.
    need = rules.gtv_margin_mm + r
    cap = None
    if not check_reported_depth:
        cap = need + (rules.shell_width_mm or 0.0) + 1.0  # deeper than any rule looks
    depth = _depth_mm(gtv_mask, centres, cap_mm=cap)
    chk.worst("gtv_margin", depth - need, f"centre depth >= {_fmt(need)} mm "
              f"(margin {_fmt(rules.gtv_margin_mm)} + radius {_fmt(r)})")
    for i in np.flatnonzero(depth < need - RULE_TOLERANCE_MM).tolist():
        where = (f"is {_fmt(depth[i])} mm deep" if depth[i] > 0
                 else "is outside the GTV (depth 0)")
        chk.add("gtv_margin", (i,), f"{names[i]} centre {where}; the GTV margin rule needs "
                f">= {_fmt(need)} mm ({_fmt(need - depth[i])} mm short)")

    # Shell depth (shell mode).
    if rules.shell_width_mm is not None:
        deepest = need + rules.shell_width_mm
        chk.worst("shell_depth", deepest - depth, f"centre depth <= {_fmt(deepest)} mm "
                  f"(shell width {_fmt(rules.shell_width_mm)})")
        for i in np.flatnonzero(depth > deepest + RULE_TOLERANCE_MM).tolist():
            chk.add("shell_depth", (i,), f"{names[i]} centre is {_fmt(depth[i])} mm deep; "
                    f"the shell rule allows <= {_fmt(deepest)} mm "
                    f"({_fmt(depth[i] - deepest)} mm too deep)")

    # Spacing and the co-planar rule, over every pair.
    a, b = np.triu_indices(n, k=1)
    pair_mm = np.linalg.norm(centres[a] - centres[b], axis=1)
    s = rules.min_spacing_mm
    chk.worst("spacing", pair_mm - s, f"centres >= {_fmt(s)} mm apart")
    for p in np.flatnonzero(pair_mm < s - RULE_TOLERANCE_MM).tolist():
        i, j = int(a[p]), int(b[p])
        chk.add("spacing", (i, j), f"{names[i]} and {names[j]} are {_fmt(pair_mm[p])} mm "
                f"apart; the spacing rule needs >= {_fmt(s)} mm")
    if rules.coplanar_mm is not None and rules.coplanar_spacing_mm is not None:
        dz = np.abs(centres[a, 2] - centres[b, 2])
        near = dz < rules.coplanar_mm - RULE_TOLERANCE_MM
        cs = rules.coplanar_spacing_mm
        chk.worst("coplanar", pair_mm[near] - cs, f"centres closer than "
                  f"{_fmt(rules.coplanar_mm)} mm in z are >= {_fmt(cs)} mm apart")
        for p in np.flatnonzero(near & (pair_mm < cs - RULE_TOLERANCE_MM)).tolist():
            i, j = int(a[p]), int(b[p])
            chk.add("coplanar", (i, j), f"{names[i]} and {names[j]} are {_fmt(dz[p])} mm "
                    f"apart in z and {_fmt(pair_mm[p])} mm apart; the co-planar rule needs "
                    f">= {_fmt(cs)} mm for centres closer than {_fmt(rules.coplanar_mm)} mm "
                    "in z")

    # OAR clearances.
    oar_d: dict[str, NDArray[np.float64]] = {}
    oar_capped: dict[str, NDArray[np.bool_]] = {}
    for name, clearance in rules.oar_clearance_mm.items():
        need_oar = clearance + r
        if name not in oar_masks:
            chk.add("oar_clearance", (), f"no mask for OAR '{name}' (clearance "
                    f"{_fmt(clearance)} mm): its clearance rule could not be checked")
            continue
        # Without check_reported_depth only the rule is needed: distances are searched as
        # far as the rule looks (values at the cap are not compared with the reported ones).
        oar_cap = None if check_reported_depth else need_oar + 1.0
        d = _distance_to_mask_mm(oar_masks[name], centres, cap_mm=oar_cap)
        oar_d[name] = d
        oar_capped[name] = np.zeros(n, bool) if oar_cap is None else d >= oar_cap
        chk.worst("oar_clearance", d - need_oar, f"{name}: centre distance >= "
                  f"{_fmt(need_oar)} mm (clearance {_fmt(clearance)} + radius {_fmt(r)})",
                  oar=name)
        for i in np.flatnonzero(d < need_oar - RULE_TOLERANCE_MM).tolist():
            chk.add("oar_clearance", (i,), f"{names[i]} centre is {_fmt(d[i])} mm from OAR "
                    f"'{name}'; its clearance rule needs >= {_fmt(need_oar)} mm "
                    f"({_fmt(need_oar - d[i])} mm short)")
    for name in oar_masks.keys() - rules.oar_clearance_mm.keys():
        warnings.append(f"OAR '{name}' has no clearance in the plan's parameters; not checked")

    # Centres on slice planes.
    ijk = grid.ras_to_ijk(centres) if n else np.zeros((0, 3))
    if rules.snap_to_slices:
        off = np.abs(ijk[:, 2] - np.round(ijk[:, 2]))
        worst = f"; worst offset {float(off.max()):.1g} slices" if n else ""
        chk.worst("slice_plane", None, f"k index a whole number within "
                  f"{SLICE_INDEX_TOLERANCE:g}{worst}")
        for i in np.flatnonzero(off > SLICE_INDEX_TOLERANCE).tolist():
            chk.add("slice_plane", (i,), f"{names[i]} centre is at slice index k = "
                    f"{ijk[i, 2]:.4f}, not on a CT slice plane; snap_to_slices needs a whole "
                    "number")

    # Vertex count.
    if rules.max_vertices is not None:
        chk.worst("max_vertices", None, f"n <= {rules.max_vertices} (n = {n})")
        if n > rules.max_vertices:
            chk.add("max_vertices", (), f"the plan has {n} vertices; max_vertices allows "
                    f"{rules.max_vertices}")
    if rules.min_vertices is not None:
        chk.worst("min_vertices", None, f"n >= {rules.min_vertices} (n = {n})")
        if n < rules.min_vertices:
            chk.add("min_vertices", (), f"the plan has {n} vertices; min_vertices needs "
                    f"{rules.min_vertices}")

    _check_reported(chk, plan_doc, records, centres, ijk, grid, depth, oar_d, pair_mm, a, b,
                    depth_exact=check_reported_depth, oar_capped=oar_capped)
    return VerificationReport(tuple(chk.violations), tuple(warnings), n, tuple(chk.checks))


def _check_reported(chk: _Checker, doc: Mapping[str, Any], records: list[Mapping[str, Any]],
                    centres: NDArray[np.float64], ijk: NDArray[np.float64], grid: Grid,
                    depth: NDArray[np.float64], oar_d: Mapping[str, NDArray[np.float64]],
                    pair_mm: NDArray[np.float64], a: NDArray, b: NDArray, *,
                    depth_exact: bool = True,
                    oar_capped: Mapping[str, NDArray[np.bool_]] | None = None) -> None:
    """Compare the numbers written for each vertex with the recomputation."""
    n = len(centres)
    rule = "reported_values"
    nearest = np.full(n, np.inf)
    if n > 1:
        np.minimum.at(nearest, a, pair_mm)
        np.minimum.at(nearest, b, pair_mm)
    diffs: list[float] = []

    def compare(i: int, key: str, reported: Any, expected: Any, explain: str, *,
                shown: Any = None) -> None:
        name = chk.names[i]
        if expected is None or (np.ndim(expected) == 0 and not np.isfinite(expected)):
            if reported is not None:
                chk.add(rule, (i,), f"{name}: {key} is {reported!r} but {explain}")
            return
        try:
            got = np.array(reported, dtype=np.float64)
            diff = float(np.linalg.norm(got - expected)) if got.shape == np.shape(
                expected) else math.inf
        except (TypeError, ValueError):
            diff = math.inf
        if not math.isfinite(diff):
            chk.add(rule, (i,), f"{name}: {key} is {reported!r}; expected {explain}")
            return
        diffs.append(diff)
        if diff > REPORT_TOLERANCE_MM:
            chk.add(rule, (i,), f"{name}: reported {key} "
                    f"{_shown(reported if shown is None else shown)} differs by "
                    f"{_fmt(diff)} mm from {explain}")

    for i, v in enumerate(records):
        c = centres[i]
        lps = ras_to_lps(c)
        compare(i, "center_lps_mm", v.get("center_lps_mm"), lps,
                f"the RAS centre with x and y negated {_pt(lps)}")
        # Index differences are compared as world distances (mm) through the plan's affine.
        try:
            written_ijk = np.array(v.get("center_ijk"), dtype=np.float64)
            as_ras = (apply_affine(grid.affine, written_ijk) if written_ijk.shape == (3,)
                      else None)
        except (TypeError, ValueError):
            as_ras = None
        compare(i, "center_ijk", None if as_ras is None else as_ras.tolist(), c,
                f"the centre (in the world); expected {_pt(ijk[i])}",
                shown=v.get("center_ijk"))
        if depth_exact:
            compare(i, "depth_mm", v.get("depth_mm"), depth[i],
                    f"the recomputed depth {_fmt(depth[i])} mm")
        compare(i, "nearest_vertex_mm", v.get("nearest_vertex_mm"), nearest[i],
                "the recomputed nearest-centre distance "
                + (f"{_fmt(nearest[i])} mm" if n > 1 else "(none: a single vertex)"))
        written = v.get("oar_distance_mm") or {}
        if not isinstance(written, Mapping):
            written = {}
        for name, d in oar_d.items():
            if oar_capped is not None and name in oar_capped and oar_capped[name][i]:
                continue
            compare(i, f"oar_distance_mm.{name}", written.get(name), d[i],
                    f"the recomputed distance {_fmt(d[i])} mm")
    ids = [v.get("id") for v in records]
    if len(set(map(repr, ids))) != len(ids):
        chk.add(rule, (), f"vertex ids repeat ({', '.join(map(repr, ids))}); each vertex "
                "needs its own id")
    summary = doc.get("summary")
    if isinstance(summary, Mapping) and summary.get("n_vertices", n) != n:
        chk.add(rule, (), f"summary.n_vertices is {summary.get('n_vertices')!r} but the plan "
                f"lists {n} vertices")
    largest = f"; largest difference {_fmt(max(diffs))} mm" if diffs else ""
    chk.worst(rule, REPORT_TOLERANCE_MM - np.array(diffs) if diffs else None,
              f"written values within {_fmt(REPORT_TOLERANCE_MM)} mm of the "
              f"recomputation{largest}")


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return _pt(value)
    return f"{value!r}"


# -- plan files -------------------------------------------------------------------------------

def _read_plan(path: Path) -> tuple[Path, dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / "plan.json"
    if not path.exists():
        raise InputFileError(f"plan not found: '{path}'; pass a plan.json or a plan folder")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputFileError(f"cannot read '{path}' as JSON ({exc}); pass the plan.json "
                             "that `lattice plan` wrote") from exc
    if not isinstance(doc, dict):
        raise InputFileError(f"'{path}' holds a JSON {type(doc).__name__}, not a plan")
    from .planfolder import validate_plan_document

    return path, validate_plan_document(doc, path)  # wrong types: one line naming the key


def _input_path(entry: Any, what: str, plan_path: Path) -> Path:
    if not isinstance(entry, Mapping) or not entry.get("path"):
        raise InputFileError(f"{plan_path}: inputs record no {what} file; verify with "
                             "lattice.verify.verify_plan and the masks instead")
    p = Path(str(entry["path"]))
    # A relative path is the planner's working directory; the plan folder is the best guess
    # when that is gone.
    if not p.is_absolute() and not p.exists() and (plan_path.parent / p).exists():
        p = plan_path.parent / p
    return p


def _checksum_finding(entry: Mapping[str, Any], path: Path, what: str
                      ) -> tuple[Violation | None, str | None]:
    """(violation, warning) from comparing a file's sha256 with the recorded one."""
    recorded = entry.get("sha256")
    if not recorded:
        return None, f"no checksum recorded for {what} '{path}'; cannot tell if it changed"
    now = sha256_file(path)
    if now != recorded:
        return Violation("input_files", (), f"{what} '{path}' changed after planning (sha256 "
                         f"{now[:12]}... , recorded {str(recorded)[:12]}...); the plan was made "
                         "for another file: plan again"), None
    return None, None


def verify_plan_file(plan_json_path: str | Path) -> VerificationReport:
    """Verify a written plan against the input files recorded in it.

    Reads ``plan.json`` (or ``plan.json`` in the given folder), loads the GTV (with its
    recorded label) and every OAR from the paths in ``plan["inputs"]``, checks that their
    sha256 still match and that they lie on ``plan["grid"]``, then runs
    :func:`verify_plan`. A changed GTV, OAR or CT file is an ``input_files`` violation; a
    missing CT only a warning (the rules do not need it).

    Raises
    ------
    InputFileError
        Missing or unreadable plan or mask file; a plan without recorded GTV path.
    MaskError, GridMismatchError
        As :func:`verify_plan`.
    """
    path, doc = _read_plan(Path(plan_json_path))
    inputs = doc.get("inputs") or {}
    if not isinstance(inputs, Mapping):
        raise _bad(str(path), "'inputs' is not an object")
    grid = _parse_grid(doc.get("grid"), str(path))
    violations: list[Violation] = []
    warnings: list[str] = []

    def checksum(entry: Mapping[str, Any], p: Path, what: str) -> bool:
        v, w = _checksum_finding(entry, p, what)
        if v:
            violations.append(v)
        if w:
            warnings.append(w)
        return v is not None

    if isinstance(inputs.get("rtstruct"), Mapping):
        gtv, oars = _dicom_inputs(inputs, grid, path, checksum, warnings)
    else:
        gtv, oars = _nifti_inputs(inputs, grid, path, doc, checksum, violations, warnings)

    report = verify_plan(doc, gtv=gtv, oars=oars)
    return replace(report, violations=(*violations, *report.violations),
                   warnings=(*warnings, *report.warnings))


def _nifti_inputs(inputs: Mapping[str, Any], grid: Grid, path: Path, doc: Mapping[str, Any],
                  checksum: Any, violations: list[Violation], warnings: list[str]
                  ) -> tuple[Volume, dict[str, Volume]]:
    """GTV and OAR masks from the NIfTI files a plan records (checksums and grid checked)."""
    gtv_entry = inputs.get("gtv")
    gtv_path = _input_path(gtv_entry, "GTV", path)
    assert isinstance(gtv_entry, Mapping)  # _input_path checked it
    label = gtv_entry.get("label")
    gtv = load_mask(gtv_path, label=label)
    changed = checksum(gtv_entry, gtv_path, "GTV mask")
    _check_on_grid(gtv, grid, name=f"GTV mask '{gtv_path}'",
                   note="the file also changed after planning" if changed else "")

    oars: dict[str, Volume] = {}
    for k, entry in enumerate(inputs.get("oars") or []):
        p = _input_path(entry, f"OAR #{k + 1}", path)
        name = str(entry.get("name") or p.name)
        oars[name] = load_mask(p)
        changed = checksum(entry, p, f"OAR mask '{name}'")
        _check_on_grid(oars[name], grid, name=f"OAR mask '{p}'",
                       note="the file also changed after planning" if changed else "")
        recorded = ((doc.get("parameters") or {}).get("oar_clearance_mm") or {}).get(name)
        if entry.get("clearance_mm") is not None and recorded is not None and not math.isclose(
            float(entry["clearance_mm"]), float(recorded), abs_tol=RULE_TOLERANCE_MM):
            violations.append(Violation(
                "reported_values", (), f"inputs give OAR '{name}' a clearance of "
                f"{_fmt(entry['clearance_mm'])} mm but the parameters {_fmt(recorded)} mm"))

    ct_entry = inputs.get("ct")
    if isinstance(ct_entry, Mapping) and ct_entry.get("path"):
        ct_path = _input_path(ct_entry, "CT", path)
        if ct_path.is_file():
            changed = checksum(ct_entry, ct_path, "CT")
            _check_on_grid(load_grid(ct_path), grid, name=f"CT '{ct_path}'",
                           note="the file also changed after planning" if changed else "")
        else:
            warnings.append(f"CT '{ct_path}' not found; its checksum was not checked")
    else:
        warnings.append("the plan records no CT file; its checksum was not checked")
    return gtv, oars


def _dicom_inputs(inputs: Mapping[str, Any], grid: Grid, path: Path, checksum: Any,
                  warnings: list[str]) -> tuple[Volume, dict[str, Volume]]:
    """GTV and OAR masks rasterised again from the CT series and RTSTRUCT a plan records."""
    from .dicom import load_dicom_case, series_checksum

    rt_entry = inputs["rtstruct"]
    ct_entry = inputs.get("ct") or {}
    if not isinstance(ct_entry, Mapping) or not ct_entry.get("dicom_folder"):
        raise _bad(str(path), "inputs record an RTSTRUCT but no CT series folder")
    rt_path = _input_path(rt_entry, "RTSTRUCT", path)
    gtv_entry = inputs.get("gtv") or {}
    oar_entries = list(inputs.get("oars") or [])
    case = load_dicom_case(
        ct_entry["dicom_folder"], rt_path, gtv_name=str(gtv_entry.get("roi")),
        oar_names=[str(e.get("roi") or e.get("name")) for e in oar_entries],
        series_uid=ct_entry.get("series_instance_uid"), pixels=False)
    checksum(rt_entry, rt_path, "RTSTRUCT")
    warnings.extend(case.warnings)  # contours left out, as at planning
    recorded = ct_entry.get("sha256")
    if recorded and series_checksum(case.series) != recorded:
        warnings.append(f"the CT series in '{ct_entry['dicom_folder']}' changed after planning")
    _check_on_grid(case.gtv, grid, name=f"GTV ROI '{case.gtv_name}'")
    oars = {str(e.get("name") or e.get("roi")): m
            for e, m in zip(oar_entries, case.oars.values())}
    return case.gtv, oars
