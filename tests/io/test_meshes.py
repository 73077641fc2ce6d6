"""Meshes: sphere volumes and centres, GTV surface volume, centroid and orientation in LPS.

Expected values come from the masks and affines with numpy (voxel counts, voxel-centre
centroids mapped to world space here, RAS -> LPS negated here) and from the analytic sphere
volume, never from lattice itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from lattice.errors import OutputWriteError, ParameterError
from lattice.io.meshes import MESH_FORMATS, mask_mesh, vertex_spheres_mesh, write_meshes
from lattice.io.nifti import load_mask
from lattice.planning.placement import plan_vertices
from lattice.volume import Volume

RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])
#: An analytic ellipsoid's semi-axes (world x, y, z, mm) and its centre, off the grid centre
#: so that the bounding box sits asymmetrically in the array.
SEMI_AXES_MM = np.array([16.0, 12.0, 20.0])
CENTER_RAS_MM = np.array([-9.0, 23.0, 44.0])
VOXEL_SIZE_MM = (0.9, 1.2, 2.0)
#: Marching cubes on a 0/1 mask cuts the corners of the voxel staircase: the enclosed volume
#: is a little below the voxel count (-0.4 % on the ellipsoid, -0.07 % on STS_001).
VOLUME_REL_TOL = 0.05
#: The surface and the voxel centres have the same centroid up to the corner cutting (1e-3 mm
#: on STS_001); an index offset of one voxel would move it by at least 0.9 mm.
CENTROID_TOL_MM = 0.1

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BUNDLED = Path(__file__).resolve().parents[2] / "sample_data" / "STS_001" / "gtv.nii.gz"


def voxel_volume_mm3(affine: np.ndarray) -> float:
    return float(abs(np.linalg.det(affine[:3, :3])))


def mask_centroid_lps_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Mean world position of the voxel centres, LPS mm, from the affine directly."""
    ijk = np.argwhere(mask).astype(float)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).mean(axis=0) * RAS_TO_LPS


@pytest.fixture(scope="module")
def ellipsoid_on(make_volume, ellipsoid_mask):
    """``ellipsoid_on(kind)`` -> (mask array, affine) of the analytic ellipsoid."""

    def _make(kind):
        vol = make_volume((50, 44, 32), VOXEL_SIZE_MM, kind)
        return ellipsoid_mask(vol, CENTER_RAS_MM, SEMI_AXES_MM), vol.affine

    return _make


def test_spheres_are_closed_with_the_analytic_volume_around_their_centres():
    centers = np.array([[10.0, -20.0, 300.0], [40.0, -20.0, 300.0], [25.0, 5.0, 280.0]])
    mesh = vertex_spheres_mesh(centers, 15.0)
    parts = mesh.split(only_watertight=False)
    assert len(parts) == 3
    exact_mm3 = 4 / 3 * np.pi * 7.5**3
    for part in parts:
        assert part.is_watertight
        assert part.volume == pytest.approx(exact_mm3, rel=0.005)  # outward: positive
        centre = part.vertices.mean(axis=0)
        assert np.linalg.norm(centers - centre, axis=1).min() < 0.01
        radii = np.linalg.norm(part.vertices - centre, axis=1)
        assert np.all(np.abs(radii / 7.5 - 1) < 0.005)
    got = np.array(sorted(p.vertices.mean(axis=0).tolist() for p in parts))
    np.testing.assert_allclose(got, sorted(centers.tolist()), atol=0.01)


def test_no_centres_give_an_empty_mesh_and_bad_input_is_refused():
    assert vertex_spheres_mesh(np.zeros((0, 3)), 15.0).is_empty
    with pytest.raises(ParameterError):
        vertex_spheres_mesh(np.zeros((2, 2)), 15.0)
    with pytest.raises(ParameterError):
        vertex_spheres_mesh(np.zeros((1, 3)), 0.0)


