"""Synthetic CT phantoms: a body, a lobulated GTV and two organs at risk, all deterministic.

The anatomy is laid out in millimetres, independent of the voxel grid, so the same case at a
coarser grid is the same geometry sampled more coarsely:

- body: an elliptical cylinder along z (soft tissue, ~0 HU) in air (-1000 HU);
- GTV: the union of four overlapping ellipsoids, scaled to the requested volume in cc,
  slightly denser than soft tissue (+40 HU) so it shows on a picture of the CT;
- ``"cord"``: a cylinder along z, posterior to the GTV with a gap of :data:`CORD_GAP_MM`;
- ``"bowel"``: an ellipsoid that touches the GTV anteriorly, on the patient's right (+x, +y
  in RAS); it is cut by the GTV, so the two masks never overlap;
- a bone rod (1000 HU) posterolateral on the patient's left (-x, -y in RAS), in the CT only.

The ``seed`` drives only the CT noise (``np.random.default_rng(seed)``); the anatomy is fixed,
so every geometric guarantee holds for every seed, and the same seed gives the same arrays.

The affine is LPS-like, as in NIfTI files converted from CT DICOM: i runs towards the
patient's left, j towards posterior, k towards superior, ``diag(-vx, -vy, vz)`` with a
non-zero offset. Masks are painted only inside the bounding box of each shape, so a
512 x 512 x 300 case needs the output arrays plus a few box-sized temporaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import nibabel as nib
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

from .errors import OutputWriteError, ParameterError
from .geometry.margins import bounding_box
from .volume import Volume

HU_AIR = -1000
HU_SOFT_TISSUE = 0
HU_TUMOUR = 40
HU_BONE = 1000

#: CT noise: Gaussian with this standard deviation, rounded to multiples of
#: :data:`NOISE_STEP_HU`. The rounding keeps the written sample files small (a handful of
#: distinct values compresses well) while the image still looks like a noisy CT.
NOISE_SD_HU = 10.0
NOISE_STEP_HU = 10

#: GTV volume of :func:`make_phantom`: a typical bulky LATTICE target with room for several
#: 15 mm vertices at 30 mm spacing, 5 mm margin and 10 mm OAR clearance (about 7 with HCP or
#: FCC, 5 with SC, 8 with a greedy packing), yet small enough for a 160 mm field of view.
PHANTOM_GTV_CC = 260.0

CORD_RADIUS_MM = 5.0
#: Gap between the cord surface and the GTV surface: inside a typical 10 mm OAR clearance
#: plus vertex radius, so the cord constraint removes candidate vertices.
CORD_GAP_MM = 10.0
#: Gap between the bone rod and the GTV, so the GTV stays soft tissue.
BONE_GAP_MM = 12.0
#: Soft tissue between the outermost structure and the skin.
BODY_MARGIN_MM = 12.0

#: World position (RAS+, mm) of the centre of the field of view: an arbitrary, scanner-like
#: table offset so that code which silently assumes an identity affine fails on phantoms.
FOV_CENTRE_RAS_MM = (0.35, 21.7, -612.4)

#: Lobes of the GTV in units of the scale factor: (centre, semi-axes, yaw about z in deg,
#: pitch about x in deg). The first lobe is the bulk; the others make the surface lobulated.
_GTV_LOBES: tuple[
    tuple[tuple[float, float, float], tuple[float, float, float], float, float], ...
] = (
    ((0.0, 0.0, 0.0), (0.85, 0.72, 1.45), 25.0, 8.0),
    ((0.45, 0.28, 0.60), (0.58, 0.52, 0.70), -20.0, 0.0),
    ((-0.42, 0.22, -0.70), (0.55, 0.50, 0.65), 40.0, -15.0),
    ((0.20, -0.30, -0.30), (0.50, 0.45, 0.55), 0.0, 20.0),
)

#: Bowel ellipsoid: semi-axes in units of the GTV scale, yaw in degrees, and the direction
#: (RAS, from the GTV centre) along which it is pushed against the GTV.
_BOWEL_SEMI_AXES = (0.38, 0.30, 0.55)
_BOWEL_YAW_DEG = 30.0
_BOWEL_DIRECTION = (0.55, 0.83, 0.10)
#: Direction (RAS x, y) from the GTV centre along which the bone rod is placed.
_BONE_DIRECTION = (-0.8, -0.6)
#: Bone rod radius as a fraction of the GTV scale, clipped to a femur-like range in mm.
_BONE_RADIUS_FRACTION = 0.22
_BONE_RADIUS_RANGE_MM = (8.0, 15.0)

#: Grid step, in units of the GTV scale, of the fine sampling used to measure the GTV volume
#: and silhouette before any voxel grid exists. 0.02 measures the volume to ~0.1 %.
_UNIT_STEP = 0.02


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic case: CT, GTV and organs at risk, all on the same grid.

    Parameters
    ----------
    ct : Volume
        (I, J, K) int16 CT numbers in HU.
    gtv : Volume
        (I, J, K) bool gross tumour volume.
    oars : dict of str to Volume
        (I, J, K) bool organs at risk by name, disjoint from the GTV.
    """

    ct: Volume
    gtv: Volume
    oars: dict[str, Volume]


