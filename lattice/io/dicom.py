"""Reading DICOM as a treatment planning system exports it: a CT series (and a whole case).

The CT series becomes a :class:`~lattice.volume.Volume` in RAS+ mm like a NIfTI image:
slices sorted by their position along the slice normal, rescale slope and intercept applied,
any orientation. Array axis i runs along the image rows (DICOM column index), j along the
columns (row index), k along the sorted slices.

:func:`load_dicom_case` adds the ROIs of a structure set rasterised onto that grid (the
RTSTRUCT is read and rasterised by :mod:`lattice.io.rtstruct_read`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

from ..errors import GridMismatchError, InputFileError, MaskError
from ..grid import LPS_TO_RAS, Grid
from ..volume import Volume
from .dicom_files import image_headers

if TYPE_CHECKING:
    from .rtstruct_read import StructureSet

#: Largest difference between two slices' orientation cosines that counts as the same.
ORIENTATION_TOLERANCE = 1e-4
#: Largest deviation of a slice gap from the median gap, relative to it, for an even series.
SLICE_GAP_TOLERANCE = 0.01


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


@overload
def load_series(
    folder: str | Path, *, series_uid: str | None = ..., pixels: Literal[True] = ...
) -> ImageSeries[Volume]: ...
@overload
def load_series(
    folder: str | Path, *, series_uid: str | None = ..., pixels: Literal[False]
) -> ImageSeries[Grid]: ...
@overload
def load_series(
    folder: str | Path, *, series_uid: str | None = ..., pixels: bool
) -> ImageSeries[Volume | Grid]: ...
def load_series(
    folder: str | Path, *, series_uid: str | None = None, pixels: bool = True
) -> ImageSeries[Any]:
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


def _load_series(folder: Path, series_uid: str | None, pixels: bool) -> ImageSeries[Volume | Grid]:
    series = image_headers(folder)
    if not series:
        raise InputFileError(
            f"no DICOM image series in '{folder}'; pass the folder the CT was exported to"
        )
    if series_uid is None and len(series) > 1:
        listing = "; ".join(
            f"{uid} ({len(v)} {v[0][1].get('Modality', '?')} images, "
            f"'{v[0][1].get('SeriesDescription', '')}')"
            for uid, v in series.items()
        )
        raise InputFileError(
            f"'{folder}' holds {len(series)} image series: {listing}; choose "
            "one with --ct-series UID"
        )
    if series_uid is not None and series_uid not in series:
        raise InputFileError(
            f"series {series_uid} is not in '{folder}'; series present: {', '.join(series)}"
        )
    members = series[series_uid if series_uid is not None else next(iter(series))]
    return _assemble(folder, members, pixels=pixels)


def _floats(value: Any, n: int, what: str, path: Path) -> NDArray[np.float64]:
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        out = np.zeros(0)
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise InputFileError(f"'{path}' has an invalid {what} ({value!r}); export the series again")
    return out


def _assemble(
    folder: Path, members: list[tuple[Path, Any]], *, pixels: bool
) -> ImageSeries[Volume | Grid]:
    first_path, first = members[0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise GridMismatchError(
            f"'{first_path}' is a multi-frame image; export the series as "
            "single-frame slices (classic CT Image Storage)"
        )
    orient = _floats(first.ImageOrientationPatient, 6, "ImageOrientationPatient", first_path)
    row_dir, col_dir = orient[:3], orient[3:]
    normal = np.cross(row_dir, col_dir)
    spacing = _floats(first.PixelSpacing, 2, "PixelSpacing", first_path)
    if np.any(spacing <= 0) or abs(np.linalg.norm(normal) - 1.0) > 1e-3:
        spacing_text, orient_text = ("\\".join(f"{v:.6g}" for v in a) for a in (spacing, orient))
        raise InputFileError(
            f"'{first_path}' has an invalid image plane (PixelSpacing {spacing_text}, "
            f"ImageOrientationPatient {orient_text}: the spacing must be positive, the row "
            "and column directions unit vectors at right angles); export the series again"
        )
    rows, cols = int(first.Rows), int(first.Columns)
    positions = []
    for path, ds in members:
        o = _floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", path)
        s = _floats(ds.PixelSpacing, 2, "PixelSpacing", path)
        if (
            np.abs(o - orient).max() > ORIENTATION_TOLERANCE
            or np.abs(s - spacing).max() > 1e-4
            or (int(ds.Rows), int(ds.Columns)) != (rows, cols)
        ):
            raise MaskError(
                f"slices of series in '{folder}' differ in orientation, pixel "
                f"spacing or size ('{first_path.name}' and '{path.name}'); "
                "export one regular series"
            )
        positions.append(_floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", path))
    order = np.argsort([p @ normal for p in positions], kind="stable")
    members = [members[i] for i in order]
    ipp = np.array([positions[i] for i in order])
    along = ipp @ normal
    if len(members) < 2:
        raise MaskError(f"the series in '{folder}' has a single slice; a 3-D CT is needed")
    gaps = np.diff(along)
    if np.any(gaps <= 1e-3 * spacing.min()):
        raise MaskError(
            f"the series in '{folder}' has two slices at the same position "
            f"({along[np.argmin(gaps)]:.3f} mm along the slice normal); remove the "
            "duplicates or export one series"
        )
    median = float(np.median(gaps))
    if np.abs(gaps - median).max() > SLICE_GAP_TOLERANCE * median:
        raise MaskError(
            f"the slices in '{folder}' are not evenly spaced (gaps "
            f"{gaps.min():.3f} to {gaps.max():.3f} mm: a missing slice or mixed "
            "series?); export a complete, evenly spaced series"
        )
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
    for path, ds in members:
        if not str(ds.get("SOPClassUID", "")) or not str(ds.get("SOPInstanceUID", "")):
            raise InputFileError(
                f"'{path}' has no SOPClassUID or SOPInstanceUID, which the RTSTRUCT needs to "
                "refer to the slice; export the series again"
            )
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
            raise InputFileError(
                f"cannot read the pixels of '{path}' ({type(exc).__name__}: "
                f"{exc}); export the series again"
            ) from exc
        if plane.ndim != 2:
            raise InputFileError(
                f"'{path}' is not a single grey-level image (pixel array "
                f"shape {plane.shape}); export single-frame slices"
            )
        slopes.append(float(ds.get("RescaleSlope", 1.0) or 1.0))
        intercepts.append(float(ds.get("RescaleIntercept", 0.0) or 0.0))
        planes.append(plane)
    integral = all(s == round(s) for s in slopes + intercepts)
    lo = min(p.min() * s for p, s in zip(planes, slopes)) + min(intercepts)
    hi = max(p.max() * s for p, s in zip(planes, slopes)) + max(intercepts)
    dtype = np.int16 if integral and -32768 <= lo and hi <= 32767 else np.float32
    rows, cols = planes[0].shape
    out = np.empty((cols, rows, len(planes)), dtype=dtype, order="F")
    for k, (plane, slope, intercept) in enumerate(zip(planes, slopes, intercepts)):
        values = (
            plane.astype(np.float64) * slope + intercept if (slope, intercept) != (1, 0) else plane
        )
        out[:, :, k] = values.T
    return out


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
def load_dicom_case(
    ct_folder: str | Path,
    rtstruct: str | Path,
    *,
    gtv_name: str,
    oar_names: Iterable[str] = ...,
    series_uid: str | None = ...,
    pixels: Literal[True] = ...,
) -> DicomCase[Volume]: ...
@overload
def load_dicom_case(
    ct_folder: str | Path,
    rtstruct: str | Path,
    *,
    gtv_name: str,
    oar_names: Iterable[str] = ...,
    series_uid: str | None = ...,
    pixels: Literal[False],
) -> DicomCase[Grid]: ...
@overload
def load_dicom_case(
    ct_folder: str | Path,
    rtstruct: str | Path,
    *,
    gtv_name: str,
    oar_names: Iterable[str] = ...,
    series_uid: str | None = ...,
    pixels: bool,
) -> DicomCase[Volume | Grid]: ...
def load_dicom_case(
    ct_folder: str | Path,
    rtstruct: str | Path,
    *,
    gtv_name: str,
    oar_names: Iterable[str] = (),
    series_uid: str | None = None,
    pixels: bool = True,
) -> DicomCase[Any]:
    """Read a CT series and rasterise the named ROIs of a structure set onto it.

    Raises
    ------
    InputFileError
        Unreadable files.
    MaskError
        A name not in the structure set (the message lists those present), or an ROI with no
        contour on the CT's slices.
    GridMismatchError
        The structure set belongs to another frame of reference, or another patient
        (PatientID), than the CT.
    """
    from .contour_problems import crossing_warning
    from .rtstruct_read import check_usable, left_out, rasterise_roi, read_rtstruct

    series = load_series(ct_folder, series_uid=series_uid, pixels=pixels)
    structures = read_rtstruct(rtstruct)
    names = [gtv_name, *oar_names]
    rois = [structures.get(n) for n in names]  # every name checked before any raster work
    if len({r.name for r in rois}) != len(rois):
        raise MaskError(
            f"the ROI names {', '.join(names)} repeat or name one ROI twice; "
            "give each structure once"
        )
    ct_frame = series.frame_of_reference_uid
    warnings = [*structures.file_problems, *_drawn_on(structures, series, ct_folder)]
    masks: dict[str, Volume] = {}
    for roi in rois:
        if ct_frame and roi.frame_of_reference_uid and roi.frame_of_reference_uid != ct_frame:
            raise GridMismatchError(
                f"ROI '{roi.name}' in '{rtstruct}' is in frame of reference "
                f"{roi.frame_of_reference_uid}, the CT series in '{ct_folder}' in {ct_frame}; "
                "pass the CT the structure set was drawn on"
            )
        check_usable(roi, structures)
        result = rasterise_roi(roi, series.grid, source=str(rtstruct))
        lost = left_out(roi, result)
        if not result.mask.array.any():
            why = (
                f"all {roi.n_contours_in_file} contours were left out: {lost}"
                if not result.contours_used
                else f"its {result.contours_used} contours enclose no voxel centre"
            )
            advice = (
                "pass the CT it was drawn on"
                if result.contours_off_slice or result.contours_outside
                else "correct the ROI in the TPS and export the structure set again"
            )
            raise MaskError(
                f"ROI '{roi.name}' in '{rtstruct}' has no contour on the slices "
                f"of the CT in '{ct_folder}' ({why}); {advice}"
            )
        if lost:
            n = roi.n_contours_in_file - result.contours_used
            warnings.append(
                f"ROI '{roi.name}' in '{rtstruct}': {n} of "
                f"{roi.n_contours_in_file} contours left out: {lost}"
            )
        if crossed := result.crossing_z_mm:
            warnings.append(crossing_warning(roi.name, rtstruct, crossed))
        masks[roi.name] = result.mask
    gtv = masks[rois[0].name]
    oars = {asked: masks[r.name] for asked, r in zip(names[1:], rois[1:])}
    return DicomCase(
        series=series,
        structure_set=structures,
        gtv=gtv,
        oars=oars,
        gtv_name=rois[0].name,
        warnings=tuple(warnings),
    )


def _drawn_on(structures: Any, series: ImageSeries[Any], ct_folder: str | Path) -> list[str]:
    """Whether a structure set belongs with a CT series beyond their frame of reference: a
    PatientID that differs is an error (a TPS refuses such an import); ROIs drawn on another
    series of the frame (RTReferencedSeriesSequence) are used, with a warning.

    Raises
    ------
    GridMismatchError
        Both files name a patient, and not the same one.
    """
    with quiet_pydicom():
        ct_patient = str(series.header.get("PatientID", "") or "").strip()
    rs_patient = structures.patient_id
    if ct_patient and rs_patient and ct_patient != rs_patient:
        raise GridMismatchError(
            f"'{structures.path}' is the structure set of patient '{rs_patient}' (PatientID), "
            f"the CT series in '{ct_folder}' is of patient '{ct_patient}'; pass the CT the "
            "structure set was drawn on"
        )
    drawn_on = structures.referenced_series
    if not drawn_on or series.series_instance_uid in drawn_on:
        return []
    return [
        f"'{structures.path}' was drawn on the image series {', '.join(drawn_on)} "
        f"(RTReferencedSeriesSequence), not on the CT series in '{ct_folder}' "
        f"({series.series_instance_uid}); its contours were placed by their shared frame of "
        "reference: check that they sit on this CT"
    ]


def series_checksum(series: ImageSeries[Any]) -> str:
    """SHA-256 over the SHA-256 of each slice file, in slice order."""
    import hashlib

    from .nifti import sha256_file

    digest = hashlib.sha256()
    for path in series.files:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


#: Largest distance between voxel centres of a NIfTI grid and a DICOM series that still counts
#: as the same grid (decimal strings in DICOM, float32 affines in NIfTI).
WORLD_GRID_TOLERANCE_MM = 0.01


@overload
def on_grid(
    volume: Volume,
    grid: Grid | Volume,
    *,
    tolerance_mm: float = ...,
    name: str = ...,
    grid_name: str = ...,
    fix: str = ...,
) -> Volume: ...
@overload
def on_grid(
    volume: Grid,
    grid: Grid | Volume,
    *,
    tolerance_mm: float = ...,
    name: str = ...,
    grid_name: str = ...,
    fix: str = ...,
) -> Grid: ...
def on_grid(
    volume: Volume | Grid,
    grid: Grid | Volume,
    *,
    tolerance_mm: float = WORLD_GRID_TOLERANCE_MM,
    name: str = "volume",
    grid_name: str = "grid",
    fix: str = "pass the DICOM series the image was converted from",
) -> Volume | Grid:
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
    perm, flips = _axis_order(source_grid, target)
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
            + (
                ""
                if not np.isfinite(distance)
                else f": voxel corners differ by up to {distance:.3f} mm"
            )
            + f"; {fix}"
        )
    if isinstance(volume, Grid):
        return target
    array = np.transpose(volume.array, perm)
    for axis, flip in enumerate(flips):
        if flip:
            array = np.flip(array, axis)
    return Volume(array, grid.affine)


def _axis_order(source: Grid, target: Grid) -> tuple[list[int], list[bool]]:
    """For each axis of ``target``: the axis of ``source`` nearest to it, and whether it
    runs the other way."""
    perm, flips = [], []
    for axis in range(3):
        dots = source.directions.T @ target.directions[:, axis]
        nearest = int(np.argmax(np.abs(dots)))
        perm.append(nearest)
        flips.append(bool(dots[nearest] < 0))
    return perm, flips


def keeps_array(volume: Volume | Grid, grid: Grid | Volume) -> bool:
    """Whether :func:`on_grid` gives ``volume``'s array as it is (same axis order and
    directions, same shape), only with ``grid``'s affine."""
    source = volume if isinstance(volume, Grid) else volume.grid
    target = grid if isinstance(grid, Grid) else grid.grid
    perm, flips = _axis_order(source, target)
    return perm == [0, 1, 2] and not any(flips) and source.shape == target.shape


def _mm(values: NDArray[np.float64]) -> str:
    return " x ".join(f"{v:.4g}" for v in values)
