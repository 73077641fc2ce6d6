"""Reading and writing volumes on disk (NIfTI). The only module that touches file formats.

World space is RAS+ (nibabel): ``img.affine`` is the sform when its code is > 0, else the
qform. Written files carry the same affine in both, with code 1 (scanner), so ITK, SimpleITK
and 3D Slicer, which may prefer the other one, read the same grid.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from .errors import InputFileError, MaskError
from .volume import Volume

#: What to do about an OAR file holding several labels (one organ per file is expected).
OAR_LABEL_HINT = "save each organ at risk as its own mask file and pass each with --oar"

#: Float masks (probability maps, resampled labels) count as inside above this value.
FLOAT_MASK_THRESHOLD = 0.5


def _open_nifti(path: str | Path) -> nib.Nifti1Image | nib.Nifti2Image:
    """Open a NIfTI file's header (data stays on disk), with errors that say how to fix it."""
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
        raise InputFileError(f"cannot read '{path}' (permission denied); give this user read "
                             "permission on the file (chmod a+r) or copy it") from exc
    except OSError as exc:
        raise InputFileError(f"cannot read '{path}' ({exc.strerror}); check the file") from exc
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises many types for non-NIfTI input
        raise InputFileError(
            f"cannot read '{path}' as NIfTI ({type(exc).__name__}: {exc}); "
            "pass a .nii or .nii.gz file"
        ) from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputFileError(
            f"'{path}' is a {type(img).__name__}, not NIfTI; convert it to .nii.gz"
        )
    return img


