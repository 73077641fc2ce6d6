"""Surface meshes of a plan (trimesh): the vertex spheres and the GTV surface.

Frame
    Every coordinate is **LPS millimetres** (x to the patient's left, y posterior, z
    superior), the frame 3D Slicer (4.11 and later) assumes for STL, OBJ and PLY files, so the
    meshes load in place over the CT. The core works in RAS+ (nibabel's frame); the change to
    LPS (negate x and y) happens here, once. It is a rotation by 180 degrees about z
    (determinant +1), so it keeps the winding of every face.
Orientation
    Faces are wound counter-clockwise seen from outside: normals point outward and
    ``mesh.volume`` is positive, whatever the handedness of the CT's affine.
Files
    trimesh's writers: binary STL, binary little-endian PLY, ASCII OBJ. STL and PLY store
    float32 coordinates (about 3e-5 mm of rounding 500 mm from the origin).
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import trimesh
from numpy.typing import ArrayLike, NDArray

from ..errors import OutputWriteError, ParameterError
from ..geometry.margins import mask_surface_ijk
from ..grid import ras_to_lps
from ..planning.plan import Plan
from ..volume import Volume
from .plan_writer import MESH_FORMATS  # defined beside PLAN_FILES, which lists the mesh files

__all__ = [
    "MESH_FORMATS",
    "SPHERE_SUBDIVISIONS",
    "mask_mesh",
    "signed_volume_mm3",
    "vertex_spheres_mesh",
    "write_meshes",
]

#: Subdivisions of each vertex's icosphere: 642 points and 1280 faces per sphere. The
#: inscribed icosphere holds 0.86 % less than the sphere (3.4 % at 2 subdivisions, 0.22 % at
#: 4 with four times the faces); scaling it to the exact volume moves its points 0.29 %
#: outside the sphere, 0.02 mm on a 15 mm vertex.
SPHERE_SUBDIVISIONS = 3


def vertex_spheres_mesh(centers_lps_mm: ArrayLike, diameter_mm: float) -> trimesh.Trimesh:
    """One closed sphere per vertex centre, all in one mesh.

    Each sphere is an icosphere (:data:`SPHERE_SUBDIVISIONS`) scaled about its centre so that
    its enclosed volume equals the analytic ``4/3 pi r**3`` (to float rounding; an
    inscribed icosphere would hold 0.86 % less). Its points then lie 0.29 % of ``r`` outside
    the true sphere, and the mean of its points is the centre.

    Parameters
    ----------
    centers_lps_mm : (n, 3) array_like of float
        Vertex centres, LPS mm.
    diameter_mm : float
        Sphere diameter, mm.

    Returns
    -------
    trimesh.Trimesh
        ``n`` watertight components with outward normals, in the order of the centres
        (sphere ``i`` owns points ``642 i`` to ``642 (i + 1) - 1``). With no centres, an
        empty mesh (no points, no faces): there is nothing to write.

    Raises
    ------
    ParameterError
        The centres are not an (n, 3) array of finite numbers, or the diameter is not a
        positive finite number.

    Examples
    --------
    >>> mesh = vertex_spheres_mesh([[0.0, 0.0, 0.0]], diameter_mm=10.0)
    >>> round(float(mesh.volume), 6) == round(4 / 3 * np.pi * 5.0**3, 6)
    True
    """
    centers = np.asarray(centers_lps_mm, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[1] != 3 or not np.all(np.isfinite(centers)):
        raise ParameterError(
            f"vertex centres must be an (n, 3) array of finite numbers (mm), "
            f"got shape {centers.shape}; pass one row per vertex"
        )
    if not (np.isfinite(diameter_mm) and diameter_mm > 0):
        raise ParameterError(
            f"the sphere diameter must be a positive number of mm, got {diameter_mm!r}"
        )
    if len(centers) == 0:
        return trimesh.Trimesh()
    unit = trimesh.creation.icosphere(subdivisions=SPHERE_SUBDIVISIONS, radius=1.0)
    radius_mm = diameter_mm / 2.0
    scale = radius_mm * (4.0 / 3.0 * np.pi / unit.volume) ** (1.0 / 3.0)
    spheres = [
        trimesh.Trimesh(vertices=unit.vertices * scale + center, faces=unit.faces, process=False)
        for center in centers
    ]
    mesh = trimesh.util.concatenate(spheres)
    assert isinstance(mesh, trimesh.Trimesh)  # concatenate's annotation also allows a Scene
    return mesh


def mask_mesh(mask: Volume) -> trimesh.Trimesh:
    """The surface of a mask, in LPS mm, with outward normals.

    Marching cubes (scikit-image, Lewiner) at level 0.5 on the mask cropped to its bounding
    box and padded with one background voxel on every side, so the surface is closed even
    where the mask touches the array border (:func:`lattice.geometry.margins.mask_surface_ijk`). The
    points, fractional voxel indices, go through the mask's full affine to RAS+ and then to
    LPS; no smoothing. Faces are flipped when the signed volume comes out negative, which
    happens exactly when the affine mirrors (negative determinant; :func:`signed_volume_mm3`),
    so normals point outward on every grid.

    The enclosed volume is close to, and slightly below, the voxel count times the voxel
    volume (the surface cuts the corners of the voxel staircase): -0.4 % on a 16 x 12 x 20 mm
    ellipsoid at 0.9 x 1.2 x 2 mm voxels, -0.07 % on a 365 cc sarcoma GTV.

    Parameters
    ----------
    mask : Volume
        (I, J, K) mask (bool; any other type counts non-zero values as inside) on its grid.

    Returns
    -------
    trimesh.Trimesh
        Watertight for a mask of separated solid blobs (one closed component each; a cavity
        gives an inner component facing into it). Points are not merged or smoothed
        (``process=False``). An empty mask gives an empty mesh.
    """
    array = np.asarray(mask.array).astype(bool, copy=False)
    if not array.any():
        return trimesh.Trimesh()
    verts_ijk, faces = mask_surface_ijk(array)
    verts_lps_mm = ras_to_lps(mask.ijk_to_ras(verts_ijk))
    if signed_volume_mm3(verts_lps_mm, faces) < 0:  # the affine mirrors: outward is inward
        faces = faces[:, ::-1]
    return trimesh.Trimesh(vertices=verts_lps_mm, faces=np.ascontiguousarray(faces), process=False)


def signed_volume_mm3(vertices: NDArray[np.float64], faces: NDArray[np.integer]) -> float:
    """Signed volume enclosed by a closed triangle mesh: positive when normals point out.

    The sum of the tetrahedra from a reference point to each face (divergence theorem), the
    reference being the mean point so that coordinates far from the origin lose no
    precision. The same number as trimesh's ``mesh.volume`` (to ~1e-12 relative), in a tenth
    of the time: that property computes every mass property (30 ms on a 44,000-face GTV).

    Parameters
    ----------
    vertices : (n, 3) ndarray of float
    faces : (m, 3) ndarray of int
        Indices into ``vertices``, counter-clockwise seen from outside for a positive result.

    Returns
    -------
    float
        Volume in the cube of the vertices' unit (mm^3 for mm).
    """
    centred = vertices - vertices.mean(axis=0)
    a, b, c = (centred[faces[:, n]] for n in range(3))
    return float(np.einsum("ij,ij->", a, np.cross(b, c))) / 6.0


def write_meshes(plan: Plan, folder: str | Path, *, fmt: str = "stl") -> list[str]:
    """Write the plan's surface meshes into ``folder`` (LPS mm, trimesh's writers).

    ``vertices.<fmt>`` holds every vertex sphere (:func:`vertex_spheres_mesh`, the plan's
    diameter) in one file, and is skipped when the plan has no vertex; ``gtv.<fmt>`` is the
    GTV surface (:func:`mask_mesh`; a plan's GTV is never empty, an empty one is skipped);
    ``cold.<fmt>`` every cold sphere, when the plan has some.

    Parameters
    ----------
    plan : Plan
    folder : path
        An existing folder; files of the same name are replaced.
    fmt : {'stl', 'ply', 'obj'}
        File format (:data:`MESH_FORMATS`).

    Returns
    -------
    list of str
        Names of the files written, in ``folder``.

    Raises
    ------
    ParameterError
        ``fmt`` is not one of :data:`MESH_FORMATS`.
    OutputWriteError
        A file cannot be written.
    """
    if fmt not in MESH_FORMATS:
        raise ParameterError(
            f"mesh format {fmt!r} is not supported; choose one of {', '.join(MESH_FORMATS)}"
        )
    meshes = {}
    if plan.n_vertices:
        meshes["vertices"] = vertex_spheres_mesh(plan.centers_lps_mm, plan.parameters.diameter_mm)
    if plan.cold is not None and len(plan.cold):  # --cold-spheres: cold.<fmt>
        lps = plan.cold.centers_ras_mm * np.array([-1.0, -1.0, 1.0])
        meshes["cold"] = vertex_spheres_mesh(lps, plan.cold.diameter_mm)
    gtv = mask_mesh(plan.gtv)
    if not gtv.is_empty:
        meshes["gtv"] = gtv
    del gtv
    names = []
    for stem in list(meshes):
        name = f"{stem}.{fmt}"
        _export(meshes.pop(stem), Path(folder) / name, fmt)  # each freed once written
        names.append(name)
    # A trimesh mesh and its caches form reference cycles: collected now (young objects, ~1
    # ms), they free their ~80 MB (the benchmark GTV) on return, not at a later collection.
    gc.collect(1)
    return names


def _export(mesh: trimesh.Trimesh, path: Path, fmt: str) -> None:
    try:
        mesh.export(path, file_type=fmt)
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write the mesh '{path}' ({exc.strerror or exc}); "
            "free some space or choose another output folder"
        ) from exc
