"""Reading DICOM as a treatment planning system exports it: a CT series and an RTSTRUCT.

The CT series becomes a :class:`~lattice.volume.Volume` in RAS+ mm like a NIfTI image:
slices sorted by their position along the slice normal, rescale slope and intercept applied,
any orientation. Array axis i runs along the image rows (DICOM column index), j along the
columns (row index), k along the sorted slices.

RTSTRUCT contours are rasterised onto that grid with the even-odd rule (a contour inside
another one on the same slice is a hole). Each contour is matched to a slice by its position
along the slice normal, never by its referenced SOP Instance UID alone: real exports reference
slices that are not in the series.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, overload

import numpy as np
from nibabel.affines import apply_affine
from numpy.typing import NDArray

from .errors import GridMismatchError, InputFileError, MaskError
from .grid import LPS_TO_RAS, Grid
from .volume import Volume

#: Largest difference between two slices' orientation cosines that counts as the same.
ORIENTATION_TOLERANCE = 1e-4
#: Largest deviation of a slice gap from the median gap, relative to it, for an even series.
SLICE_GAP_TOLERANCE = 0.01
#: A contour more than this fraction of a slice gap away from every slice plane is not on
#: any slice of the series.
CONTOUR_OFF_SLICE_TOLERANCE = 0.5

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


@dataclass(frozen=True)
class SliceRef:
    """One image of a series, as an RTSTRUCT refers to it."""

    sop_class_uid: str
    sop_instance_uid: str


#: What an :class:`ImageSeries` holds: the voxels (a Volume) or only their Grid.
SeriesGrid = TypeVar("SeriesGrid", bound="Volume | Grid")


@dataclass(frozen=True, eq=False)
class ImageSeries(Generic[SeriesGrid]):
    """A DICOM image series on a regular grid, with what a structure set needs to refer to it.

    Attributes
    ----------
    grid : Volume or Grid
        Voxel values in real-world units (HU for CT), affine voxel -> RAS+ mm; only the
        :class:`~lattice.grid.Grid` when read without pixels (``ImageSeries[Grid]``).
    slices : tuple of SliceRef
        The image at each k index.
    header : pydicom Dataset
        The first slice's attributes without pixel data (patient, study, equipment).
    files : tuple of Path
        The slice files in k order.
    """

    grid: SeriesGrid
    slices: tuple[SliceRef, ...]
    header: Any
    files: tuple[Path, ...] = field(default=())

    @property
    def series_instance_uid(self) -> str:
        return str(self.header.SeriesInstanceUID)

    @property
    def study_instance_uid(self) -> str:
        return str(self.header.StudyInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.header.get("FrameOfReferenceUID", ""))


def _pydicom() -> Any:
    import pydicom  # ~0.15 s to import; only DICOM users pay for it

    return pydicom


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings about values that break their VR's rules.

    Real exports hold such values (a 17-character Study ID, say); they are read as they are,
    and values copied into written objects are fitted to their VR. pydicom converts values
    when they are first used, so use this around every access, not only the read.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")
        yield


def _read_header(path: Path) -> Any | None:
    """The dataset without pixel data, or None for a file that is not DICOM."""
    pydicom = _pydicom()
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except pydicom.errors.InvalidDicomError:
        return None
    except PermissionError as exc:
        raise InputFileError(f"cannot read DICOM file '{path}' (permission denied); give this "
                             "user read permission on the series (chmod -R a+r)") from exc
    except (OSError, EOFError, ValueError, KeyError) as exc:
        raise InputFileError(f"cannot read DICOM file '{path}' ({type(exc).__name__}: {exc}); "
                             "export the series again") from exc


def _is_image(ds: Any) -> bool:
    return all(k in ds for k in ("ImagePositionPatient", "ImageOrientationPatient",
                                 "PixelSpacing", "Rows", "Columns"))


def _files_in(folder: Path) -> list[Path]:
    if not folder.exists():
        raise InputFileError(f"folder not found: '{folder}'; check the path")
    if not folder.is_dir():
        raise InputFileError(f"'{folder}' is a file; pass the folder holding the CT series")
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


@overload
def load_series(folder: str | Path, *, series_uid: str | None = ...,
                pixels: Literal[True] = ...) -> ImageSeries[Volume]: ...
@overload
def load_series(folder: str | Path, *, series_uid: str | None = ...,
                pixels: Literal[False]) -> ImageSeries[Grid]: ...
@overload
def load_series(folder: str | Path, *, series_uid: str | None = ...,
                pixels: bool) -> ImageSeries[Volume | Grid]: ...
def load_series(folder: str | Path, *, series_uid: str | None = None,
                pixels: bool = True) -> ImageSeries[Any]:
    """Read an image series (CT, or any single-frame modality) from a folder.

    Files that are not DICOM, and DICOM files that are not images (an RTSTRUCT exported with
    the CT, say), are skipped. Sub-folders are searched too.

    Parameters
    ----------
    folder : path
    series_uid : str, optional
        The SeriesInstanceUID to read when the folder holds several series.
    pixels : bool
        Read the voxel values; otherwise only the headers (enough for the grid).

    Raises
    ------
    InputFileError
        No image series, several series and none chosen, an unreadable slice.
    MaskError
        Slices that do not form a regular grid (orientation, size or gaps differ).
    GridMismatchError
        A sheared grid (tilted gantry) or multi-frame images.
    """
    with quiet_pydicom():
        return _load_series(Path(folder), series_uid, pixels)


def _load_series(folder: Path, series_uid: str | None, pixels: bool
                 ) -> ImageSeries[Volume | Grid]:
    series: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    for path in _files_in(folder):
        ds = _read_header(path)
        if ds is not None and _is_image(ds):
            series[str(ds.get("SeriesInstanceUID", ""))].append((path, ds))
    if not series:
        raise InputFileError(f"no DICOM image series in '{folder}'; pass the folder the CT "
                             "was exported to")
    if series_uid is None and len(series) > 1:
        listing = "; ".join(f"{uid} ({len(v)} {v[0][1].get('Modality', '?')} images, "
                            f"'{v[0][1].get('SeriesDescription', '')}')"
                            for uid, v in series.items())
        raise InputFileError(f"'{folder}' holds {len(series)} image series: {listing}; choose "
                             "one with --ct-series UID")
    if series_uid is not None and series_uid not in series:
        raise InputFileError(f"series {series_uid} is not in '{folder}'; series present: "
                             f"{', '.join(series)}")
    members = series[series_uid if series_uid is not None else next(iter(series))]
    return _assemble(folder, members, pixels=pixels)


def _floats(value: Any, n: int, what: str, path: Path) -> NDArray[np.float64]:
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        out = np.zeros(0)
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise InputFileError(f"'{path}' has an invalid {what} ({value!r}); export the series "
                             "again")
    return out


def _assemble(folder: Path, members: list[tuple[Path, Any]], *, pixels: bool
              ) -> ImageSeries[Volume | Grid]:
    first_path, first = members[0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise GridMismatchError(f"'{first_path}' is a multi-frame image; export the series as "
                                "single-frame slices (classic CT Image Storage)")
    orient = _floats(first.ImageOrientationPatient, 6, "ImageOrientationPatient", first_path)
    row_dir, col_dir = orient[:3], orient[3:]
    normal = np.cross(row_dir, col_dir)
    spacing = _floats(first.PixelSpacing, 2, "PixelSpacing", first_path)
    if np.any(spacing <= 0) or abs(np.linalg.norm(normal) - 1.0) > 1e-3:
        raise InputFileError(f"'{first_path}' has an invalid image plane (PixelSpacing "
                             f"{list(spacing)}, orientation {list(orient)})")
    rows, cols = int(first.Rows), int(first.Columns)
    positions = []
    for path, ds in members:
        o = _floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", path)
        s = _floats(ds.PixelSpacing, 2, "PixelSpacing", path)
        if (np.abs(o - orient).max() > ORIENTATION_TOLERANCE or np.abs(s - spacing).max() > 1e-4
                or (int(ds.Rows), int(ds.Columns)) != (rows, cols)):
            raise MaskError(f"slices of series in '{folder}' differ in orientation, pixel "
                            f"spacing or size ('{first_path.name}' and '{path.name}'); "
                            "export one regular series")
        positions.append(_floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", path))
    order = np.argsort([p @ normal for p in positions], kind="stable")
    members = [members[i] for i in order]
    ipp = np.array([positions[i] for i in order])
    along = ipp @ normal
    if len(members) < 2:
        raise MaskError(f"the series in '{folder}' has a single slice; a 3-D CT is needed")
    gaps = np.diff(along)
    if np.any(gaps <= 1e-3 * spacing.min()):
        raise MaskError(f"the series in '{folder}' has two slices at the same position "
                        f"({along[np.argmin(gaps)]:.3f} mm along the slice normal); remove the "
                        "duplicates or export one series")
    median = float(np.median(gaps))
    if np.abs(gaps - median).max() > SLICE_GAP_TOLERANCE * median:
        raise MaskError(f"the slices in '{folder}' are not evenly spaced (gaps "
                        f"{gaps.min():.3f} to {gaps.max():.3f} mm: a missing slice or mixed "
                        "series?); export a complete, evenly spaced series")
    step = (ipp[-1] - ipp[0]) / (len(ipp) - 1)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[1]  # i: along a row, one column to the next
    lps[:3, 1] = col_dir * spacing[0]  # j: down a column, one row to the next
    lps[:3, 2] = step
    lps[:3, 3] = ipp[0]
    affine = LPS_TO_RAS @ lps
    shape = (cols, rows, len(members))
    grid: Volume | Grid = Grid(shape, affine)
    grid.check_not_sheared(name=f"CT series in '{folder}' (tilted gantry?)")
    slices = tuple(SliceRef(str(ds.SOPClassUID), str(ds.SOPInstanceUID)) for _, ds in members)
    files = tuple(p for p, _ in members)
    if pixels:
        grid = Volume(_read_pixels(files), affine)
    return ImageSeries(grid=grid, slices=slices, header=members[0][1], files=files)


def _read_pixels(files: Sequence[Path]) -> NDArray:
    """Voxel values of the slices in real-world units, shape (columns, rows, slices)."""
    pydicom = _pydicom()
    slopes, intercepts, planes = [], [], []
    for path in files:
        try:
            ds = pydicom.dcmread(path)
            plane = ds.pixel_array
        except Exception as exc:  # pydicom raises many types for broken pixel data
            raise InputFileError(f"cannot read the pixels of '{path}' ({type(exc).__name__}: "
                                 f"{exc}); export the series again") from exc
        if plane.ndim != 2:
            raise InputFileError(f"'{path}' is not a single grey-level image (pixel array "
                                 f"shape {plane.shape}); export single-frame slices")
        slopes.append(float(ds.get("RescaleSlope", 1.0) or 1.0))
        intercepts.append(float(ds.get("RescaleIntercept", 0.0) or 0.0))
        planes.append(plane)
    integral = all(s == round(s) for s in slopes + intercepts)
    lo = min(p.min() * s for p, s in zip(planes, slopes)) + min(intercepts)
    hi = max(p.max() * s for p, s in zip(planes, slopes)) + max(intercepts)
    dtype = (np.int16 if integral and -32768 <= lo and hi <= 32767 else np.float32)
    rows, cols = planes[0].shape
    out = np.empty((cols, rows, len(planes)), dtype=dtype, order="F")
    for k, (plane, slope, intercept) in enumerate(zip(planes, slopes, intercepts)):
        values = plane.astype(np.float64) * slope + intercept if (slope, intercept) != (1, 0) \
            else plane
        out[:, :, k] = values.T
    return out


# --- RTSTRUCT -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContourProblem:
    """A contour of an ROI that is left out, or that makes the ROI unusable.

    Attributes
    ----------
    index : int
        The contour's position in the ROI's ContourSequence, from 1.
    z_mm : float
        Mean LPS z of its points, naming its slice (NaN when no point is readable).
    reason : str
        A key of :data:`CONTOUR_PROBLEMS`.
    """

    index: int
    z_mm: float
    reason: str

    @property
    def fatal(self) -> bool:
        return CONTOUR_PROBLEMS[self.reason][0]


#: Why a contour is not used: reason -> (fatal, what is wrong with one, with several). A
#: contour without area (fewer than 3 points) or a second copy of one is left out with a
#: warning; a damaged contour (coordinates that cannot be trusted) makes its ROI unusable,
#: because leaving it out would change the ROI's shape without anyone knowing what it was.
CONTOUR_PROBLEMS: dict[str, tuple[bool, str, str]] = {
    "point": (True, "is a POINT (ContourGeometricType; a marker, no outline)",
              "are POINTs (ContourGeometricType; markers, no outline)"),
    "open": (True, "is an open line (ContourGeometricType OPEN_PLANAR or OPEN_NONPLANAR)",
             "are open lines (ContourGeometricType OPEN_PLANAR or OPEN_NONPLANAR)"),
    "too_few_points": (False, "has fewer than 3 points (no area)",
                       "have fewer than 3 points (no area)"),
    "duplicate": (False, "repeats another contour of its slice point for point (the even-odd "
                  "rule would cancel the pair; one copy is kept)",
                  "repeat another contour of their slice point for point (the even-odd rule "
                  "would cancel each pair; one copy is kept)"),
    "length": (True, "has a ContourData length that is not a multiple of 3 (x, y, z per point)",
               "have a ContourData length that is not a multiple of 3 (x, y, z per point)"),
    "not_finite": (True, "has NaN, infinite or non-numeric ContourData values",
                   "have NaN, infinite or non-numeric ContourData values"),
    "count": (True, "has a NumberOfContourPoints that disagrees with its ContourData",
              "have a NumberOfContourPoints that disagrees with their ContourData"),
    "not_planar": (True, "is not planar (its points lie at different slice positions)",
                   "are not planar (their points lie at different slice positions)"),
}
# Open lines and points have no inside to fill, but a structure drawn with them (a nerve as a
# line, seeds as points) would silently lose its geometry: they are refused as well.

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
    told apart from another ROI's (a name or an ROI number used twice).
    """

    path: Path
    rois: dict[str, Roi]
    frame_of_reference_uid: str
    skipped_contours: int = 0
    orphans: tuple[tuple[str, int], ...] = ()
    ambiguous: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return list(self.rois)

    @property
    def file_problems(self) -> tuple[str, ...]:
        """One warning per ROIContourSequence item that belongs to no ROI."""
        return tuple(f"'{self.path}': {what}: its {n} contour{'s' * (n != 1)} belong"
                     f"{'s' * (n == 1)} to no ROI and were left out" for what, n in self.orphans)

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
                raise MaskError(f"no ROI named '{name}' in '{self.path}'; ROIs present: "
                                f"{present}")
            name = folded[0]
        if name in self.ambiguous:
            raise InputFileError(f"ROI '{name}' in '{self.path}': {self.ambiguous[name]}, so "
                                 "its contours cannot be told apart; export the structure set "
                                 "again")
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
        raise InputFileError(f"cannot read '{path}' (permission denied); give this user read "
                             "permission on the file (chmod a+r) or copy it") from exc
    except (OSError, EOFError, ValueError, KeyError) as exc:
        raise InputFileError(f"cannot read '{path}' ({type(exc).__name__}: {exc}); export the "
                             "structure set again") from exc
    if ds.get("Modality") != "RTSTRUCT" and str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS:
        raise InputFileError(f"'{path}' is a DICOM {ds.get('Modality', 'object')}, not an "
                             "RTSTRUCT; pass the structure set file")
    frames = ds.get("ReferencedFrameOfReferenceSequence") or []
    set_frame = str(frames[0].get("FrameOfReferenceUID", "")) if frames else ""
    items = list(ds.get("StructureSetROISequence") or [])
    if not items:
        raise InputFileError(f"'{path}' has no StructureSetROISequence (it names no ROI); "
                             "export the structure set again")
    info: dict[int, Any] = {}
    ambiguous: dict[str, str] = {}
    names_seen: dict[str, int] = {}
    for k, item in enumerate(items, 1):
        number = _roi_number(item.get("ROINumber"))
        if number is None:
            raise InputFileError(f"'{path}': StructureSetROISequence item {k} has no valid "
                                 f"ROINumber ({item.get('ROINumber')!r}); export the "
                                 "structure set again")
        name = str(item.get("ROIName", f"ROI {number}"))
        if number in info:
            other = str(info[number].get("ROIName", f"ROI {number}"))
            why = f"ROI number {number} is used by both '{other}' and '{name}'"
            ambiguous.setdefault(other, why)
            ambiguous.setdefault(name, why)
        if name in names_seen:
            ambiguous.setdefault(name, f"the name is used by ROI numbers {names_seen[name]} "
                                       f"and {number}")
        names_seen.setdefault(name, number)
        info.setdefault(number, item)
    types = {_roi_number(o.get("ReferencedROINumber")): str(o.get("RTROIInterpretedType", "")
                                                             or "")
             for o in ds.get("RTROIObservationsSequence") or []}
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
            what = ("has no ReferencedROINumber" if number is None
                    else f"refers to ROI number {number}, which StructureSetROISequence lacks")
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
    rois = {}
    for item in items:
        number = _roi_number(item.get("ROINumber"))
        assert number is not None  # checked above
        name = str(item.get("ROIName", f"ROI {number}"))
        if name in rois:
            continue  # the first of two ROIs of one name; get() refuses the name
        rois[name] = Roi(number=number, name=name, interpreted_type=types.get(number, ""),
                         contours=tuple(contours.get(number, [])),
                         frame_of_reference_uid=str(item.get("ReferencedFrameOfReferenceUID",
                                                             set_frame)),
                         problems=tuple(problems.get(number, [])),
                         has_contour_item=number in with_item)
    return StructureSet(path=path, rois=rois, frame_of_reference_uid=set_frame,
                        skipped_contours=sum(len(p) for p in problems.values()),
                        orphans=tuple(orphans), ambiguous=ambiguous)


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
    if np.ptp(whole[:, 2]) > CONTOUR_PLANARITY_TOLERANCE_MM:  # else in a plane z = constant
        centred = whole - whole.mean(axis=0)
        normal = np.linalg.svd(centred, full_matrices=False)[2][-1]
        if np.abs(centred @ normal).max() > CONTOUR_PLANARITY_TOLERANCE_MM:
            return problem("not_planar")
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