def _spatial_shape(img: nib.Nifti1Image | nib.Nifti2Image, path: str | Path
                   ) -> tuple[int, int, int]:
    """The 3-D shape, dropping a trailing axis of length 1; anything else is an error."""
    shape = img.shape[:3] if len(img.shape) == 4 and img.shape[3] == 1 else img.shape
    if len(shape) != 3:
        fix = ("extract one volume first" if len(shape) > 3
               else "a single slice is not enough: export the whole series")
        raise MaskError(
            f"'{path}' holds {len(img.shape)}-D data of shape {img.shape}; "
            f"a 3-D volume is needed ({fix})"
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


def _load_nifti(path: str | Path) -> tuple[nib.Nifti1Image, NDArray]:
    img = _open_nifti(path)
    shape = _spatial_shape(img, path)
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputFileError(
            f"'{path}' is truncated or corrupt ({type(exc).__name__}: {exc}); "
            "export the file again"
        ) from exc
    return img, data.reshape(shape)


def load_grid(path: str | Path) -> Volume:
    """Read only the header of a 3-D NIfTI image: its grid, without the voxel data.

    The returned volume's array is a zero-size-in-memory placeholder (a broadcast scalar) of
    the image's shape, for grid checks.

    Raises
    ------
    InputFileError, MaskError
    """
    img = _open_nifti(path)
    shape = _spatial_shape(img, path)
    return Volume(np.broadcast_to(np.zeros((), dtype=img.get_data_dtype()), shape), img.affine)


def load_image(path: str | Path) -> Volume:
    """Read a 3-D NIfTI image (CT or MR) as a :class:`Volume` with its stored dtype.

    Raises
    ------
    InputFileError
        Missing, unreadable, truncated or non-NIfTI file.
    MaskError
        Data that is not 3-D (a trailing axis of length 1 is dropped), or NaN or infinite
        values.
    """
    img, data = _load_nifti(path)
    # Values stored as integers (scaled or not) are finite: only float files need the check.
    if img.get_data_dtype().kind == "f" and not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise MaskError(f"image '{path}' holds NaN or infinite values ({bad} of "
                        f"{data.size} voxels); fix the image (e.g. set them to -1024 HU) and "
                        "save it again")
    return Volume(data, img.affine)


def mask_from_array(data: NDArray, *, label: int | None = None, name: str = "mask",
                    label_hint: str = "choose one with --gtv-label N (or label=N)") -> NDArray:
    """Turn stored mask values into a boolean mask.

    Integer data, and float data holding only whole numbers (a label map saved as float),
    with a single non-zero label is that label; with several labels, ``label`` must pick one.
    Other float data (probability or resampled masks) is thresholded at
    :data:`FLOAT_MASK_THRESHOLD`.

    Raises
    ------
    MaskError
        Several labels and none chosen, the chosen label absent, or no voxel set.
    """
    if data.dtype.fields is not None or not (data.dtype == bool or np.issubdtype(
            data.dtype, np.number)) or np.issubdtype(data.dtype, np.complexfloating):
        raise MaskError(f"{name} holds {data.dtype} values (e.g. RGB), not a mask; "
                        "save the mask as one integer or float channel")
    if data.dtype == bool:
        out = data
    else:
        # Labels are looked for among the non-zero voxels only: a mask is mostly zeros, and
        # this avoids a full-size widening copy (bincount) or sort (unique).
        if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
            raise MaskError(f"{name} contains NaN or infinite values; fix the mask file")
        is_set = data != 0  # same memory order as data
        # ravel(order="K") is a view for C and Fortran order alike (NIfTI data is Fortran);
        # boolean indexing of the Fortran array itself would be ~30x slower.
        nonzero = data.ravel(order="K")[is_set.ravel(order="K")]
        whole = bool(np.all(nonzero == np.round(nonzero))) if nonzero.dtype.kind == "f" else True
        labels = [int(v) for v in np.unique(nonzero)] if whole else []
        if label is not None:
            if not np.any(nonzero == label):
                raise MaskError(
                    f"label {label} is not in {name}; labels present: {_labels_text(labels)}")
            out = data == label
        elif not whole:  # probability or resampled mask
            low, high = float(nonzero.min()), float(nonzero.max())
            if low < 0 or high > 1:
                raise MaskError(
                    f"{name} holds fractional values from {low:g} to {high:g}: an image, not "
                    "a mask (a probability mask lies in 0..1); check that it is the mask file "
                    "(CT and mask swapped?)")
            out = data > FLOAT_MASK_THRESHOLD
        elif len(labels) > MAX_LABELS or (len(labels) > MAX_LABELS_SIGNED and labels[0] < 0):
            raise MaskError(
                f"{name} holds {len(labels)} different values ({labels[0]} .. {labels[-1]}): "
                "an image, not a mask; check that it is the mask file (CT and mask swapped?)")
        elif len(labels) > 1:
            raise MaskError(
                f"{name} is a label map with labels {_labels_text(labels)}; {label_hint}")
        else:
            out = is_set
    if not out.any():
        kind = ("no value above the float-mask threshold "
                f"{FLOAT_MASK_THRESHOLD:g}" if np.issubdtype(data.dtype, np.floating)
                else "no voxel set")
        raise MaskError(f"{name} is empty ({kind}); check that it is the right file")
    return out.astype(bool, copy=False)


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
    return (", ".join(map(str, labels[:shown - 1])) + f", ... {labels[-1]} "
            f"({len(labels)} labels)")


def load_mask(path: str | Path, *, label: int | None = None,
              label_hint: str = "choose one with --gtv-label N (or label=N)") -> Volume:
    """Read a NIfTI mask as a boolean :class:`Volume` (see :func:`mask_from_array`)."""
    img, data = _load_nifti(path)
    return Volume(mask_from_array(data, label=label, name=f"mask '{path}'",
                                  label_hint=label_hint), img.affine)


def save_volume(volume: Volume, path: str | Path) -> Path:
    """Write a volume as NIfTI with sform = qform = its affine, code 1.

    Boolean arrays are written as uint8; label maps keep their integer dtype.
    """
    data = volume.array
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype in (np.int64, np.uint64):
        # nibabel refuses 64-bit integers without an explicit dtype; labels fit in 32 bits.
        data = data.astype(np.int32)
    img = nib.Nifti1Image(data, volume.affine)
    img.set_sform(volume.affine, code=1)
    img.set_qform(volume.affine, code=1)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)
    return Path(path)


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
    ct : Volume
    gtv : Volume
        Boolean mask.
    oars : dict of str to Volume
        Boolean masks by name, in the order given.
    """

    ct: Volume
    gtv: Volume
    oars: dict[str, Volume]


def load_case(ct_path: str | Path, gtv_path: str | Path, *,
              oar_paths: Mapping[str, str | Path] | None = None,
              gtv_label: int | None = None, ct_data: bool = True) -> Case:
    """Read a CT, its GTV and OARs, and check that every mask is on the CT grid.

    Files are read by two threads (decompression releases the GIL). Errors are raised in
    argument order: CT, GTV, then OARs. With ``ct_data=False`` only the CT's header is read
    (see :func:`load_grid`): enough to plan.

    Raises
    ------
    InputFileError, MaskError
    GridMismatchError
        A mask not on the CT grid, or a sheared CT grid.
    """
    oar_paths = dict(oar_paths or {})
    with ThreadPoolExecutor(max_workers=2) as pool:
        ct_job = pool.submit(load_image if ct_data else load_grid, ct_path)
        gtv_job = pool.submit(load_mask, gtv_path, label=gtv_label)
        oar_jobs = {name: pool.submit(load_mask, p, label_hint=OAR_LABEL_HINT)
                    for name, p in oar_paths.items()}
        try:
            ct = ct_job.result()
            ct_name = f"CT '{ct_path}'"
            ct.check_not_sheared(name=ct_name)
            gtv = gtv_job.result()
            ct.check_same_grid(gtv, name=ct_name, other_name=f"GTV mask '{gtv_path}'")
            oars = {}
            for name, job in oar_jobs.items():
                oars[name] = job.result()
                ct.check_same_grid(oars[name], name=ct_name,
                                   other_name=f"OAR mask '{oar_paths[name]}'")
        except BaseException:
            for job in (gtv_job, *oar_jobs.values()):
                job.cancel()
            raise
    return Case(ct, gtv, oars)