@pytest.mark.parametrize("kind", ["identity-like", "lps", "oblique"])
def test_gtv_mesh_matches_the_mask_in_lps(kind, ellipsoid_on):
    mask, affine = ellipsoid_on(kind)
    mesh = mask_mesh(Volume(mask, affine))
    assert mesh.is_watertight
    assert mesh.volume > 0
    assert mesh.volume == pytest.approx(mask.sum() * voxel_volume_mm3(affine), rel=VOLUME_REL_TOL)
    assert np.linalg.norm(mesh.center_mass - mask_centroid_lps_mm(mask, affine)) < CENTROID_TOL_MM
    # The surface reaches the semi-axes on both sides of the centre, in LPS. The surface lies
    # between the last voxel centre inside and the first outside: within half a voxel
    # diagonal of the true boundary.
    center_lps = CENTER_RAS_MM * RAS_TO_LPS
    tol_mm = 0.5 * np.linalg.norm(VOXEL_SIZE_MM)
    np.testing.assert_allclose(mesh.bounds[1] - center_lps, SEMI_AXES_MM, atol=tol_mm)
    np.testing.assert_allclose(center_lps - mesh.bounds[0], SEMI_AXES_MM, atol=tol_mm)


@pytest.mark.parametrize("kind", ["identity-like", "lps", "oblique"])
def test_gtv_mesh_normals_point_outward(kind, ellipsoid_on):
    mask, affine = ellipsoid_on(kind)
    mesh = mask_mesh(Volume(mask, affine))
    for axis in range(3):
        for sign in (1.0, -1.0):
            direction = np.eye(3)[axis] * sign
            far_vertex = np.argmax(mesh.vertices @ direction)
            assert mesh.vertex_normals[far_vertex] @ direction > 0.5
            far_face = np.argmax(mesh.triangles_center @ direction)
            assert mesh.face_normals[far_face] @ direction > 0.5


def _mirror_i(mask, affine):
    out = affine.copy()
    out[:3, 0] *= -1
    out[:3, 3] = affine[:3, 3] + affine[:3, 0] * (mask.shape[0] - 1)
    return mask[::-1], out


def _swap_ij(mask, affine):
    out = affine.copy()
    out[:, [0, 1]] = affine[:, [1, 0]]
    return mask.transpose(1, 0, 2), out


@pytest.mark.parametrize("restore", [_mirror_i, _swap_ij], ids=["mirrored", "swapped"])
def test_gtv_mesh_is_the_same_object_on_a_left_handed_grid(restore, ellipsoid_on):
    # The same voxels stored mirrored or with two axes swapped, with the matching affine
    # (negative determinant): the same surface in the world, still facing outward.
    mask, affine = ellipsoid_on("oblique")
    a = mask_mesh(Volume(mask, affine))
    other_mask, other_affine = restore(mask, affine)
    assert np.linalg.det(other_affine[:3, :3]) < 0
    b = mask_mesh(Volume(other_mask, other_affine))
    assert b.is_watertight and b.volume > 0
    assert b.volume == pytest.approx(a.volume, rel=1e-9)
    np.testing.assert_allclose(b.center_mass, a.center_mass, atol=1e-6)


def test_mask_touching_the_array_border_gives_a_closed_surface(make_volume):
    vol = make_volume((6, 5, 4), (1.0, 1.5, 2.5), "lps")
    mask = np.zeros(vol.shape, dtype=bool)
    mask[:, 1:, :3] = True  # touches both i borders, the high j border, the low k border
    mesh = mask_mesh(Volume(mask, vol.affine))
    assert mesh.is_watertight and mesh.volume > 0
    # The faces of the box sit half a voxel beyond the outer voxel centres, on the array's
    # outer faces where the mask touches them.
    corners_ijk = np.array(
        [[i, j, k] for i in (-0.5, 5.5) for j in (0.5, 4.5) for k in (-0.5, 2.5)]
    )
    corners_lps = (corners_ijk @ vol.affine[:3, :3].T + vol.affine[:3, 3]) * RAS_TO_LPS
    np.testing.assert_allclose(mesh.bounds, [corners_lps.min(0), corners_lps.max(0)], atol=1e-9)
    assert (
        np.linalg.norm(mesh.center_mass - mask_centroid_lps_mm(mask, vol.affine)) < CENTROID_TOL_MM
    )


