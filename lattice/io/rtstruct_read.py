"""Reading an RTSTRUCT as a treatment planning system exports it, and rasterising its ROIs.

RTSTRUCT contours are rasterised onto a CT grid with the even-odd rule (a contour inside
another one on the same slice is a hole). Each contour is matched to a slice by its position
along the slice normal, never by its referenced SOP Instance UID alone: real exports reference
slices that are not in the series.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputFileError, MaskError
from ..grid import LPS_TO_RAS, Grid
from ..volume import Volume
from .contour_problems import (
    ContourProblem,
    at_z,
    describe_problems,
)
from .dicom import _pydicom, quiet_pydicom

#: A contour more than this fraction of a slice gap away from every slice plane is not on
#: any slice of the series.
CONTOUR_OFF_SLICE_TOLERANCE = 0.5
#: A contour point more than this many voxels beyond the CT's in-plane edge (the outer side
#: of its edge voxels) makes the ROI unusable: no TPS draws a structure off its image, such a
#: point is damaged data, and a mask on the CT grid could not hold what the contour encloses.
CONTOUR_BEYOND_GRID_TOLERANCE_VOX = 1.0
#: A closed contour enclosing less than this (mm^2) has no area: its points lie on one line.
CONTOUR_MIN_AREA_MM2 = 1e-4

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


#: Largest distance of a CLOSED_PLANAR contour's point from the contour's best-fit plane
#: (decimal strings of 16 characters carry far more precision; TPS round to 0.01 mm).
CONTOUR_PLANARITY_TOLERANCE_MM = 0.05
#: Points of two contours of one ROI closer than this are the same point (duplicate check).
DUPLICATE_POINT_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class Roi:
    """One ROI of a structure set: its closed planar contours in LPS mm.

    ``problems`` are the contours of the file that are not in ``contours`` (and why);
    ``has_contour_item`` says whether an ROIContourSequence item refers to the ROI at all.
    """

    number: int
    name: str
    interpreted_type: str
    contours: tuple[NDArray[np.float64], ...]
    frame_of_reference_uid: str
    problems: tuple[ContourProblem, ...] = ()
    has_contour_item: bool = True

    @property
    def n_points(self) -> int:
        return sum(len(c) for c in self.contours)

    @property
    def n_contours_in_file(self) -> int:
        return len(self.contours) + len(self.problems)


@dataclass(frozen=True)
class StructureSet:
    """The ROIs of an RTSTRUCT file, by name in file order.

    ``orphans`` are the ROIContourSequence items that belong to no ROI (what is wrong, how
    many contours they hold); ``ambiguous`` maps an ROI name to why its contours cannot be
    told apart from another ROI's (a name or an ROI number used twice). ``patient_id`` is
    the file's PatientID ('' without one) and ``referenced_series`` the SeriesInstanceUIDs
    its RTReferencedSeriesSequence items name: the image series the ROIs were drawn on.
    """

    path: Path
    rois: dict[str, Roi]
    frame_of_reference_uid: str
    skipped_contours: int = 0
    orphans: tuple[tuple[str, int], ...] = ()
    ambiguous: dict[str, str] = field(default_factory=dict)
    patient_id: str = ""
    referenced_series: tuple[str, ...] = ()

    def names(self) -> list[str]:
        return list(self.rois)

    @property
    def file_problems(self) -> tuple[str, ...]:
        """One warning per ROIContourSequence item that belongs to no ROI."""
        return tuple(
            f"'{self.path}': {what}: its {n} contour{'s' * (n != 1)} belong"
            f"{'s' * (n == 1)} to no ROI and were left out"
            for what, n in self.orphans
        )

    def get(self, name: str) -> Roi:
        """The ROI called ``name`` (exact, else the only case-insensitive match).

        Raises
        ------
        MaskError
            No such ROI; the message lists the names present.
        InputFileError
            The name, or the ROI's number, is used twice in the file.
        """
        if name not in self.rois:
            folded = [n for n in self.rois if n.casefold() == name.casefold()]
            if len(folded) != 1:
                present = ", ".join(f"'{n}'" for n in self.rois) or "none"
                raise MaskError(f"no ROI named '{name}' in '{self.path}'; ROIs present: {present}")
            name = folded[0]
        if name in self.ambiguous:
            raise InputFileError(
                f"ROI '{name}' in '{self.path}': {self.ambiguous[name]}, so "
                "its contours cannot be told apart; export the structure set "
                "again"
            )
        return self.rois[name]


def read_rtstruct(path: str | Path) -> StructureSet:
    """Read the ROIs and their contours from an RTSTRUCT file.

    Only CLOSED_PLANAR contours of at least 3 finite points in one plane are kept, and one
    copy of a contour repeated on its slice; every other contour is recorded in its ROI's
    ``problems`` (see :data:`CONTOUR_PROBLEMS`), for :func:`roi_warnings` to report.

    Raises
    ------
    InputFileError
        Missing, unreadable or non-DICOM file, not a structure set, or one without a
        StructureSetROISequence (the ROI names and numbers).
    """
    with quiet_pydicom():
        return _read_rtstruct(Path(path))


def _read_rtstruct(path: Path) -> StructureSet:
    ds = _open_rtstruct(path)
    frames = ds.get("ReferencedFrameOfReferenceSequence") or []
    set_frame = str(frames[0].get("FrameOfReferenceUID", "")) if frames else ""
    items = list(ds.get("StructureSetROISequence") or [])
    if not items:
        raise InputFileError(
            f"'{path}' has no StructureSetROISequence (it names no ROI); "
            "export the structure set again"
        )
    info, ambiguous = _roi_items(path, items)
    types = {
        _roi_number(o.get("ReferencedROINumber")): str(o.get("RTROIInterpretedType", "") or "")
        for o in ds.get("RTROIObservationsSequence") or []
    }
    contours, problems, with_item, orphans = _roi_contours(ds, info)
    rois = {}
    for item in items:
        number = _roi_number(item.get("ROINumber"))
        assert number is not None  # checked above
        name = str(item.get("ROIName", f"ROI {number}"))
        if name in rois:
            continue  # the first of two ROIs of one name; get() refuses the name
        rois[name] = Roi(
            number=number,
            name=name,
            interpreted_type=types.get(number, ""),
            contours=tuple(contours.get(number, [])),
            frame_of_reference_uid=str(item.get("ReferencedFrameOfReferenceUID", set_frame)),
            problems=tuple(problems.get(number, [])),
            has_contour_item=number in with_item,
        )
    return StructureSet(
        path=path,
        rois=rois,
        frame_of_reference_uid=set_frame,
        skipped_contours=sum(len(p) for p in problems.values()),
        orphans=tuple(orphans),
        ambiguous=ambiguous,
        patient_id=str(ds.get("PatientID", "") or "").strip(),
        referenced_series=_referenced_series(frames),
    )


def _referenced_series(frames: Sequence[Any]) -> tuple[str, ...]:
    """The SeriesInstanceUIDs of ReferencedFrameOfReferenceSequence > RTReferencedStudy >
    RTReferencedSeries, in file order, each once."""
    uids = [
        str(series.get("SeriesInstanceUID", "") or "").strip()
        for frame in frames
        for study in frame.get("RTReferencedStudySequence") or []
        for series in study.get("RTReferencedSeriesSequence") or []
    ]
    return tuple(dict.fromkeys(u for u in uids if u))


def _open_rtstruct(path: Path) -> Any:
    """The dataset of an RTSTRUCT file, or an InputFileError saying what the file is."""
    pydicom = _pydicom()
    if not path.exists():
        raise InputFileError(f"file not found: '{path}'; check the path")
    if path.is_dir():
        raise InputFileError(f"'{path}' is a folder; pass the RTSTRUCT file (RS*.dcm)")
    try:
        ds = pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError as exc:
        raise InputFileError(f"'{path}' is not a DICOM file; pass the RTSTRUCT file") from exc
    except PermissionError as exc:
        raise InputFileError(
            f"cannot read '{path}' (permission denied); give this user read "
            "permission on the file (chmod a+r) or copy it"
        ) from exc
    except (OSError, EOFError, ValueError, KeyError) as exc:
        raise InputFileError(
            f"cannot read '{path}' ({type(exc).__name__}: {exc}); export the structure set again"
        ) from exc
    if ds.get("Modality") != "RTSTRUCT" and str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS:
        raise InputFileError(
            f"'{path}' is a DICOM {ds.get('Modality', 'object')}, not an "
            "RTSTRUCT; pass the structure set file"
        )
    return ds


def _roi_items(path: Path, items: Sequence[Any]) -> tuple[dict[int, Any], dict[str, str]]:
    """StructureSetROISequence items by ROI number (the first of a number), and the names
    whose contours cannot be told apart (a name or number used twice) with the reason."""
    info: dict[int, Any] = {}
    ambiguous: dict[str, str] = {}
    names_seen: dict[str, int] = {}
    for k, item in enumerate(items, 1):
        number = _roi_number(item.get("ROINumber"))
        if number is None:
            raise InputFileError(
                f"'{path}': StructureSetROISequence item {k} has no valid "
                f"ROINumber ({item.get('ROINumber')!r}); export the "
                "structure set again"
            )
        name = str(item.get("ROIName", f"ROI {number}"))
        if number in info:
            other = str(info[number].get("ROIName", f"ROI {number}"))
            why = f"ROI number {number} is used by both '{other}' and '{name}'"
            ambiguous.setdefault(other, why)
            ambiguous.setdefault(name, why)
        if name in names_seen:
            ambiguous.setdefault(
                name, f"the name is used by ROI numbers {names_seen[name]} and {number}"
            )
        names_seen.setdefault(name, number)
        info.setdefault(number, item)
    return info, ambiguous


def _roi_contours(
    ds: Any, info: dict[int, Any]
) -> tuple[
    dict[int, list[NDArray[np.float64]]],
    dict[int, list[ContourProblem]],
    set[int],
    list[tuple[str, int]],
]:
    """Usable contours and problems by ROI number, the numbers with a ROIContourSequence
    item, and the items that belong to no ROI (what is wrong, their contour count)."""
    contours: dict[int, list[NDArray[np.float64]]] = defaultdict(list)
    problems: dict[int, list[ContourProblem]] = defaultdict(list)
    # Contours by (ROI, point count, slice): only those that share a bucket are compared.
    buckets: dict[tuple[int, int, float], list[NDArray[np.float64]]] = defaultdict(list)
    with_item: set[int] = set()
    orphans = []
    for k, item in enumerate(ds.get("ROIContourSequence") or [], 1):
        number = _roi_number(item.get("ReferencedROINumber"))
        n = len(item.get("ContourSequence") or [])
        if number is None or number not in info:
            what = (
                "has no ReferencedROINumber"
                if number is None
                else f"refers to ROI number {number}, which StructureSetROISequence lacks"
            )
            orphans.append((f"ROIContourSequence item {k} {what}", n))
            continue
        with_item.add(number)
        for index, c in enumerate(item.get("ContourSequence") or [], 1):
            points, problem = _contour_points(c, index)
            if problem is None:
                z = float(points[:, 2].mean())
                bucket = buckets[number, len(points), round(z, 2)]
                if bucket and any(_contour_key(points) == _contour_key(b) for b in bucket):
                    problem = ContourProblem(index, z, "duplicate")
                bucket.append(points)
            if problem is not None:
                problems[number].append(problem)
            else:
                contours[number].append(points)
    return contours, problems, with_item, orphans


def _roi_number(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if str(number) == str(value).strip() else None


def _contour_points(item: Any, index: int) -> tuple[NDArray[np.float64], ContourProblem | None]:
    """One ContourSequence item's points, (n, 3) LPS mm, or why it cannot be used."""
    raw = item.get("ContourData")
    values = [] if raw is None else (list(raw) if not isinstance(raw, (str, bytes)) else [raw])
    try:
        data = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):  # a value that is not a number counts as NaN
        data = np.full(len(values), np.nan)
        for i, v in enumerate(values):
            with contextlib.suppress(TypeError, ValueError):
                data[i] = float(v)
    whole = data[: len(data) - len(data) % 3].reshape(-1, 3)
    z = whole[:, 2][np.isfinite(whole[:, 2])]
    z_mm = float(np.mean(z)) if len(z) else float("nan")

    def problem(reason: str) -> tuple[NDArray[np.float64], ContourProblem]:
        return np.zeros((0, 3)), ContourProblem(index, z_mm, reason)

    kind = str(item.get("ContourGeometricType", "CLOSED_PLANAR") or "CLOSED_PLANAR").strip()
    if kind == "POINT":
        return problem("point")
    if kind != "CLOSED_PLANAR":
        return problem("open")
    if len(data) % 3:
        return problem("length")
    if not np.all(np.isfinite(data)):
        return problem("not_finite")
    declared = item.get("NumberOfContourPoints")
    if declared is not None and _roi_number(declared) != len(whole):
        return problem("count")
    if len(whole) < 3:
        return problem("too_few_points")
    centred = whole - whole.mean(axis=0)
    if np.ptp(whole[:, 2]) > CONTOUR_PLANARITY_TOLERANCE_MM:  # else in a plane z = constant
        normal = np.linalg.svd(centred, full_matrices=False)[2][-1]
        if np.abs(centred @ normal).max() > CONTOUR_PLANARITY_TOLERANCE_MM:
            return problem("not_planar")
    # A planar polygon's area is half the length of the sum of its edges' cross products.
    area = 0.5 * float(np.linalg.norm(np.cross(centred, np.roll(centred, -1, axis=0)).sum(0)))
    if area < CONTOUR_MIN_AREA_MM2:
        return problem("no_area")
    return whole, None


