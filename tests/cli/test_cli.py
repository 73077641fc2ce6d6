"""End-to-end tests of ``lattice plan``: in-process through ``main([...])``, once as a real
subprocess.

The case is a synthetic CT (80 x 80 x 40 voxels of 1 x 1 x 2.5 mm, stored LPS-style like a
DICOM-derived NIfTI) with a 60 mm diameter sphere as the GTV. Outputs are checked against
independent computations with nibabel + numpy (world coordinates of voxel centres from the
affine, KD-trees over background voxels), never against lattice's own functions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_helpers import run_redirected as run
from oracles import mask_distance, oracle_depth
from scipy.spatial.distance import pdist

from lattice_cli.main import main

SHAPE = (80, 80, 40)
VOXEL_MM = (1.0, 1.0, 2.5)
#: GTV sphere: centre (RAS+ mm, slightly off the grid) and radius.
GTV_CENTER_RAS_MM = np.array([-11.7, 24.6, 40.7])
GTV_RADIUS_MM = 30.0
D_MM, SPACING_MM, MARGIN_MM = 15.0, 30.0, 5.0
#: What a NIfTI plan run without --no-picture writes by default.
PLAN_FILES = (
    "plan.json",
    "vertices.nii.gz",
    "vertices.csv",
    "lattice_target.nii.gz",
    "rtstruct.dcm",
    "ct_dicom",
    "vertices.stl",
    "gtv.stl",
    "vertices.mrk.json",
    "objectives.json",
    "objectives.csv",
    "report.html",
)


def world(shape, affine):
    """(I, J, K, 3) RAS+ mm of every voxel centre, from the affine alone."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


@pytest.fixture(scope="module")
def case(tmp_path_factory, make_affine, ellipsoid_mask, write_nifti):
    """Input files of the synthetic case and a few broken variants, in one read-only folder."""
    folder = tmp_path_factory.mktemp("case")
    affine = make_affine(SHAPE, VOXEL_MM, "lps")
    grid = (SHAPE, affine)
    gtv = ellipsoid_mask(grid, GTV_CENTER_RAS_MM, GTV_RADIUS_MM)
    body = ellipsoid_mask(grid, GTV_CENTER_RAS_MM, (38.0, 38.0, 200.0))
    ct = np.where(gtv, 40, np.where(body, 0, -1000)).astype(np.int16)

    small = ellipsoid_mask(grid, GTV_CENTER_RAS_MM, 10.0)  # 20 mm: no room for D 15 + 5
    labels = np.where(gtv, 1, 0).astype(np.uint8)
    labels[:5, :5, :3] = 3
    # An OAR: a slab of tissue just beside the sphere, along +x (RAS).
    x = world(SHAPE, affine)[..., 0] - GTV_CENTER_RAS_MM[0]
    oar = (x > GTV_RADIUS_MM + 2.0) & (x < GTV_RADIUS_MM + 12.0)
    shifted = affine.copy()
    shifted[:3, 3] += [2.0, 0.0, 0.0]
    sheared = affine.copy()
    sheared[:3, 2] += 0.3 * sheared[:3, 0]

    files = {
        "affine": affine,
        "gtv_array": gtv,
        "ct": write_nifti(folder, "ct.nii.gz", ct, affine),
        "gtv": write_nifti(folder, "gtv.nii.gz", gtv, affine),
        "gtv_small": write_nifti(folder, "gtv_small.nii.gz", small, affine),
        "gtv_empty": write_nifti(folder, "gtv_empty.nii.gz", np.zeros(SHAPE, np.uint8), affine),
        "gtv_labels": write_nifti(folder, "gtv_labels.nii.gz", labels, affine),
        "gtv_shifted": write_nifti(folder, "gtv_shifted.nii.gz", gtv, shifted),
        "gtv_other_shape": write_nifti(folder, "gtv_other_shape.nii.gz", gtv[:, :, :-1], affine),
        "oar": write_nifti(folder, "oar.nii.gz", oar, affine),
        "oar_shifted": write_nifti(folder, "oar_shifted.nii.gz", oar, shifted),
        "ct_sheared": write_nifti(folder, "ct_sheared.nii.gz", ct, sheared),
        "gtv_sheared": write_nifti(folder, "gtv_sheared.nii.gz", gtv, sheared),
        "not_nifti": folder / "notes.nii.gz",
        "missing": folder / "missing_ct.nii.gz",
    }
    files["not_nifti"].write_text("patient notes, not an image\n")
    return files