def make_phantom(
    *,
    shape: tuple[int, int, int] = (160, 160, 60),
    voxel_size_mm: tuple[float, float, float] = (1.0, 1.0, 2.5),
    seed: int = 0,
) -> Phantom:
    """A small CT phantom with a 260 cc lobulated GTV, a cord and a bowel loop.

    Parameters
    ----------
    shape : (3,) tuple of int
        Grid size (I, J, K).
    voxel_size_mm : (3,) tuple of float
        Voxel edge lengths along i, j, k in mm.
    seed : int
        Seed of the CT noise; the anatomy does not depend on it.

    Returns
    -------
    Phantom
        GTV of :data:`PHANTOM_GTV_CC` (to within voxelisation), OARs ``"cord"`` (posterior,
        :data:`CORD_GAP_MM` from the GTV) and ``"bowel"`` (touching it anteriorly).

    Raises
    ------
    ParameterError
        A non-positive shape or voxel size, or a field of view too small for the anatomy.

    Examples
    --------
    >>> p = make_phantom()
    >>> round(p.gtv.array.sum() * p.gtv.voxel_volume_cc)  # doctest: +SKIP
    260
    """
    return _build(shape=shape, voxel_size_mm=voxel_size_mm, gtv_cc=PHANTOM_GTV_CC, seed=seed)


def make_benchmark_case(
    *,
    shape: tuple[int, int, int] = (512, 512, 300),
    voxel_size_mm: tuple[float, float, float] = (0.98, 0.98, 1.0),
    gtv_cc: float = 1400.0,
    seed: int = 0,
) -> Phantom:
    """A full-size CT with a large lobulated GTV, for timing the planner.

    Same anatomy as :func:`make_phantom`, scaled to ``gtv_cc``. Masks are painted inside
    bounding boxes, so the memory needed is about the outputs themselves (for the default
    grid: 150 MB of CT and 75 MB per mask).

    Parameters
    ----------
    shape : (3,) tuple of int
        Grid size (I, J, K).
    voxel_size_mm : (3,) tuple of float
        Voxel edge lengths along i, j, k in mm.
    gtv_cc : float
        GTV volume in cm^3; the voxelised mask matches it to within a few voxel layers'
        worth (well under 1 % at 1 mm voxels).
    seed : int
        Seed of the CT noise; the anatomy does not depend on it.

    Returns
    -------
    Phantom
        As :func:`make_phantom`.

    Raises
    ------
    ParameterError
        A non-positive size or volume, or a field of view too small for the anatomy.
    """
    return _build(shape=shape, voxel_size_mm=voxel_size_mm, gtv_cc=gtv_cc, seed=seed)


