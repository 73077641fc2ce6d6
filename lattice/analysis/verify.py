"""Independent verification of a written plan: every rule recomputed from the masks.

The verifier reads what a plan *says* (``plan.json``: parameters, grid and the written vertex
centres) and checks it against what the masks *are*, with its own distance computation. It
shares no code with the planner's rule field or search (:mod:`lattice.planning.rules`,
:mod:`lattice.planning.placement`), so a bug there cannot hide itself here. Only the containers
(:class:`~lattice.volume.Volume`, :class:`~lattice.grid.Grid`), the mask reader, the
bounding-box helper (:func:`lattice.geometry.margins.bounding_box`) and the error classes are
shared.

Distances follow the TPS surface model (README "Definitions", :mod:`lattice.geometry.surface`): the
GTV and each OAR are the solids a TPS rebuilds from slice outlines (the RTSTRUCT's polygons when
the mask came from DICOM, marching squares at 0.5 of each slice otherwise), each extruded half
a slice gap above and below its plane.

- **depth** of a centre: its distance to the outside of the GTV solid (0 outside it);
- **OAR distance**: its distance to the OAR solid (0 inside it).

Both are computed by brute force (every segment of every slab in reach, crossing-number
inside tests; see :mod:`lattice.analysis.verify_geometry`), not with the planner's voxel tables,
trees or bounds.

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

import functools
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from nibabel.affines import apply_affine
from numpy.typing import NDArray

from ..grid import Grid, ras_to_lps
from ..io.nifti import mask_from_array
from ..volume import Volume
from .verify_geometry import depth_mm, distance_to_mask_mm
from .verify_inputs import (
    Rules,
    bad_document,
    check_on_grid,
    checksum_finding,
    dicom_inputs,
    nifti_inputs,
    parse_grid,
    parse_rules,
    parse_vertices,
    read_plan,
)
from .verify_report import (
    REPORT_TOLERANCE_MM,
    RULE_TOLERANCE_MM,
    SLICE_INDEX_TOLERANCE,
    Checker,
    VerificationReport,
    Violation,
    format_mm,
    format_point,
)

__all__ = [
    "REPORT_TOLERANCE_MM",
    "RULE_TOLERANCE_MM",
    "SLICE_INDEX_TOLERANCE",
    "VerificationReport",
    "Violation",
    "verify_plan",
    "verify_plan_file",
]


def verify_plan(
    plan_doc: Mapping[str, Any],
    *,
    gtv: Volume,
    oars: Mapping[str, Volume] | None = None,
    check_reported_depth: bool = True,
) -> VerificationReport:
    """Recompute every rule of a plan document from the masks and the written centres.

    Parameters
    ----------
    plan_doc : mapping
        The ``plan.json`` document (see :meth:`lattice.planning.plan.Plan.to_dict`).
    gtv : Volume
        GTV mask on the plan's grid (bool, or values :func:`lattice.io.nifti.mask_from_array`
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
        raise bad_document(source, f"expected a JSON object, got {type(plan_doc).__name__}")
    rules = parse_rules(plan_doc.get("parameters"), source)
    grid = parse_grid(plan_doc.get("grid"), source)
    records, centres = parse_vertices(plan_doc.get("vertices"), source)
    n = len(centres)
    gtv_mask, oar_masks = _masks_on_grid(gtv, dict(oars or {}), grid)

    names = [str(v.get("name") or f"vertex {v.get('id', i + 1)}") for i, v in enumerate(records)]
    ids = [int(v["id"]) if isinstance(v.get("id"), int) else i + 1 for i, v in enumerate(records)]
    chk = Checker(names, ids)
    warnings: list[str] = []
    if n == 0:
        warnings.append("the plan has no vertices: nothing to verify but its inputs")
    # A hand-edited centre of 1e308 mm overflows to inf on the way: numpy's warnings would
    # only repeat what the violations below say.
    with np.errstate(over="ignore", invalid="ignore"):
        depth = _check_depth(chk, rules, gtv_mask, centres, exact=check_reported_depth)
        a, b, pair_mm = _check_pairs(chk, rules, centres)
        oar_d, oar_capped = _check_oars(chk, rules, oar_masks, centres, exact=check_reported_depth)
        ijk = _check_slices_and_counts(chk, rules, grid, centres)
        _check_reported(
            chk,
            plan_doc,
            records,
            centres,
            ijk,
            grid,
            depth,
            oar_d,
            pair_mm,
            a,
            b,
            depth_exact=check_reported_depth,
            oar_capped=oar_capped,
        )
    for name in oar_masks.keys() - rules.oar_clearance_mm.keys():
        warnings.append(f"OAR '{name}' has no clearance in the plan's parameters; not checked")
    return VerificationReport(tuple(chk.violations), tuple(warnings), n, tuple(chk.checks))