def plan_args(case, out, *extra, gtv=None, ct=None):
    return [
        "plan",
        "--ct",
        ct or case["ct"],
        "--gtv",
        gtv or case["gtv"],
        "--out",
        out,
        "--diameter-mm",
        D_MM,
        "--spacing-mm",
        SPACING_MM,
        "--gtv-margin-mm",
        MARGIN_MM,
        "--no-picture",
        *extra,
    ]


@pytest.fixture(scope="module")
def planned(case, tmp_path_factory):
    """One successful plan of the sphere case: (out folder, exit code, stdout, stderr)."""
    out = tmp_path_factory.mktemp("planned") / "out"
    code, stdout, stderr = run(plan_args(case, out))
    return out, code, stdout, stderr


@pytest.fixture(scope="module")
def plan_json(planned):
    return json.loads((planned[0] / "plan.json").read_text())


# -- a successful plan -----------------------------------------------------------------------


def test_plan_succeeds_and_writes_the_plan_folder(planned):
    out, code, stdout, stderr = planned
    assert code == 0, stderr
    assert stderr == ""
    assert sorted(p.name for p in out.iterdir()) == sorted(PLAN_FILES)
    assert "vertices" in stdout and str(out) in stdout
    # No staging folder left beside the output.
    assert [p.name for p in out.parent.iterdir()] == ["out"]


def test_plan_json_has_every_documented_key(plan_json):
    for key in ("lattice_version", "inputs", "parameters", "vertices", "summary", "search"):
        assert key in plan_json, key
    for name in ("ct", "gtv"):
        assert {"path", "sha256"} <= set(plan_json["inputs"][name])
    summary = plan_json["summary"]
    for key in ("n_vertices", "gtv_cc", "lattice_target_cc", "vertex_volume_cc"):
        assert key in summary, key
    assert summary["n_vertices"] == len(plan_json["vertices"]) >= 1
    for v in plan_json["vertices"]:
        for key in (
            "id",
            "center_ras_mm",
            "center_lps_mm",
            "center_ijk",
            "depth_mm",
            "nearest_vertex_mm",
            "oar_distance_mm",
        ):
            assert key in v, key
    assert [v["id"] for v in plan_json["vertices"]] == list(range(1, summary["n_vertices"] + 1))
    params = plan_json["parameters"]
    assert params["diameter_mm"] == D_MM
    assert params["min_spacing_mm"] == SPACING_MM
    assert params["gtv_margin_mm"] == MARGIN_MM