def _contour_key(points: NDArray[np.float64]) -> bytes:
    """The same bytes for two contours of the same points (any start point or direction)."""
    grid = np.round(points / DUPLICATE_POINT_TOLERANCE_MM).astype(np.int64)
    return grid[np.lexsort(grid.T[::-1])].tobytes()


@dataclass(frozen=True)
class Rasterised:
    """A rasterised ROI and what was left out of it."""

    mask: Volume
    contours_used: int
    contours_off_slice: int
    contours_outside: int
    #: LPS z (mm) of each contour left out, naming its slice.
    off_slice_z_mm: tuple[float, ...] = ()
    outside_z_mm: tuple[float, ...] = ()
    #: LPS z (mm) of each slice whose contours cross (:mod:`lattice.geometry.crossings`).
    crossing_z_mm: tuple[float, ...] = ()


def rasterise_roi(roi: Roi, grid: Grid | Volume, *, source: str = "") -> Rasterised:
    """Fill an ROI's contours on ``grid`` (even-odd rule per slice).

    Each contour goes to the slice plane nearest to it along the grid's k axis; a contour
    more than :data:`CONTOUR_OFF_SLICE_TOLERANCE` of a slice gap from every plane, or beyond
    the first or last slice, is left out and counted. A voxel is inside when its centre is
    inside the polygon (scikit-image's ``draw.polygon``). The result keeps the polygons it
    used (:class:`~lattice.geometry.surface.ContourVolume`), so the TPS solid is built from them.

    Raises
    ------
    InputFileError
        A contour on a slice reaches more than :data:`CONTOUR_BEYOND_GRID_TOLERANCE_VOX`
        voxels beyond the grid's in-plane edge (``source``, the file, names it).
    """
    from nibabel.affines import apply_affine  # nibabel ~0.35 s: not with the CLI's parser
    from skimage.draw import polygon

    from ..geometry.crossings import crossing_slices, overlap_slices
    from ..geometry.surface import ContourVolume

    shape = grid.shape
    mask = np.zeros(shape, dtype=bool, order="F")
    inverse = np.linalg.inv(grid.affine) @ LPS_TO_RAS  # LPS -> index
    used = 0
    off: list[float] = []
    outside: list[float] = []
    rings: list[tuple[int, NDArray[np.float64]]] = []
    slice_z: dict[int, float] = {}
    cells: dict[int, list[NDArray[np.int64]]] = {}  # each ring's filled pixels, per slice
    for points in roi.contours:
        ijk = apply_affine(inverse, points)
        k = float(np.mean(ijk[:, 2]))
        kk = int(np.rint(k))
        if np.abs(ijk[:, 2] - kk).max() > CONTOUR_OFF_SLICE_TOLERANCE:
            off.append(float(points[:, 2].mean()))
            continue
        if not 0 <= kk < shape[2]:
            outside.append(float(points[:, 2].mean()))
            continue
        _check_on_grid(roi, points, ijk, grid, source)
        ii, jj = polygon(ijk[:, 0], ijk[:, 1], shape=shape[:2])
        mask[ii, jj, kk] ^= True
        cells.setdefault(kk, []).append(ii.astype(np.int64) * shape[1] + jj)
        rings.append((kk, ijk[:, :2].copy()))
        slice_z.setdefault(kk, float(points[:, 2].mean()))  # LPS z naming the slice
        used += 1
    crossed = [slice_z[k] for k in sorted({*crossing_slices(rings), *overlap_slices(cells)})]
    # The polygons travel with the mask: margins are measured against them
    # (lattice.geometry.surface).
    return Rasterised(
        ContourVolume(mask, grid.affine, rings_ijk=tuple(rings)),
        used,
        len(off),
        len(outside),
        tuple(off),
        tuple(outside),
        tuple(crossed),
    )