def _masks_on_grid(
    gtv: Volume, oars: Mapping[str, Volume], grid: Grid
) -> tuple[Volume, dict[str, Volume]]:
    """The GTV and OAR masks as bool volumes, each checked to lie on the plan's grid."""
    fix = "pass masks on the grid of the CT the plan was made on"
    check_on_grid(gtv, grid, name="the GTV mask", fix=fix)
    gtv_mask = (
        gtv
        if gtv.array.dtype == bool
        else gtv.with_array(mask_from_array(np.asarray(gtv.array), name="the GTV mask"))
    )
    oar_masks = {}
    for name, vol in oars.items():
        check_on_grid(vol, grid, name=f"OAR mask '{name}'", fix=fix)
        oar_masks[name] = (
            vol
            if vol.array.dtype == bool
            else vol.with_array(mask_from_array(np.asarray(vol.array), name=f"OAR mask '{name}'"))
        )
    return gtv_mask, oar_masks


def _check_depth(
    chk: Checker, rules: Rules, gtv: Volume, centres: NDArray[np.float64], *, exact: bool
) -> NDArray[np.float64]:
    """The GTV margin and (shell mode) shell depth rules; the centres' depths (mm).

    Without ``exact`` depths are searched only as deep as the rules look (capped)."""
    names = chk.names
    r = rules.radius_mm
    need = rules.gtv_margin_mm + r
    cap = None
    if not exact:
        cap = need + (rules.shell_width_mm or 0.0) + 1.0  # deeper than any rule looks
    depth = depth_mm(gtv, centres, cap_mm=cap)
    chk.worst(
        "gtv_margin",
        depth - need,
        f"centre depth >= {format_mm(need)} mm "
        f"(margin {format_mm(rules.gtv_margin_mm)} + radius {format_mm(r)})",
    )
    for i in np.flatnonzero(depth < need - RULE_TOLERANCE_MM).tolist():
        where = (
            f"is {format_mm(depth[i])} mm deep" if depth[i] > 0 else "is outside the GTV (depth 0)"
        )
        chk.add(
            "gtv_margin",
            (i,),
            f"{names[i]} centre {where}; the GTV margin rule needs "
            f">= {format_mm(need)} mm ({format_mm(need - depth[i])} mm short)",
        )
    if rules.shell_width_mm is not None:
        deepest = need + rules.shell_width_mm
        chk.worst(
            "shell_depth",
            deepest - depth,
            f"centre depth <= {format_mm(deepest)} mm "
            f"(shell width {format_mm(rules.shell_width_mm)})",
        )
        for i in np.flatnonzero(depth > deepest + RULE_TOLERANCE_MM).tolist():
            chk.add(
                "shell_depth",
                (i,),
                f"{names[i]} centre is {format_mm(depth[i])} mm "
                f"deep; the shell rule allows <= {format_mm(deepest)} mm "
                f"({format_mm(depth[i] - deepest)} mm too deep)",
            )
    return depth


