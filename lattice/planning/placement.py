"""Vertex placement: the entry point :func:`plan_vertices` and its modes.

A lattice pattern is placed by the pose search of :mod:`lattice.planning.search`; ``--count``
bisects the spacing over that search; ``max`` starts an irregular maximal packing from the best
lattice (:mod:`lattice.planning.packing`). Every count is exact (see :mod:`lattice.planning.rules`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import MaskError, ParameterError
from ..geometry.patterns import make_pattern
from ..io.nifti import mask_from_array
from ..memory import release_freed_memory
from ..volume import Volume
from .cold_plan import DEFAULT_COLD_GAP_MM, check_cold_options, cold_warnings, plan_cold_sites
from .pairs import coplanar_conflicts, max_independent_subset
from .plan import Plan, PlanParameters
from .rules import Oar, RuleField
from .search import search_lattice

#: Least time (s) the maximal packing gets after the lattice searches.
MIN_PACKING_S = 1.0


def _coerce_mask(volume: Volume, name: str) -> Volume:
    if volume.array.dtype == bool:
        if not volume.array.any():
            raise MaskError(f"{name} is empty (no voxel set); check that it is the right mask")
        return volume
    return volume.with_array(mask_from_array(np.asarray(volume.array), name=name))


def _cold_fields(
    cold_spheres: bool, cold_diameter_mm: float | None, cold_gap_mm: float
) -> dict[str, Any]:
    """The cold-sphere fields of :class:`PlanParameters`, as numbers; a diameter, or a gap
    other than the default, without cold spheres is a :class:`ParameterError`."""
    given = ["cold_diameter_mm"] if cold_diameter_mm is not None else []
    given += ["cold_gap_mm"] if float(cold_gap_mm) != DEFAULT_COLD_GAP_MM else []
    check_cold_options(cold_spheres, given)
    return {
        "cold_spheres": bool(cold_spheres),
        "cold_diameter_mm": None if cold_diameter_mm is None else float(cold_diameter_mm),
        "cold_gap_mm": float(cold_gap_mm),
    }


def _checked_masks(gtv: Volume, oars: Sequence[Oar]) -> tuple[Volume, list[Oar]]:
    """The GTV and OAR masks as boolean volumes, once their names and grid are checked."""
    if len({o.name for o in oars}) != len(oars):
        raise MaskError("two OARs share a name; give each OAR a distinct name")
    gtv.check_not_sheared(name="the GTV")
    gtv = _coerce_mask(gtv, "the GTV mask")
    oars = [replace(o, mask=_coerce_mask(o.mask, f"OAR '{o.name}'")) for o in oars]
    return gtv, oars


def _lattice_target(gtv: Volume, field: RuleField, gtv_margin_mm: float) -> Volume:
    """The LATTICE target: voxel centres deeper than the margin below the GTV's TPS surface."""
    target_array = np.zeros(gtv.shape, dtype=bool, order="F")  # NIfTI order: no copy on save
    target_array[field.box] = field.deeper_than(gtv_margin_mm)
    target = gtv.with_array(target_array)
    return target


