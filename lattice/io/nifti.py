"""Reading and writing volumes on disk (NIfTI). The only module that touches file formats.

World space is RAS+ (nibabel): the affine is the sform when its code is > 0, else the
qform. Every header is checked before any voxel is read (:mod:`lattice.io.nifti_header`: what
each field may hold, and which files are refused or accepted with a warning). Written files
carry the same affine in both, with code 1 (scanner), so ITK, SimpleITK
and 3D Slicer, which may prefer the other one, read the same grid.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import numbers
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import InputFileError, MaskError, ParameterError
from ..grid import Grid
from ..volume import Volume
from .nifti_data import (
    GZIP_MAGIC,
    check_gzip_data,
    check_gzip_stream,
    check_whole_stream,
    read_as_stored,
    read_gzip_data,
    short_switch_interval,
)
from .nifti_header import HeaderGeometry, check_header, check_mask_scaling, read_raw_header

if TYPE_CHECKING:  # nibabel is imported when a file is read or written: it takes ~0.35 s
    import nibabel as nib

#: What to do about an OAR file holding several labels (one organ per file is expected).
OAR_LABEL_HINT = "save each organ at risk as its own mask file and pass each with --oar"

#: Float masks (probability maps, resampled labels) count as inside above this value.
FLOAT_MASK_THRESHOLD = 0.5


def _raw_header(path: Path):
    """The header as stored (no repairs, no voxel data), or None if not NIfTI (see
    :func:`lattice.io.nifti_header.read_raw_header`)."""
    suffix = path.suffix.lower()
    opener = gzip.open if suffix == ".gz" else bz2.open if suffix == ".bz2" else open
    try:
        with opener(path, "rb") as fh:
            block = fh.read(RAW_HEADER_BYTES)
    except (OSError, EOFError, ValueError, zlib.error):
        return None  # nibabel says what is wrong
    return read_raw_header(block)


#: Bytes read to find the header: a NIfTI-2 header (540), which holds a NIfTI-1 one (348).
RAW_HEADER_BYTES = 540


def _open_nifti(
    path: str | Path, *, name: str, mask: bool
) -> tuple[nib.Nifti1Image | nib.Nifti2Image, HeaderGeometry]:
    """Open a NIfTI file's header (data stays on disk) and check what it means.

    The raw header is checked first (:func:`lattice.io.nifti_header.check_header`): nibabel
    repairs some fields silently or with a line on stderr, and allocates what ``dim`` claims.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"file not found: '{path}'; check the path")
    if path.is_dir():
        raise InputFileError(f"'{path}' is a folder; pass a NIfTI file (.nii or .nii.gz)")
    try:
        # Opened here first: nibabel's indexed_gzip reader crashes the interpreter
        # (segmentation fault) on a .nii.gz it may not open, instead of raising.
        with open(path, "rb"):
            pass
    except PermissionError as exc:
        raise InputFileError(
            f"cannot read '{path}' (permission denied); give this user read "
            "permission on the file (chmod a+r) or copy it"
        ) from exc
    except OSError as exc:
        raise InputFileError(f"cannot read '{path}' ({exc.strerror}); check the file") from exc
    raw = _raw_header(path)
    suffix = path.suffix.lower()
    compression = "gz" if suffix == ".gz" else None if suffix == ".nii" else "other"
    geometry = (
        None
        if raw is None
        else check_header(
            raw, name=name, mask=mask, file_bytes=path.stat().st_size, compression=compression
        )
    )
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises many types for non-NIfTI input
        raise InputFileError(
            misnamed_or_damaged(path)
            or f"cannot read '{path}' as NIfTI ({type(exc).__name__}: {exc}); "
            "pass a .nii or .nii.gz file"
        ) from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputFileError(
            f"'{path}' is a {type(img).__name__}, not NIfTI; convert it to .nii.gz"
        )
    if geometry is None:  # a codec the sniffer does not open: check nibabel's header
        geometry = check_header(img.header, name=name, mask=mask)
    return img, geometry


def misnamed_or_damaged(path: Path) -> str:
    """Why nibabel could not open ``path``, where its own words would mislead ("" if no
    better reason is found): a gzip stream that is damaged (a small file's header sits in
    the damaged block, so nibabel cannot even tell the file type), or gzip data named
    ``.nii`` (nibabel picks the reader by name)."""
    import zlib

    with open(path, "rb") as fh:
        if fh.read(2) != GZIP_MAGIC:
            return ""
    try:
        check_whole_stream(str(path))  # every member's CRC-32 and length, none kept
    except zlib.error as exc:
        return f"'{path}' is truncated or corrupt (zlib: {exc}); export the file again"
    except EOFError:
        return (
            f"'{path}' is truncated or corrupt (its gzip stream ends early); export the file again"
        )
    if path.suffix.lower() != ".gz":
        return f"'{path}' is gzip-compressed but named {path.suffix}; name it .nii.gz"
    return ""