def _check_pairs(
    chk: Checker, rules: Rules, centres: NDArray[np.float64]
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """The spacing and co-planar rules over every pair; the pairs (a, b) and distances."""
    names = chk.names
    a, b = np.triu_indices(len(centres), k=1)
    pair_mm = np.linalg.norm(centres[a] - centres[b], axis=1)
    s = rules.min_spacing_mm
    chk.worst("spacing", pair_mm - s, f"centres >= {format_mm(s)} mm apart")
    for p in np.flatnonzero(pair_mm < s - RULE_TOLERANCE_MM).tolist():
        i, j = int(a[p]), int(b[p])
        chk.add(
            "spacing",
            (i, j),
            f"{names[i]} and {names[j]} are {format_mm(pair_mm[p])} mm "
            f"apart; the spacing rule needs >= {format_mm(s)} mm",
        )
    if rules.coplanar_mm is not None and rules.coplanar_spacing_mm is not None:
        dz = np.abs(centres[a, 2] - centres[b, 2])
        near = dz < rules.coplanar_mm - RULE_TOLERANCE_MM
        cs = rules.coplanar_spacing_mm
        chk.worst(
            "coplanar",
            pair_mm[near] - cs,
            f"centres closer than "
            f"{format_mm(rules.coplanar_mm)} mm in z are >= {format_mm(cs)} mm apart",
        )
        for p in np.flatnonzero(near & (pair_mm < cs - RULE_TOLERANCE_MM)).tolist():
            i, j = int(a[p]), int(b[p])
            chk.add(
                "coplanar",
                (i, j),
                f"{names[i]} and {names[j]} are {format_mm(dz[p])} mm "
                f"apart in z and {format_mm(pair_mm[p])} mm apart; the co-planar rule "
                f"needs >= {format_mm(cs)} mm for centres closer than "
                f"{format_mm(rules.coplanar_mm)} mm in z",
            )
    return a, b, pair_mm


def _check_oars(
    chk: Checker,
    rules: Rules,
    oar_masks: Mapping[str, Volume],
    centres: NDArray[np.float64],
    *,
    exact: bool,
) -> tuple[dict[str, NDArray[np.float64]], dict[str, NDArray[np.bool_]]]:
    """The OAR clearance rules; each OAR's distances and which of them are at the cap."""
    names = chk.names
    n = len(centres)
    r = rules.radius_mm
    oar_d: dict[str, NDArray[np.float64]] = {}
    oar_capped: dict[str, NDArray[np.bool_]] = {}
    for name, clearance in rules.oar_clearance_mm.items():
        need_oar = clearance + r
        if name not in oar_masks:
            chk.add(
                "oar_clearance",
                (),
                f"no mask for OAR '{name}' (clearance "
                f"{format_mm(clearance)} mm): its clearance rule could not be checked",
            )
            continue
        # Without exact depths only the rule is needed: distances are searched as far as the
        # rule looks (values at the cap are not compared with the reported ones).
        oar_cap = None if exact else need_oar + 1.0
        d = distance_to_mask_mm(oar_masks[name], centres, cap_mm=oar_cap)
        oar_d[name] = d
        oar_capped[name] = np.zeros(n, bool) if oar_cap is None else d >= oar_cap
        chk.worst(
            "oar_clearance",
            d - need_oar,
            f"{name}: centre distance >= "
            f"{format_mm(need_oar)} mm (clearance {format_mm(clearance)} + radius "
            f"{format_mm(r)})",
            oar=name,
        )
        for i in np.flatnonzero(d < need_oar - RULE_TOLERANCE_MM).tolist():
            chk.add(
                "oar_clearance",
                (i,),
                f"{names[i]} centre is {format_mm(d[i])} mm from "
                f"OAR '{name}'; its clearance rule needs >= {format_mm(need_oar)} mm "
                f"({format_mm(need_oar - d[i])} mm short)",
            )
    return oar_d, oar_capped


def _check_slices_and_counts(
    chk: Checker, rules: Rules, grid: Grid, centres: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The slice-plane rule (snap_to_slices) and the vertex counts; the centres' ijk."""
    names = chk.names
    n = len(centres)
    ijk = grid.ras_to_ijk(centres) if n else np.zeros((0, 3))
    if rules.snap_to_slices:
        off = np.abs(ijk[:, 2] - np.round(ijk[:, 2]))
        worst = f"; worst offset {float(off.max()):.1g} slices" if n else ""
        chk.worst(
            "slice_plane", None, f"k index a whole number within {SLICE_INDEX_TOLERANCE:g}{worst}"
        )
        for i in np.flatnonzero(off > SLICE_INDEX_TOLERANCE).tolist():
            chk.add(
                "slice_plane",
                (i,),
                f"{names[i]} centre is at slice index k = "
                f"{ijk[i, 2]:.4f}, not on a CT slice plane; snap_to_slices needs a whole "
                "number",
            )
    if rules.max_vertices is not None:
        chk.worst("max_vertices", None, f"n <= {rules.max_vertices} (n = {n})")
        if n > rules.max_vertices:
            chk.add(
                "max_vertices",
                (),
                f"the plan has {n} vertices; max_vertices allows {rules.max_vertices}",
            )
    if rules.min_vertices is not None:
        chk.worst("min_vertices", None, f"n >= {rules.min_vertices} (n = {n})")
        if n < rules.min_vertices:
            chk.add(
                "min_vertices",
                (),
                f"the plan has {n} vertices; min_vertices needs {rules.min_vertices}",
            )
    return ijk


def _check_reported(
    chk: Checker,
    doc: Mapping[str, Any],
    records: list[Mapping[str, Any]],
    centres: NDArray[np.float64],
    ijk: NDArray[np.float64],
    grid: Grid,
    depth: NDArray[np.float64],
    oar_d: Mapping[str, NDArray[np.float64]],
    pair_mm: NDArray[np.float64],
    a: NDArray,
    b: NDArray,
    *,
    depth_exact: bool = True,
    oar_capped: Mapping[str, NDArray[np.bool_]] | None = None,
) -> None:
    """Compare the numbers written for each vertex with the recomputation."""
    n = len(centres)
    rule = "reported_values"
    nearest = np.full(n, np.inf)
    if n > 1:
        np.minimum.at(nearest, a, pair_mm)
        np.minimum.at(nearest, b, pair_mm)
    diffs: list[float] = []

    compare = functools.partial(_compare, chk, diffs)

    for i, v in enumerate(records):
        c = centres[i]
        lps = ras_to_lps(c)
        compare(
            i,
            "center_lps_mm",
            v.get("center_lps_mm"),
            lps,
            f"the RAS centre with x and y negated {format_point(lps)}",
        )
        # Index differences are compared as world distances (mm) through the plan's affine.
        try:
            written_ijk = np.array(v.get("center_ijk"), dtype=np.float64)
            as_ras = apply_affine(grid.affine, written_ijk) if written_ijk.shape == (3,) else None
        except (TypeError, ValueError):
            as_ras = None
        compare(
            i,
            "center_ijk",
            None if as_ras is None else as_ras.tolist(),
            c,
            f"the centre (in the world); expected {format_point(ijk[i])}",
            shown=v.get("center_ijk"),
        )
        if depth_exact:
            compare(
                i,
                "depth_mm",
                v.get("depth_mm"),
                depth[i],
                f"the recomputed depth {format_mm(depth[i])} mm",
            )
        compare(
            i,
            "nearest_vertex_mm",
            v.get("nearest_vertex_mm"),
            nearest[i],
            "the recomputed nearest-centre distance "
            + (f"{format_mm(nearest[i])} mm" if n > 1 else "(none: a single vertex)"),
        )
        written = v.get("oar_distance_mm") or {}
        if not isinstance(written, Mapping):
            written = {}
        for name, d in oar_d.items():
            if oar_capped is not None and name in oar_capped and oar_capped[name][i]:
                continue
            compare(
                i,
                f"oar_distance_mm.{name}",
                written.get(name),
                d[i],
                f"the recomputed distance {format_mm(d[i])} mm",
            )
    _check_ids_and_count(chk, doc, records, n)
    largest = f"; largest difference {format_mm(max(diffs))} mm" if diffs else ""
    chk.worst(
        rule,
        REPORT_TOLERANCE_MM - np.array(diffs) if diffs else None,
        f"written values within {format_mm(REPORT_TOLERANCE_MM)} mm of the recomputation{largest}",
    )


def _check_ids_and_count(
    chk: Checker, doc: Mapping[str, Any], records: list[Mapping[str, Any]], n: int
) -> None:
    """Every vertex id written once, and the summary's vertex count that of the list."""
    rule = "reported_values"
    ids = [v.get("id") for v in records]
    if len(set(map(repr, ids))) != len(ids):
        chk.add(
            rule,
            (),
            f"vertex ids repeat ({', '.join(map(repr, ids))}); each vertex needs its own id",
        )
    summary = doc.get("summary")
    if isinstance(summary, Mapping) and summary.get("n_vertices", n) != n:
        chk.add(
            rule,
            (),
            f"summary.n_vertices is {summary.get('n_vertices')!r} but the plan lists {n} vertices",
        )


def _compare(
    chk: Checker,
    diffs: list[float],
    i: int,
    key: str,
    reported: Any,
    expected: Any,
    explain: str,
    *,
    shown: Any = None,
) -> None:
    """Check one written value of vertex ``i`` against the recomputed ``expected`` (a
    distance in mm between them, kept in ``diffs``); None or non-finite: none expected."""
    rule = "reported_values"
    name = chk.names[i]
    if expected is None or (np.ndim(expected) == 0 and not np.isfinite(expected)):
        if reported is not None:
            chk.add(rule, (i,), f"{name}: {key} is {reported!r} but {explain}")
        return
    try:
        got = np.array(reported, dtype=np.float64)
        diff = (
            float(np.linalg.norm(got - expected)) if got.shape == np.shape(expected) else math.inf
        )
    except (TypeError, ValueError):
        diff = math.inf
    if not math.isfinite(diff):
        chk.add(rule, (i,), f"{name}: {key} is {reported!r}; expected {explain}")
        return
    diffs.append(diff)
    if diff > REPORT_TOLERANCE_MM:
        chk.add(
            rule,
            (i,),
            f"{name}: reported {key} "
            f"{_shown(reported if shown is None else shown)} differs by "
            f"{format_mm(diff)} mm from {explain}",
        )


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return format_point(value)
    return f"{value!r}"


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
    path, doc = read_plan(Path(plan_json_path))
    inputs = doc.inputs  # the schema: an object when present
    grid = parse_grid(doc.grid, str(path))
    violations: list[Violation] = []
    warnings: list[str] = []

    def checksum(entry: Mapping[str, Any], p: Path, what: str) -> bool | None:
        """Whether the file changed after planning (None: no checksum recorded)."""
        v, w = checksum_finding(entry, p, what)
        if v:
            violations.append(v)
        if w:
            warnings.append(w)
        return None if not entry.get("sha256") else v is not None

    if isinstance(inputs.get("rtstruct"), Mapping):
        gtv, oars = dicom_inputs(inputs, grid, path, checksum, warnings)
    else:
        gtv, oars = nifti_inputs(inputs, grid, path, doc, checksum, violations, warnings)

    report = verify_plan(doc.data, gtv=gtv, oars=oars)
    return replace(
        report, violations=(*violations, *report.violations), warnings=(*warnings, *report.warnings)
    )