def plan_vertices(
    gtv: Volume,
    *,
    diameter_mm: float = 15.0,
    min_spacing_mm: float = 30.0,
    gtv_margin_mm: float = 5.0,
    oars: Sequence[Oar] = (),
    pattern: str = "hcp",
    snap_to_slices: bool = False,
    max_vertices: int | None = None,
    orientation_search: str = "axial",
    rotation_step_deg: float = 5.0,
    translation_steps: int = 12,
    mode: str = "fill",
    shell_width_mm: float | None = None,
    min_vertices: int | None = None,
    count: int | None = None,
    coplanar_mm: float | None = None,
    coplanar_spacing_mm: float | None = None,
    time_budget_s: float = 5.0,
    protocol: str | None = None,
    cold_spheres: bool = False,
    cold_diameter_mm: float | None = None,
    cold_gap_mm: float = DEFAULT_COLD_GAP_MM,
) -> Plan:
    """Place as many vertices as the rules allow on a lattice searched over pose.

    Parameters
    ----------
    gtv : Volume
        GTV mask (bool, or values accepted by :func:`lattice.io.nifti.mask_from_array`).
    diameter_mm : float
        Vertex sphere diameter D (mm).
    min_spacing_mm : float
        Minimum centre-to-centre distance (nearest-neighbour distance of the lattice), mm.
    gtv_margin_mm : float
        Minimum distance from sphere surface to GTV surface (mm).
    oars : sequence of Oar
        Organs at risk on the GTV grid with their clearance (sphere surface to organ, mm).
    pattern : {'sc', 'bcc', 'fcc', 'hcp', 'max'}
        A lattice, or ``max``: an irregular maximal packing (more vertices, less regular;
        see :mod:`lattice.planning.packing`).
    snap_to_slices : bool
        Put every centre on a CT slice plane: the lattice's layers are laid along the slices
        and their distance rounded up to a whole number of slices (never closer than asked).
    max_vertices : int, optional
        Keep at most this many: those with the most room (largest slack), ties by position.
    orientation_search : {'axial', '3d'}
        Rotate about world z (the superior-inferior axis; the slice normal when snapping)
        only, or also tilt the lattice out of plane.
    rotation_step_deg : float
        Angle step of the coarse orientation search.
    translation_steps : int
        Coarse translations per cell axis.
    mode : {'fill', 'shell'}
        ``shell`` keeps every centre within ``shell_width_mm`` of the shallowest allowed
        depth (margin + D/2): vertices along the edge of the LATTICE target.
    shell_width_mm : float, optional
        Shell width (default D/2).
    min_vertices : int, optional
        Raise :class:`ParameterError` if fewer vertices fit.
    count : int, optional
        Place exactly this many vertices, spread as far apart as possible (the spacing is
        bisected upwards from ``min_spacing_mm``).
    time_budget_s : float
        Wall-clock budget of the maximal packing (``pattern='max'`` only).
    coplanar_mm, coplanar_spacing_mm : float, optional
        Mayo co-planar rule: centres less than ``coplanar_mm`` apart in z must be at least
        ``coplanar_spacing_mm`` apart (see :mod:`lattice.planning.pairs`). Both or neither.
    protocol : str, optional
        Name of the protocol preset the parameters follow (recorded in the plan; see
        :mod:`lattice.planning.protocols`).
    cold_spheres : bool
        Also place cold spheres at the holes of the vertices (``plan.cold``; see
        :mod:`lattice.planning.cold_plan`).
    cold_diameter_mm : float, optional
        Cold sphere diameter (default D).
    cold_gap_mm : float
        Least gap from a cold sphere's surface to every vertex sphere's surface.

    Returns
    -------
    Plan
        Possibly with no vertex (then ``plan.warnings`` says why).

    Raises
    ------
    ParameterError, MaskError, GridMismatchError
    """
    t0 = time.perf_counter()
    params = PlanParameters(
        diameter_mm=float(diameter_mm),
        min_spacing_mm=float(min_spacing_mm),
        gtv_margin_mm=float(gtv_margin_mm),
        pattern=pattern,
        oar_clearance_mm={o.name: float(o.clearance_mm) for o in oars},
        snap_to_slices=bool(snap_to_slices),
        max_vertices=max_vertices,
        orientation_search=orientation_search,
        rotation_step_deg=float(rotation_step_deg),
        translation_steps=int(translation_steps),
        mode=mode,
        shell_width_mm=None if shell_width_mm is None else float(shell_width_mm),
        min_vertices=min_vertices,
        count=count,
        protocol=protocol,
        **_cold_fields(cold_spheres, cold_diameter_mm, cold_gap_mm),
        time_budget_s=float(time_budget_s),
        # coplanar_mm == 0 turns the rule off (e.g. to drop it from a protocol).
        coplanar_mm=None if coplanar_mm == 0 or coplanar_mm is None else float(coplanar_mm),
        coplanar_spacing_mm=None
        if coplanar_mm == 0 or coplanar_spacing_mm is None
        else float(coplanar_spacing_mm),
    )  # PlanParameters validates itself
    gtv, oars = _checked_masks(gtv, oars)
    field = RuleField(
        gtv,
        oars,
        diameter_mm=params.diameter_mm,
        gtv_margin_mm=params.gtv_margin_mm,
        max_depth_mm=params.max_depth_mm,
    )
    target = _lattice_target(gtv, field, params.gtv_margin_mm)
    release_freed_memory()  # the field's temporaries (~40 MB), before the search makes its own

    warnings: tuple[str, ...] = ()
    info: dict[str, Any]
    if not np.any(field.slack_vox_hi > -field.band_mm):
        pts, info = np.zeros((0, 3)), {"method": "none"}
        warnings = (_no_room(field, params),)
    elif params.pattern == "max":
        pts, info = _search_max(field, gtv, params)
    elif params.count is None:
        pts, info = search_lattice(field, gtv, params)
    else:
        pts, info = _spread_count(field, gtv, params)
    needed = max(params.min_vertices or 0, params.count or 0)
    option = "count" if params.count else "min_vertices"
    if len(pts) < needed and warnings:  # no room at all: say why
        raise ParameterError(
            f"no vertex fits but {{{option}}} asks for {needed}: "
            + warnings[0].removeprefix("no room for a vertex: "),
            parameters=[option],
        )
    if len(pts) < needed:
        raise ParameterError(
            f"only {len(pts)} {'vertex fits' if len(pts) == 1 else 'vertices fit'} "
            f"({params.pattern}, D {params.diameter_mm:g} mm, "
            f"spacing {params.min_spacing_mm:g} mm, margin {params.gtv_margin_mm:g} mm) but "
            f"{needed} are required; reduce the diameter, spacing or margins, or lower "
            f"{{{option}}}",
            parameters=[option],
        )
    if len(pts) == 0 and not warnings:
        warnings = (_no_fit(params),)
    info["seconds"] = round(time.perf_counter() - t0, 3)
    depth = field.depth_mm(pts) if len(pts) else np.zeros(0)
    oar_d = field.oar_distance_mm(pts) if len(pts) else {o.name: np.zeros(0) for o in oars}
    cold = plan_cold_sites(field, pts, params)
    warnings = (*warnings, *cold_warnings(cold, len(pts)))
    plan = Plan(params, gtv, target, pts, depth, oar_d, info, warnings, cold)
    # The rule field's arrays (~150 MB on the benchmark case) are freed here; most came from
    # the heap, which keeps them resident unless asked (see lattice.memory).
    del field
    release_freed_memory()
    return plan