def _read_data(
    img: nib.Nifti1Image | nib.Nifti2Image,
    geometry: HeaderGeometry,
    path: str | Path,
    *,
    scaled: bool,
) -> NDArray:
    """The voxel data in the checked shape: scaled by nibabel, or as stored."""
    try:
        proxy: Any = img.dataobj
        if read_as_stored(proxy, scaled=scaled):
            data = read_gzip_data(proxy)
        else:
            data = np.asanyarray(proxy) if scaled else np.asanyarray(proxy.get_unscaled())
            check_gzip_stream(proxy.file_like)  # as read_gzip_data checks its files
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    return data.reshape(geometry.shape)


#: What reading a damaged file's voxels raises (nibabel's readers, zlib, gzip).
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile)


def _unreadable(path: str | Path, exc: Exception) -> InputFileError:
    return InputFileError(
        f"'{path}' is truncated or corrupt ({type(exc).__name__}: {exc}); export the file again"
    )


def _load_grid(path: str | Path, *, name: str) -> tuple[Grid, tuple[str, ...]]:
    geometry = _open_nifti(path, name=name, mask=False)[1]
    return Grid(geometry.shape, geometry.affine), geometry.warnings


def load_grid(path: str | Path, *, name: str | None = None) -> Grid:
    """Read only the header of a 3-D NIfTI image: its grid, without the voxel data.

    The :class:`~lattice.grid.Grid` (shape and affine) serves grid checks and the geometry
    of derived series. The header is checked as
    :func:`lattice.io.nifti_header.check_header` describes (:func:`header_warnings` gives the
    warnings of a file accepted with one). ``name`` is how messages name the file (default
    ``image 'PATH'``).

    Raises
    ------
    InputFileError, MaskError, GridMismatchError
    """
    return _load_grid(path, name=name or f"image '{path}'")[0]


def _load_image(path: str | Path, *, name: str) -> tuple[Volume, tuple[str, ...]]:
    img, geometry = _open_nifti(path, name=name, mask=False)
    data = _read_data(img, geometry, path, scaled=True)  # CT numbers: scaling is normal
    # Values stored as integers (scaled or not) are finite: only float files need the check.
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise _non_finite(path, int(np.count_nonzero(~np.isfinite(data))), data.size)
    return Volume(data, geometry.affine), geometry.warnings


def _check_image(path: str | Path, *, name: str) -> tuple[Grid, tuple[str, ...]]:
    """As :func:`_load_image` (every voxel read and checked), keeping only the grid: a
    ``.gz`` file is decompressed piece by piece, without the ~160 MB array of a CT."""
    img, geometry = _open_nifti(path, name=name, mask=False)
    proxy: Any = img.dataobj
    if not read_as_stored(proxy, scaled=True):
        del img
        return _load_image(path, name=name)[0].grid, geometry.warnings
    try:
        bad = check_gzip_data(proxy)
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    if bad:
        raise _non_finite(path, bad, int(np.prod(geometry.shape)))
    return Grid(geometry.shape, geometry.affine), geometry.warnings


def _non_finite(path: str | Path, bad: int, size: int) -> MaskError:
    return MaskError(
        f"image '{path}' holds NaN or infinite values ({bad} of {size} voxels); fix the "
        "image (e.g. set them to -1024 HU) and save it again"
    )


def load_image(path: str | Path, *, name: str | None = None) -> Volume:
    """Read a 3-D NIfTI image (CT or MR) as a :class:`Volume` with its stored dtype.

    Header scaling (``scl_slope``, ``scl_inter``) is applied: CT numbers are often stored so.
    ``name`` is how header messages name the file (default ``image 'PATH'``).

    Raises
    ------
    InputFileError
        Missing, unreadable, truncated or non-NIfTI file; a damaged header.
    MaskError
        Data that is not 3-D (trailing axes of length 1 are dropped), or NaN or infinite
        values.
    GridMismatchError
        A header whose world coordinates are missing, made up or contradictory
        (:func:`lattice.io.nifti_header.check_header`).
    """
    return _load_image(path, name=name or f"image '{path}'")[0]