def test_plan_json_is_strict_json(planned):
    def refuse(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    json.loads((planned[0] / "plan.json").read_text(), parse_constant=refuse)


def test_inputs_record_resolved_paths_and_hashes(plan_json, case):
    for name in ("ct", "gtv"):
        entry = plan_json["inputs"][name]
        assert Path(entry["path"]) == Path(case[name]).resolve()
        assert entry["sha256"] == hashlib.sha256(Path(case[name]).read_bytes()).hexdigest()


def test_summary_volumes_match_independent_counts(plan_json, planned, case):
    voxel_cc = np.prod(VOXEL_MM) / 1000
    s = plan_json["summary"]
    assert s["gtv_cc"] == pytest.approx(case["gtv_array"].sum() * voxel_cc, abs=1e-3)
    target = np.asanyarray(nib.load(planned[0] / "lattice_target.nii.gz").dataobj)
    assert s["lattice_target_cc"] == pytest.approx(target.astype(bool).sum() * voxel_cc, abs=1e-3)
    sphere_cc = np.pi / 6 * D_MM**3 / 1000
    assert s["vertex_volume_cc"] == pytest.approx(s["n_vertices"] * sphere_cc, abs=1e-3)


def test_vertex_coordinates_agree_in_all_three_frames(plan_json, case):
    affine = nib.load(case["ct"]).affine
    for v in plan_json["vertices"]:
        ras = np.array(v["center_ras_mm"])
        np.testing.assert_allclose(v["center_lps_mm"], ras * [-1, -1, 1], atol=1e-9)
        ijk = np.array(v["center_ijk"])
        np.testing.assert_allclose(affine[:3, :3] @ ijk + affine[:3, 3], ras, atol=1e-4)


def test_vertices_obey_the_rules(plan_json, case):
    centres = np.array([v["center_ras_mm"] for v in plan_json["vertices"]])
    n = len(centres)
    # Analytic: centres lie within R - margin - D/2 of the sphere centre (half a voxel
    # diagonal of slack for the voxelised surface), and at most 3 points pairwise >= 30 mm
    # apart fit in a ball of radius 17.5 mm (a tetrahedron of edge 30 needs 18.4 mm).
    room = GTV_RADIUS_MM - MARGIN_MM - D_MM / 2
    r = np.linalg.norm(centres - GTV_CENTER_RAS_MM, axis=1)
    assert np.all(r <= room + 0.5 * np.linalg.norm(VOXEL_MM))
    assert 1 <= n <= 3
    if n > 1:
        assert pdist(centres).min() >= SPACING_MM - 1e-9


def test_depth_and_nearest_vertex_match_independent_computation(plan_json, case):
    centres = np.array([v["center_ras_mm"] for v in plan_json["vertices"]])
    # Depth below the TPS surface (tests/tps_checker.py, no lattice code).
    depth = oracle_depth(case["gtv_array"], case["affine"], centres)
    reported = np.array([v["depth_mm"] for v in plan_json["vertices"]])
    np.testing.assert_allclose(reported, depth, atol=1.5e-3)  # JSON rounds to 1 um
    assert np.all(reported >= MARGIN_MM + D_MM / 2 - 1e-3)
    if len(centres) > 1:
        d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        np.testing.assert_allclose(
            [v["nearest_vertex_mm"] for v in plan_json["vertices"]], d.min(axis=1), atol=1.5e-3
        )
    else:
        assert plan_json["vertices"][0]["nearest_vertex_mm"] is None


def test_output_volumes_are_on_the_ct_grid_with_both_forms(planned, case):
    ct_affine = nib.load(case["ct"]).affine
    for name in ("vertices.nii.gz", "lattice_target.nii.gz"):
        img = nib.load(planned[0] / name)
        assert img.shape == SHAPE
        assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
        np.testing.assert_allclose(img.get_sform(), ct_affine, atol=1e-4)
        np.testing.assert_allclose(img.get_qform(), ct_affine, atol=1e-4)


def test_vertex_label_i_is_the_ball_of_radius_half_d_around_vertex_i(planned, plan_json):
    img = nib.load(planned[0] / "vertices.nii.gz")
    labels = np.asanyarray(img.dataobj)
    pts = world(labels.shape, img.affine)
    n = len(plan_json["vertices"])
    assert set(np.unique(labels).tolist()) == set(range(n + 1))
    for v in plan_json["vertices"]:
        d = np.linalg.norm(pts - np.array(v["center_ras_mm"]), axis=-1)
        mine = labels == v["id"]
        # Exact ties on the sphere surface may go either way: allow 1 um.
        assert mine[d < D_MM / 2 - 1e-3].all()
        assert not mine[d > D_MM / 2 + 1e-3].any()
        # A 15 mm sphere holds ~1767 mm^3 = ~707 voxels of 2.5 mm^3.
        assert mine.sum() * np.prod(VOXEL_MM) == pytest.approx(np.pi / 6 * D_MM**3, rel=0.06)


def test_lattice_target_is_the_gtv_eroded_by_the_margin(planned, case):
    target = np.asanyarray(nib.load(planned[0] / "lattice_target.nii.gz").dataobj).astype(bool)
    gtv = case["gtv_array"]
    assert not (target & ~gtv).any()
    r = np.linalg.norm(world(SHAPE, case["affine"]) - GTV_CENTER_RAS_MM, axis=-1)
    inner = GTV_RADIUS_MM - MARGIN_MM
    # Analytic: the voxelised sphere's TPS surface lies within a voxel diagonal of the sphere.
    assert target[r < inner - np.linalg.norm(VOXEL_MM)].all()
    assert not target[r >= inner + np.linalg.norm(VOXEL_MM)].any()
    # Exact: the target is the GTV's voxel centres deeper than the margin (independent
    # checker), wherever the depth is not within 1 um of the margin.
    ijk = np.argwhere(gtv)
    pts = ijk @ case["affine"][:3, :3].T + case["affine"][:3, 3]
    depth = oracle_depth(gtv, case["affine"], pts)
    clear = np.abs(depth - MARGIN_MM) > 1e-6
    assert np.array_equal(target[tuple(ijk[clear].T)], depth[clear] > MARGIN_MM)


# -- more successful variants ----------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        ["--pattern", "sc"],
        ["--pattern", "bcc"],
        ["--pattern", "fcc"],
        ["--snap-to-slices"],
        ["--max-vertices", "1"],
        ["--orientations", "3d", "--rotation-step-deg", "30"],
    ],
    ids=lambda e: " ".join(e),
)
def test_plan_options_give_valid_plans(case, tmp_path, extra):
    out = tmp_path / "out"
    code, _, stderr = run(plan_args(case, out, *extra))
    assert code == 0, stderr
    doc = json.loads((out / "plan.json").read_text())
    centres = np.array([v["center_ras_mm"] for v in doc["vertices"]]).reshape(-1, 3)
    assert len(centres) >= 1
    if len(centres) > 1:
        assert pdist(centres).min() >= SPACING_MM - 1e-9
    if "--max-vertices" in extra:
        assert len(centres) == 1
    if "--snap-to-slices" in extra:
        ijk = np.array([v["center_ijk"] for v in doc["vertices"]])
        np.testing.assert_allclose(ijk[:, 2], np.round(ijk[:, 2]), atol=1e-6)
    if "--pattern" in extra:
        assert doc["parameters"]["pattern"] == extra[1]