def _no_fit(params: PlanParameters) -> str:
    """Why no pose holds a vertex where the rules allow some centres, and what to change."""
    shell = _shell(params)
    return (
        "no vertex fits: every lattice pose left each point too close to the GTV surface or "
        f"an OAR{shell and ', or outside ' + shell}; use "
        f"{'a wider shell width, or ' if shell else ''}a smaller diameter, spacing or margin"
    )


def _shell(params: PlanParameters) -> str:
    """``the shell of centres 12.5 to 12.501 mm deep (width 0.001 mm)``; '' in fill mode."""
    deepest = params.max_depth_mm
    if deepest is None:
        return ""
    need = params.gtv_margin_mm + params.diameter_mm / 2
    return f"the shell of centres {need:g} to {deepest:g} mm deep (width {deepest - need:g} mm)"


def _no_room(field: RuleField, params: PlanParameters) -> str:
    """Why no centre is allowed anywhere, and what to change (the empty plan's warning)."""
    deepest = float(field.depth_box.max())  # at voxel centres: within a band of the truth
    need, radius, margin = field.need_depth_mm, field.radius_mm, params.gtv_margin_mm
    if deepest > need - field.band_mm:  # deep enough: the OARs (or the shell) exclude it
        deep = field.depth_box > need - field.band_mm
        for oar in field.oars:
            inside = np.asarray(oar.mask.array, dtype=bool)[field.box]
            if inside[deep].all():  # no clearance, 0 included, lets a vertex in
                in_gtv = field.depth_box > 0
                share = np.count_nonzero(inside & in_gtv) / max(np.count_nonzero(in_gtv), 1)
                return (
                    f"no room for a vertex: OAR '{oar.name}' covers every point of the GTV "
                    f"{need:g} mm deep ({100 * share:.0f} % of the GTV's voxels), so no OAR "
                    "clearance lets a vertex in; check that the OAR mask is not the GTV's "
                    "own, or leave it out"
                )
        shell = _shell(params)
        if shell and not field.oars:
            return f"no room for a vertex: no point lies in {shell}; use a wider shell width"
        if shell:
            return (
                f"no room for a vertex: no point of {shell} is clear of every OAR; use a "
                "wider shell width, or a smaller diameter, margin or OAR clearance"
            )
        return (
            f"no room for a vertex: no point is {need:g} mm deep in the GTV and clear of "
            "every OAR; use a smaller diameter, margin or OAR clearance"
        )
    if deepest <= radius:
        return (
            f"no room for a vertex: the GTV is smaller than one vertex (its deepest point "
            f"is about {deepest:.1f} mm below the surface; a {params.diameter_mm:g} mm "
            f"vertex needs {radius:g} mm plus the {margin:g} mm margin); use a smaller "
            "diameter and margin"
        )
    if deepest <= margin:
        return (
            f"no room for a vertex: the GTV margin ({margin:g} mm) leaves no LATTICE "
            f"target (the GTV's deepest point is about {deepest:.1f} mm below its "
            f"surface); use a margin below {deepest - radius:.1f} mm for a "
            f"{params.diameter_mm:g} mm vertex"
        )
    return (
        f"no room for a vertex: no point is {need:g} mm deep in the GTV (the deepest is "
        f"about {deepest:.1f} mm); use a smaller diameter or margin"
    )


#: Spacing bisection of ``count``: stop when the bracket is this narrow (mm).
COUNT_SPACING_TOLERANCE_MM = 0.25