def header_warnings(path: str | Path, *, mask: bool) -> tuple[str, ...]:
    """The warnings a file's header gives (qform and sform apart, units, a mask's scaling).

    :func:`load_case` returns them in :attr:`Case.warnings`; this reads one file's header.
    A mask's scaling warning names the stored values, so the mask's voxels are read too.

    Raises
    ------
    As :func:`load_image` / :func:`load_mask`.
    """
    if mask:
        return _load_mask(path, name=f"mask '{path}'")[1]
    return _load_grid(path, name=f"image '{path}'")[1]


def mask_from_array(
    data: NDArray,
    *,
    label: int | None = None,
    name: str = "mask",
    label_hint: str = "choose one with --gtv-label N (or label=N)",
) -> NDArray:
    """Turn stored mask values into a boolean mask.

    Integer data, and float data holding only whole numbers (a label map saved as float),
    with a single non-zero label is that label; with several labels, ``label`` must pick one.
    Other float data (probability or resampled masks) is thresholded at
    :data:`FLOAT_MASK_THRESHOLD`.

    Raises
    ------
    MaskError
        Several labels and none chosen, the chosen label absent, or no voxel set.
    ParameterError
        ``label`` not an integer (``"1"`` is a string: it would match no voxel).
    """
    label = _label_number(label)
    if (
        data.dtype.fields is not None
        or not (data.dtype == bool or np.issubdtype(data.dtype, np.number))
        or np.issubdtype(data.dtype, np.complexfloating)
    ):
        raise MaskError(
            f"{name} holds {data.dtype} values (e.g. RGB), not a mask; "
            "save the mask as one integer or float channel"
        )
    if data.dtype == bool:
        out = data
    else:
        # Labels are looked for among the non-zero voxels only: a mask is mostly zeros, and
        # this avoids a full-size widening copy (bincount) or sort (unique).
        if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
            raise MaskError(f"{name} contains NaN or infinite values; fix the mask file")
        is_set, nonzero = _nonzero(data)
        whole = bool(np.all(nonzero == np.round(nonzero))) if nonzero.dtype.kind == "f" else True
        labels = [int(v) for v in np.unique(nonzero)] if whole else []
        if label is not None:
            if not np.any(nonzero == label):
                raise MaskError(
                    f"label {label} is not in {name}; labels present: {_labels_text(labels)}"
                )
            out = data == label
        elif not whole:  # probability or resampled mask
            low, high = float(nonzero.min()), float(nonzero.max())
            if low < 0 or high > 1:
                raise MaskError(  # 8 digits: a float32 1.0000001 is not printed as "1"
                    f"{name} holds fractional values from {low:.8g} to {high:.8g}: an image, not "
                    "a mask (a probability mask lies in 0..1); check that it is the mask file "
                    "(CT and mask swapped?)"
                )
            out = data > FLOAT_MASK_THRESHOLD
        elif len(labels) > MAX_LABELS or (len(labels) > MAX_LABELS_SIGNED and labels[0] < 0):
            raise MaskError(
                f"{name} holds {len(labels)} different values ({labels[0]} .. {labels[-1]}): "
                "an image, not a mask; check that it is the mask file (CT and mask swapped?)"
            )
        elif len(labels) > 1:
            raise MaskError(
                f"{name} is a label map with labels {_labels_text(labels)}; {label_hint}"
            )
        else:
            out = is_set
    if not out.any():
        kind = (
            f"no value above the float-mask threshold {FLOAT_MASK_THRESHOLD:g}"
            if np.issubdtype(data.dtype, np.floating)
            else "no voxel set"
        )
        raise MaskError(f"{name} is empty ({kind}); check that it is the right file")
    return out.astype(bool, copy=False)


def _nonzero(data: NDArray) -> tuple[NDArray, NDArray]:
    """``(data != 0, the non-zero values)``, the values in memory order."""
    is_set = data != 0  # same memory order as data
    # ravel(order="K") is a view for C and Fortran order alike (NIfTI data is Fortran);
    # boolean indexing of the Fortran array itself would be ~30x slower.
    return is_set, data.ravel(order="K")[is_set.ravel(order="K")]