def rasterise_roi(roi: Roi, grid: Grid | Volume) -> Rasterised:
    """Fill an ROI's contours on ``grid`` (even-odd rule per slice).

    Each contour goes to the slice plane nearest to it along the grid's k axis; a contour
    more than :data:`CONTOUR_OFF_SLICE_TOLERANCE` of a slice gap from every plane, or beyond
    the first or last slice, is left out and counted. A voxel is inside when its centre is
    inside the polygon (scikit-image's ``draw.polygon``). The result keeps the polygons it
    used (:class:`~lattice.surface.ContourVolume`), so the TPS solid is built from them.
    """
    from skimage.draw import polygon

    from .surface import ContourVolume

    shape = grid.shape
    mask = np.zeros(shape, dtype=bool, order="F")
    inverse = np.linalg.inv(grid.affine) @ LPS_TO_RAS  # LPS -> index
    used = 0
    off: list[float] = []
    outside: list[float] = []
    rings: list[tuple[int, NDArray[np.float64]]] = []
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
        ii, jj = polygon(ijk[:, 0], ijk[:, 1], shape=shape[:2])
        mask[ii, jj, kk] ^= True
        rings.append((kk, ijk[:, :2].copy()))
        used += 1
    # The polygons travel with the mask: margins are measured against them (lattice.surface).
    return Rasterised(ContourVolume(mask, grid.affine, rings_ijk=tuple(rings)), used, len(off),
                      len(outside), tuple(off), tuple(outside))