@pytest.fixture(scope="module")
def plan(make_volume, ellipsoid_mask):
    vol = make_volume((44, 40, 24), (1.0, 1.0, 2.0), "lps")
    gtv = Volume(ellipsoid_mask(vol, (-12.0, 25.0, 40.0), (18.0, 16.0, 20.0)), vol.affine)
    plan = plan_vertices(gtv, diameter_mm=8, min_spacing_mm=14, gtv_margin_mm=2)
    assert plan.n_vertices >= 3
    return plan


@pytest.mark.parametrize("fmt", MESH_FORMATS)
def test_written_meshes_load_back_unchanged(fmt, plan, tmp_path):
    names = write_meshes(plan, tmp_path, fmt=fmt)
    assert names == [f"vertices.{fmt}", f"gtv.{fmt}"]
    spheres = trimesh.load(tmp_path / f"vertices.{fmt}", force="mesh")
    parts = spheres.split(only_watertight=False)
    assert len(parts) == plan.n_vertices
    got = np.array(sorted(p.vertices.mean(axis=0).tolist() for p in parts))
    want = np.array(sorted((plan.centers_ras_mm * RAS_TO_LPS).tolist()))
    np.testing.assert_allclose(got, want, atol=0.01)
    exact_mm3 = np.pi / 6 * plan.parameters.diameter_mm**3
    for part in parts:
        assert part.is_watertight
        assert part.volume == pytest.approx(exact_mm3, rel=0.005)
    surface = trimesh.load(tmp_path / f"gtv.{fmt}", force="mesh")
    assert surface.is_watertight
    # STL and PLY hold float32 coordinates: ~1e-7 relative.
    assert surface.volume == pytest.approx(mask_mesh(plan.gtv).volume, rel=1e-5)
    assert surface.volume == pytest.approx(
        plan.gtv.array.sum() * voxel_volume_mm3(plan.gtv.affine), rel=VOLUME_REL_TOL
    )


def test_plan_without_vertices_writes_only_the_gtv(make_volume, ellipsoid_mask, tmp_path):
    vol = make_volume((20, 20, 12), (1.0, 1.0, 2.0), "identity-like")
    gtv = Volume(ellipsoid_mask(vol, (-12.0, 25.0, 40.0), 6.0), vol.affine)
    empty = plan_vertices(gtv, diameter_mm=20, min_spacing_mm=30, gtv_margin_mm=2)
    assert empty.n_vertices == 0
    assert write_meshes(empty, tmp_path, fmt="ply") == ["gtv.ply"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gtv.ply"]


def test_bad_format_and_unwritable_folder_are_reported(plan, tmp_path):
    with pytest.raises(ParameterError, match="stl, ply, obj"):
        write_meshes(plan, tmp_path, fmt="vtk")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(OutputWriteError, match="cannot write"):
        write_meshes(plan, not_a_folder, fmt="stl")


def test_real_gtv_mesh_matches_its_mask():
    path = SHARED / "STS_001" / "gtv.nii.gz"
    if not path.exists():
        path = BUNDLED  # the bundled copy keeps this check alive in a user's clone
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/data is only beside the project checkout)")
    gtv = load_mask(path)
    mesh = mask_mesh(gtv)
    assert mesh.is_watertight and mesh.volume > 0
    assert mesh.volume == pytest.approx(
        gtv.array.sum() * voxel_volume_mm3(gtv.affine), rel=VOLUME_REL_TOL
    )
    assert (
        np.linalg.norm(mesh.center_mass - mask_centroid_lps_mm(gtv.array, gtv.affine))
        < CENTROID_TOL_MM
    )