def _spread_count(
    field: RuleField, gtv: Volume, params: PlanParameters
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Exactly ``params.count`` vertices, as far apart as the lattice search can put them.

    Bisects the spacing between the requested minimum and the size of the allowed region:
    the largest spacing at which the search still fits ``count`` vertices wins. The count
    as a function of spacing is not strictly monotone, so this is the best of the spacings
    tried, not a proof of optimality.
    """
    n = int(params.count or 0)
    pts, info = search_lattice(field, gtv, replace(params, max_vertices=n, count=None))
    if len(pts) < n:
        raise ParameterError(
            f"only {len(pts)} vertices fit even {params.min_spacing_mm:g} mm apart, so "
            f"{{count}} {n} cannot be placed; lower the count, the spacing or the margins",
            parameters=["count"],
        )
    cand = np.argwhere(field.slack_vox_hi > -field.band_mm)
    extent = (cand.max(axis=0) - cand.min(axis=0) + 1) * gtv.voxel_size_mm
    lo, hi = params.min_spacing_mm, max(float(np.linalg.norm(extent)), params.min_spacing_mm)
    tried = 0
    while hi - lo > COUNT_SPACING_TOLERANCE_MM and n > 1:
        mid = 0.5 * (lo + hi)
        trial, trial_info = search_lattice(
            field, gtv, replace(params, min_spacing_mm=mid, max_vertices=n, count=None)
        )
        tried += 1
        if len(trial) >= n:
            lo, pts, info = mid, trial, trial_info
        else:
            hi = mid
    info["count_search"] = {
        "count": n,
        "requested_min_spacing_mm": params.min_spacing_mm,
        "lattice_spacing_mm": round(lo, 4),
        "spacings_tried": tried + 1,
    }
    return pts, info


def _search_max(
    field: RuleField, gtv: Volume, params: PlanParameters
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Irregular maximal packing, started from the best lattice.

    The lattice searches give a valid placement the packer can only improve on, so the
    result never has fewer vertices than the best lattice tried (all four unless they would
    use more than half of ``time_budget_s``; a pairwise rule is applied after packing, like
    for lattices).
    """
    t0 = time.perf_counter()
    from .packing import pack_maximal  # scipy.optimize: imported only when asked for

    best_pts: NDArray[np.float64] = np.zeros((0, 3))
    best_pattern = None
    lattice_counts: dict[str, int] = {}
    # The budget covers everything: lattices (densest first) within half of it, then the
    # packer with the rest (at least MIN_PACKING_S). A search is not cut short, so the next
    # lattice starts only if it is expected to end within the half. Checking only the time
    # already used let the last search start just before the half and end near the whole
    # budget. The searches weigh the same field and translations, over the angles of each
    # lattice's symmetry: the estimate is the slowest search so far per degree of symmetry.
    per_deg = 0.0
    for name in ("hcp", "fcc", "bcc", "sc"):
        symmetry_deg = make_pattern(name, min_spacing_mm=params.min_spacing_mm).symmetry_deg
        used = time.perf_counter() - t0
        if lattice_counts and used + per_deg * symmetry_deg > 0.5 * params.time_budget_s:
            break
        started = time.perf_counter()
        pts, _ = search_lattice(
            field,
            gtv,
            replace(
                params, pattern=name, max_vertices=None, coplanar_mm=None, coplanar_spacing_mm=None
            ),
        )
        per_deg = max(per_deg, (time.perf_counter() - started) / symmetry_deg)
        lattice_counts[name] = len(pts)
        if len(pts) > len(best_pts):
            best_pts, best_pattern = pts, name
    budget = max(params.time_budget_s - (time.perf_counter() - t0), MIN_PACKING_S)
    pts, info = pack_maximal(
        field,
        min_spacing_mm=params.min_spacing_mm,
        time_budget_s=budget,
        seed=0,
        initial=best_pts,
        max_vertices=None if params.coplanar_mm else params.max_vertices,
    )
    info = {
        "method": "maximal packing",
        **info,
        "initial_lattice": best_pattern,
        "lattice_counts": lattice_counts,
    }
    if params.coplanar_mm:
        keep = max_independent_subset(
            len(pts),
            coplanar_conflicts(
                pts,
                coplanar_mm=params.coplanar_mm,
                coplanar_spacing_mm=float(params.coplanar_spacing_mm or 0.0),
            ),
            weights=field.exact_slack(pts) if len(pts) else None,
        )
        pts = pts[keep]
    if params.max_vertices is not None and len(pts) > params.max_vertices:
        slack = field.exact_slack(pts)
        order = np.lexsort((pts[:, 0], -pts[:, 1], -pts[:, 2], -np.round(slack, 6)))
        pts = pts[order[: params.max_vertices]]
    pts = pts[np.lexsort((pts[:, 0], -pts[:, 1], -pts[:, 2]))]
    info["n_vertices"] = int(len(pts))
    return pts, info