def _check_usable(roi: Roi, structures: StructureSet) -> None:
    """Refuse an ROI without contours or with a damaged one (see :data:`CONTOUR_PROBLEMS`)."""
    where = f"ROI '{roi.name}' in '{structures.path}'"
    if not roi.n_contours_in_file:
        if not roi.has_contour_item and structures.orphans:
            what, n = structures.orphans[0]
            raise InputFileError(f"{where} has no contours: no ROIContourSequence item refers "
                                 f"to its number {roi.number}, and {what} (its {n} contours "
                                 "may be this ROI's); export the structure set again")
        why = ("its ContourSequence is empty" if roi.has_contour_item
               else f"no ROIContourSequence item refers to its number {roi.number}")
        raise MaskError(f"{where} has no contours ({why}); choose an ROI that holds the "
                        "structure (`lattice rois` lists them)")
    fatal = [p for p in roi.problems if p.fatal]
    if fatal:
        raise InputFileError(f"{where}: {len(fatal)} of {roi.n_contours_in_file} contours "
                             f"cannot be used: {describe_problems(fatal)}; correct "
                             f"{'it' if len(fatal) == 1 else 'them'} in the TPS and export the "
                             "structure set again")


def _left_out(roi: Roi, result: Rasterised) -> str:
    """What was left out of an ROI and why, as one phrase ("" when nothing was)."""
    parts = [describe_problems(roi.problems)] if roi.problems else []
    for z, what in ((result.off_slice_z_mm, "between slices of the CT"),
                    (result.outside_z_mm, "beyond the first or last slice of the CT")):
        if z:
            parts.append(f"{len(z)} {'lies' if len(z) == 1 else 'lie'} {what} "
                         f"({_at_z(z)})")
    return "; ".join(parts)


