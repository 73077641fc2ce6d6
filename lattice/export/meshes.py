"""Surface meshes of a plan (trimesh): the vertex spheres and the GTV.

Coordinates are **LPS millimetres**, the frame 3D Slicer assumes for STL, OBJ and PLY files,
so the meshes load in place next to the CT. Normals point outward (positive volume).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from numpy.typing import NDArray

from ..margins import bounding_box
from ..plan import Plan
from ..volume import Volume
from . import MESH_FORMATS

#: Subdivisions of the icosphere of each vertex (642 points, 1280 faces).
SPHERE_SUBDIVISIONS = 3


def vertex_spheres_mesh(centers_lps_mm: NDArray[np.float64], diameter_mm: float
                        ) -> trimesh.Trimesh:
    """One closed sphere per centre, in one mesh.

    Each sphere is an icosphere scaled so that its enclosed volume equals 4/3 pi r^3 exactly
    (an inscribed icosphere of this resolution would hold 1.2 % less); its points then lie
    within 0.4 % of r from the centre. No centres: an empty mesh.
    """
    unit = trimesh.creation.icosphere(subdivisions=SPHERE_SUBDIVISIONS, radius=1.0)
    radius = diameter_mm / 2.0
    scale = radius * (4.0 / 3.0 * np.pi / unit.volume) ** (1.0 / 3.0)
    parts = []
    for center in np.asarray(centers_lps_mm, dtype=np.float64).reshape(-1, 3):
        parts.append(trimesh.Trimesh(vertices=unit.vertices * scale + center,
                                     faces=unit.faces, process=False))
    if not parts:
        return trimesh.Trimesh()
    mesh = trimesh.util.concatenate(parts)
    assert isinstance(mesh, trimesh.Trimesh)
    return mesh


def mask_mesh(mask: Volume) -> trimesh.Trimesh:
    """The surface of a boolean mask in LPS mm: marching cubes at level 0.5 on the mask
    cropped to its bounding box plus one background voxel (so the surface closes), mapped
    through the full affine; faces wound so that normals point outward for any affine."""
    from skimage.measure import marching_cubes

    if not mask.array.any():
        return trimesh.Trimesh()
    box = bounding_box(mask.array, pad_vox=0)
    crop = np.pad(mask.array[box], 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(crop, level=0.5)
    origin = np.array([b.start for b in box], dtype=np.float64) - 1.0
    lps = mask.ijk_to_ras(verts + origin) * np.array([-1.0, -1.0, 1.0])
    # Outward normals give a positive signed volume; the affine may mirror the winding.
    a, b, c = (lps[faces[:, n]] for n in range(3))
    if np.einsum("ij,ij->", a, np.cross(b, c)) < 0:
        faces = faces[:, ::-1]
    return trimesh.Trimesh(vertices=lps, faces=faces, process=False)


def write_meshes(plan: Plan, folder: str | Path, *, fmt: str = "stl") -> list[str]:
    """Write ``vertices.<fmt>`` (skipped without vertices) and ``gtv.<fmt>`` into ``folder``;
    return the names written."""
    if fmt not in MESH_FORMATS:
        raise ValueError(f"mesh format must be one of {MESH_FORMATS}, got {fmt!r}")
    folder = Path(folder)
    names = []
    if plan.n_vertices:
        spheres = vertex_spheres_mesh(plan.centers_lps_mm, plan.parameters.diameter_mm)
        spheres.export(folder / f"vertices.{fmt}")
        names.append(f"vertices.{fmt}")
    mask_mesh(plan.gtv).export(folder / f"gtv.{fmt}")
    names.append(f"gtv.{fmt}")
    return names
