"""plan.json round trip: a plan written by the library and read back through its readers.

The plan is made from an analytic phantom (a tilted ellipsoid GTV and a spherical OAR on an
anisotropic oblique grid), written with ``write_plan_folder`` and read back with
``read_plan_document`` and ``load_plan_volumes`` (lattice/io/planfolder.py). Every field of the
document is compared with the plan it came from, and the per-vertex and summary numbers are
recomputed independently: coordinates from the affine, depths and OAR distances with the TPS
checker (tests/tps_checker.py), neighbour distances by brute force, volumes by counting voxels.
The document must also validate against lattice/io/plan.schema.json, with jsonschema directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import jsonschema
import numpy as np
import pytest
from conftest import REPO_ROOT, rotation_about_axis
from scipy.spatial.distance import cdist, pdist
from tps_checker import Solid

from lattice.errors import InputFileError
from lattice.io.plan_writer import write_plan_folder
from lattice.io.planfolder import load_plan_volumes, read_plan_document, validate_plan_document
from lattice.planning.placement import plan_vertices
from lattice.planning.rules import Oar
from lattice.volume import Volume

SHAPE = (50, 44, 26)
D_MM, SPACING_MM, MARGIN_MM, CLEARANCE_MM = 10.0, 16.0, 3.0, 4.0
#: plan.json rounds derived distances to 1 µm = 0.001 mm (Plan.to_dict): half of that, plus
#: float noise. Centres in RAS keep full precision.
ROUNDED_MM = 5e-4 + 1e-9


def ijk_of(affine, ras):
    """Fractional voxel indices of world points, by solving the affine."""
    return np.linalg.solve(affine[:3, :3], (ras - affine[:3, 3]).T).T


@pytest.fixture(scope="module")
def written(make_affine, ellipsoid_mask, write_nifti, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan_json")
    affine = make_affine(SHAPE, (1.1, 0.9, 2.5), "oblique")
    centre = affine[:3, :3] @ ((np.array(SHAPE) - 1) / 2) + affine[:3, 3]
    grid = (SHAPE, affine)
    gtv = ellipsoid_mask(
        grid, centre, (20.0, 16.0, 24.0), rotation=rotation_about_axis([1.0, 0.0, 1.0], 25.0)
    )
    cord = ellipsoid_mask(grid, centre + [23.0, 2.0, 0.0], 4.0)
    ct = np.where(gtv, 40, 0).astype(np.int16)
    paths = {
        "ct": write_nifti(folder, "ct.nii.gz", ct, affine),
        "gtv": write_nifti(folder, "gtv.nii.gz", gtv, affine),
        "cord": write_nifti(folder, "cord.nii.gz", cord, affine),
    }

    def record(path):
        return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    inputs = {
        "ct": record(paths["ct"]),
        "gtv": {**record(paths["gtv"]), "label": None},
        "oars": [{"name": "cord", **record(paths["cord"]), "clearance_mm": CLEARANCE_MM}],
    }
    plan = plan_vertices(
        Volume(gtv, affine),
        diameter_mm=D_MM,
        min_spacing_mm=SPACING_MM,
        gtv_margin_mm=MARGIN_MM,
        oars=[Oar("cord", Volume(cord, affine), CLEARANCE_MM)],
    )
    assert plan.n_vertices >= 4
    out = folder / "out"
    write_plan_folder(plan, out, inputs=inputs, picture=False, mesh_format=None, markups=False)
    return {
        "plan": plan,
        "inputs": inputs,
        "out": out,
        "affine": affine,
        "gtv": gtv,
        "cord": cord,
        "doc": read_plan_document(out),
    }


def test_the_document_read_back_is_the_document_written(written):
    want = json.loads(json.dumps(written["plan"].to_dict(inputs=written["inputs"])))
    got = written["doc"]
    assert set(got) == set(want)
    for key in want:
        assert got[key] == want[key], key


def test_the_file_itself_reads_as_the_folder(written):
    assert read_plan_document(written["out"] / "plan.json") == written["doc"]


def test_grid_and_parameters_are_the_plans(written):
    doc, plan, affine = written["doc"], written["plan"], written["affine"]
    assert doc["grid"]["shape"] == list(SHAPE)
    np.testing.assert_array_equal(np.array(doc["grid"]["affine"]), affine)
    np.testing.assert_allclose(
        doc["grid"]["voxel_size_mm"], np.linalg.norm(affine[:3, :3], axis=0), rtol=1e-12
    )
    params = doc["parameters"]
    for f in dataclasses.fields(plan.parameters):
        assert params[f.name] == getattr(plan.parameters, f.name), f.name
    assert params["radius_mm"] == D_MM / 2
    assert params["oar_clearance_mm"] == {"cord": CLEARANCE_MM}
    assert doc["inputs"] == written["inputs"]


def test_vertex_centres_round_trip_exactly_in_three_frames(written):
    doc, plan, affine = written["doc"], written["plan"], written["affine"]
    vertices = doc["vertices"]
    ras = np.array([v["center_ras_mm"] for v in vertices])
    np.testing.assert_array_equal(ras, plan.centers_ras_mm)  # full precision, bit for bit
    assert pdist(ras).min() >= SPACING_MM  # so the spacing rule holds on the file's numbers
    lps = np.array([v["center_lps_mm"] for v in vertices])
    np.testing.assert_allclose(lps, ras * [-1.0, -1.0, 1.0], atol=ROUNDED_MM)
    ijk = np.array([v["center_ijk"] for v in vertices])
    np.testing.assert_allclose(ijk, ijk_of(affine, ras), atol=1e-6)
    assert [v["id"] for v in vertices] == list(range(1, len(vertices) + 1))
    assert len({v["name"] for v in vertices}) == len(vertices)


def test_vertex_measures_are_the_independent_ones(written):
    doc, affine = written["doc"], written["affine"]
    vertices = doc["vertices"]
    ras = np.array([v["center_ras_mm"] for v in vertices])
    depth = Solid.from_mask(written["gtv"], affine).depth(ras)
    np.testing.assert_allclose([v["depth_mm"] for v in vertices], depth, atol=ROUNDED_MM)
    assert np.all(depth >= MARGIN_MM + D_MM / 2 - 1e-9)
    cord = Solid.from_mask(written["cord"], affine).distance(ras)
    np.testing.assert_allclose(
        [v["oar_distance_mm"]["cord"] for v in vertices], cord, atol=ROUNDED_MM
    )
    assert np.all(cord >= CLEARANCE_MM + D_MM / 2 - 1e-9)
    d = cdist(ras, ras)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(
        [v["nearest_vertex_mm"] for v in vertices], d.min(axis=1), atol=ROUNDED_MM
    )
    # A TPS rebuilds each sphere from its circles on the slice planes it cuts, each extruded
    # one slice gap: sum over slices of area(r_k) dz, r_k^2 = R^2 - h_k^2, h_k the centre's
    # distance to the plane of slice k; rtstruct.dcm writes each circle as an inscribed
    # 64-gon, of area 32 r^2 sin(2 pi / 64).
    dz = np.linalg.norm(affine[:3, 2])
    k_centre = ijk_of(affine, ras)[:, 2]
    radius = D_MM / 2
    want_cc = []
    for kc in k_centre:
        h = (np.arange(-10, SHAPE[2] + 10) - kc) * dz
        cut = np.abs(h) < radius
        area = 32 * np.sin(2 * np.pi / 64) * (radius**2 - h[cut] ** 2)
        want_cc.append(np.sum(area) * dz / 1000)
    np.testing.assert_allclose([v["tps_volume_cc"] for v in vertices], want_cc, atol=1e-4)


def test_summary_numbers_are_the_independent_ones(written):
    doc, gtv, affine = written["doc"], written["gtv"], written["affine"]
    s = doc["summary"]
    ras = np.array([v["center_ras_mm"] for v in doc["vertices"]])
    voxel_cc = abs(np.linalg.det(affine[:3, :3])) / 1000
    gtv_cc = np.count_nonzero(gtv) * voxel_cc
    assert s["n_vertices"] == len(ras)
    assert s["gtv_cc"] == pytest.approx(gtv_cc, abs=1e-3)
    assert s["lattice_target_cc"] == pytest.approx(
        np.count_nonzero(written["plan"].lattice_target.array) * voxel_cc, abs=1e-3
    )
    assert s["vertex_volume_cc"] == pytest.approx(len(ras) * np.pi / 6 * D_MM**3 / 1000, abs=1e-3)
    assert s["vertices_per_100cc_gtv"] == pytest.approx(100 * len(ras) / gtv_cc, abs=1e-3)
    assert s["nearest_vertex_min_mm"] == pytest.approx(pdist(ras).min(), abs=ROUNDED_MM)
    depths = [v["depth_mm"] for v in doc["vertices"]]
    assert (s["depth_min_mm"], s["depth_max_mm"]) == (min(depths), max(depths))


def test_the_document_validates_against_the_schema_file(written):
    schema = json.loads((REPO_ROOT / "lattice" / "io" / "plan.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(written["doc"])
    assert validate_plan_document(written["doc"], "plan.json") is written["doc"]


@pytest.mark.parametrize("key", ["grid", "parameters", "vertices"])
def test_a_document_without_a_required_part_is_refused(written, key):
    doc = {k: v for k, v in written["doc"].items() if k != key}
    with pytest.raises(InputFileError, match=f"'{key}'"):
        validate_plan_document(doc, "plan.json")


def test_a_vertex_without_its_centre_is_refused(written):
    doc = json.loads(json.dumps(written["doc"]))
    del doc["vertices"][1]["center_ras_mm"]
    with pytest.raises(InputFileError, match=r"\$\.vertices\[1\]"):
        validate_plan_document(doc, "plan.json")


def test_the_volumes_read_back_are_the_plans(written):
    vols = load_plan_volumes(written["out"])
    plan, affine = written["plan"], written["affine"]
    np.testing.assert_array_equal(vols.centers_ras_mm, plan.centers_ras_mm)
    assert vols.diameter_mm == D_MM
    for volume, array in [
        (vols.gtv, written["gtv"]),
        (vols.lattice_target, plan.lattice_target.array),
        (vols.oars["cord"], written["cord"]),
    ]:
        np.testing.assert_allclose(volume.affine, affine, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(volume.array, bool), array)
    assert set(vols.oars) == {"cord"}
    assert vols.stv is None
    assert vols.ct.shape == SHAPE