def describe_problems(problems: Sequence[ContourProblem]) -> str:
    """The problems grouped by reason, each with its contours and their slices (LPS z)."""
    parts = []
    for reason, (_, one, several) in CONTOUR_PROBLEMS.items():
        group = [p for p in problems if p.reason == reason]
        if group:
            numbers = ", ".join(str(p.index) for p in group[:4]) + (", ..." if len(group) > 4
                                                                  else "")
            parts.append(f"{len(group)} {one if len(group) == 1 else several} "
                         f"(contour{'s' * (len(group) > 1)} {numbers} "
                         f"{_at_z([p.z_mm for p in group])})")
    return "; ".join(parts)


def _at_z(z_mm: Sequence[float]) -> str:
    shown = ", ".join("?" if not np.isfinite(z) else f"{z:.2f}" for z in z_mm[:4])
    return f"at z = {shown}{', ...' if len(z_mm) > 4 else ''} mm"


def list_rois(path: str | Path) -> list[dict[str, Any]]:
    """Name, number, type and contour count of every ROI in an RTSTRUCT file."""
    s = read_rtstruct(path)
    return [{"number": r.number, "name": r.name, "type": r.interpreted_type,
             "contours": len(r.contours), "points": r.n_points} for r in s.rois.values()]


@dataclass(frozen=True, eq=False)
class DicomCase(Generic[SeriesGrid]):
    """A CT series with masks rasterised from a structure set, all on the CT grid.

    ``gtv_name`` is the GTV's ROI name as the file spells it; ``oars`` are keyed by the names
    asked for.
    """

    series: ImageSeries[SeriesGrid]
    structure_set: StructureSet
    gtv: Volume
    oars: dict[str, Volume]
    gtv_name: str
    warnings: tuple[str, ...] = ()


