"""Helper rings for the TPS optimiser: support shells around the vertex spheres and SCART
rings around the GTV and the STV (issue 14 item 2).

- **Support shells** (``--shells-mm 0,5,15,35``): rings at ``a < d <= b`` mm from the
  surfaces of the vertex spheres (the exact distance to their union,
  :func:`lattice.geometry.rings.sphere_union_distance_mm`), clipped to the GTV, or to the
  body (``--body MASK|ROI``) when given. ROIs ``LATTICE_SH00_05``, ``LATTICE_SH05_15``...,
  AVOIDANCE: the optimiser keeps the dose there down, which makes the fall-off from each
  peak to the valley steep.
- **SCART rings** (``--scart-ring-mm 2,12``, with an STV): GTV + 12 mm minus GTV + 2 mm
  (``GTV_RING02_12``) and the same around the STV (``STV_RING02_12``), by the exact EDT
  between voxel centres (:func:`lattice.geometry.rings.mask_ring_labels`), clipped to the
  body when given. CONTROL: they shape the fall-off, they are not organs.

Bounds are whole millimetres (the ROI names carry them, at most 16 characters).
:func:`support_rings` builds both as label maps on the CT grid; :class:`SupportRings` holds
them and what plan.json records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ParameterError
from ..volume import Volume

__all__ = [
    "MAX_RING_MM",
    "RingRecord",
    "SupportOptions",
    "SupportRings",
    "parse_ring_bounds",
    "ring_name",
    "support_rings",
]

#: Largest ring bound: beyond a few centimetres a "ring" is the whole body; 500 mm is far
#: past any use and a typing or unit mistake above it.
MAX_RING_MM = 500
#: Longest ROI name Eclipse accepts (as :data:`lattice.io.rtstruct_write.MAX_NAME_LENGTH`).
MAX_ROI_NAME = 16
#: The ROI name prefix of each kind of ring.
RING_PREFIXES = {"shell": "LATTICE_SH", "gtv_ring": "GTV_RING", "stv_ring": "STV_RING"}


def parse_ring_bounds(value: str | Sequence[float], *, name: str) -> tuple[int, ...]:
    """Ring bounds from ``'0,5,15,35'`` (or a sequence of numbers): whole mm, increasing.

    Parameters
    ----------
    value : str or sequence of numbers
    name : str
        The parameter (``shells_mm``, ``scart_ring_mm``), named in the messages as
        ``{name}``.

    Returns
    -------
    tuple of int
        At least two bounds, 0 <= b_0 < b_1 < ... <= :data:`MAX_RING_MM`.

    Raises
    ------
    ParameterError
        Not numbers, fewer than two, negative, not whole, repeated, not increasing, too large.
    """
    from .parameters import read_number

    how = f"give increasing whole mm separated by commas, e.g. {{{name}}} 0,5,15,35"
    texts = value.split(",") if isinstance(value, str) else list(value)
    numbers = []
    for t in texts:
        try:
            n = float(read_number(t) if isinstance(t, str) else t)
        except (ValueError, TypeError):
            raise ParameterError(
                f"{{{name}}} {value!r}: {str(t).strip()!r} is not a number; {how}",
                parameters=[name],
            ) from None
        numbers.append(n)

    def refuse(why: str) -> ParameterError:
        return ParameterError(f"{{{name}}} {value!r}: {why}; {how}", parameters=[name])

    if len(numbers) < 2:
        raise refuse("a ring needs two bounds (inner and outer)")
    if not all(np.isfinite(numbers)):
        raise refuse("bounds must be finite")
    if any(n < 0 for n in numbers):
        raise refuse("bounds are distances and cannot be negative")
    if any(n != round(n) for n in numbers):
        raise refuse("bounds must be whole mm (the ROI names carry them)")
    if len(set(numbers)) != len(numbers):
        raise refuse("a bound repeats (that ring would be empty)")
    if any(b <= a for a, b in zip(numbers, numbers[1:])):
        raise refuse("bounds must increase")
    if numbers[-1] > MAX_RING_MM:
        raise refuse(f"the outer bound is above {MAX_RING_MM} mm")
    return tuple(int(n) for n in numbers)


def ring_name(kind: str, inner_mm: int, outer_mm: int, *, parameter: str = "shells_mm") -> str:
    """The default ROI name of a ring: ``LATTICE_SH05_15``, ``GTV_RING02_12``...

    Raises
    ------
    ParameterError
        The name would be longer than 16 characters (``LATTICE_SH100_150``).
    """
    text = f"{RING_PREFIXES[kind]}{inner_mm:02d}_{outer_mm:02d}"
    if len(text) > MAX_ROI_NAME:
        raise ParameterError(
            f"{{{parameter}}}: the ring {inner_mm}-{outer_mm} mm would be the ROI "
            f"{text}, longer than {MAX_ROI_NAME} characters (Eclipse's limit); use bounds "
            "below 100 mm",
            parameters=[parameter],
        )
    return text


@dataclass(frozen=True)
class SupportOptions:
    """What helper rings to make (None: none of that kind).

    Attributes
    ----------
    shells_mm : tuple of int, optional
        Support shell bounds from the vertex sphere surfaces.
    body : str, Path or Volume, optional
        Clip to this body instead of the GTV: a NIfTI mask on the CT grid (path), with DICOM
        input the name of an ROI of the source RTSTRUCT, or a boolean Volume.
    scart_ring_mm : tuple of int, optional
        SCART ring bounds from the GTV and the STV surfaces (needs an STV).
    """

    shells_mm: tuple[int, ...] | None = None
    body: str | Path | Volume | None = None
    scart_ring_mm: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("shells_mm", "scart_ring_mm"):
            value = getattr(self, name)
            if value is not None:
                bounds = parse_ring_bounds(value, name=name)
                kinds = ("shell",) if name == "shells_mm" else ("gtv_ring", "stv_ring")
                for kind in kinds:
                    for a, b in zip(bounds, bounds[1:]):
                        ring_name(kind, a, b, parameter=name)
                object.__setattr__(self, name, bounds)
        if self.body is not None and self.shells_mm is None and self.scart_ring_mm is None:
            raise ParameterError(
                "{body} clips the rings of {shells_mm} or {scart_ring_mm}; give one of them "
                "or drop {body}",
                parameters=["body", "shells_mm", "scart_ring_mm"],
            )

    @property
    def any(self) -> bool:
        return self.shells_mm is not None or self.scart_ring_mm is not None

    def check_stv(self, has_stv: bool) -> None:
        """Raise :class:`ParameterError` when SCART rings are asked for without an STV."""
        if self.scart_ring_mm is not None and not has_stv:
            raise ParameterError(
                "{scart_ring_mm} draws rings around the GTV and the STV; give the STV with "
                "{stv_margin_mm} or {stv_fraction}",
                parameters=["scart_ring_mm", "stv_margin_mm", "stv_fraction"],
            )


@dataclass(frozen=True)
class RingRecord:
    """One ring as plan.json ``shells`` / ``scart_rings`` records it."""

    name: str
    kind: str  # 'shell', 'gtv_ring' or 'stv_ring'
    label: int
    inner_mm: int
    outer_mm: int
    volume_cc: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "around": {"shell": "vertices", "gtv_ring": "GTV", "stv_ring": "STV"}[self.kind],
            "label": self.label,
            "inner_mm": self.inner_mm,
            "outer_mm": self.outer_mm,
            "volume_cc": round(self.volume_cc, 4),
        }


@dataclass(frozen=True, eq=False)
class SupportRings:
    """The helper rings of a plan, on the CT grid.

    Attributes
    ----------
    shells : Volume, optional
        uint8 label map, label k = support shell k (``shells.nii.gz``).
    gtv_rings, stv_rings : Volume, optional
        uint8 label maps of the SCART rings, label k = ring k around the GTV
        (``gtv_rings.nii.gz``) and around the STV (``stv_rings.nii.gz``).
    records : list of RingRecord
        Shells first, then the GTV and STV rings.
    clip : str
        ``'GTV'`` or what the body was (path or ROI name).
    warnings : tuple of str
    body_record : dict
        plan.json ``inputs.body`` (empty without a body).
    """

    shells: Volume | None
    gtv_rings: Volume | None
    stv_rings: Volume | None
    records: list[RingRecord]
    options: SupportOptions
    clip: str
    warnings: tuple[str, ...] = field(default=())
    #: plan.json ``inputs.body``: the body's file (path, sha256) or ROI (roi); empty without.
    body_record: dict[str, Any] = field(default_factory=dict)

    def parameters(self) -> dict[str, Any]:
        """plan.json ``parameters`` entries."""
        o = self.options
        return {
            "shells_mm": None if o.shells_mm is None else list(o.shells_mm),
            "body": None if o.body is None else self.clip,
            "scart_ring_mm": None if o.scart_ring_mm is None else list(o.scart_ring_mm),
        }

    def document(self) -> dict[str, Any]:
        """plan.json's ``shells`` and ``scart_rings`` (only those made)."""
        out: dict[str, Any] = {}
        shells = [r.to_dict() for r in self.records if r.kind == "shell"]
        scart = [r.to_dict() for r in self.records if r.kind != "shell"]
        if self.shells is not None:
            out["shells"] = shells
        if self.gtv_rings is not None:
            out["scart_rings"] = scart
        return out