def _label_number(label: object) -> int | None:
    """``label`` as an int (a whole float too); a string or anything else is refused."""
    if label is None:
        return None
    if isinstance(label, bool):
        pass
    elif isinstance(label, numbers.Integral):
        return int(label)
    elif isinstance(label, numbers.Real) and float(label).is_integer():
        return int(float(label))
    kind = "a string" if isinstance(label, (str, bytes)) else f"a {type(label).__name__}"
    raise ParameterError(
        f"label {label!r} is {kind}, not a whole number; give the label as an "
        f"integer (e.g. label=1, --gtv-label 1)"
    )


#: More distinct values than this and a "mask" is taken for an image (a CT has thousands;
#: the largest label maps of whole-body segmenters have ~120 labels); with negative values
#: (HU, rare in label maps) already more than MAX_LABELS_SIGNED.
MAX_LABELS = 255
MAX_LABELS_SIGNED = 8


def _labels_text(labels: list[int], shown: int = 12) -> str:
    """``1, 2, 3`` or ``1, 2, ... 40 (40 labels)``: one readable line for any count."""
    if not labels:
        return "none"
    if len(labels) <= shown:
        return ", ".join(map(str, labels))
    return ", ".join(map(str, labels[: shown - 1])) + f", ... {labels[-1]} ({len(labels)} labels)"


def _load_mask(
    path: str | Path,
    *,
    name: str,
    label: int | None = None,
    label_hint: str = "choose one with --gtv-label N (or label=N)",
) -> tuple[Volume, tuple[str, ...]]:
    img, geometry = _open_nifti(path, name=name, mask=True)
    data = _read_data(img, geometry, path, scaled=False)
    warnings = geometry.warnings
    if geometry.scl_slope is None and label is None and _zero_one_bytes(data):
        # The usual mask, 0 and 1 in one byte each: the same bytes are the boolean mask
        # mask_from_array would make (no 80 MB copy, no search for labels).
        return Volume(data.view(bool), geometry.affine), warnings
    scaling = None
    if geometry.scl_slope is not None and data.dtype.kind in "iuf":  # slope > 0, inter 0
        stored = _nonzero(data)[1]
        if stored.size and np.all(np.isfinite(stored)):
            scaling, labels = check_mask_scaling(
                np.unique(stored), geometry.scl_slope, name=name, threshold=FLOAT_MASK_THRESHOLD
            )
            warnings += (f"{name}: its header scales the mask values ({scaling})",)
            data = data * geometry.scl_slope
            if labels:  # 255 * float32(1/255) is 1 +- 1e-7
                data = np.rint(data, out=data)
    try:
        mask = mask_from_array(data, label=label, name=f"mask '{path}'", label_hint=label_hint)
    except MaskError as exc:
        if scaling is None:
            raise
        # The values the message names are the scaled ones: say so.
        raise MaskError(f"{name} read with its header's scaling ({scaling}): {exc}") from exc
    return Volume(mask, geometry.affine), warnings


def _zero_one_bytes(data: NDArray) -> bool:
    """Whether ``data`` is of one-byte integers, each 0 or 1, and not all 0."""
    if data.dtype == np.uint8:
        return bool(data.max() == 1)
    return data.dtype == np.int8 and bool(data.max() == 1) and bool(data.min() == 0)


def load_mask(
    path: str | Path,
    *,
    label: int | None = None,
    label_hint: str = "choose one with --gtv-label N (or label=N)",
) -> Volume:
    """Read a NIfTI mask as a boolean :class:`Volume` (see :func:`mask_from_array`).

    The header is checked first (:func:`lattice.io.nifti_header.check_header`). A mask's
    ``scl_inter`` must be 0 and its ``scl_slope`` positive (or unset): the background must
    read as 0. A positive slope is applied when the result is labels or a 0..1 map (e.g.
    SPM's 0..255 stored for 0..1), with a warning (:func:`header_warnings`).

    Raises
    ------
    InputFileError, MaskError, GridMismatchError
        As :func:`load_image`, and the mask errors of :func:`mask_from_array`.
    ParameterError
        ``label`` not an integer.
    """
    return _load_mask(path, name=f"mask '{path}'", label=label, label_hint=label_hint)[0]


