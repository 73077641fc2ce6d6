"""The plan: parameters, vertices with their per-vertex measures, derived volumes, and the
JSON form written to ``plan.json``.

Every point is reported in three spaces: RAS+ mm (NIfTI world), LPS mm (DICOM / Slicer:
x and y negated) and fractional voxel index of the CT grid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from .. import __version__
from ..errors import ParameterError
from ..geometry.patterns import PATTERNS
from ..volume import Volume
from .cold_plan import DEFAULT_COLD_GAP_MM, ColdSites, cold_document, cold_parameters
from .frames import InputFormat, input_format_of, world_frame
from .parameters import MAX_LENGTH_MM, RANGES, check_range  # noqa: F401 - MAX_LENGTH_MM: re-exported

OrientationSearch = Literal["axial", "3d"]
ORIENTATION_SEARCHES: tuple[str, ...] = get_args(OrientationSearch)
#: Lattice patterns and the irregular maximal packing.
PLACEMENTS: tuple[str, ...] = (*PATTERNS, "max")
Mode = Literal["fill", "shell"]
MODES: tuple[str, ...] = get_args(Mode)

#: RAS -> LPS: negate x and y (DICOM patient coordinates), z unchanged.
RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])
#: Largest relative difference between a vertex's TPS volume (its exported slice circles x
#: slice gap) and 4/3 pi r^3 before plan.json warns.
TPS_VOLUME_TOLERANCE = 0.05


@dataclass(frozen=True)
class PlanParameters:
    """Every setting of a plan, units in the names.

    Attributes
    ----------
    diameter_mm : float
        Vertex sphere diameter D.
    min_spacing_mm : float
        Minimum centre-to-centre distance between any two vertices (true nearest-neighbour
        distance, for every pattern).
    gtv_margin_mm : float
        Minimum distance from each sphere's surface to the GTV surface; centre depth >=
        margin + D/2. The LATTICE target is the GTV eroded by this margin.
    pattern : {'sc', 'bcc', 'fcc', 'hcp', 'max'}
        A lattice, or ``max`` (irregular maximal packing).
    oar_clearance_mm : dict of str to float
        Per OAR, minimum distance from each sphere's surface to the organ.
    snap_to_slices : bool
        Put every centre on a CT slice plane.
    max_vertices : int or None
        Keep at most this many vertices (those with the most room).
    orientation_search : {'axial', '3d'}
        Rotations searched: about world z (the slice normal when snapping to
        slices) only, or also tilted out of plane (not with snap_to_slices).
    rotation_step_deg : float
        Angular step of the orientation search.
    translation_steps : int
        Translations per cell axis in the coarse search (refined afterwards).
    mode : {'fill', 'shell'}
        ``fill``: vertices throughout the LATTICE target. ``shell``: vertices on the edge of
        the LATTICE target, every centre at depth between margin + D/2 and margin + D/2 +
        ``shell_width_mm`` below the GTV surface.
    shell_width_mm : float or None
        Width of the shell of allowed centre depths (shell mode; default D/2).
    min_vertices : int or None
        Planning fails if fewer vertices fit.
    count : int or None
        Place exactly this many vertices, as far apart as possible (>= min_spacing_mm).
    coplanar_mm, coplanar_spacing_mm : float or None
        Mayo co-planar rule: centres less than ``coplanar_mm`` apart in z must be at least
        ``coplanar_spacing_mm`` apart.
    time_budget_s : float
        Wall-clock budget of the maximal packing (pattern ``max``).
    protocol : str or None
        Name of the protocol preset the values follow (:mod:`lattice.planning.protocols`).
    cold_spheres, cold_diameter_mm, cold_gap_mm : bool, float or None, float
        Cold spheres at the holes (:mod:`lattice.planning.cold_plan`), their diameter (None:
        D) and least surface gap to every vertex sphere.
    """

    diameter_mm: float = 15.0
    min_spacing_mm: float = 30.0
    gtv_margin_mm: float = 5.0
    pattern: str = "hcp"
    oar_clearance_mm: dict[str, float] = field(default_factory=dict)
    snap_to_slices: bool = False
    max_vertices: int | None = None
    orientation_search: str = "axial"
    rotation_step_deg: float = 5.0
    translation_steps: int = 12
    mode: str = "fill"
    shell_width_mm: float | None = None
    min_vertices: int | None = None
    count: int | None = None
    coplanar_mm: float | None = None
    coplanar_spacing_mm: float | None = None
    time_budget_s: float = 5.0
    protocol: str | None = None
    cold_spheres: bool = False
    cold_diameter_mm: float | None = None
    cold_gap_mm: float = DEFAULT_COLD_GAP_MM

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_protocol(cls, name: str | None, **overrides: Any) -> PlanParameters:
        """The parameters of protocol ``name`` (:mod:`lattice.planning.protocols`; None: the
        defaults), with ``overrides`` taking precedence; an override of None is not given.
        ``coplanar_mm=0`` turns the protocol's co-planar rule off. An OAR in
        ``oar_clearance_mm`` whose clearance is None takes the protocol's
        (:func:`lattice.planning.protocols.protocol_clearance_mm`, as ``lattice plan`` does).

        >>> PlanParameters.from_protocol("mayo", diameter_mm=10).coplanar_spacing_mm
        80.0
        >>> PlanParameters.from_protocol("mayo", oar_clearance_mm={"cord": None}).oar_clearance_mm
        {'cord': 10.0}

        Raises
        ------
        ParameterError
            An unknown protocol or parameter, or values out of range or inconsistent.
        """
        from .protocols import get_protocol, protocol_clearance_mm

        preset = dict(get_protocol(name).parameters) if name is not None else {}
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given) - {f.name for f in fields(cls)})
        if unknown:
            raise ParameterError(
                f"{', '.join(unknown)} is not a plan parameter; use one of "
                f"{', '.join(f.name for f in fields(cls))}"
            )
        values = {**preset, **given, "protocol": name}
        if "oar_clearance_mm" in given:  # an OAR without a clearance takes the protocol's
            values["oar_clearance_mm"] = {
                oar: protocol_clearance_mm(name, oar) if mm is None else mm
                for oar, mm in given["oar_clearance_mm"].items()
            }
        if values.get("coplanar_mm") == 0:  # 0 turns the rule off (e.g. a protocol's)
            values["coplanar_mm"] = values["coplanar_spacing_mm"] = None
        return cls(**values)

    @property
    def max_depth_mm(self) -> float | None:
        """Deepest allowed centre (shell mode), mm below the GTV surface; None in fill mode."""
        if self.mode != "shell":
            return None
        width = self.diameter_mm / 2 if self.shell_width_mm is None else self.shell_width_mm
        return self.gtv_margin_mm + self.diameter_mm / 2 + width

    def validate(self) -> None:
        """Raise :class:`ParameterError` naming the first bad value and how to fix it.

        Every number must lie in its range in :data:`lattice.planning.parameters.RANGES` (NaN,
        infinity, a float where a count is wanted, a length beyond any patient are refused), then
        the parameters must agree with each other."""
        numbers = [
            f.name
            for f in fields(self)  # the numeric fields; OARs one by one below
            if f.name in RANGES and f.name != "oar_clearance_mm"
        ]
        for name in numbers:  # every range first, then the rules between them
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name))
        for oar, value in self.oar_clearance_mm.items():
            check_range("oar_clearance_mm", value, label=f"clearance for OAR '{oar}'")
        if self.min_spacing_mm < self.diameter_mm:
            raise ParameterError(
                f"{{min_spacing_mm}} ({self.min_spacing_mm:g}) is smaller than {{diameter_mm}} "
                f"({self.diameter_mm:g}): the spheres would overlap; use a spacing >= diameter",
                parameters=["min_spacing_mm", "diameter_mm"],
            )
        if self.pattern not in PLACEMENTS:
            raise ParameterError(
                f"unknown pattern {self.pattern!r}; choose one of {', '.join(PLACEMENTS)}"
            )
        if self.pattern == "max" and (self.snap_to_slices or self.count is not None):
            raise ParameterError(
                "{pattern} max supports neither {snap_to_slices} nor {count} "
                "yet; use a lattice pattern (sc, bcc, fcc, hcp) for those",
                parameters=["pattern", "snap_to_slices", "count"],
            )
        if self.orientation_search not in ORIENTATION_SEARCHES:
            raise ParameterError(
                f"unknown orientation search {self.orientation_search!r}; choose one of "
                f"{', '.join(ORIENTATION_SEARCHES)}"
            )
        if self.mode not in MODES:
            raise ParameterError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.shell_width_mm is not None and self.mode != "shell":
            raise ParameterError(
                "{shell_width_mm} only applies to the shell mode; add "
                "{mode} shell or drop {shell_width_mm}",
                parameters=["shell_width_mm", "mode"],
            )
        if self.snap_to_slices and self.orientation_search != "axial":
            raise ParameterError(
                "{snap_to_slices} lays the lattice's layers along the CT "
                "slices, so the lattice cannot be tilted; use "
                "{orientation_search} axial",
                parameters=["snap_to_slices", "orientation_search"],
            )
        if self.count is not None and self.max_vertices is not None:
            raise ParameterError(
                f"count cannot be combined with {{max_vertices}}, got "
                f"count={self.count}, {{max_vertices}}={self.max_vertices}; "
                "drop one of them",
                parameters=["max_vertices"],
            )
        if (self.coplanar_mm is None) != (self.coplanar_spacing_mm is None):
            raise ParameterError(
                "the co-planar rule needs both {coplanar_mm} and "
                "{coplanar_spacing_mm} (e.g. 20 and 80)",
                parameters=["coplanar_mm", "coplanar_spacing_mm"],
            )
        if self.coplanar_mm == 0:
            raise ParameterError(
                "co-planar distances must be > 0 mm, got {coplanar_mm} 0 "
                "(0 turns the rule off in plan_vertices)",
                parameters=["coplanar_mm"],
            )
        if (
            self.min_vertices is not None
            and self.max_vertices is not None
            and self.min_vertices > self.max_vertices
        ):
            raise ParameterError(
                f"{{min_vertices}} ({self.min_vertices}) exceeds "
                f"{{max_vertices}} ({self.max_vertices}); make them consistent",
                parameters=["min_vertices", "max_vertices"],
            )


@dataclass(frozen=True, eq=False)
class Plan:
    """The result of planning.

    Attributes
    ----------
    parameters : PlanParameters
    gtv : Volume
        Boolean GTV on the CT grid.
    lattice_target : Volume
        GTV eroded by the GTV margin, same grid.
    centers_ras_mm : (n, 3) ndarray of float
        Vertex centres, RAS+ mm, numbered superior to inferior, then anterior to posterior,
        then right to left.
    depth_mm : (n,) ndarray of float
        Distance from each centre to the nearest voxel centre outside the GTV.
    oar_distance_mm : dict of str to (n,) ndarray of float
        Distance from each centre to the nearest voxel centre of each OAR.
    search : dict
        What was searched and what was chosen.
    warnings : tuple of str
    """

    parameters: PlanParameters
    gtv: Volume
    lattice_target: Volume
    centers_ras_mm: NDArray[np.float64]
    depth_mm: NDArray[np.float64]
    oar_distance_mm: dict[str, NDArray[np.float64]]
    search: dict[str, Any]
    warnings: tuple[str, ...] = ()
    cold: ColdSites | None = None  # cold spheres, when asked (parameters.cold_spheres)

    @property
    def n_vertices(self) -> int:
        return int(len(self.centers_ras_mm))

    @property
    def centers_lps_mm(self) -> NDArray[np.float64]:
        """(n, 3) float: centres in DICOM LPS mm."""
        return self.centers_ras_mm * RAS_TO_LPS

    @property
    def centers_ijk(self) -> NDArray[np.float64]:
        """(n, 3) float: centres as fractional voxel indices of the CT grid."""
        if self.n_vertices == 0:
            return np.zeros((0, 3))
        return self.gtv.ras_to_ijk(self.centers_ras_mm)

    @cached_property
    def nearest_vertex_mm(self) -> NDArray[np.float64]:
        """(n,) float: distance from each centre to its nearest other centre (inf if alone)."""
        from scipy.spatial import cKDTree  # scipy is slow to import; the CLI overlaps it

        if self.n_vertices < 2:
            return np.full(self.n_vertices, np.inf)
        d, _ = cKDTree(self.centers_ras_mm).query(self.centers_ras_mm, k=2)
        return np.asarray(d[:, 1], dtype=np.float64)

    @cached_property
    def covering_radius_mm(self) -> float | None:
        """Largest distance from a GTV voxel centre to its nearest vertex centre (mm)."""
        from .covering import covering_radius_mm

        return covering_radius_mm(self.gtv, self.centers_ras_mm)

    def summary(self) -> dict[str, Any]:
        """Plan-level numbers: counts, volumes (cc), distances (mm); see README."""
        return dict(self._summary)

    @cached_property
    def _summary(self) -> dict[str, Any]:
        voxel_cc = self.gtv.voxel_volume_cc
        gtv_cc = float(np.count_nonzero(self.gtv.array)) * voxel_cc
        sphere_cc = np.pi / 6.0 * self.parameters.diameter_mm**3 / 1000.0
        vertex_cc = self.n_vertices * sphere_cc
        nn = self.nearest_vertex_mm
        p = self.parameters
        # Outer shell: centres at most one vertex radius deeper than the shallowest allowed.
        shell_limit = p.gtv_margin_mm + p.diameter_mm
        return {
            "n_vertices": self.n_vertices,
            "gtv_cc": round(gtv_cc, 3),
            "lattice_target_cc": round(
                float(np.count_nonzero(self.lattice_target.array)) * voxel_cc, 3
            ),
            "vertex_volume_cc": round(vertex_cc, 3),
            "vertex_volume_fraction_of_gtv": round(vertex_cc / gtv_cc, 5) if gtv_cc else None,
            "vertices_per_100cc_gtv": round(100 * self.n_vertices / gtv_cc, 3) if gtv_cc else None,
            "nearest_vertex_min_mm": _num(nn.min()) if self.n_vertices > 1 else None,
            "nearest_vertex_mean_mm": _num(nn.mean()) if self.n_vertices > 1 else None,
            "nearest_vertex_cv": (
                round(float(nn.std() / nn.mean()), 4) if self.n_vertices > 1 else None
            ),
            "depth_min_mm": _num(self.depth_mm.min()) if self.n_vertices else None,
            "depth_max_mm": _num(self.depth_mm.max()) if self.n_vertices else None,
            "covering_radius_mm": _num(self.covering_radius_mm)
            if self.covering_radius_mm is not None
            else None,
            "outer_shell_depth_limit_mm": shell_limit,
            "fraction_in_outer_shell": (
                round(float(np.mean(self.depth_mm <= shell_limit)), 4) if self.n_vertices else None
            ),
            "robust_shift_mm": self._robust_shift_mm(),
        }

    def _robust_shift_mm(self) -> float | None:
        """Largest rigid shift of the whole plan, in any direction, under which every
        distance rule still holds: the smallest slack of any vertex (depth and OAR distances
        are 1-Lipschitz, and a rigid shift keeps spacing and the co-planar rule). A plan with
        ``snap_to_slices`` stays on the slice planes only for shifts within the planes."""
        if not self.n_vertices:
            return None
        p = self.parameters
        r = p.diameter_mm / 2.0
        slack = self.depth_mm - (p.gtv_margin_mm + r)
        if p.max_depth_mm is not None:
            slack = np.minimum(slack, p.max_depth_mm - self.depth_mm)
        for name, d in self.oar_distance_mm.items():
            slack = np.minimum(slack, d - (p.oar_clearance_mm[name] + r))
        return _num(max(float(slack.min()), 0.0))

    def vertex_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per vertex (ids from 1)."""
        nn = self.nearest_vertex_mm
        ijk = self.centers_ijk
        records = []
        for i in range(self.n_vertices):
            records.append(
                {
                    "id": i + 1,
                    "name": f"VTX_{i + 1:02d}",
                    "center_ras_mm": [float(v) for v in self.centers_ras_mm[i]],
                    "center_lps_mm": [float(v) for v in self.centers_lps_mm[i]],
                    "center_ijk": [float(v) for v in ijk[i]],
                    "depth_mm": _num(self.depth_mm[i]),
                    "nearest_vertex_mm": _num(nn[i]),
                    "oar_distance_mm": {k: _num(v[i]) for k, v in self.oar_distance_mm.items()},
                }
            )
        return records

    def tps_volumes_cc(self, slice_grid: Volume | None = None) -> NDArray[np.float64]:
        """(n,) float: per vertex, the volume (cc) a TPS rebuilds from the circles
        ``rtstruct.dcm`` holds for it: polygon areas x slice gap, on the slices of
        ``slice_grid`` (the DICOM series the RTSTRUCT references; default the CT grid)."""
        from ..io.rtstruct_contours import sphere_tps_volume_mm3

        grid = self.gtv if slice_grid is None else slice_grid
        radius = self.parameters.diameter_mm / 2.0
        return np.array(
            [sphere_tps_volume_mm3(c, radius, grid) / 1000.0 for c in self.centers_lps_mm],
            dtype=np.float64,
        )

    def tps_volume_warnings(
        self, tps_cc: NDArray[np.float64], slice_grid: Volume | None = None
    ) -> list[str]:
        """A warning when a vertex's TPS volume (:meth:`tps_volumes_cc`) differs from the
        sphere's by more than :data:`TPS_VOLUME_TOLERANCE`."""
        p = self.parameters
        exact = np.pi / 6.0 * p.diameter_mm**3 / 1000.0
        off = tps_cc / exact - 1.0
        bad = np.flatnonzero(np.abs(off) > TPS_VOLUME_TOLERANCE)
        if not len(bad):
            return []
        grid = self.gtv if slice_grid is None else slice_grid
        gap = float(grid.voxel_size_mm[2])
        worst = bad[np.argsort(-np.abs(off[bad]))]
        listed = ", ".join(f"VTX_{i + 1:02d} {100 * off[i]:+.1f} %" for i in worst[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        on_plane = tps_volume_error(p.diameter_mm, gap, 0.0)
        larger = next(
            (
                d
                for d in np.arange(p.diameter_mm + 0.5, 4 * p.diameter_mm + 20, 0.5)
                if worst_tps_volume_error(float(d), gap) <= TPS_VOLUME_TOLERANCE
            ),
            None,
        )
        bigger = (
            "a larger --diameter-mm"
            if larger is None
            else f"a larger --diameter-mm (e.g. {larger:g}: at most "
            f"{100 * worst_tps_volume_error(float(larger), gap):.1f} % off wherever the "
            "slices fall)"
        )
        if p.snap_to_slices:
            advice = bigger
        elif abs(on_plane) <= TPS_VOLUME_TOLERANCE:
            advice = f"--snap-to-slices (every vertex then {100 * on_plane:+.1f} %) or {bigger}"
        else:
            advice = (
                f"{bigger}; --snap-to-slices would give {100 * on_plane:+.1f} % on these slices"
            )
        return [
            f"{len(bad)} of {self.n_vertices} vertex spheres come back in a TPS (slice "
            f"contours x {gap:g} mm slice gap) more than "
            f"{100 * TPS_VOLUME_TOLERANCE:g} % off their {exact:.3f} cc (D "
            f"{p.diameter_mm:g} mm): {listed}{more} (tps_volume_cc in plan.json); "
            f"use {advice}"
        ]

    def empty_vertex_warnings(self) -> list[str]:
        """A warning when a vertex sphere holds no voxel centre of the CT grid (a diameter
        below the voxel diagonal): ``vertices.nii.gz`` cannot show that vertex.

        On an orthogonal grid the voxel centre nearest to a point is its rounded index, so a
        sphere is empty exactly when that centre lies farther than D/2 (the test of
        :func:`lattice.io.masks.sphere_label_map`)."""
        if self.n_vertices == 0:
            return []
        vox = self.gtv.voxel_size_mm
        diagonal = float(np.linalg.norm(vox))
        if self.parameters.diameter_mm >= diagonal:
            return []  # every ball this wide holds a voxel centre wherever it falls
        ijk = self.centers_ijk
        nearest = np.clip(np.rint(ijk), 0, np.array(self.gtv.shape) - 1)
        d2 = np.sum(((ijk - nearest) * vox) ** 2, axis=1)
        empty = np.flatnonzero(d2 > (self.parameters.diameter_mm / 2.0) ** 2)
        if not len(empty):
            return []
        listed = ", ".join(f"VTX_{i + 1:02d}" for i in empty[:5])
        more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        size = " x ".join(f"{v:g}" for v in vox)
        return [
            f"{len(empty)} of {self.n_vertices} vertex spheres (D "
            f"{self.parameters.diameter_mm:g} mm) hold no voxel centre of the {size} mm "
            f"grid, so vertices.nii.gz does not show them: {listed}{more}; use a "
            f"--diameter-mm of at least {np.ceil(diagonal * 100) / 100:g} mm (the voxel "
            "diagonal)"
        ]

    def surface_model(self) -> dict[str, Any]:
        """How margins and clearances were measured (plan.json ``surface_model``)."""
        from ..geometry.surface import MODEL_NAME, MODEL_TEXT, ContourVolume

        return {
            "name": MODEL_NAME,
            "description": MODEL_TEXT,
            "slice_axis": "k (third array axis of the grid)",
            "slice_gap_mm": float(self.gtv.voxel_size_mm[2]),
            "gtv_outline": (
                "RTSTRUCT polygons"
                if isinstance(self.gtv, ContourVolume)
                else "marching squares at 0.5 of each mask slice"
            ),
        }

    def to_dict(
        self,
        *,
        inputs: dict[str, Any] | None = None,
        slice_grid: Volume | None = None,
        input_format: InputFormat | None = None,
    ) -> dict[str, Any]:
        """The ``plan.json`` document.

        Centres keep full float precision so that distances recomputed from the file obey
        the spacing rule exactly; derived measures are rounded to 1 µm. ``slice_grid``: the
        DICOM series the RTSTRUCT is written on, for ``tps_volume_cc`` (default the CT grid).
        ``input_format`` names the input route in ``world_frame`` (default: read from
        ``inputs``, a DICOM CT being recorded by its ``dicom_folder``, a NIfTI one by its
        ``path``).
        """
        params = cold_parameters(asdict(self.parameters), self.cold)
        params["radius_mm"] = self.parameters.diameter_mm / 2.0
        if self.parameters.protocol:
            from .protocols import get_protocol

            params["protocol_source"] = get_protocol(self.parameters.protocol).source
        tps = self.tps_volumes_cc(slice_grid)
        return {
            "lattice_version": __version__,
            "world_frame": world_frame(
                input_format if input_format is not None else input_format_of(inputs)
            ),
            "surface_model": self.surface_model(),
            "inputs": inputs or {},
            "grid": {
                "shape": list(self.gtv.shape),
                "voxel_size_mm": [float(v) for v in self.gtv.voxel_size_mm],
                "affine": [[float(v) for v in row] for row in self.gtv.affine],
            },
            "parameters": params,
            "summary": self.summary(),
            "search": self.search,
            "warnings": [
                *self.warnings,
                *self.empty_vertex_warnings(),
                *self.tps_volume_warnings(tps, slice_grid),
            ],
            "vertices": [
                {**r, "tps_volume_cc": round(float(v), 4)}
                for r, v in zip(self.vertex_records(), tps)
            ],
            **cold_document(self.cold),
        }


def tps_volume_error(diameter_mm: float, gap_mm: float, offset_mm: float) -> float:
    """Relative error of the volume a TPS rebuilds from a sphere's exported circles (64-gons,
    area x gap) when the slice planes lie at ``offset_mm`` + k ``gap_mm`` from its centre."""
    from ..io.rtstruct_contours import CIRCLE_POINTS

    r = diameter_mm / 2.0
    m = int(np.ceil(r / gap_mm)) + 1
    d = offset_mm + gap_mm * np.arange(-m, m + 1)
    d = d[np.abs(d) < r]
    polygon = CIRCLE_POINTS / 2.0 * np.sin(2 * np.pi / CIRCLE_POINTS)
    return float(polygon * np.sum(r * r - d * d) * gap_mm / (4.0 / 3.0 * np.pi * r**3) - 1.0)


def worst_tps_volume_error(diameter_mm: float, gap_mm: float, samples: int = 512) -> float:
    """Largest :func:`tps_volume_error` over where the slices may fall (sampled)."""
    return max(
        abs(tps_volume_error(diameter_mm, gap_mm, gap_mm * t / samples)) for t in range(samples)
    )


def _num(value: float) -> float | None:
    """Round a distance to 1 µm for JSON; inf (no neighbour / no OAR) becomes None."""
    value = float(value)
    return round(value, 3) if np.isfinite(value) else None