def test_oar_clearance_is_recorded_and_respected(case, tmp_path):
    out = tmp_path / "out"
    code, _, stderr = run(plan_args(case, out, "--oar", f"cord={case['oar']}:10"))
    assert code == 0, stderr
    doc = json.loads((out / "plan.json").read_text())
    assert doc["parameters"]["oar_clearance_mm"] == {"cord": 10.0}
    assert doc["inputs"]["oars"][0]["name"] == "cord"
    oar = np.asanyarray(nib.load(case["oar"]).dataobj).astype(bool)
    centres = np.array([v["center_ras_mm"] for v in doc["vertices"]])
    dist = mask_distance(oar, case["affine"], centres)  # to the OAR's TPS solid
    reported = np.array([v["oar_distance_mm"]["cord"] for v in doc["vertices"]])
    np.testing.assert_allclose(reported, dist, atol=1.5e-3)
    assert np.all(dist >= 10.0 + D_MM / 2 - 1e-6)


def test_label_map_gtv_with_its_label_plans(case, tmp_path):
    out = tmp_path / "out"
    code, _, stderr = run(plan_args(case, out, "--gtv-label", "1", gtv=case["gtv_labels"]))
    assert code == 0, stderr
    doc = json.loads((out / "plan.json").read_text())
    assert doc["inputs"]["gtv"]["label"] == 1
    assert doc["summary"]["n_vertices"] >= 1