@overload
def load_dicom_case(ct_folder: str | Path, rtstruct: str | Path, *, gtv_name: str,
                    oar_names: Iterable[str] = ..., series_uid: str | None = ...,
                    pixels: Literal[True] = ...) -> DicomCase[Volume]: ...
@overload
def load_dicom_case(ct_folder: str | Path, rtstruct: str | Path, *, gtv_name: str,
                    oar_names: Iterable[str] = ..., series_uid: str | None = ...,
                    pixels: Literal[False]) -> DicomCase[Grid]: ...
@overload
def load_dicom_case(ct_folder: str | Path, rtstruct: str | Path, *, gtv_name: str,
                    oar_names: Iterable[str] = ..., series_uid: str | None = ...,
                    pixels: bool) -> DicomCase[Volume | Grid]: ...
def load_dicom_case(ct_folder: str | Path, rtstruct: str | Path, *, gtv_name: str,
                    oar_names: Iterable[str] = (), series_uid: str | None = None,
                    pixels: bool = True) -> DicomCase[Any]:
    """Read a CT series and rasterise the named ROIs of a structure set onto it.

    Raises
    ------
    InputFileError
        Unreadable files.
    MaskError
        A name not in the structure set (the message lists those present), or an ROI with no
        contour on the CT's slices.
    GridMismatchError
        The structure set belongs to another frame of reference than the CT.
    """
    series = load_series(ct_folder, series_uid=series_uid, pixels=pixels)
    structures = read_rtstruct(rtstruct)
    names = [gtv_name, *oar_names]
    rois = [structures.get(n) for n in names]  # every name checked before any raster work
    if len({r.name for r in rois}) != len(rois):
        raise MaskError(f"the ROI names {', '.join(names)} repeat or name one ROI twice; "
                        "give each structure once")
    ct_frame = series.frame_of_reference_uid
    warnings = list(structures.file_problems)
    masks: dict[str, Volume] = {}
    for roi in rois:
        if ct_frame and roi.frame_of_reference_uid and roi.frame_of_reference_uid != ct_frame:
            raise GridMismatchError(
                f"ROI '{roi.name}' in '{rtstruct}' is in frame of reference "
                f"{roi.frame_of_reference_uid}, the CT series in '{ct_folder}' in {ct_frame}; "
                "pass the CT the structure set was drawn on")
        _check_usable(roi, structures)
        result = rasterise_roi(roi, series.grid)
        lost = _left_out(roi, result)
        if not result.mask.array.any():
            why = (f"all {roi.n_contours_in_file} contours were left out: {lost}"
                   if not result.contours_used
                   else f"its {result.contours_used} contours enclose no voxel centre")
            advice = ("pass the CT it was drawn on" if result.contours_off_slice
                      or result.contours_outside else "correct the ROI in the TPS and export "
                      "the structure set again")
            raise MaskError(f"ROI '{roi.name}' in '{rtstruct}' has no contour on the slices "
                            f"of the CT in '{ct_folder}' ({why}); {advice}")
        if lost:
            n = roi.n_contours_in_file - result.contours_used
            warnings.append(f"ROI '{roi.name}' in '{rtstruct}': {n} of "
                            f"{roi.n_contours_in_file} contours left out: {lost}")
        masks[roi.name] = result.mask
    gtv = masks[rois[0].name]
    oars = {asked: masks[r.name] for asked, r in zip(names[1:], rois[1:])}
    return DicomCase(series=series, structure_set=structures, gtv=gtv, oars=oars,
                     gtv_name=rois[0].name, warnings=tuple(warnings))


