"""Dose grids as a TPS exports them: DICOM RT Dose and dose NIfTI, read (the writer of
RT Dose files, for tests and round trips, is :mod:`lattice.io.rtdose_write`).

A dose is returned as a :class:`DoseVolume`: an ``(I, J, K)`` float64 array in Gy plus a
4x4 affine from voxel index to RAS mm (nibabel's convention), and a :class:`DoseInfo`
recording where it came from.

RT Dose geometry (DICOM PS3.3 C.7.6.2 Image Plane, C.8.8.3 RT Dose; domain notes, "RTDOSE"):
the pixel data is ``(frames, rows, columns)``. Pixel (frame f, row r, column c) lies at

    p_LPS = IPP + c * dc * row_dir + r * dr * col_dir + t_f * n

where ``ImageOrientationPatient = row_dir, col_dir`` (``row_dir`` is the direction along a
row, i.e. of increasing column index), ``PixelSpacing = (dr, dc)`` (between rows, between
columns), ``n = row_dir x col_dir`` and ``t_f`` the frame's distance along ``n``:

- relative offsets (the first GridFrameOffsetVector value is 0): ``t_f = offset_f``;
- absolute offsets (the first value equals the z of ImagePositionPatient; the standard
  allows them only for ``ImageOrientationPatient = 1,0,0,0,1,0``): ``offset_f`` is the z of
  the plane, so ``t_f = (offset_f - IPP_z) / n_z``. Any axial orientation (``n_z = +-1``,
  e.g. rows and columns swapped) is accepted here; the standard's rule "first value 0 means
  relative" decides the one ambiguous case (absolute offsets of a grid starting at z = 0).

The array is returned as ``(columns, rows, frames)`` so that ``i`` runs along ``row_dir``,
``j`` along ``col_dir`` and ``k`` along ``n`` (the usual DICOM-to-NIfTI order); the affine
is converted from LPS to RAS (x and y negated) here, the only place LPS appears.
Dose = stored value x DoseGridScaling, in DoseUnits (GY; CGY is divided by 100).
A DoseGridScaling must be a finite number above 0; the dose of either format must be
finite and not negative (:mod:`lattice.io.dose_values`, checked by :class:`DoseVolume`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from lattice.errors import InputFileError

__all__ = [
    "DoseError",
    "DoseInfo",
    "DoseVolume",
    "read_dose",
    "read_rtdose",
    "read_rtdose_info",
    "read_dose_nifti",
    "rtdose_affine_ras",
    "check_frame_of_reference",
    "file_sha256",
]

#: LPS <-> RAS: x and y change sign, z does not (the matrix is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Direction cosines of ImageOrientationPatient are written with ~6-16 digits; a unit length
#: or orthogonality error above this is a broken header, not rounding.
DIRECTION_TOL = 1e-4
#: Frame offsets and positions agree when within this many mm: far below any dose voxel
#: (1-5 mm), far above the rounding of a 16-character DS value.
OFFSET_TOL_MM = 0.01
#: Stored-value widths the writer offers. 16 bits quantise to 1/65535 of the maximum dose
#: (0.2 mGy at 15 Gy) and are the default because dciodvfy (dicom3tools 2022) aborts on
#: 32-bit OW pixel data; 32 bits are what some TPSs export.
WRITER_BITS = (16, 32)
#: Longest DS string a DICOM reader must accept (PS3.5 6.2).
DS_MAX_CHARS = 16
#: Units a dose array can be converted from, with the factor to Gy.
UNITS_TO_GY = {"GY": 1.0, "CGY": 0.01}
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"


class DoseError(InputFileError):
    """A dose file that cannot be read as asked, or a dose that does not fit the plan.

    An :class:`~lattice.errors.InputFileError` (a ``ValueError``): the command exits with
    the bad-input code and prints the message as its one line.
    """


@dataclass(frozen=True)
class DoseInfo:
    """Where a dose grid came from and what its header says.

    Attributes
    ----------
    path : str
    sha256 : str
        Hex digest of the file's bytes.
    file_format : {"RTDOSE", "NIFTI"}
    units : str
        DoseUnits as stored (``GY``, ``CGY``, ``RELATIVE``); NIfTI: ``GY`` (assumed).
    units_assumed : bool
        True when the file does not state its units (NIfTI).
    frame_of_reference_uid, summation_type, dose_type : str or None
        From the RT Dose header; None for NIfTI.
    scaling : float
        DoseGridScaling (1 for NIfTI).
    offsets : {"relative", "absolute"} or None
        How GridFrameOffsetVector was written (None for NIfTI or a single frame).
    shape : tuple of int
        ``(I, J, K)`` of the returned array.
    affine_ras : (4, 4) ndarray of float
        Voxel index to RAS mm.
    patient_id : str or None
        PatientID of the RT Dose (None for NIfTI, or without one).
    """

    path: str
    sha256: str
    file_format: Literal["RTDOSE", "NIFTI"]
    units: str
    units_assumed: bool
    frame_of_reference_uid: str | None
    summation_type: str | None
    dose_type: str | None
    scaling: float
    offsets: Literal["relative", "absolute"] | None
    shape: tuple[int, int, int]
    affine_ras: NDArray[np.float64] = field(repr=False)
    patient_id: str | None = None

    @property
    def voxel_size_mm(self) -> NDArray[np.float64]:
        """(3,) float: lengths of the affine's first three columns."""
        return np.linalg.norm(self.affine_ras[:3, :3], axis=0)

    def to_dict(self) -> dict[str, Any]:
        """The ``dose`` section of evaluation.json (JSON-ready)."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "format": self.file_format,
            "units": self.units,
            "units_assumed": self.units_assumed,
            "summation_type": self.summation_type,
            "dose_type": self.dose_type,
            "frame_of_reference_uid": self.frame_of_reference_uid,
            "scaling": self.scaling,
            "grid": {
                "shape": list(self.shape),
                "voxel_size_mm": [float(v) for v in self.voxel_size_mm],
                "affine_ras": self.affine_ras.tolist(),
                "offsets": self.offsets,
            },
        }


@dataclass(frozen=True, eq=False)
class DoseVolume:
    """A dose array in Gy on its own grid: finite and not negative, whoever made it.

    Attributes
    ----------
    dose_gy : (I, J, K) ndarray of float64
    affine_ras : (4, 4) ndarray of float64
        Voxel index to RAS mm.
    info : DoseInfo

    Raises
    ------
    DoseError
        A NaN, infinite or negative dose value (:mod:`lattice.io.dose_values`): the message
        names the file, how many voxels, and the worst one's index and position.
    """

    dose_gy: NDArray[np.float64]
    affine_ras: NDArray[np.float64]
    info: DoseInfo

    def __post_init__(self) -> None:
        from .dose_values import check_dose_values

        kind = "RT Dose" if self.info.file_format == "RTDOSE" else "dose NIfTI"
        check_dose_values(
            self.dose_gy,
            source=f"{kind} '{self.info.path}'",
            affine_ras=self.affine_ras,
            rtdose_order=self.info.file_format == "RTDOSE",
        )


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_dose(path: str | Path, *, relative_to_gy: float | None = None) -> DoseVolume:
    """An RT Dose (DICOM) or a dose NIfTI (``.nii``, ``.nii.gz``), by file name.

    See :func:`read_rtdose` and :func:`read_dose_nifti`.
    """
    name = Path(path).name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return read_dose_nifti(path)
    return read_rtdose(path, relative_to_gy=relative_to_gy)


def read_dose_nifti(path: str | Path) -> DoseVolume:
    """A dose NIfTI: the array (a trailing axis of length 1 dropped) in Gy, nibabel's affine.

    NIfTI has no dose units; Gy is assumed and recorded (``units_assumed=True``).

    Raises
    ------
    DoseError
        Not readable by nibabel, not 3-D, or holding NaN, infinite or negative values.
    """
    import zlib

    import nibabel as nib

    from .nifti_data import check_gzip_stream

    try:
        image = nib.load(str(path))
        with np.errstate(invalid="ignore", over="ignore"):  # a damaged file's garbage
            data = np.asarray(image.dataobj, dtype=np.float64)  # type: ignore[attr-defined]
        check_gzip_stream(path)  # nibabel's reader does not always check the trailer
    except (OSError, ValueError, EOFError, zlib.error, nib.filebasedimages.ImageFileError) as exc:
        raise DoseError(
            f"cannot read dose NIfTI '{path}' ({exc}); pass a NIfTI file or an RTDOSE"
        ) from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DoseError(f"dose NIfTI '{path}' has shape {data.shape}; pass a 3-D dose")
    affine = np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
    info = DoseInfo(
        path=str(path),
        sha256=file_sha256(path),
        file_format="NIFTI",
        units="GY",
        units_assumed=True,
        frame_of_reference_uid=None,
        summation_type=None,
        dose_type=None,
        scaling=1.0,
        offsets=None,
        shape=(data.shape[0], data.shape[1], data.shape[2]),
        affine_ras=affine,
    )
    return DoseVolume(dose_gy=data, affine_ras=affine, info=info)


def read_rtdose_info(path: str | Path) -> DoseInfo:
    """The header of an RT Dose: its grid, units, frame of reference (no pixel data read).

    Raises
    ------
    DoseError
        Not DICOM, not an RT Dose, or a geometry this reader refuses (see
        :func:`rtdose_affine_ras`).
    """
    ds = _dcmread(path, stop_before_pixels=True)
    return _info_from_header(ds, path)


def read_rtdose(path: str | Path, *, relative_to_gy: float | None = None) -> DoseVolume:
    """An RT Dose as a dose in Gy on its own grid (any orientation; see the module notes).

    Parameters
    ----------
    path : str or Path
    relative_to_gy : float, optional
        Dose in Gy that a stored RELATIVE dose of 1.0 stands for; required when DoseUnits
        is RELATIVE (the file alone does not say), ignored otherwise.

    Returns
    -------
    DoseVolume
        ``dose_gy`` of shape ``(columns, rows, frames)``.

    Raises
    ------
    DoseError
        Not an RT Dose, unknown units, RELATIVE without ``relative_to_gy``, non-uniform
        frame offsets, a DoseGridScaling that is not a finite number above 0, pixel data
        that does not match the header, or a negative dose (signed stored values).
    """
    ds = _dcmread(path, stop_before_pixels=False)
    info = _info_from_header(ds, path)
    factor = _factor_to_gy(info, relative_to_gy=relative_to_gy)
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises many types for missing handlers/bad data
        raise DoseError(
            f"cannot decode the pixel data of '{path}' ({exc}); export the dose uncompressed"
        ) from exc
    n_frames, n_cols, n_rows = info.shape[2], info.shape[0], info.shape[1]
    if pixels.size != n_frames * n_rows * n_cols:
        raise DoseError(
            f"'{path}' holds {pixels.size} dose values, its header {n_frames} x "
            f"{n_rows} x {n_cols}; export the dose again from the TPS"
        )
    pixels = pixels.reshape(n_frames, n_rows, n_cols)
    dose = np.transpose(pixels, (2, 1, 0)).astype(np.float64) * (info.scaling * factor)
    return DoseVolume(dose_gy=dose, affine_ras=info.affine_ras, info=info)


def _factor_to_gy(info: DoseInfo, *, relative_to_gy: float | None) -> float:
    """Multiplier from the stored units to Gy."""
    if info.units in UNITS_TO_GY:
        return UNITS_TO_GY[info.units]
    if info.units == "RELATIVE":
        if relative_to_gy is None or not np.isfinite(relative_to_gy) or relative_to_gy <= 0:
            raise DoseError(
                f"'{info.path}' holds a RELATIVE dose; pass the dose in Gy that "
                "1.0 stands for (relative_to_gy), or export the dose in GY"
            )
        return float(relative_to_gy)
    raise DoseError(
        f"'{info.path}' has DoseUnits '{info.units}'; export the dose in GY "
        f"(known: {', '.join(UNITS_TO_GY)}, RELATIVE)"
    )


def _dcmread(path: str | Path, *, stop_before_pixels: bool) -> Any:
    """The dataset, checked to be an RT Dose."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
    except (OSError, InvalidDicomError) as exc:
        raise DoseError(
            f"cannot read '{path}' as DICOM ({exc}); pass an RTDOSE file or a dose NIfTI"
        ) from exc
    modality = str(ds.get("Modality", ""))
    sop_class = str(ds.get("SOPClassUID", ""))
    if modality != "RTDOSE" and sop_class != RT_DOSE_STORAGE:
        raise DoseError(
            f"'{path}' is DICOM {modality or sop_class or 'of unknown type'}, "
            "not an RT Dose; pass the RTDOSE the TPS exported"
        )
    return ds