def test_no_room_for_a_vertex_is_an_error_that_writes_nothing(case, tmp_path):
    out = tmp_path / "out"
    code, _, stderr = run(plan_args(case, out, gtv=case["gtv_small"]))
    assert code == 2
    assert len(stderr.splitlines()) == 1 and "--allow-empty" in stderr
    assert not out.exists()


def test_empty_plan_with_allow_empty_warns_and_writes_the_plan(case, tmp_path):
    out = tmp_path / "out"
    code, _, stderr = run(plan_args(case, out, "--allow-empty", gtv=case["gtv_small"]))
    assert code == 0
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lattice: warning:"), stderr
    doc = json.loads((out / "plan.json").read_text())
    assert doc["summary"]["n_vertices"] == 0
    assert doc["vertices"] == []
    assert doc["warnings"]
    labels = np.asanyarray(nib.load(out / "vertices.nii.gz").dataobj)
    assert not labels.any()


@pytest.mark.skipif(
    importlib.util.find_spec("lattice.render") is None, reason="lattice/render/ is not written yet"
)
def test_overview_picture_is_written_by_default(case, tmp_path):
    out = tmp_path / "out"
    argv = [a for a in plan_args(case, out) if a != "--no-picture"]
    code, _, stderr = run(argv)
    assert code == 0, stderr
    assert (out / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- bad input: exit code, one line, nothing written -----------------------------------------


def assert_failed_cleanly(code, stdout, stderr, expected_code, tmp_path, out):
    assert code == expected_code, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lattice: error:"), stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder either


@pytest.mark.parametrize(
    "inputs, extra, expected",
    [
        ({"ct": "missing"}, [], 3),
        ({"ct": "not_nifti"}, [], 3),
        ({"gtv": "not_nifti"}, [], 3),
        ({"gtv": "missing"}, [], 3),
        ({"gtv": "gtv_shifted"}, [], 5),
        ({"gtv": "gtv_other_shape"}, [], 5),
        ({"ct": "ct_sheared", "gtv": "gtv_sheared"}, [], 5),
        ({"gtv": "gtv_empty"}, [], 4),
        ({}, ["--diameter-mm", "0"], 2),
        ({}, ["--diameter-mm", "-5"], 2),
        ({}, ["--diameter-mm", "nan"], 2),
        ({}, ["--spacing-mm", "0"], 2),
        ({}, ["--spacing-mm", "10"], 2),  # spacing < diameter (15)
        ({}, ["--gtv-margin-mm", "-1"], 2),
        ({}, ["--rotation-step-deg", "0"], 2),
        ({}, ["--oar", "{oar}:-3"], 2),
        ({}, ["--oar", "a={oar}:10", "--oar", "a={oar}:5"], 2),
        ({}, ["--oar", "{missing}:10"], 3),
        ({}, ["--oar", "{oar_shifted}:10"], 5),
    ],
    ids=[
        "missing CT",
        "CT not NIfTI",
        "GTV not NIfTI",
        "missing GTV",
        "GTV shifted 2 mm",
        "GTV other shape",
        "sheared grid",
        "empty GTV",
        "diameter 0",
        "diameter -5",
        "diameter nan",
        "spacing 0",
        "spacing < diameter",
        "negative margin",
        "rotation step 0",
        "negative OAR clearance",
        "repeated OAR name",
        "missing OAR",
        "OAR on another grid",
    ],
)
def test_bad_input_exits_with_its_code_and_writes_nothing(case, tmp_path, inputs, extra, expected):
    out = tmp_path / "out"
    extra = [e.format(**{k: v for k, v in case.items() if isinstance(v, Path)}) for e in extra]
    argv = plan_args(
        case, out, *extra, ct=case[inputs.get("ct", "ct")], gtv=case[inputs.get("gtv", "gtv")]
    )
    code, stdout, stderr = run(argv)
    assert_failed_cleanly(code, stdout, stderr, expected, tmp_path, out)


def test_degenerate_affine_exits_5_with_one_line(case, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for name in ("ct", "gtv"):
        src = nib.load(case[name])
        hdr = src.header.copy()
        hdr.set_qform(None, code=0)
        hdr["srow_z"] = [0.0, 0.0, 0.0, -8.75]  # sform with a zero k column
        paths.append(folder / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(np.asanyarray(src.dataobj), None, hdr), paths[-1])
    assert not nib.load(paths[0]).affine[:3, 2].any()
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        # A user's interpreter prints warnings to stderr: each one is an extra stderr line.
        warnings.simplefilter("always")
        code, _, stderr = run(plan_args(case, out, ct=paths[0], gtv=paths[1]))
    assert code == 5, stderr
    assert not out.exists()
    assert [str(w.message) for w in caught] == []
    assert len(stderr.splitlines()) == 1, stderr
    assert "nan" not in stderr


def test_grid_mismatch_message_names_both_files(case, tmp_path):
    code, _, stderr = run(plan_args(case, tmp_path / "out", gtv=case["gtv_shifted"]))
    assert code == 5
    assert "ct.nii.gz" in stderr and "gtv_shifted.nii.gz" in stderr
    assert "2" in stderr  # the size of the shift


def test_label_map_without_label_lists_the_labels(case, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = run(plan_args(case, out, gtv=case["gtv_labels"]))
    assert_failed_cleanly(code, stdout, stderr, 4, tmp_path, out)
    assert "1, 3" in stderr and "--gtv-label" in stderr


@pytest.mark.parametrize("spec", ["{oar}", "{oar}:ten", ":10"])
def test_malformed_oar_spec_is_a_usage_error(case, tmp_path, spec):
    out = tmp_path / "out"
    code, _, stderr = run(plan_args(case, out, "--oar", spec.format(oar=case["oar"])))
    assert code == 2
    assert "--oar" in stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [["plan", "--pattern", "hexagonal"], ["plan", "--max-vertices", "1.5"], ["frobnicate"], []],
)
def test_usage_errors_exit_2(case, tmp_path, argv):
    if argv and argv[0] == "plan":
        argv = plan_args(case, tmp_path / "out", *argv[1:])
    code, _, stderr = run(argv)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "--help" in stderr
    assert list(tmp_path.iterdir()) == []


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("lattice ")


# -- existing and unwritable outputs ---------------------------------------------------------


def snapshot(folder):
    """Every file under ``folder`` (the ct_dicom/ series too): its bytes and mtime."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_existing_outputs_need_force(case, tmp_path):
    out = tmp_path / "out"
    assert run(plan_args(case, out))[0] == 0
    before = snapshot(out)

    code, _, stderr = run(plan_args(case, out, "--diameter-mm", "12"))
    assert code == 6
    assert len(stderr.splitlines()) == 1 and "--force" in stderr
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]

    code, _, stderr = run(plan_args(case, out, "--diameter-mm", "12", "--force"))
    assert code == 0, stderr
    doc = json.loads((out / "plan.json").read_text())
    assert doc["parameters"]["diameter_mm"] == 12.0
    assert sorted(p.name for p in out.iterdir()) == sorted(PLAN_FILES)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_existing_output_is_checked_before_reading_inputs(case, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "plan.json").write_text("{}")
    code, _, stderr = run(plan_args(case, out, ct=case["missing"]))
    assert code == 6
    assert (out / "plan.json").read_text() == "{}"


def test_unrelated_files_in_the_output_folder_are_kept(case, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run(plan_args(case, out))[0] == 0
    assert (out / "notes.txt").read_text() == "mine"


def test_output_path_that_is_a_file_exits_7(case, tmp_path):
    out = tmp_path / "out"
    out.write_text("a file, not a folder")
    code, _, stderr = run(plan_args(case, out))
    assert code == 7
    assert len(stderr.splitlines()) == 1
    assert out.read_text() == "a file, not a folder"


def test_unwritable_output_folder_exits_7(case, tmp_path, is_root):
    if is_root:
        pytest.skip("running as root: permissions do not stop writing")
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        code, _, stderr = run(plan_args(case, parent / "out"))
    finally:
        parent.chmod(0o700)
    assert code == 7
    assert len(stderr.splitlines()) == 1
    assert list(parent.iterdir()) == []


def test_output_folder_is_created_with_missing_parents(case, tmp_path):
    out = tmp_path / "a" / "b" / "out"
    code, _, stderr = run(plan_args(case, out))
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(PLAN_FILES)
    assert [p.name for p in out.parent.iterdir()] == ["out"]


# -- the installed command -------------------------------------------------------------------


def _commands():
    cmds = [pytest.param([sys.executable, "-m", "lattice_cli"], id="python -m lattice_cli")]
    script = Path(sys.executable).with_name("lattice")
    found = str(script) if script.exists() else shutil.which("lattice")
    if found:
        cmds.append(pytest.param([found], id="lattice console script"))
    return cmds


@pytest.mark.parametrize("command", _commands())
def test_real_command_plans_the_case(case, tmp_path, command):
    out = tmp_path / "out"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [*command, *map(str, plan_args(case, out))],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(PLAN_FILES)
    doc = json.loads((out / "plan.json").read_text())
    assert doc["summary"]["n_vertices"] >= 1

    bad = subprocess.run(
        [*command, *map(str, plan_args(case, tmp_path / "bad", gtv=case["gtv_empty"]))],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert bad.returncode == 4
    assert len(bad.stderr.splitlines()) == 1
    assert not (tmp_path / "bad").exists()


# -- protocols and counts ---------------------------------------------------------------------


def test_protocol_preset_sets_parameters_and_explicit_options_override(case, tmp_path):
    code, _, err = run(
        [
            "plan",
            "--ct",
            case["ct"],
            "--gtv",
            case["gtv"],
            "--out",
            tmp_path / "mayo",
            "--protocol",
            "mayo",
            "--oar",
            case["oar"],
            "--no-picture",
        ]
    )
    assert code == 0, err
    doc = json.loads((tmp_path / "mayo" / "plan.json").read_text())
    p = doc["parameters"]
    assert (p["diameter_mm"], p["min_spacing_mm"], p["gtv_margin_mm"]) == (15.0, 30.0, 5.0)
    assert p["protocol"] == "mayo" and "Deufel" in p["protocol_source"]
    assert doc["inputs"]["oars"][0]["clearance_mm"] == 10.0  # the protocol's OAR clearance

    code, _, err = run(
        [
            "plan",
            "--ct",
            case["ct"],
            "--gtv",
            case["gtv"],
            "--out",
            tmp_path / "washu",
            "--protocol",
            "washu",
            "--spacing-mm",
            "35",
            "--no-picture",
        ]
    )
    assert code == 0, err
    p = json.loads((tmp_path / "washu" / "plan.json").read_text())["parameters"]
    assert p["min_spacing_mm"] == 35.0  # explicit beats preset
    assert p["pattern"] == "fcc" and p["snap_to_slices"] is True  # preset beats default


def test_unreachable_min_vertices_fails_and_writes_nothing(case, tmp_path):
    out = tmp_path / "out"
    code, _, err = run(plan_args(case, out, "--min-vertices", "500"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "--min-vertices" in err
    assert not out.exists()
    code, _, err = run(plan_args(case, tmp_path / "ok", "--min-vertices", "1"))
    assert code == 0, err


def test_plan_records_its_independent_verification(case, tmp_path):
    code, _, err = run(plan_args(case, tmp_path / "out"))
    assert code == 0, err
    doc = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert doc["verification"]["ok"] is True
    rules = {c["rule"] for c in doc["verification"]["checks"]}
    assert {"gtv_margin", "spacing"} <= rules
    assert all(
        c["worst_slack_mm"] is None or c["worst_slack_mm"] >= 0
        for c in doc["verification"]["checks"]
    )


# -- review fixes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra", [["--diameter-mm", "abc"], ["--max-vertices", "0"], ["--count", "0"]]
)
def test_argument_type_errors_are_one_line(case, tmp_path, extra):
    code, _, err = run(plan_args(case, tmp_path / "out", *extra))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_snap_to_slices_with_tilted_lattices_is_refused(case, tmp_path):
    code, _, err = run(
        plan_args(case, tmp_path / "out", "--snap-to-slices", "--orientations", "3d")
    )
    assert code == 2 and "axial" in err and len(err.strip().splitlines()) == 1


def test_shell_width_without_shell_mode_is_refused(case, tmp_path):
    code, _, err = run(plan_args(case, tmp_path / "out", "--shell-width-mm", "3"))
    assert code == 2 and "--mode shell" in err


def test_debug_flag_works_after_the_command(case, tmp_path):
    with pytest.raises(Exception):  # noqa: B017 - --debug re-raises the LatticeError
        run(plan_args(case, tmp_path / "out", "--diameter-mm", "-1", "--debug"))


def test_truncated_ct_is_caught_without_the_picture(case, tmp_path):
    blob = Path(case["ct"]).read_bytes()
    bad = tmp_path / "ct_truncated.nii.gz"
    bad.write_bytes(blob[: len(blob) // 2])
    code, _, err = run(plan_args(case, tmp_path / "out", ct=bad))
    assert code == 3 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_oar_label_map_error_names_the_oar_option(case, tmp_path):
    code, _, err = run(plan_args(case, tmp_path / "out", "--oar", f"{case['gtv_labels']}:10"))
    assert code == 4 and "--oar" in err and "--gtv-label" not in err


def test_plan_records_lesion_measurements(planned):
    """The GTV is a 60 mm sphere: both axial axes and the 3-D diameter are 60 mm (within a
    voxel), and the default size rule (short axis > 30 mm) is met."""
    doc = json.loads((planned[0] / "plan.json").read_text())
    m = doc["lesion"]["measurements"]
    for key in ("long_axis_mm", "short_axis_mm", "max_diameter_3d_mm"):
        assert abs(m[key] - 2 * GTV_RADIUS_MM) <= max(VOXEL_MM), key
    (rule,) = doc["lesion"]["size_rules"]
    assert rule["rule"] == "short_axis_mm > 30" and rule["met"] is True
    assert "GTV long axis" in planned[2]


def test_dose_proxy_only_when_asked(case, tmp_path, planned):
    assert "dose_proxy" not in json.loads((planned[0] / "plan.json").read_text())
    out = tmp_path / "dose"
    code, stdout, stderr = run(
        plan_args(case, out, "--dose-peak-gy", "20", "--dose-falloff-mm", "2", "--no-dicom")
    )
    assert code == 0, stderr
    d = json.loads((out / "plan.json").read_text())["dose_proxy"]
    assert "not a dose calculation" in d["model"] and "not a dose calculation" in stdout
    assert d["parameters"] == {"peak_gy": 20.0, "valley_gy": 3.0, "falloff_mm": 2.0}
    assert 3.0 <= d["gtv_d90_gy"] <= d["gtv_d10_gy"] <= 20.0
    code, _, stderr = run(plan_args(case, tmp_path / "bad", "--dose-peak-gy", "1"))
    assert code == 2 and "peak > valley" in stderr and not (tmp_path / "bad").exists()


@pytest.mark.parametrize(("setting", "want"), [(None, "False"), ("1", "True"), ("0", "False")])
def test_a_lattice_process_asks_numpy_for_no_huge_pages_unless_told_to(setting, want):
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if setting is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = setting
    probe = (
        "import lattice_cli.main, numpy; "
        "core = getattr(numpy, '_core', None) or numpy.core; "
        "print(core.multiarray._get_madvise_hugepage())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == want