def series_checksum(series: ImageSeries[Any]) -> str:
    """SHA-256 over the SHA-256 of each slice file, in slice order."""
    import hashlib

    from .io import sha256_file

    digest = hashlib.sha256()
    for path in series.files:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


#: Largest distance between voxel centres of a NIfTI grid and a DICOM series that still counts
#: as the same grid (decimal strings in DICOM, float32 affines in NIfTI).
WORLD_GRID_TOLERANCE_MM = 0.01


@overload
def on_grid(volume: Volume, grid: Grid | Volume, *, tolerance_mm: float = ...,
            name: str = ..., grid_name: str = ...) -> Volume: ...
@overload
def on_grid(volume: Grid, grid: Grid | Volume, *, tolerance_mm: float = ...,
            name: str = ..., grid_name: str = ...) -> Grid: ...
def on_grid(volume: Volume | Grid, grid: Grid | Volume, *,
            tolerance_mm: float = WORLD_GRID_TOLERANCE_MM, name: str = "volume",
            grid_name: str = "grid") -> Volume | Grid:
    """``volume`` with its axes permuted and flipped into ``grid``'s index order.

    A DICOM series and a NIfTI image converted from it have the same voxel centres in world
    space but may store the axes in another order or direction; this reorders the array
    (exactly, no interpolation) so that index ``(i, j, k)`` is the same voxel in both. A
    :class:`~lattice.grid.Grid` (no voxels) is checked the same way and comes back as
    ``grid``'s grid.

    Raises
    ------
    GridMismatchError
        The voxel centres differ by more than ``tolerance_mm`` whatever the axis order.
    """
    source_grid = volume if isinstance(volume, Grid) else volume.grid
    target = grid if isinstance(grid, Grid) else grid.grid
    perm, flips = [], []
    for axis in range(3):
        dots = source_grid.directions.T @ target.directions[:, axis]
        source = int(np.argmax(np.abs(dots)))
        perm.append(source)
        flips.append(bool(dots[source] < 0))
    shape = tuple(source_grid.shape[p] for p in perm)
    affine = np.eye(4)
    origin = np.zeros(3)
    for axis, (source, flip) in enumerate(zip(perm, flips)):
        affine[:3, axis] = source_grid.affine[:3, source] * (-1.0 if flip else 1.0)
        origin[source] = source_grid.shape[source] - 1 if flip else 0
    affine[:3, 3] = source_grid.ijk_to_ras(origin)
    if sorted(perm) != [0, 1, 2] or shape != target.shape:
        distance = np.inf
    else:
        distance = Grid(target.shape, affine).corner_distance_mm(target)
    if not distance <= tolerance_mm:
        raise GridMismatchError(
            f"{name} (shape {source_grid.shape}, voxel {_mm(source_grid.voxel_size_mm)} mm) is "
            f"not on the grid of {grid_name} (shape {target.shape}, voxel "
            f"{_mm(target.voxel_size_mm)} mm)"
            + ("" if not np.isfinite(distance) else f": voxel corners differ by up to "
               f"{distance:.3f} mm") + "; pass the DICOM series the image was converted from")
    if isinstance(volume, Grid):
        return target
    array = np.transpose(volume.array, perm)
    for axis, flip in enumerate(flips):
        if flip:
            array = np.flip(array, axis)
    return Volume(array, grid.affine)


def _mm(values: NDArray[np.float64]) -> str:
    return " x ".join(f"{v:.4g}" for v in values)
