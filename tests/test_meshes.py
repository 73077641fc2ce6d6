"""Meshes: sphere volumes and centres, GTV surface volume, centroid and orientation in LPS.

Expected values come from the masks and affines with numpy (voxel-centre centroids in world
space, voxel counts), and from the analytic sphere volume, never from lattice itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from lattice.export.meshes import mask_mesh, vertex_spheres_mesh, write_meshes
from lattice.io import load_mask
from lattice.placement import plan_vertices
from lattice.volume import Volume

RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])


def mask_centroid_lps(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(mask).astype(float)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).mean(axis=0) * RAS_TO_LPS


def test_spheres_are_closed_and_exact():
    centers = np.array([[10.0, -20.0, 300.0], [40.0, -20.0, 300.0], [25.0, 5.0, 280.0]])
    mesh = vertex_spheres_mesh(centers, 15.0)
    parts = mesh.split(only_watertight=False)
    assert len(parts) == 3
    exact = 4 / 3 * np.pi * 7.5**3
    for part in parts:
        assert part.is_watertight
        assert part.volume == pytest.approx(exact, rel=0.02)
        centre = part.vertices.mean(axis=0)
        assert np.linalg.norm(centers - centre, axis=1).min() < 0.01
        radii = np.linalg.norm(part.vertices - centre, axis=1)
        assert np.all(np.abs(radii / 7.5 - 1) < 0.01)
    assert len(vertex_spheres_mesh(np.zeros((0, 3)), 15.0).faces) == 0


@pytest.mark.parametrize("kind", ["identity-like", "lps", "oblique"])
def test_gtv_mesh_in_world_space(kind, make_volume, ellipsoid_mask):
    vol = make_volume((48, 44, 30), (0.9, 1.2, 2.0), kind)
    center = np.array([-12.0, 25.0, 40.0])
    mask = ellipsoid_mask(vol, center, (16.0, 12.0, 20.0))
    mesh = mask_mesh(Volume(mask, vol.affine))
    voxel_mm3 = abs(np.linalg.det(vol.affine[:3, :3]))
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(mask.sum() * voxel_mm3, rel=0.05)
    assert np.linalg.norm(mesh.center_mass - mask_centroid_lps(mask, vol.affine)) < 1.0
    # Outward normals: the face farthest along +x (LPS) faces +x.
    far = np.argmax(mesh.triangles_center[:, 0])
    assert mesh.face_normals[far, 0] > 0.5
    # Extent: the ellipsoid reaches 16 mm from its centre along x (LPS x = -RAS x).
    center_lps = center * RAS_TO_LPS
    assert mesh.bounds[1, 0] - center_lps[0] == pytest.approx(16.0, abs=1.5)
    assert center_lps[0] - mesh.bounds[0, 0] == pytest.approx(16.0, abs=1.5)


def test_mirrored_affine_keeps_normals_outward(make_volume, ellipsoid_mask):
    vol = make_volume((30, 30, 20), (1.0, 1.0, 2.0), "identity-like")
    mask = ellipsoid_mask(vol, (-12.0, 25.0, 40.0), 9.0)
    mirrored = vol.affine.copy()
    mirrored[:3, 0] *= -1
    mirrored[:3, 3] = vol.affine[:3, 3] + vol.affine[:3, 0] * (mask.shape[0] - 1)
    a = mask_mesh(Volume(mask, vol.affine))
    b = mask_mesh(Volume(mask[::-1], mirrored))  # the same object, stored mirrored
    assert a.volume > 0 and b.volume > 0
    assert b.volume == pytest.approx(a.volume, rel=1e-9)
    np.testing.assert_allclose(b.center_mass, a.center_mass, atol=1e-6)


@pytest.mark.parametrize("fmt", ["stl", "ply", "obj"])
def test_written_meshes_load_back(fmt, tmp_path, make_volume, ellipsoid_mask):
    vol = make_volume((60, 60, 40), (1.0, 1.0, 2.0), "lps")
    gtv = Volume(ellipsoid_mask(vol, (-12.0, 25.0, 40.0), 26.0), vol.affine)
    plan = plan_vertices(gtv, diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3)
    names = write_meshes(plan, tmp_path, fmt=fmt)
    assert names == [f"vertices.{fmt}", f"gtv.{fmt}"]
    spheres = trimesh.load(tmp_path / f"vertices.{fmt}", force="mesh")
    parts = spheres.split(only_watertight=False)
    assert len(parts) == plan.n_vertices
    got = np.array(sorted(p.vertices.mean(axis=0).tolist() for p in parts))
    want = np.array(sorted((plan.centers_ras_mm * RAS_TO_LPS).tolist()))
    np.testing.assert_allclose(got, want, atol=0.01)
    surface = trimesh.load(tmp_path / f"gtv.{fmt}", force="mesh")
    assert surface.volume == pytest.approx(gtv.array.sum() * 2.0, rel=0.05)


def test_real_gtv_mesh(shared_data):
    gtv = load_mask(shared_data / "STS_001" / "gtv.nii.gz")
    mesh = mask_mesh(gtv)
    volume_mm3 = gtv.array.sum() * abs(np.linalg.det(gtv.affine[:3, :3]))
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(volume_mm3, rel=0.05)
    assert np.linalg.norm(mesh.center_mass - mask_centroid_lps(gtv.array, gtv.affine)) < 1.0
