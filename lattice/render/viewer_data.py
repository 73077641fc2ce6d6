"""The data ``viewer.html`` carries: the CT around the GTV, the masks and the surfaces,
packed for the browser (no matplotlib, no HTML here; :mod:`~lattice.render.viewer` writes the
page).

Everything is on the *viewer grid*: the crop of the CT grid that the pictures use (the GTV
plus :data:`~lattice.render.worker.CONTEXT_MM`), brought to the closest canonical (RAS)
orientation with :mod:`nibabel.orientations` (flips and transposes only, as the pictures do),
and, when the page would exceed :data:`VIEWER_MAX_BYTES`, averaged over blocks of an integer
``factor`` voxels along the finer axes (:func:`downsample_axes`). Its voxel-to-RAS affine is
recorded in the page, so every read-out goes through it, oblique or flipped.

Encodings (all base64 of gzip, decoded in the browser with ``DecompressionStream('gzip')``):

- ``ct``: int16 little-endian HU, C order of the viewer grid, rounded to the nearest HU;
- ``mask.KEY``: one bit per voxel (``numpy.packbits``, little bit order), a block of the
  downsampled grid inside when at least half its voxels are;
- ``mesh.KEY``: float32 RAS mm vertices (n x 3), then uint32 faces (m x 3); a decimated
  marching-cubes surface of the full-resolution mask
  (:func:`~lattice.geometry.margins.decimated_surface_ijk`).
"""

from __future__ import annotations

import base64
import gzip
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import MaskError, ParameterError
from ..geometry.margins import decimated_surface_ijk
from ..volume import Volume
from .layout import direction_letters
from .style import (
    COLD_COLOR,
    GTV_COLOR,
    OAR_COLORS,
    SHELL_COLORS,
    STV_COLOR,
    TARGET_COLOR,
    VERTEX_COLOR,
)

#: Largest page, bytes (issue 15: at most 15 MB for any case).
VIEWER_MAX_BYTES = 15_000_000
#: Bytes kept for everything but the CT when choosing the downsampling factor: the page's
#: code (~40 kB), masks (bit-packed, a few kB each after gzip), surfaces (~0.3 MB for a GTV
#: and two OARs) and tables.
RESERVED_BYTES = 1_500_000
#: gzip level of the CT. Level 1 was measured 2.5 % larger than level 6 on STS_013 and four
#: times faster (0.33 s against 1.3 s), and the page is built while a plan is written.
GZIP_LEVEL = 1
#: Faces of the GTV surface in the 3-D view, at most about; and of each OAR surface.
GTV_MESH_FACES = 12000
OAR_MESH_FACES = 6000
#: An axis is downsampled only when it is finer than this fraction of the coarsest voxel
#: edge (so 3.27 mm slices are kept while 0.98 mm pixels are merged); on a grid with no such
#: axis (near-isotropic) every axis is.
FINE_AXIS_FRACTION = 1.0 / 1.5

#: The slice views: name, canonical axis normal to the view, horizontal axis, vertical
#: axis (as the overview picture: radiological, the horizontal axis grows to the left).
VIEWS = (("axial", 2, 0, 1), ("coronal", 1, 0, 2), ("sagittal", 0, 1, 2))


def b64_gzip(data: bytes, *, level: int = 9) -> str:
    """``data`` gzip-compressed (no time stamp: the same bytes give the same page), base64."""
    return base64.b64encode(gzip.compress(data, compresslevel=level, mtime=0)).decode("ascii")