def _check_on_grid(
    roi: Roi,
    points: NDArray[np.float64],
    ijk: NDArray[np.float64],
    grid: Grid | Volume,
    source: str,
) -> None:
    """Refuse a contour with a point beyond :data:`CONTOUR_BEYOND_GRID_TOLERANCE_VOX` of the
    grid's in-plane edge (the far point named, LPS mm, with its distance from the image)."""
    edge = np.array(grid.shape[:2], dtype=np.float64) - 0.5  # outer side of the edge voxels
    beyond = np.maximum(-0.5 - ijk[:, :2], ijk[:, :2] - edge).clip(0.0)
    if beyond.max() <= CONTOUR_BEYOND_GRID_TOLERANCE_VOX:
        return
    far = int(np.argmax(beyond.max(axis=1)))
    mm = float(np.linalg.norm(beyond[far] * grid.voxel_size_mm[:2]))
    x, y, z = points[far]
    where = f" in '{source}'" if source else ""
    raise InputFileError(
        f"ROI '{roi.name}'{where}: a contour at z = {z:.2f} mm has the point "
        f"({x:.6g}, {y:.6g}) mm (LPS), {mm:.6g} mm beyond the edge of the CT's image; a "
        "structure must lie on the CT it was drawn on: correct the contour in the TPS and "
        "export the structure set again"
    )