def _required(ds: Any, keyword: str, path: str | Path) -> Any:
    value = ds.get(keyword)
    if value is None or value == "":
        raise DoseError(
            f"RT Dose '{path}' has no {keyword}; export the dose again from the "
            "TPS (this attribute is required for its geometry)"
        )
    return value


def _info_from_header(ds: Any, path: str | Path) -> DoseInfo:
    """DoseInfo from the header attributes (see the module notes for the geometry)."""
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    offsets_raw = ds.get("GridFrameOffsetVector")
    offsets_mm = (
        np.zeros(1)
        if offsets_raw is None and n_frames == 1
        else np.atleast_1d(
            np.asarray(_required(ds, "GridFrameOffsetVector", path), dtype=np.float64)
        )
    )
    if offsets_mm.size != n_frames:
        raise DoseError(
            f"RT Dose '{path}' has {n_frames} frames but {offsets_mm.size} "
            "GridFrameOffsetVector values; export the dose again"
        )
    thickness = ds.get("SliceThickness")
    affine_ras, kind = rtdose_affine_ras(
        np.asarray(_required(ds, "ImageOrientationPatient", path), dtype=np.float64),
        np.asarray(_required(ds, "PixelSpacing", path), dtype=np.float64),
        np.asarray(_required(ds, "ImagePositionPatient", path), dtype=np.float64),
        offsets_mm,
        single_frame_step_mm=float(thickness) if thickness else 1.0,
        source=str(path),
    )
    return DoseInfo(
        path=str(path),
        sha256=file_sha256(path),
        file_format="RTDOSE",
        units=str(ds.get("DoseUnits", "")).upper(),
        units_assumed=False,
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")) or None,
        summation_type=str(ds.get("DoseSummationType", "")) or None,
        dose_type=str(ds.get("DoseType", "")) or None,
        scaling=_dose_grid_scaling(ds, path),
        offsets=kind,
        shape=(int(_required(ds, "Columns", path)), int(_required(ds, "Rows", path)), n_frames),
        affine_ras=affine_ras,
        patient_id=str(ds.get("PatientID", "") or "").strip() or None,
    )