@dataclass(frozen=True)
class ViewerGrid:
    """The viewer grid (module docstring).

    Attributes
    ----------
    ornt : (3, 2) ndarray
        nibabel orientation from the crop to the canonical order.
    factor : (3,) tuple of int
        Block size along each canonical axis (1: original resolution).
    shape : tuple of int
        Canonical, downsampled shape.
    affine : (4, 4) ndarray of float
        Voxel-to-RAS affine of the viewer grid.
    crop_start : (3,) tuple of int
        First voxel of the crop in the CT grid (storage order).
    """

    ornt: NDArray[np.float64]
    factor: tuple[int, int, int]
    shape: tuple[int, int, int]
    affine: NDArray[np.float64]
    crop_start: tuple[int, int, int]

    def canonical(self, array: NDArray, *, mask: bool = False) -> NDArray:
        """A crop-shaped array on this grid: reoriented, then block-averaged (masks: a block
        is inside when at least half its voxels are)."""
        from nibabel.orientations import apply_orientation

        a = apply_orientation(np.asarray(array), self.ornt)
        if self.factor == (1, 1, 1):
            return a != 0 if mask else a
        f = self.factor
        widths = [(0, -n % k) for n, k in zip(a.shape, f)]
        if mask:  # outside the crop is outside the mask
            a = np.pad(np.asarray(a != 0, dtype=np.float32), widths, mode="constant")
        else:  # the CT goes on as at its edge
            a = np.pad(np.asarray(a, dtype=np.float32), widths, mode="edge")
        n = [s // k for s, k in zip(a.shape, f)]
        mean = a.reshape(n[0], f[0], n[1], f[1], n[2], f[2]).mean(axis=(1, 3, 5))
        return mean >= 0.5 if mask else mean


def viewer_grid(crop: Volume, crop_start: tuple[int, int, int], factor: int = 1) -> ViewerGrid:
    """The viewer grid of a crop of the CT grid, downsampled by ``factor`` along the axes
    :func:`downsample_axes` picks.

    Raises
    ------
    GridMismatchError
        A sheared grid (the views assume orthogonal axes).
    """
    # nibabel takes ~0.35 s to import: not with `lattice --help` (plan_writer imports this)
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    crop.grid.check_not_sheared(name="CT")
    ornt = io_orientation(crop.affine)
    shape0 = tuple(int(n) for n in apply_orientation(np.empty(crop.shape, bool), ornt).shape)
    affine0 = crop.affine @ inv_ornt_aff(ornt, crop.shape)
    voxel = np.linalg.norm(affine0[:3, :3], axis=0)
    f = np.where(downsample_axes(voxel), factor, 1).astype(int)
    # A block's centre is the mean of its voxel centres: (f - 1) / 2 voxels from its first.
    scale = np.eye(4)
    scale[:3, :3] = np.diag(f)
    scale[:3, 3] = (f - 1) / 2.0
    shape = tuple(int(math.ceil(n / k)) for n, k in zip(shape0, f))
    return ViewerGrid(
        ornt=ornt,
        factor=(int(f[0]), int(f[1]), int(f[2])),
        shape=(shape[0], shape[1], shape[2]),
        affine=affine0 @ scale,
        crop_start=crop_start,
    )


def downsample_axes(voxel_size_mm: NDArray[np.float64]) -> NDArray[np.bool_]:
    """(3,) bool: the axes a downsampling merges (:data:`FINE_AXIS_FRACTION`)."""
    fine = voxel_size_mm < FINE_AXIS_FRACTION * voxel_size_mm.max()
    return fine if fine.any() else np.ones(3, dtype=bool)


@dataclass(frozen=True)
class ViewerBase:
    """The heavy part of a page, known before planning: the CT, GTV and OAR data.

    Attributes
    ----------
    grid : ViewerGrid
    blobs : dict of str to str
        Encoded arrays (module docstring), by name.
    structures : list of dict
        Drawable structures known so far (key, label, colour, line style, kind).
    gtv_centroid_ijk : list of 3 float
        Where the views open, in viewer-grid indices.
    mesh_sizes : dict of str to (int, int)
        Vertex and face counts of each ``mesh.KEY`` blob.
    """

    grid: ViewerGrid
    blobs: dict[str, str]
    structures: list[dict[str, Any]]
    gtv_centroid_ijk: list[float]
    mesh_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


def pack_base(
    ct: Volume,
    gtv: Volume,
    oars: Mapping[str, Volume],
    *,
    crop_start: tuple[int, int, int],
    max_bytes: int = VIEWER_MAX_BYTES,
) -> ViewerBase:
    """Pack the CT, GTV and OARs (cropped alike, see :func:`~lattice.render.worker.job_box`):
    the CT at the original resolution when the page fits in ``max_bytes``, else at the
    smallest integer factor that fits.

    Raises
    ------
    MaskError
        An empty GTV.
    GridMismatchError
        A sheared grid.
    ParameterError
        ``max_bytes`` not above :data:`RESERVED_BYTES`.
    """
    if not np.any(gtv.array):
        raise MaskError("the GTV mask is empty; pass a mask with at least one non-zero voxel")
    if max_bytes <= RESERVED_BYTES:
        raise ParameterError(
            f"max_bytes must exceed the {RESERVED_BYTES} bytes kept for the page's code and "
            f"overlays, got {max_bytes}"
        )
    factor = 1
    budget = max_bytes - RESERVED_BYTES
    while True:
        grid = viewer_grid(ct, crop_start, factor)
        hu = _int16_hu(grid.canonical(ct.array))
        ct_blob = b64_gzip(hu.tobytes(), level=GZIP_LEVEL)
        if len(ct_blob) <= budget or hu.size <= 1:
            break
        # Bytes scale with the voxel count: the factor that brings it under the budget.
        n_axes = int(downsample_axes(np.linalg.norm(ct.affine[:3, :3], axis=0)).sum())
        factor = max(factor + 1, math.ceil(factor * (len(ct_blob) / budget) ** (1 / n_axes)))
    blobs = {"ct": ct_blob}
    structures = [_structure("gtv", "GTV", GTV_COLOR, "solid")]
    gtv_on_grid = grid.canonical(gtv.array, mask=True)
    blobs["mask.gtv"] = _bits(gtv_on_grid)
    meshes = {"gtv": _mesh(gtv, GTV_MESH_FACES)}
    for n, (name, oar) in enumerate(oars.items()):
        key = f"oar{n}"
        structures.append(_structure(key, name, OAR_COLORS[n % len(OAR_COLORS)], "solid"))
        blobs[f"mask.{key}"] = pack_mask(grid, oar.array)
        if np.any(oar.array):
            meshes[key] = _mesh(oar, OAR_MESH_FACES)
    sizes = {}
    for key, (verts, faces) in meshes.items():
        blobs[f"mesh.{key}"] = b64_gzip(verts.tobytes() + faces.tobytes(), level=GZIP_LEVEL)
        sizes[key] = (len(verts), len(faces))
    return ViewerBase(
        grid=grid,
        blobs=blobs,
        structures=structures,
        gtv_centroid_ijk=_centroid(gtv_on_grid),
        mesh_sizes=sizes,
    )


def _int16_hu(values: NDArray) -> NDArray[np.int16]:
    """C-ordered little-endian int16 of CT values, rounded to the nearest HU and clipped to
    int16 (a CT stored as int16 is copied as it is)."""
    if values.dtype == np.int16 or (values.dtype.kind in "iu" and values.dtype.itemsize == 1):
        return np.ascontiguousarray(values, dtype="<i2")
    return np.ascontiguousarray(np.clip(np.rint(values), -32768, 32767), dtype="<i2")


def pack_mask(grid: ViewerGrid, array: NDArray) -> str:
    """One mask on ``grid`` (crop-shaped ``array``), bit-packed."""
    return _bits(grid.canonical(array, mask=True))


def _bits(mask: NDArray[np.bool_]) -> str:
    return b64_gzip(np.packbits(np.ascontiguousarray(mask), bitorder="little").tobytes(), level=6)


def _centroid(mask: NDArray[np.bool_]) -> list[float]:
    """Centroid of a mask in its own voxel indices (per-axis counts: no index list)."""
    counts = [mask.sum(axis=tuple(b for b in range(3) if b != a)) for a in range(3)]
    total = max(int(counts[0].sum()), 1)
    return [float(np.dot(np.arange(len(c)), c) / total) for c in counts]


def _mesh(mask: Volume, max_faces: int) -> tuple[NDArray[np.float32], NDArray[np.uint32]]:
    verts_ijk, faces = decimated_surface_ijk(
        mask.array, voxel_size_mm=mask.voxel_size_mm, max_faces=max_faces
    )
    verts = mask.ijk_to_ras(verts_ijk).astype("<f4")
    return np.ascontiguousarray(verts), np.ascontiguousarray(faces, dtype="<u4")


def _structure(key: str, label: str, color: str, style: str, kind: str = "mask") -> dict[str, Any]:
    return {"key": key, "label": label, "color": color, "style": style, "kind": kind}


def viewer_payload(
    base: ViewerBase,
    *,
    target: Volume | None,
    stv: Volume | None,
    info: Mapping[str, Any],
    shells: Volume | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The page's metadata (JSON-ready) and every blob, from the base and what the plan adds:
    the LATTICE target and STV (cropped as the base) and ``info``
    (:func:`~lattice.render.viewer.viewer_info`: title, diameters, vertices, cold spheres),
    and the support shells' label map (label k = shell k, cropped as the base), drawn first
    (under the GTV) in the pictures' greens.
    """
    grid = base.grid
    blobs = dict(base.blobs)
    structures = [dict(s) for s in base.structures]
    extra = []
    if target is not None:
        extra.append(_structure("target", "LATTICE target", TARGET_COLOR, "dashed"))
        blobs["mask.target"] = pack_mask(grid, target.array)
    if stv is not None:
        extra.append(_structure("stv", "STV (SCART)", STV_COLOR, "dotted"))
        blobs["mask.stv"] = pack_mask(grid, stv.array)
    structures[1:1] = extra  # legend order: GTV, target, STV, OARs, spheres
    if shells is not None:  # drawn first, outermost first, as in overview.png
        labels = np.asarray(shells.array)
        rings = []
        for k in range(int(labels.max(initial=0)), 0, -1):
            color = SHELL_COLORS[min(k, len(SHELL_COLORS)) - 1]
            rings.append(_structure(f"shell{k}", f"support shell {k}", color, "solid"))
            blobs[f"mask.shell{k}"] = pack_mask(grid, labels == k)
        structures = rings + structures
    d = float(info["diameter_mm"])
    structures.append(
        _structure("vertices", f"vertex spheres (D {d:g} mm)", VERTEX_COLOR, "solid", "spheres")
    )
    if info.get("cold_spheres"):
        cd = float(info.get("cold_diameter_mm") or d)
        structures.append(
            _structure("cold", f"cold spheres (D {cd:g} mm)", COLD_COLOR, "solid", "spheres")
        )
    meta = {
        "format": 1,
        "grid": {
            "shape": list(grid.shape),
            "affine": grid.affine.tolist(),
            "inverse": np.linalg.inv(grid.affine).tolist(),
            "voxel_size_mm": np.linalg.norm(grid.affine[:3, :3], axis=0).tolist(),
            "factor": list(grid.factor),
            "crop_start_ijk": list(grid.crop_start),
            "orientation": grid.ornt.tolist(),
            "gtv_centroid_ijk": base.gtv_centroid_ijk,
        },
        "views": [_view(grid, *v) for v in VIEWS],
        "structures": structures,
        "meshes": {k: list(v) for k, v in base.mesh_sizes.items()},
        **dict(info),
    }
    return meta, blobs


def _view(grid: ViewerGrid, name: str, normal: int, h: int, v: int) -> dict[str, Any]:
    """A slice view: its axes and the orientation letters at its edges, from the affine as
    in the pictures (the horizontal axis grows towards the image left, the vertical one
    towards the top)."""
    directions = grid.affine[:3, :3] / np.linalg.norm(grid.affine[:3, :3], axis=0)
    h_dir, v_dir = directions[:, h], directions[:, v]
    return {
        "name": name,
        "normal": normal,
        "h": h,
        "v": v,
        "letters": {
            "left": direction_letters(h_dir),
            "right": direction_letters(-h_dir),
            "top": direction_letters(v_dir),
            "bottom": direction_letters(-v_dir),
        },
    }