def save_volume(volume: Volume, path: str | Path) -> Path:
    """Write a volume as NIfTI with sform = qform = its affine, code 1.

    Boolean arrays are written as uint8; label maps keep their integer dtype.
    """
    data = volume.array
    if data.dtype == bool:
        data = data.view(np.uint8)  # numpy's bool is one byte, 0 or 1: the same bytes, no copy
    elif data.dtype in (np.int64, np.uint64):
        # nibabel refuses 64-bit integers without an explicit dtype; labels fit in 32 bits.
        data = data.astype(np.int32)
    import nibabel as nib

    img = nib.Nifti1Image(data, volume.affine)
    img.set_sform(volume.affine, code=1)
    img.set_qform(volume.affine, code=1)
    img.header.set_xyzt_units("mm")
    if str(path).endswith(".gz"):
        # ISA-L's gzip at level 1 is ~7x faster than zlib's (nibabel's, also level 1) and
        # smaller on masks; any gzip reader decodes it to the same bytes.
        with _gzip_writer(path) as fh:
            holder = nib.FileHolder(fileobj=fh)
            img.to_file_map({"image": holder, "header": holder})
    else:
        nib.save(img, path)
    return Path(path)


def _gzip_writer(path: str | Path) -> Any:
    """A gzip file open for writing at level 1: ISA-L's when python-isal is installed."""
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover - isal is a dependency; zlib is nibabel's own
        return gzip.open(path, "wb", compresslevel=1)
    return igzip.open(path, "wb", compresslevel=1)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class Case:
    """A CT with its GTV and OAR masks, all checked to lie on the CT grid.

    Attributes
    ----------
    ct : Volume or Grid
        The CT, or only its grid when read with ``ct_data=False`` or ``"check"``.
    gtv : Volume
        Boolean mask.
    oars : dict of str to Volume
        Boolean masks by name, in the order given.
    warnings : tuple of str
        What the files' headers made lattice decide (qform and sform apart, a unit converted,
        a mask's scaling applied), one line each, CT first: for ``plan.json`` ``warnings``.
    """

    ct: Volume | Grid
    gtv: Volume
    oars: dict[str, Volume]
    warnings: tuple[str, ...] = ()


def load_case(
    ct_path: str | Path,
    gtv_path: str | Path,
    *,
    oar_paths: Mapping[str, str | Path] | None = None,
    gtv_label: int | None = None,
    ct_data: bool | Literal["check"] = True,
) -> Case:
    """Read a CT, its GTV and OARs, and check that every mask is on the CT grid.

    Files are read by two threads (decompression releases the GIL; see
    :func:`~lattice.io.nifti_data.short_switch_interval`). Errors are raised in
    argument order: CT, GTV, then OARs. With ``ct_data=False`` only the CT's header is read
    (:attr:`Case.ct` is its :class:`~lattice.grid.Grid`, see :func:`load_grid`): enough to
    plan. With ``ct_data="check"`` every CT voxel is read and checked as with True, but only
    the grid is kept (a truncated CT is refused without holding its array). Every header is
    checked
    (:func:`lattice.io.nifti_header.check_header`); its warnings are in :attr:`Case.warnings`.

    Raises
    ------
    InputFileError, MaskError
    GridMismatchError
        A mask not on the CT grid, a sheared CT grid, or a header whose world coordinates
        are missing, made up or contradictory.
    ParameterError
        ``gtv_label`` not an integer.
    """
    oar_paths = dict(oar_paths or {})
    ct_name, gtv_name = f"CT '{ct_path}'", f"GTV mask '{gtv_path}'"
    oar_names = {name: f"OAR mask '{p}'" for name, p in oar_paths.items()}
    with short_switch_interval(), ThreadPoolExecutor(max_workers=2) as pool:
        read_ct: Callable[..., tuple[Volume | Grid, tuple[str, ...]]] = (
            _check_image if ct_data == "check" else _load_image if ct_data else _load_grid
        )
        ct_job = pool.submit(read_ct, ct_path, name=ct_name)
        gtv_job = pool.submit(_load_mask, gtv_path, name=gtv_name, label=gtv_label)
        oar_jobs = {
            name: pool.submit(_load_mask, p, name=oar_names[name], label_hint=OAR_LABEL_HINT)
            for name, p in oar_paths.items()
        }
        try:
            ct, warnings = ct_job.result()
            ct.check_not_sheared(name=ct_name)
            gtv, gtv_warnings = gtv_job.result()
            ct.check_same_grid(gtv, name=ct_name, other_name=gtv_name)
            warnings += gtv_warnings
            oars = {}
            for name, job in oar_jobs.items():
                oars[name], oar_warnings = job.result()
                ct.check_same_grid(oars[name], name=ct_name, other_name=oar_names[name])
                warnings += oar_warnings
        except BaseException:
            for job in (gtv_job, *oar_jobs.values()):
                job.cancel()
            raise
    return Case(ct, gtv, oars, warnings)