def _records(labels: Volume, kind: str, bounds: Sequence[int], first: int) -> list[RingRecord]:
    counts = np.bincount(np.asarray(labels.array).ravel(), minlength=first + len(bounds))
    return [
        RingRecord(
            ring_name(kind, a, b),
            kind,
            first + k,
            a,
            b,
            float(counts[first + k]) * labels.voxel_volume_cc,
        )
        for k, (a, b) in enumerate(zip(bounds, bounds[1:]))
    ]


def _edge_warning(labels: Volume, what: str) -> list[str]:
    """A warning when a ring reaches the edge of the grid (it is cut there)."""
    a = np.asarray(labels.array)
    faces = [a[0], a[-1], a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1]]
    if any(f.any() for f in faces):
        return [f"{what} reach the edge of the CT grid and are clipped there"]
    return []


def support_rings(
    gtv: Volume,
    centers_ras_mm: ArrayLike,
    *,
    diameter_mm: float,
    options: SupportOptions,
    stv: Volume | None = None,
    body: Volume | None = None,
    body_label: str | None = None,
) -> SupportRings:
    """The support shells and SCART rings asked for in ``options``.

    Parameters
    ----------
    gtv : Volume
        Boolean GTV on the CT grid.
    centers_ras_mm : (n, 3) array_like of float
        Vertex centres, RAS mm.
    diameter_mm : float
    options : SupportOptions
    stv : Volume, optional
        The SCART target (needed for ``scart_ring_mm``).
    body : Volume, optional
        Boolean body on the GTV's grid: the shells are clipped to it instead of the GTV, and
        the SCART rings to it.
    body_label : str, optional
        How plan.json names the body.

    Returns
    -------
    SupportRings

    Raises
    ------
    ParameterError
        SCART rings without an STV.
    GridMismatchError
        ``body`` or ``stv`` not on the GTV's grid.
    """
    from ..geometry.rings import mask_ring_labels, sphere_ring_labels

    options.check_stv(stv is not None)
    if body is not None:
        gtv.check_same_grid(body, name="the GTV", other_name=f"the body {body_label or ''}")
    if stv is not None:
        gtv.check_same_grid(stv, name="the GTV", other_name="the STV")
    records: list[RingRecord] = []
    warnings: list[str] = []
    shells = None
    scart: dict[str, Volume] = {}
    clip = gtv if body is None else body.with_array(np.asarray(body.array, dtype=bool))
    if options.shells_mm is not None:
        shells = sphere_ring_labels(
            clip, centers_ras_mm, diameter_mm=diameter_mm, bounds_mm=options.shells_mm
        )
        records += _records(shells, "shell", options.shells_mm, 1)
        warnings += _edge_warning(shells, "support shells")
    if options.scart_ring_mm is not None:
        assert stv is not None
        bounds, keep = options.scart_ring_mm, None if body is None else np.asarray(clip.array)
        # Two label maps: an STV ring runs inside the GTV and, for a margin below the outer
        # bound, out across its surface into the GTV rings.
        for kind, around in (("gtv_ring", gtv), ("stv_ring", stv)):
            labels = mask_ring_labels(
                np.asarray(around.array, dtype=bool),
                voxel_size_mm=gtv.voxel_size_mm,
                bounds_mm=bounds,
                clip=keep,
            )
            scart[kind] = Volume(labels, gtv.affine)
            records += _records(scart[kind], kind, bounds, 1)
            warnings += _edge_warning(scart[kind], f"the rings around the {kind[:3].upper()}")
    warnings += [f"{r.name} is empty (no ROI written)" for r in records if r.volume_cc == 0]
    clip_name = "GTV" if body is None else (body_label or "body")
    return SupportRings(
        shells,
        scart.get("gtv_ring"),
        scart.get("stv_ring"),
        records,
        options,
        clip_name,
        tuple(warnings),
    )