def check_usable(roi: Roi, structures: StructureSet) -> None:
    """Refuse an ROI without contours or with a damaged one (see :data:`CONTOUR_PROBLEMS`)."""
    where = f"ROI '{roi.name}' in '{structures.path}'"
    if not roi.n_contours_in_file:
        if not roi.has_contour_item and structures.orphans:
            what, n = structures.orphans[0]
            raise InputFileError(
                f"{where} has no contours: no ROIContourSequence item refers "
                f"to its number {roi.number}, and {what} (its {n} contours "
                "may be this ROI's); export the structure set again"
            )
        why = (
            "its ContourSequence is empty"
            if roi.has_contour_item
            else f"no ROIContourSequence item refers to its number {roi.number}"
        )
        raise MaskError(
            f"{where} has no contours ({why}); choose an ROI that holds the "
            "structure (`lattice rois` lists them)"
        )
    fatal = [p for p in roi.problems if p.fatal]
    if fatal:
        raise InputFileError(
            f"{where}: {len(fatal)} of {roi.n_contours_in_file} contours "
            f"cannot be used: {describe_problems(fatal)}; correct "
            f"{'it' if len(fatal) == 1 else 'them'} in the TPS and export the "
            "structure set again"
        )


def left_out(roi: Roi, result: Rasterised) -> str:
    """What was left out of an ROI and why, as one phrase ("" when nothing was)."""
    parts = [describe_problems(roi.problems)] if roi.problems else []
    for z, what in (
        (result.off_slice_z_mm, "between slices of the CT"),
        (result.outside_z_mm, "beyond the first or last slice of the CT"),
    ):
        if z:
            parts.append(f"{len(z)} {'lies' if len(z) == 1 else 'lie'} {what} ({at_z(z)})")
    return "; ".join(parts)


def list_rois(path: str | Path) -> list[dict[str, Any]]:
    """Name, number, type and contour count of every ROI in an RTSTRUCT file."""
    s = read_rtstruct(path)
    return [
        {
            "number": r.number,
            "name": r.name,
            "type": r.interpreted_type,
            "contours": len(r.contours),
            "points": r.n_points,
        }
        for r in s.rois.values()
    ]