def write_phantom(phantom: Phantom, folder: str | Path) -> dict[str, Path]:
    """Write a phantom as NIfTI files: ``ct.nii.gz``, ``gtv.nii.gz`` and ``<oar>.nii.gz``.

    The CT is written as int16, masks as uint8 (0/1). Both sform and qform hold the affine,
    with code 1, so every reader sees the same grid. Existing files are overwritten.

    Parameters
    ----------
    phantom : Phantom
        The case to write.
    folder : str or Path
        Output folder, created if missing.

    Returns
    -------
    dict of str to Path
        File written for ``"ct"``, ``"gtv"`` and each OAR name.

    Raises
    ------
    ParameterError
        An OAR name that is not a plain file stem, or that collides with ``ct``/``gtv``.
    OutputWriteError
        The folder cannot be created or a file cannot be written.
    """
    for name in phantom.oars:
        if name in ("ct", "gtv") or not name or Path(name).name != name or name.startswith("."):
            raise ParameterError(
                f"OAR name {name!r} cannot be used as a file name next to ct/gtv; "
                "rename it to a plain word such as 'cord'"
            )
    folder = Path(folder)
    volumes = {"ct": phantom.ct, "gtv": phantom.gtv, **phantom.oars}
    paths: dict[str, Path] = {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, volume in volumes.items():
            data = volume.array
            if data.dtype == bool:
                data = data.view(np.uint8)  # same bytes, no copy of a full-size mask
            img = nib.Nifti1Image(data, volume.affine)
            img.set_data_dtype(data.dtype)
            img.set_sform(volume.affine, code=1)
            img.set_qform(volume.affine, code=1)
            img.header.set_xyzt_units("mm")
            path = folder / f"{name}.nii.gz"
            nib.save(img, path)
            paths[name] = path
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write the phantom to '{folder}' ({exc}); choose a writable folder"
        ) from exc
    return paths


# --- construction -----------------------------------------------------------------------


def _build(
    *,
    shape: tuple[int, int, int],
    voxel_size_mm: tuple[float, float, float],
    gtv_cc: float,
    seed: int,
) -> Phantom:
    shape_arr = np.asarray(shape)
    voxel = np.asarray(voxel_size_mm, dtype=np.float64)
    if shape_arr.shape != (3,) or np.any(shape_arr < 1):
        raise ParameterError(f"shape must be three positive integers, got {shape}")
    if voxel.shape != (3,) or not np.all(np.isfinite(voxel)) or np.any(voxel <= 0):
        raise ParameterError(f"voxel_size_mm must be three positive numbers, got {voxel_size_mm}")
    if not np.isfinite(gtv_cc) or gtv_cc <= 0:
        raise ParameterError(f"gtv_cc must be a positive volume in cm^3, got {gtv_cc}")
    shape = (int(shape_arr[0]), int(shape_arr[1]), int(shape_arr[2]))

    layout = _Layout(gtv_cc)
    fov_mm = shape_arr * voxel
    affine = _lps_like_affine(shape, voxel)
    layout.check_fits(fov_mm)

    # Local frame = RAS axes with the GTV centre at the origin; world = local + offset.
    # Because the affine is diagonal, world x depends on i only (and y on j, z on k).
    coords = [affine[a, a] * np.arange(shape[a]) + affine[a, 3] for a in range(3)]
    centre = np.asarray(FOV_CENTRE_RAS_MM) - np.append(layout.body_centre_local_mm, 0.0)
    local = [coords[a] - centre[a] for a in range(3)]

    gtv = np.zeros(shape, dtype=bool)
    for c, semi, rot in layout.lobes_mm:
        _paint_ellipsoid(gtv, local, c, semi, rot)

    bowel = np.zeros(shape, dtype=bool)
    _paint_ellipsoid(bowel, local, *layout.bowel_mm)
    bowel &= ~gtv  # touching the GTV, never overlapping it

    x, y = local[0][:, None], local[1][None, :]
    cord_2d = _disc(x, y, layout.cord_xy_mm, CORD_RADIUS_MM)
    cord = np.repeat(cord_2d[:, :, None], shape[2], axis=2)
    bone_2d = _disc(x, y, layout.bone_xy_mm, layout.bone_radius_mm)
    bx, by = layout.body_centre_local_mm
    body_2d = ((x - bx) / layout.body_semi_axes_mm[0]) ** 2 + (
        (y - by) / layout.body_semi_axes_mm[1]
    ) ** 2 <= 1.0

    ct = _make_ct(shape, body_2d, bone_2d, gtv, seed)
    return Phantom(
        ct=Volume(ct, affine),
        gtv=Volume(gtv, affine),
        oars={"cord": Volume(cord, affine), "bowel": Volume(bowel, affine)},
    )