def _dose_grid_scaling(ds: Any, path: str | Path) -> float:
    """DoseGridScaling (1 when absent): a finite number above 0, or DoseError."""
    raw = ds.get("DoseGridScaling")
    if raw is None or raw == "":
        return 1.0
    try:
        scaling = float(raw)
    except (TypeError, ValueError):
        scaling = float("nan")
    if not (np.isfinite(scaling) and scaling > 0):
        raise DoseError(
            f"RT Dose '{path}' has DoseGridScaling {raw!s}, which must be a finite number "
            "above 0 (the dose per stored unit: it would make every dose "
            f"{_what_scaling_makes(scaling)}); "
            "export the dose again from the TPS"
        )
    return scaling


def _what_scaling_makes(scaling: float) -> str:
    if np.isnan(scaling):
        return "not a number"
    return "infinite" if np.isinf(scaling) else "0" if scaling == 0 else "negative"


def rtdose_affine_ras(
    orientation: NDArray[np.float64],
    pixel_spacing_mm: NDArray[np.float64],
    position_lps_mm: NDArray[np.float64],
    offsets_mm: NDArray[np.float64],
    *,
    single_frame_step_mm: float = 1.0,
    source: str = "RT Dose",
) -> tuple[NDArray[np.float64], Literal["relative", "absolute"] | None]:
    """The (column, row, frame) -> RAS mm affine of an RT Dose, and the offset convention.

    Parameters
    ----------
    orientation : (6,) float
        ImageOrientationPatient (row direction, column direction; LPS).
    pixel_spacing_mm : (2,) float
        PixelSpacing (between rows, between columns).
    position_lps_mm : (3,) float
        ImagePositionPatient of the first frame.
    offsets_mm : (F,) float
        GridFrameOffsetVector.
    single_frame_step_mm : float
        Step along the normal given to a one-frame grid (its SliceThickness), so that the
        affine is invertible; a single plane still covers no volume when resampling.
    source : str
        Named in error messages.

    Raises
    ------
    DoseError
        Orientation not two orthonormal vectors, spacing not positive, first offset neither
        0 nor the z of ImagePositionPatient, absolute offsets on non-axial planes, repeated
        or non-uniform frame positions.
    """
    row_dir, col_dir = orientation[:3], orientation[3:6]
    if (
        orientation.size != 6
        or abs(np.linalg.norm(row_dir) - 1) > DIRECTION_TOL
        or abs(np.linalg.norm(col_dir) - 1) > DIRECTION_TOL
        or abs(row_dir @ col_dir) > DIRECTION_TOL
    ):
        raise DoseError(
            f"{source}: ImageOrientationPatient {orientation.tolist()} is not two "
            "orthogonal unit vectors; export the dose again from the TPS"
        )
    if pixel_spacing_mm.size != 2 or np.any(pixel_spacing_mm <= 0):
        raise DoseError(
            f"{source}: PixelSpacing {pixel_spacing_mm.tolist()} must be two "
            "positive numbers; export the dose again from the TPS"
        )
    normal = np.cross(row_dir, col_dir)
    steps_mm, kind = _frame_distances(offsets_mm, normal, position_lps_mm, source)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * pixel_spacing_mm[1]
    affine_lps[:3, 1] = col_dir * pixel_spacing_mm[0]
    affine_lps[:3, 2] = normal * (steps_mm if steps_mm is not None else single_frame_step_mm)
    affine_lps[:3, 3] = position_lps_mm
    return LPS_TO_RAS @ affine_lps, kind


