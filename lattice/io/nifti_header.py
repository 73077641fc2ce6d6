"""What a NIfTI header means, decided before a voxel is read.

A header can describe a grid that is not the one its writer meant, in ways nibabel repairs
silently (a zero voxel size becomes 1 mm; an invalid ``sform_code`` becomes 0) or does not
question (``scl_inter = -1`` turns a 0/1 mask into -1/0, its own complement; with both
transform codes 0 the world position is made up from ``pixdim``). :func:`check_header` reads
the raw header fields and, for each case, either refuses the file with one error that names
the field, or accepts it with a one-line warning the caller records (``plan.json``
``warnings``). Nothing here reads voxel data, so a header that claims 10^13 voxels is refused
before anything is allocated.

The decisions, each a named rule below:

* ``dim``: 1 to 7 dimensions, every length >= 1, trailing lengths of 1 beyond the third
  dropped (an ``(X, Y, Z, 1)`` mask is a 3-D mask); voxel count below :data:`MAX_VOXELS` and
  within what the file can hold (:data:`DEFLATE_MAX_RATIO` for ``.gz``).
* ``datatype``: a NIfTI type nibabel reads; the CT a real number type.
* ``scl_slope`` / ``scl_inter``: ``scl_slope`` 0 or NaN means unscaled (the standard). A CT
  is scaled as stored (Hounsfield units). A mask with ``scl_inter != 0`` or a negative slope
  is refused (the background would not read as 0); a positive slope with ``scl_inter = 0``
  keeps the background 0 and is applied, with a warning (:func:`check_mask_scaling`). An
  infinite slope, or a non-finite intercept with a slope, is refused.
* ``qform_code`` / ``sform_code``: NIfTI codes 0 to 5; both 0 is refused (no world
  position). The sform is used when its code is > 0, else the qform (as nibabel). When both
  are set, they must agree within :data:`QFORM_SFORM_TOLERANCE_MM` (silent), within one voxel
  (warning: the sform was used), or the file is refused.
* ``pixdim``: voxel sizes finite and > 0 (refused otherwise, whichever transform is used,
  since nibabel would substitute 1 mm for 0); with a qform, ``qfac`` (``pixdim[0]``) 1 or
  -1 (0, which the standard reads as 1, nibabel refuses).
* NaN or infinity in a transform that is used: refused, naming NaN.
* ``xyzt_units``: unknown (0) is millimetres by convention (nibabel, ITK); meters and
  microns are converted to mm with a warning when the voxel size in mm is plausible
  (:data:`PLAUSIBLE_VOXEL_MM`), refused otherwise (a wrong unit field).
* ``intent_code``, ``cal_min``/``cal_max``, time fields: not used. A vector or RGB intent has
  more than three non-trivial dimensions and is refused as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ..errors import GridMismatchError, InputFileError, MaskError
from ..grid import ORTHOGONALITY_TOLERANCE

if TYPE_CHECKING:  # nibabel is imported when a header is read: it takes ~0.35 s
    import nibabel as nib

#: Most voxels (all dimensions) a file may claim: 2^31, a 1024 x 1024 x 2048 volume, beyond
#: any CT a scanner exports (512 x 512 x ~3000 slices is 7.9e8). A header above it has a
#: wrong ``dim`` field, or the image must be cropped first.
MAX_VOXELS = 2**31
#: Deflate cannot compress more than 1032:1 (a 258-byte match in two bits), so a ``.gz`` file
#: of n bytes holds at most about 1032 n bytes of data: a header claiming more is wrong.
DEFLATE_MAX_RATIO = 1032
#: qform and sform that place every corner voxel within this distance describe one grid: the
#: qform's float32 quaternion and the sform's float32 rows round to ~1e-4 mm over a patient,
#: and a slightly non-orthogonal sform (DICOM direction cosines to 6 digits) differs from
#: its orthogonal qform by less than ~1e-3 mm. A real disagreement is a sizeable part of a
#: voxel.
QFORM_SFORM_TOLERANCE_MM = 0.01
#: Relative distance from a whole number within which a scaled mask value is that label:
#: ``scl_slope`` is float32 (relative rounding 6e-8), so SPM's 255 * (1/255) is 1 +- 1e-7.
SCALED_LABEL_TOLERANCE = 1e-5
#: Voxel edge lengths (mm) a file given in meters or microns may convert to; outside this
#: range the unit field is taken to be wrong and the file is refused.
PLAUSIBLE_VOXEL_MM = (0.01, 50.0)
#: ``xyzt_units & 7``: the spatial unit, and its size in mm (0 = unknown: mm by convention).
SPATIAL_UNIT_MM = {0: 1.0, 1: 1000.0, 2: 1.0, 3: 0.001}
_UNIT_NAMES = {1: "meters", 3: "microns"}

#: How to repair a transform, said once for every geometry message.
_FIX_TRANSFORM = "export the file again with its true geometry (sform and qform, code 1)"


@dataclass(frozen=True)
class HeaderGeometry:
    """The grid a checked header describes.

    Attributes
    ----------
    shape : (3,) tuple of int
        The spatial shape (trailing dimensions of length 1 dropped).
    affine : (4, 4) ndarray of float
        Voxel-to-RAS+ affine in mm (the sform if its code is > 0, else the qform; converted
        to mm when the header gives meters or microns).
    scl_slope : float or None
        The slope a mask's values are to be scaled by (``scl_inter`` is 0), or None when the
        file is read as stored: unscaled, or a CT (scaled by nibabel).
    warnings : tuple of str
        One line each, to record in ``plan.json``.
    """

    shape: tuple[int, int, int]
    affine: NDArray[np.float64]
    scl_slope: float | None
    warnings: tuple[str, ...]


def read_raw_header(block: bytes) -> nib.Nifti1Header | nib.Nifti2Header | None:
    """The header in the first bytes of a NIfTI-1 or NIfTI-2 file, without nibabel's repairs.

    Parameters
    ----------
    block : bytes
        At least the header's first 540 bytes (fewer for a short file).

    Returns
    -------
    Nifti1Header, Nifti2Header or None
        None when ``block`` holds no NIfTI magic (not NIfTI: left to the file reader).
    """
    import nibabel as nib

    for klass in (nib.Nifti2Header, nib.Nifti1Header):
        if klass.may_contain_header(block):
            size = klass.sizeof_hdr
            # The byte order is the one in which sizeof_hdr reads right (nibabel guesses it
            # from dim[0], which is itself one of the fields checked).
            for code in ("<", ">"):
                if int.from_bytes(block[:4], "little" if code == "<" else "big") == size:
                    return klass(block[:size], endianness=code, check=False)
            return klass(block[:size], check=False)
    return None


def check_header(
    hdr: nib.Nifti1Header | nib.Nifti2Header,
    *,
    name: str,
    mask: bool,
    file_bytes: int | None = None,
    compression: str | None = None,
) -> HeaderGeometry:
    """Check every header field lattice relies on; the grid it describes, and any warnings.

    Parameters
    ----------
    hdr : Nifti1Header or Nifti2Header
        The raw header (see :func:`read_raw_header`).
    name : str
        How messages name the file, e.g. ``"GTV mask 'gtv.nii.gz'"``.
    mask : bool
        A mask (scaling must keep the background 0) rather than a CT.
    file_bytes : int, optional
        The file's size on disk, to bound the data it can hold.
    compression : {None, "gz", "other"}
        How the file is compressed (the bound is exact uncompressed, 1032:1 for gzip, none
        for other codecs).

    Returns
    -------
    HeaderGeometry

    Raises
    ------
    InputFileError
        A damaged header: ``sizeof_hdr``, ``dim``, ``datatype``, ``vox_offset``, or more data
        than the file can hold or lattice handles.
    MaskError
        Scaling that makes a mask read wrong, or non-finite scaling; a CT of complex or RGB
        values; fewer or more than three non-trivial dimensions.
    GridMismatchError
        Transform codes, ``pixdim``, NaN in a transform, qform and sform more than a voxel
        apart, a degenerate transform, a wrong unit.
    """
    full_shape = _check_dims(hdr, name)
    dtype = _check_datatype(hdr, name, mask=mask)
    _check_size(hdr, name, full_shape, dtype, file_bytes, compression)
    shape = _spatial_shape(full_shape, name)
    slope = _check_scaling(hdr, name, mask=mask)
    affine, warnings = _check_transforms(hdr, name, shape)
    affine, unit_warning = _to_mm(hdr, name, affine)
    warnings += unit_warning
    return HeaderGeometry(shape, affine, slope, tuple(warnings))


def _check_dims(hdr, name: str) -> tuple[int, ...]:
    dim = [int(v) for v in hdr["dim"]]
    if int(hdr["sizeof_hdr"]) != hdr.sizeof_hdr:
        raise InputFileError(
            f"{name} has a damaged header (sizeof_hdr is {int(hdr['sizeof_hdr'])}, not "
            f"{hdr.sizeof_hdr}); export the file again"
        )
    if not 1 <= dim[0] <= 7:
        raise InputFileError(
            f"{name} has a damaged header (dim[0], the number of dimensions, is {dim[0]}; it "
            "must be 1 to 7); export the file again"
        )
    lengths = dim[1 : dim[0] + 1]
    for axis, n in enumerate(lengths, start=1):
        if n < 1:
            raise InputFileError(
                f"{name} has a damaged header (dim[{axis}], the length of axis {axis}, is "
                f"{n}; every length must be at least 1); export the file again"
            )
    return tuple(lengths)


def _check_datatype(hdr, name: str, *, mask: bool) -> np.dtype:
    from nibabel.nifti1 import data_type_codes as codes

    code = int(hdr["datatype"])
    known = code in codes.value_set()
    dtype = np.dtype(codes.dtype[code]) if known else None  # type: ignore[call-overload]
    if dtype is None or dtype.itemsize == 0:
        raise InputFileError(
            f"{name} has datatype code {code}, which is not a NIfTI data type nibabel reads; "
            "save the image as an integer or float type"
        )
    if not mask and (dtype.fields is not None or dtype.kind not in "biuf"):
        raise MaskError(
            f"{name} holds {codes.label[code]} values, not CT numbers; save the CT as one "
            "integer or float channel"
        )
    return dtype


def _check_size(
    hdr,
    name: str,
    full_shape: tuple[int, ...],
    dtype: np.dtype,
    file_bytes: int | None,
    compression: str | None,
) -> None:
    offset = float(hdr["vox_offset"])
    if hdr["magic"].item() == hdr.single_magic and (offset < hdr.single_vox_offset or offset % 16):
        raise InputFileError(
            f"{name} has vox_offset {offset:g} in its header (where the voxel data starts; "
            f"NIfTI asks for a multiple of 16, at least {hdr.single_vox_offset}); export the "
            "file again"
        )
    n_voxels = math.prod(full_shape)
    dims = " x ".join(map(str, full_shape))
    if n_voxels > MAX_VOXELS:
        raise InputFileError(
            f"{name} claims {n_voxels:.3g} voxels in its header (dim {dims}), more than "
            f"lattice reads (at most {MAX_VOXELS:.3g}, e.g. 1024 x 1024 x 2048); if the "
            "header is right, crop the image around the GTV, else export the file again"
        )
    if file_bytes is None or compression == "other":
        return
    needed = int(hdr["vox_offset"]) + n_voxels * dtype.itemsize
    # Exact for an uncompressed file; a gzip member adds its header and trailer.
    room = file_bytes * DEFLATE_MAX_RATIO + 4096 if compression == "gz" else file_bytes
    if needed > room:
        packed = "gzip-compressed " if compression == "gz" else ""
        raise InputFileError(
            f"{name} claims {n_voxels:.3g} voxels in its header (dim {dims} of {dtype}: "
            f"{_count(needed, room)} bytes with the header), but the {packed}file of "
            f"{file_bytes} bytes can hold at most {_count(room, needed)}; the header's dim "
            "field is wrong or the file is truncated: export the file again"
        )


def _count(n: int, other: int) -> str:
    """``n`` to 3 significant digits, or exactly when within 10 % of ``other`` (a file a
    few bytes short read "1.08e+05 bytes ... can hold at most 1.08e+05")."""
    return str(n) if abs(n - other) < 0.1 * max(n, other) else f"{n:.3g}"


def _spatial_shape(full_shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
    """The 3-D shape, dropping trailing axes of length 1; anything else is an error."""
    shape = list(full_shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape.pop()
    if len(shape) != 3:
        fix = (
            "extract one volume first"
            if len(shape) > 3
            else "a single slice is not enough: export the whole series"
        )
        raise MaskError(
            f"{name} holds {len(full_shape)}-D data of shape {tuple(full_shape)}; a 3-D volume "
            f"is needed ({fix})"
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


def _check_scaling(hdr, name: str, *, mask: bool) -> float | None:
    """The slope a mask is to be scaled by (None: read as stored); refuse what is unsafe."""
    slope, inter = float(hdr["scl_slope"]), float(hdr["scl_inter"])
    if slope == 0 or math.isnan(slope):  # the standard: no scaling; scl_inter is unused
        return None
    if math.isinf(slope) or not math.isfinite(inter):
        bad = (
            "an infinite scl_slope"
            if math.isinf(slope)
            else f"{'a NaN' if math.isnan(inter) else 'an infinite'} scl_inter"
        )
        raise MaskError(
            f"{name} has {bad} in its header (scl_slope {slope:g}, scl_inter {inter:g}), so "
            "no voxel value can be read; set scl_slope 1 and scl_inter 0 (or the true "
            "scaling) and save it again"
        )
    if not mask or (slope == 1 and inter == 0):
        return None
    if inter != 0 or slope < 0:
        background = (
            f"stored 0 (outside) would read as {inter:g}"
            if inter != 0
            else ("it would turn every label negative")
        )
        raise MaskError(
            f"{name} has a value scaling in its header (scl_slope {slope:g}, scl_inter "
            f"{inter:g}) that a mask cannot have: {background}, and applying or ignoring it "
            "gives different structures; save the mask unscaled (scl_slope 1, scl_inter 0)"
        )
    return slope


def check_mask_scaling(
    stored_nonzero: NDArray, slope: float, *, name: str, threshold: float
) -> tuple[str, bool]:
    """Refuse a scaled mask that reads as neither labels nor a 0..1 map; else the warning.

    Parameters
    ----------
    stored_nonzero : (n,) ndarray
        The distinct non-zero values as stored (before scaling), n >= 1.
    slope : float
        ``scl_slope`` (> 0; ``scl_inter`` is 0).
    threshold : float
        The value above which a 0..1 map counts as inside.

    Returns
    -------
    description : str
        What the scaling does, for a warning or an error, e.g. ``"scl_slope 2: stored
        value 1 reads as 2"``.
    labels : bool
        The scaled values are whole numbers (to :data:`SCALED_LABEL_TOLERANCE`): round them.

    Raises
    ------
    MaskError
        The scaled values are fractional and beyond 1 (e.g. a 0/1 mask with slope 2.5), or a
        0..1 map with no value above ``threshold`` (a 0/1 mask with slope 0.3).
    """
    scaled = np.asarray(stored_nonzero, dtype=np.float64) * slope
    low, high = float(stored_nonzero.min()), float(stored_nonzero.max())
    what = (
        f"stored values {low:g} .. {high:g} read as {low * slope:g} .. {high * slope:g}"
        if low != high
        else f"stored value {low:g} reads as {low * slope:g}"
    )
    slack = SCALED_LABEL_TOLERANCE * np.maximum(1.0, np.abs(scaled))
    labels = bool(np.all(np.abs(scaled - np.round(scaled)) <= slack))
    if not labels and not (scaled.min() > 0 and scaled.max() <= 1 + slack.max()):
        raise MaskError(
            f"{name} is not a mask once its header's scaling is applied (scl_slope {slope:g}: "
            f"{what}, neither whole labels nor a 0..1 map); save the mask unscaled "
            "(scl_slope 1, scl_inter 0)"
        )
    if not labels and scaled.max() <= threshold:
        raise MaskError(
            f"{name} is empty once its header's scaling is applied (scl_slope {slope:g}: "
            f"{what}, none above the 0..1 map's threshold {threshold:g}); save the mask "
            "unscaled (scl_slope 1, scl_inter 0)"
        )
    return f"scl_slope {slope:g}: {what}", labels


def _check_transforms(
    hdr, name: str, shape: tuple[int, int, int]
) -> tuple[NDArray[np.float64], list[str]]:
    """The affine used (sform if coded, else qform) and a warning if the other disagrees."""
    from nibabel.nifti1 import xform_codes

    codes = xform_codes.value_set()
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    for field, code in (("qform_code", qcode), ("sform_code", scode)):
        if code not in codes:
            raise GridMismatchError(
                f"{name} has {field} {code} in its header, which is not a NIfTI code (0 to "
                f"{max(codes)}), so its world position is unknown; {_FIX_TRANSFORM}"
            )
    if qcode == 0 and scode == 0:
        raise GridMismatchError(
            f"{name} has no world coordinates (qform_code and sform_code are both 0, so its "
            "position would be made up from pixdim alone); "
            f"{_FIX_TRANSFORM}"
        )
    pixdim = np.asarray(hdr["pixdim"][:4], dtype=np.float64)
    sizes = ", ".join(f"{v:g}" for v in pixdim[1:])
    if not np.all(np.isfinite(pixdim[1:])):
        raise GridMismatchError(
            f"{name} has NaN or infinite voxel sizes in its header (pixdim {sizes}); "
            f"{_FIX_TRANSFORM}"
        )
    if np.any(pixdim[1:] <= 0):
        raise GridMismatchError(
            f"{name} has a voxel size of zero or less in its header (pixdim {sizes} mm; "
            "nibabel would put 1 mm in place of 0, a made-up grid); export the file again "
            "with its true voxel size"
        )
    qform = _qform(hdr, name, pixdim) if qcode > 0 else None
    sform = _sform(hdr, name) if scode > 0 else None
    used = sform if sform is not None else qform
    assert used is not None
    _check_not_degenerate(used, name, "sform" if sform is not None else "qform")
    warnings: list[str] = []
    if qform is not None and sform is not None and not _sheared(sform):
        # (A qform cannot hold a shear: a sheared sform is refused as such, by the grid
        # checks, rather than as a disagreement.)
        apart = _corner_distance_mm(qform, sform, shape)
        voxel_mm = float(np.linalg.norm(sform[:3, :3], axis=0).min())
        if apart > voxel_mm:
            raise GridMismatchError(
                f"{name} has a qform and an sform that place its voxels up to {apart:.3g} mm "
                f"apart (more than a voxel, {voxel_mm:.3g} mm): lattice and nibabel read the "
                "sform, other tools may read the qform; make them agree (e.g. nibabel: "
                "img.set_qform(img.get_sform(), code=1)) and save it again"
            )
        if apart > QFORM_SFORM_TOLERANCE_MM:
            warnings.append(
                f"{name}: its qform and sform differ by up to {apart:.3g} mm (less than a "
                f"voxel, {voxel_mm:.3g} mm); the sform was used"
            )
    return used, warnings


def _qform(hdr, name: str, pixdim: NDArray) -> NDArray[np.float64]:
    fields = [
        float(hdr[k])
        for k in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")
    ]
    if not all(math.isfinite(v) for v in fields):
        raise GridMismatchError(
            f"{name} has NaN or infinite values in its qform (quatern_b, c, d "
            f"{', '.join(f'{v:g}' for v in fields[:3])}; qoffset "
            f"{', '.join(f'{v:g}' for v in fields[3:])}); {_FIX_TRANSFORM}"
        )
    if pixdim[0] not in (-1.0, 1.0):  # 0, which the standard reads as 1, nibabel refuses
        raise GridMismatchError(
            f"{name} has qfac (pixdim[0], the handedness of its qform) {pixdim[0]:g}; it must "
            f"be 1 or -1; {_FIX_TRANSFORM}"
        )
    try:
        return np.asarray(hdr.get_qform(), dtype=np.float64)
    except ValueError as exc:  # b^2 + c^2 + d^2 > 1: not a rotation
        raise GridMismatchError(
            f"{name} has a qform quaternion that is not a rotation (quatern_b, c, d "
            f"{', '.join(f'{v:g}' for v in fields[:3])}: squares sum above 1); "
            f"{_FIX_TRANSFORM}"
        ) from exc


def _sform(hdr, name: str) -> NDArray[np.float64]:
    rows = np.stack([np.asarray(hdr[k], dtype=np.float64) for k in ("srow_x", "srow_y", "srow_z")])
    if not np.all(np.isfinite(rows)):
        raise GridMismatchError(
            f"{name} has NaN or infinite values in its sform (srow_x, srow_y, srow_z: "
            f"{int(np.count_nonzero(~np.isfinite(rows)))} of 12); {_FIX_TRANSFORM}"
        )
    affine = np.eye(4)
    affine[:3] = rows
    return affine


def _check_not_degenerate(affine: NDArray, name: str, which: str) -> None:
    """Refuse an affine with a zero-length or dependent axis (no inverse)."""
    lengths = np.linalg.norm(affine[:3, :3], axis=0)
    det = abs(float(np.linalg.det(affine[:3, :3])))
    # |det| <= product of column lengths; far below it the axes are (nearly) dependent.
    if np.any(lengths == 0) or det <= 1e-9 * float(np.prod(lengths)):
        raise GridMismatchError(
            f"{name} has a degenerate {which} (voxel axes of length "
            f"{', '.join(f'{v:.3g}' for v in lengths)} mm, volume {det:.3g} mm^3): it maps "
            f"no voxel to a place of its own; {_FIX_TRANSFORM}"
        )


def _sheared(affine: NDArray) -> bool:
    d = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return bool(np.abs(d.T @ d - np.eye(3)).max() > ORTHOGONALITY_TOLERANCE)


def _corner_distance_mm(a: NDArray, b: NDArray, shape: tuple[int, int, int]) -> float:
    """Largest distance (mm) between the corner voxels of one array under two affines."""
    corners = np.array(list(product(*[(0, n - 1) for n in shape])), dtype=np.float64)
    # One affine applied to the difference: exact where two nearly equal affines place a
    # point far from the origin (the difference of the two mapped points would cancel).
    from nibabel.affines import apply_affine

    diff = apply_affine(a - b, corners)
    return float(np.linalg.norm(diff, axis=1).max())


def _to_mm(hdr, name: str, affine: NDArray) -> tuple[NDArray[np.float64], list[str]]:
    """The affine in mm: meters and microns converted when the result is plausible."""
    code = int(hdr["xyzt_units"]) & 0x07
    if code not in SPATIAL_UNIT_MM:
        raise GridMismatchError(
            f"{name} has spatial unit code {code} in its header (xyzt_units), which is not a "
            "NIfTI unit (0 unknown, 1 meter, 2 mm, 3 micron); set xyzt_units to mm and save "
            "it again"
        )
    factor = SPATIAL_UNIT_MM[code]
    if factor == 1.0:
        return affine, []
    converted = affine.copy()
    converted[:3] *= factor
    sizes_mm = np.linalg.norm(converted[:3, :3], axis=0)
    shown = " x ".join(f"{v:.3g}" for v in sizes_mm)
    low, high = PLAUSIBLE_VOXEL_MM
    if sizes_mm.min() < low or sizes_mm.max() > high:
        raise GridMismatchError(
            f"{name} gives its coordinates in {_UNIT_NAMES[code]} (xyzt_units), which would "
            f"make its voxels {shown} mm (outside {low:g} .. {high:g} mm): the unit field is "
            "wrong; set xyzt_units to mm and save it again"
        )
    return converted, [
        f"{name}: its header gives coordinates in {_UNIT_NAMES[code]} "
        f"(xyzt_units); converted to mm (voxels {shown} mm)"
    ]