def _lps_like_affine(
    shape: tuple[int, int, int], voxel: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Voxel-to-RAS affine ``diag(-vx, -vy, vz)`` with the FOV centre at FOV_CENTRE_RAS_MM."""
    lin = np.diag([-voxel[0], -voxel[1], voxel[2]])
    affine = np.eye(4)
    affine[:3, :3] = lin
    affine[:3, 3] = np.asarray(FOV_CENTRE_RAS_MM) - lin @ ((np.asarray(shape) - 1) / 2.0)
    return affine


def _make_ct(
    shape: tuple[int, int, int],
    body_2d: NDArray[np.bool_],
    bone_2d: NDArray[np.bool_],
    gtv: NDArray[np.bool_],
    seed: int,
) -> NDArray[np.int16]:
    ct = np.full(shape, HU_AIR, dtype=np.int16)
    slice_hu = np.where(body_2d, HU_SOFT_TISSUE, HU_AIR).astype(np.int16)
    slice_hu[bone_2d & body_2d] = HU_BONE
    ct[...] = slice_hu[:, :, None]
    if gtv.any():
        box = bounding_box(gtv)
        ct[box][gtv[box]] += HU_TUMOUR

    # Noise slice by slice from uniform bytes through a quantised normal quantile table:
    # no full-size float array, and the same bytes for the same seed on every platform.
    rng = np.random.default_rng(seed)
    dist = NormalDist(0.0, NOISE_SD_HU)
    table = np.array(
        [round(dist.inv_cdf((u + 0.5) / 256) / NOISE_STEP_HU) * NOISE_STEP_HU for u in range(256)],
        dtype=np.int16,
    )
    for k in range(shape[2]):
        noise = table[rng.integers(0, 256, size=shape[:2], dtype=np.uint8)]
        noise[~body_2d] = 0
        ct[:, :, k] += noise
    return ct


def _rotation(yaw_deg: float, pitch_deg: float) -> NDArray[np.float64]:
    """Rotation about z by ``yaw_deg`` then about x by ``pitch_deg`` (extrinsic, ``Rx @ Rz``);
    columns are body axes."""
    return Rotation.from_euler("zx", [yaw_deg, pitch_deg], degrees=True).as_matrix()


def _inside_ellipsoid(
    points: NDArray[np.float64], centre: ArrayLike, semi: ArrayLike, rot: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """(n,) bool: which of the (n, 3) points lie in the ellipsoid."""
    q = (points - np.asarray(centre)) @ rot / np.asarray(semi)
    return np.einsum("ij,ij->i", q, q) <= 1.0


def _paint_ellipsoid(
    mask: NDArray[np.bool_],
    local: list[NDArray[np.float64]],
    centre: NDArray[np.float64],
    semi: NDArray[np.float64],
    rot: NDArray[np.float64],
) -> None:
    """Set the voxels of ``mask`` whose centres lie in the ellipsoid, in its bounding box only.

    ``local`` holds the 1-D coordinates (mm) of the voxel centres along each axis.
    """
    half = np.sqrt(((rot * semi) ** 2).sum(axis=1))  # axis-aligned half extents
    box, grids = [], []
    for a in range(3):
        inside = np.flatnonzero(np.abs(local[a] - centre[a]) <= half[a])
        if inside.size == 0:
            return
        sl = slice(int(inside[0]), int(inside[-1]) + 1)
        box.append(sl)
        g = local[a][sl] - centre[a]
        grids.append(g.reshape([-1 if b == a else 1 for b in range(3)]))
    # Sum of squared ellipsoid coordinates, accumulated in place: one box-sized float array
    # plus one temporary, whatever the rotation.
    acc = np.zeros(tuple(sl.stop - sl.start for sl in box))
    for m in range(3):
        q = (grids[0] * rot[0, m] + grids[1] * rot[1, m] + grids[2] * rot[2, m]) / semi[m]
        acc += q * q
    mask[tuple(box)] |= acc <= 1.0


def _disc(
    x: NDArray[np.float64], y: NDArray[np.float64], centre: NDArray, radius: float
) -> NDArray[np.bool_]:
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius**2


def _fibonacci_sphere(n: int) -> NDArray[np.float64]:
    """(n, 3) nearly uniform unit vectors."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z * z)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


class _Layout:
    """Positions and sizes of every structure, in mm, in the GTV-centred local frame.

    Everything is derived from the analytic shapes (no voxel grid), so a coarse and a fine
    grid of the same case sample the same anatomy.
    """

    def __init__(self, gtv_cc: float) -> None:
        unit = [
            (np.array(c), np.array(s), _rotation(yaw, pitch)) for c, s, yaw, pitch in _GTV_LOBES
        ]
        axes, inside = _sample_union(unit)
        unit_volume = float(inside.sum()) * _UNIT_STEP**3
        self.scale_mm = float((gtv_cc * 1000.0 / unit_volume) ** (1.0 / 3.0))
        s = self.scale_mm
        self.lobes_mm = [(c * s, sem * s, rot) for c, sem, rot in unit]
        # Cell centres sit up to half a diagonal inside the true surface; pad gaps by that.
        cell_pad = 0.5 * np.sqrt(2.0) * _UNIT_STEP * s
        ii, jj = np.nonzero(inside.any(axis=2))
        silhouette = np.column_stack([axes[0][ii], axes[1][jj]]) * s
        kk = np.flatnonzero(inside.any(axis=(0, 1)))
        self.gtv_z_range_mm = (axes[2][kk[0]] * s - cell_pad, axes[2][kk[-1]] * s + cell_pad)

        # Cord: straight behind the GTV centre (-y). Bone rod: posterolateral on the
        # patient's left (-x, -y in RAS), like a vertebral body or a pelvic bone.
        d = CORD_RADIUS_MM + CORD_GAP_MM + cell_pad
        self.cord_xy_mm = _clear_along(silhouette, (0.0, -1.0), d)
        self.bone_radius_mm = float(np.clip(_BONE_RADIUS_FRACTION * s, *_BONE_RADIUS_RANGE_MM))
        d = self.bone_radius_mm + BONE_GAP_MM + cell_pad
        self.bone_xy_mm = _clear_along(silhouette, _BONE_DIRECTION, d)

        # Bowel: pushed along its direction until it overlaps the GTV surface by ~30 % of its
        # smallest semi-axis; the overlap is then cut away, so it touches the GTV.
        u = np.asarray(_BOWEL_DIRECTION) / np.linalg.norm(_BOWEL_DIRECTION)
        t = np.arange(0.0, 3.0, _UNIT_STEP / 4)
        inside = _inside_union(unit, t[:, None] * u)
        exit_mm = t[np.flatnonzero(inside)[-1]] * s
        bowel_semi = np.asarray(_BOWEL_SEMI_AXES) * s
        bowel_centre = u * (exit_mm + 0.7 * bowel_semi.min())
        bowel_rot = _rotation(_BOWEL_YAW_DEG, 0.0)
        self.bowel_mm = (bowel_centre, bowel_semi, bowel_rot)
        bowel_surface = bowel_centre + (_fibonacci_sphere(400) * bowel_semi) @ bowel_rot.T
        self.bowel_z_range_mm = (bowel_surface[:, 2].min(), bowel_surface[:, 2].max())

        # Body: an ellipse around everything with BODY_MARGIN_MM of soft tissue.
        angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        circle = np.column_stack([np.cos(angles), np.sin(angles)])
        content = np.vstack(
            [
                silhouette,
                self.cord_xy_mm + CORD_RADIUS_MM * circle,
                self.bone_xy_mm + self.bone_radius_mm * circle,
                bowel_surface[:, :2],
            ]
        )
        self.body_centre_local_mm, self.body_semi_axes_mm = _enclosing_ellipse(
            content, margin_mm=BODY_MARGIN_MM
        )

    def check_fits(self, fov_mm: NDArray[np.float64]) -> None:
        """Raise :class:`ParameterError` unless body, GTV and bowel lie inside the FOV."""
        need_xy = 2 * self.body_semi_axes_mm
        z_lo = min(self.gtv_z_range_mm[0], self.bowel_z_range_mm[0])
        z_hi = max(self.gtv_z_range_mm[1], self.bowel_z_range_mm[1])
        need_z = 2 * max(-z_lo, z_hi) + 2 * BODY_MARGIN_MM
        need = np.array([need_xy[0], need_xy[1], need_z])
        if np.any(fov_mm < need):
            raise ParameterError(
                "the field of view "
                f"{' x '.join(f'{v:.0f}' for v in fov_mm)} mm is too small for the phantom "
                f"anatomy, which needs {' x '.join(f'{v:.0f}' for v in need)} mm; increase "
                "shape or voxel_size_mm, or reduce gtv_cc"
            )


def _enclosing_ellipse(
    points_2d: NDArray[np.float64], *, margin_mm: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Centre (2,) and semi-axes (2,) of a small axis-aligned ellipse around the (n, 2) points
    with at least ``margin_mm`` to spare.

    The centre is the middle of the bounding box; the aspect ratio is the one, among a coarse
    sweep, that gives the smallest area. Not the minimum-area ellipse, but close and cheap.
    """
    lo, hi = points_2d.min(axis=0), points_2d.max(axis=0)
    centre = (lo + hi) / 2
    rel = np.abs(points_2d - centre)
    best: tuple[float, NDArray[np.float64]] | None = None
    for aspect in np.linspace(0.6, 0.9, 31):
        # Growing both semi-axes by margin_mm keeps every point at least margin_mm inside.
        a = np.sqrt(rel[:, 0] ** 2 + (rel[:, 1] / aspect) ** 2).max()
        semi = np.array([a, a * aspect]) + margin_mm
        if best is None or semi.prod() < best[0]:
            best = (float(semi.prod()), semi)
    assert best is not None
    return centre, best[1]


def _sample_union(
    lobes: list[tuple[NDArray, NDArray, NDArray]],
) -> tuple[list[NDArray[np.float64]], NDArray[np.bool_]]:
    """A fine grid (three 1-D axes) over the union's bounding box and which cells it holds."""
    half = np.max([np.abs(c) + np.sqrt(((r * s) ** 2).sum(axis=1)) for c, s, r in lobes], axis=0)
    # Symmetric integer multiples of the step, so cell centres never sit on a rounding edge.
    axes = [
        np.arange(-np.ceil(h / _UNIT_STEP), np.ceil(h / _UNIT_STEP) + 1) * _UNIT_STEP for h in half
    ]
    inside = np.zeros([len(a) for a in axes], dtype=bool)
    for c, s, r in lobes:
        _paint_ellipsoid(inside, axes, c, s, r)
    return axes, inside


def _inside_union(
    lobes: list[tuple[NDArray, NDArray, NDArray]], points: NDArray[np.float64]
) -> NDArray[np.bool_]:
    inside = np.zeros(len(points), dtype=bool)
    for c, s, r in lobes:
        inside |= _inside_ellipsoid(points, c, s, r)
    return inside


def _clear_along(
    points_2d: NDArray[np.float64], direction: ArrayLike, distance: float
) -> NDArray[np.float64]:
    """(2,) float: nearest point along the ray from the origin in ``direction``, beyond every
    one of the (n, 2) ``points``, that is at least ``distance`` from all of them.

    A point p blocks the ray where ``|t u - p| < distance``, i.e. for t up to
    ``p.u + sqrt(distance^2 - (p.u_perp)^2)``; the answer is the largest of those bounds.
    """
    u = np.asarray(direction, dtype=np.float64)
    u = u / np.linalg.norm(u)
    along = points_2d @ u
    across = points_2d @ np.array([-u[1], u[0]])
    near = np.abs(across) < distance
    t = float((along[near] + np.sqrt(distance**2 - across[near] ** 2)).max())
    return t * u