def _frame_distances(
    offsets_mm: NDArray[np.float64],
    normal: NDArray[np.float64],
    position_lps_mm: NDArray[np.float64],
    source: str,
) -> tuple[float | None, Literal["relative", "absolute"] | None]:
    """Uniform step (mm along the normal) between frames, and the offset convention."""
    if offsets_mm.size == 1:
        return None, None
    if abs(offsets_mm[0]) <= OFFSET_TOL_MM:
        kind: Literal["relative", "absolute"] = "relative"
        along_mm = offsets_mm - offsets_mm[0]
    elif abs(offsets_mm[0] - position_lps_mm[2]) <= OFFSET_TOL_MM:
        kind = "absolute"
        if abs(abs(normal[2]) - 1) > DIRECTION_TOL:
            raise DoseError(
                f"{source}: absolute GridFrameOffsetVector on non-axial planes "
                f"(normal {np.round(normal, 4).tolist()}); the standard allows them "
                "only for axial planes: export relative offsets"
            )
        along_mm = (offsets_mm - offsets_mm[0]) / normal[2]
    else:
        raise DoseError(
            f"{source}: GridFrameOffsetVector starts at {offsets_mm[0]:g}, neither "
            f"0 (relative) nor the ImagePositionPatient z {position_lps_mm[2]:g} "
            "(absolute); export the dose again from the TPS"
        )
    steps = np.diff(along_mm)
    step = float(steps.mean())
    if abs(step) <= OFFSET_TOL_MM or np.any(np.abs(steps - step) > OFFSET_TOL_MM):
        raise DoseError(
            f"{source}: frame spacing is not uniform (steps {_short(steps)} mm); "
            "export the dose on a grid with equally spaced planes"
        )
    return step, kind


def _short(values: NDArray[np.float64], shown: int = 6) -> str:
    text = ", ".join(f"{v:g}" for v in values[:shown])
    return text + (", ..." if values.size > shown else "")


def check_frame_of_reference(dose: DoseInfo, ct_frame_of_reference_uid: str | None) -> None:
    """Refuse a dose computed in another frame of reference than the plan's CT.

    A NIfTI dose carries no frame of reference: it is accepted on its affine alone.
    An RT Dose must state one, and it must equal the CT's when the CT's is known.

    Raises
    ------
    DoseError
        The RT Dose has no FrameOfReferenceUID, or a different one from the CT's.
    """
    if dose.file_format != "RTDOSE":
        return
    if not dose.frame_of_reference_uid:
        raise DoseError(
            f"RT Dose '{dose.path}' has no FrameOfReferenceUID; export it from "
            "the TPS with the plan's CT"
        )
    if ct_frame_of_reference_uid and dose.frame_of_reference_uid != ct_frame_of_reference_uid:
        raise DoseError(
            f"RT Dose '{dose.path}' is in frame of reference "
            f"{dose.frame_of_reference_uid}, the plan's CT in "
            f"{ct_frame_of_reference_uid}; export the dose computed on this "
            "plan's CT"
        )
