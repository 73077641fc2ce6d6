"""The independent plan verifier: real plans pass, tampered plans are caught.

Plans are made with the real planner on a small synthetic case (a 50 mm sphere GTV on an
LPS-stored grid of 2 x 2 x 2.5 mm voxels, a slab OAR behind it) and written with the real plan
folder writer. Tampering edits the written ``plan.json`` the way a hand edit or a buggy
exporter would; each edit must show up as the named rule, and as exit code 8 from the CLI.
Oracles for the verifier's own distances are brute force over every voxel centre.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lattice.analysis.verify import RULE_TOLERANCE_MM, verify_plan, verify_plan_file
from lattice.errors import EXIT_VIOLATION as VIOLATION_EXIT_CODE
from lattice.errors import GridMismatchError, InputFileError, LatticeError
from lattice.io.nifti import load_mask, sha256_file
from lattice.io.plan_writer import write_plan_folder
from lattice.planning.placement import plan_vertices
from lattice.planning.rules import Oar
from lattice.volume import Volume
from lattice_cli import main as cli_main
from lattice_cli.verify import cmd_verify, register

SHAPE = (36, 36, 26)
VOXEL_MM = (2.0, 2.0, 2.5)
GTV_CENTER_RAS_MM = np.array([-12.0, 25.0, 40.0])
GTV_RADIUS_MM = 25.0
D_MM, SPACING_MM, MARGIN_MM, CLEARANCE_MM = 10.0, 18.0, 3.0, 5.0
NEED_DEPTH_MM = MARGIN_MM + D_MM / 2
NEED_OAR_MM = CLEARANCE_MM + D_MM / 2


def world(shape, affine):
    """(I, J, K, 3) RAS+ mm of every voxel centre, from the affine alone."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def describe(path: Path) -> dict:
    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}


def run_verify(path) -> tuple[int, str, str]:
    """``cmd_verify`` on a parsed ``lattice verify PATH``: (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="lattice")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["verify", str(path)])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert args.func is cmd_verify
        code = cmd_verify(args)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def case(tmp_path_factory, make_affine, write_nifti):
    """Input files of the synthetic case: CT, GTV sphere and a slab OAR (cord) behind it."""
    folder = tmp_path_factory.mktemp("verify_case")
    affine = make_affine(SHAPE, VOXEL_MM, "lps", center_ras_mm=GTV_CENTER_RAS_MM)
    w = world(SHAPE, affine) - GTV_CENTER_RAS_MM
    gtv = np.linalg.norm(w, axis=-1) <= GTV_RADIUS_MM
    # Posterior (-y) slab, 3-8 mm beyond the GTV surface.
    cord = (
        (w[..., 1] < -28.0)
        & (w[..., 1] > -33.0)
        & (np.abs(w[..., 0]) < 20)
        & (np.abs(w[..., 2]) < 20)
    )
    ct = np.where(gtv, 40, 0).astype(np.int16)
    return {
        "affine": affine,
        "gtv_array": gtv,
        "cord_array": cord,
        "ct": write_nifti(folder, "ct.nii.gz", ct, affine),
        "gtv": write_nifti(folder, "gtv.nii.gz", gtv, affine),
        "cord": write_nifti(folder, "cord.nii.gz", cord, affine),
    }


def write_plan(plan, out, *, ct, gtv, oars=()):
    """Write a plan folder with ``inputs`` recorded the way ``lattice plan`` records them."""
    inputs = {
        "ct": describe(ct),
        "gtv": {**describe(gtv), "label": None},
        "oars": [{"name": n, **describe(p), "clearance_mm": c} for n, p, c in oars],
    }
    write_plan_folder(plan, out, inputs=inputs, picture=False)
    return Path(out) / "plan.json"


@pytest.fixture(scope="module")
def planned(case, tmp_path_factory):
    """A real plan of the case with the cord as OAR: (plan, path of plan.json)."""
    plan = plan_vertices(
        load_mask(case["gtv"]),
        diameter_mm=D_MM,
        min_spacing_mm=SPACING_MM,
        gtv_margin_mm=MARGIN_MM,
        pattern="hcp",
        oars=[Oar("cord", load_mask(case["cord"]), CLEARANCE_MM)],
    )
    assert plan.n_vertices >= 4
    path = write_plan(
        plan,
        tmp_path_factory.mktemp("verify_plan") / "out",
        ct=case["ct"],
        gtv=case["gtv"],
        oars=[("cord", case["cord"], CLEARANCE_MM)],
    )
    return plan, path


@pytest.fixture
def doc(planned):
    """A fresh copy of the written plan document, to tamper with."""
    return json.loads(planned[1].read_text())


def save(doc, tmp_path) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def centres(doc) -> np.ndarray:
    return np.array([v["center_ras_mm"] for v in doc["vertices"]])


# -- real plans pass --------------------------------------------------------------------------


def test_real_plan_verifies_ok(planned):
    report = verify_plan_file(planned[1])
    assert report.ok, report.violations
    assert report.warnings == ()
    assert report.n_vertices == planned[0].n_vertices
    checked = [c["rule"] for c in report.checks]
    assert {"gtv_margin", "spacing", "oar_clearance", "reported_values"} <= set(checked)
    for c in report.checks:
        if c["worst_slack_mm"] is not None:
            assert c["worst_slack_mm"] >= -RULE_TOLERANCE_MM, c


def test_worst_slacks_match_the_planners_own_measures(planned):
    plan, path = planned
    by_rule = {c["rule"]: c["worst_slack_mm"] for c in verify_plan_file(path).checks}
    assert by_rule["gtv_margin"] == pytest.approx(plan.depth_mm.min() - NEED_DEPTH_MM, abs=1e-6)
    assert by_rule["oar_clearance"] == pytest.approx(
        plan.oar_distance_mm["cord"].min() - NEED_OAR_MM, abs=1e-6
    )
    assert by_rule["spacing"] == pytest.approx(plan.nearest_vertex_mm.min() - SPACING_MM, abs=1e-6)


def test_cli_prints_every_check_and_exits_zero(planned):
    code, out, err = run_verify(planned[1].parent)  # a plan folder works as well as the file
    assert code == 0, out
    assert err == ""
    for rule in ("gtv_margin", "spacing", "oar_clearance", "reported_values"):
        assert rule in out
    assert "worst slack" in out and out.rstrip().splitlines()[-1].startswith("OK")


def test_snapped_capped_plan_on_oblique_grid_verifies_ok(make_affine, ellipsoid_mask):
    affine = make_affine(SHAPE, VOXEL_MM, "oblique", center_ras_mm=GTV_CENTER_RAS_MM)
    gtv = Volume(ellipsoid_mask((SHAPE, affine), GTV_CENTER_RAS_MM, (25.0, 22.0, 27.0)), affine)
    plan = plan_vertices(
        gtv,
        diameter_mm=D_MM,
        min_spacing_mm=SPACING_MM,
        gtv_margin_mm=MARGIN_MM,
        snap_to_slices=True,
        max_vertices=4,
    )
    report = verify_plan(plan.to_dict(), gtv=gtv)
    assert report.ok, report.violations
    assert {"slice_plane", "max_vertices"} <= {c["rule"] for c in report.checks}


def test_real_sarcoma_plan_verifies_ok(shared_data, tmp_path):
    folder = shared_data / "STS_001"
    if not (folder / "gtv.nii.gz").exists():
        pytest.skip("STS_001 not in ../shared/data")
    plan = plan_vertices(
        load_mask(folder / "gtv.nii.gz"), diameter_mm=15, min_spacing_mm=30, gtv_margin_mm=5
    )
    path = write_plan(plan, tmp_path / "out", ct=folder / "image.nii.gz", gtv=folder / "gtv.nii.gz")
    report = verify_plan_file(path)
    assert report.ok, report.violations
    assert report.n_vertices == plan.n_vertices >= 10


def test_empty_plan_verifies_ok_with_a_warning(case, tmp_path):
    plan = plan_vertices(
        load_mask(case["gtv"]), diameter_mm=40, min_spacing_mm=40, gtv_margin_mm=10
    )
    assert plan.n_vertices == 0
    report = verify_plan_file(write_plan(plan, tmp_path / "out", ct=case["ct"], gtv=case["gtv"]))
    assert report.ok and report.n_vertices == 0
    assert any("no vertices" in w for w in report.warnings)


# -- tampered plans are caught ----------------------------------------------------------------


def assert_caught(path, rule, vertex_ids=None):
    report = verify_plan_file(path)
    assert rule in report.violated_rules, report.violations
    if vertex_ids is not None:
        assert any(
            set(v.vertex_ids) == set(vertex_ids) for v in report.violations if v.rule == rule
        ), report.violations
    code, out, _ = run_verify(path)
    assert code == VIOLATION_EXIT_CODE == 8
    assert f"violation [{rule}]" in out and "FAILED" in out
    return report


def test_centre_moved_towards_the_gtv_surface_breaks_the_margin(doc, tmp_path):
    i = int(np.argmin([v["depth_mm"] for v in doc["vertices"]]))
    vertex = doc["vertices"][i]
    assert vertex["depth_mm"] - NEED_DEPTH_MM < 3.0  # so 3 mm outwards is too far
    c = np.array(vertex["center_ras_mm"])
    outward = (c - GTV_CENTER_RAS_MM) / np.linalg.norm(c - GTV_CENTER_RAS_MM)
    vertex["center_ras_mm"] = (c + 3.0 * outward).tolist()
    report = assert_caught(save(doc, tmp_path), "gtv_margin", [vertex["id"]])
    message = next(v.message for v in report.violations if v.rule == "gtv_margin")
    assert vertex["name"] in message and f">= {NEED_DEPTH_MM:g} mm" in message


def test_centres_closer_than_the_spacing_are_caught(doc, tmp_path):
    c = centres(doc)
    d = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.diag(np.full(len(c), np.inf))
    i, j = np.unravel_index(np.argmin(d), d.shape)
    unit = (c[j] - c[i]) / d[i, j]
    doc["vertices"][j]["center_ras_mm"] = (c[i] + (SPACING_MM - 3.0) * unit).tolist()
    report = assert_caught(
        save(doc, tmp_path), "spacing", [doc["vertices"][i]["id"], doc["vertices"][j]["id"]]
    )
    assert any(f"{SPACING_MM - 3:g} mm apart" in v.message for v in report.violations)


def test_centre_near_an_oar_is_caught(doc, case, tmp_path):
    cord_ras = world(SHAPE, case["affine"])[case["cord_array"]]
    c = centres(doc)
    dist = np.linalg.norm(c[:, None] - cord_ras[None], axis=-1)
    i, q = np.unravel_index(np.argmin(dist), dist.shape)
    unit = (c[i] - cord_ras[q]) / dist[i, q]
    doc["vertices"][i]["center_ras_mm"] = (cord_ras[q] + (NEED_OAR_MM - 2.0) * unit).tolist()
    assert_caught(save(doc, tmp_path), "oar_clearance", [doc["vertices"][i]["id"]])


def test_gtv_file_changed_after_planning_is_caught(doc, case, tmp_path):
    copy_path = tmp_path / "gtv_copy.nii.gz"
    shutil.copyfile(case["gtv"], copy_path)
    doc["inputs"]["gtv"] = {**describe(copy_path), "label": None}
    path = save(doc, tmp_path)
    assert verify_plan_file(path).ok
    img = nib.load(copy_path)
    data = np.asanyarray(img.dataobj).copy()
    data[tuple(np.argwhere(data)[0])] = 0  # one surface voxel less: an edited contour
    nib.save(nib.Nifti1Image(data, img.affine, img.header), copy_path)
    report = assert_caught(path, "input_files")
    assert any(
        "GTV" in v.message and "changed after planning" in v.message for v in report.violations
    )


def test_a_centre_of_1e308_is_caught_without_numpy_warnings_or_300_digit_numbers(doc, tmp_path):
    import warnings

    doc["vertices"][0]["center_ras_mm"][0] = 1e308
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an overflow warning fails the test
        report = assert_caught(save(doc, tmp_path), "gtv_margin", [doc["vertices"][0]["id"]])
    assert "reported_values" in report.violated_rules
    longest = max(len(w) for v in report.violations for w in v.message.split())
    assert longest < 40, [v.message for v in report.violations]


def test_inconsistent_lps_centre_is_caught(doc, tmp_path):
    doc["vertices"][1]["center_lps_mm"][0] += 1.0
    report = assert_caught(save(doc, tmp_path), "reported_values", [doc["vertices"][1]["id"]])
    assert report.violated_rules == ("reported_values",)
    assert "center_lps_mm" in report.violations[0].message


@pytest.mark.parametrize(
    "key,value", [("depth_mm", 0.01), ("nearest_vertex_mm", -0.01), ("center_ijk", 0.01)]
)
def test_wrong_reported_measures_are_caught(doc, key, value):
    vertex = doc["vertices"][0]
    if key == "center_ijk":
        vertex[key][2] += value
    else:
        vertex[key] += value
    report = verify_plan(doc, gtv=_gtv(doc), oars=_oars(doc))
    assert report.violated_rules == ("reported_values",)
    assert key in report.violations[0].message


def _gtv(doc):
    return load_mask(doc["inputs"]["gtv"]["path"])


def _oars(doc):
    return {o["name"]: load_mask(o["path"]) for o in doc["inputs"]["oars"]}


def test_snap_and_count_rules_are_checked_when_set(doc):
    doc["parameters"]["snap_to_slices"] = True
    doc["parameters"]["max_vertices"] = len(doc["vertices"]) - 1
    doc["parameters"]["min_vertices"] = len(doc["vertices"]) + 1
    before = copy.deepcopy(doc)
    snapped = verify_plan(doc, gtv=_gtv(doc), oars=_oars(doc))
    # The hcp plan was not snapped: some centres lie between slices.
    assert {"slice_plane", "max_vertices", "min_vertices"} <= set(snapped.violated_rules)
    assert doc == before  # the verifier never edits the document


def test_oar_without_a_mask_cannot_pass(doc):
    report = verify_plan(doc, gtv=_gtv(doc))
    assert report.violated_rules == ("oar_clearance",)
    assert report.violations[0].vertex_ids == ()
    assert "could not be checked" in report.violations[0].message


# -- forward compatible rules -----------------------------------------------------------------


@pytest.mark.parametrize("coplanar_spacing_mm,ok", [(SPACING_MM, True), (80.0, False)])
def test_coplanar_rule_is_checked_when_present(doc, coplanar_spacing_mm, ok):
    doc["parameters"].update(coplanar_mm=20.0, coplanar_spacing_mm=coplanar_spacing_mm)
    report = verify_plan(doc, gtv=_gtv(doc), oars=_oars(doc))
    assert "coplanar" in {c["rule"] for c in report.checks}
    assert report.ok is ok
    if not ok:
        assert report.violated_rules == ("coplanar",)
        assert all(len(v.vertex_ids) == 2 for v in report.violations)


@pytest.mark.parametrize("mode,checked", [("shell", True), (None, True), ("fill", False)])
def test_shell_depth_is_checked_in_shell_mode(doc, mode, checked):
    doc["parameters"]["shell_width_mm"] = 0.5
    if mode is None:
        doc["parameters"].pop("mode", None)
    else:
        doc["parameters"]["mode"] = mode
    report = verify_plan(doc, gtv=_gtv(doc), oars=_oars(doc))
    assert ("shell_depth" in {c["rule"] for c in report.checks}) is checked
    # The fill plan has centres far deeper than margin + R + 0.5 mm.
    assert report.violated_rules == (("shell_depth",) if checked else ())


# -- the verifier's own distances against brute force ----------------------------------------


def hand_doc(gtv: Volume, points, *, depth, diameter_mm=1.0, margin_mm=0.0):
    """A minimal plan document for ``points`` with the given reported depths."""
    pts = np.asarray(points, dtype=float)
    ijk = np.linalg.solve(gtv.affine[:3, :3], (pts - gtv.affine[:3, 3]).T).T
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.diag(np.full(len(pts), np.inf))
    return {
        "grid": {"shape": list(gtv.shape), "affine": gtv.affine.tolist()},
        "parameters": {
            "diameter_mm": diameter_mm,
            "min_spacing_mm": 1e-3,
            "gtv_margin_mm": margin_mm,
        },
        "vertices": [
            {
                "id": n + 1,
                "name": f"P{n + 1}",
                "center_ras_mm": p.tolist(),
                "center_lps_mm": (p * [-1, -1, 1]).tolist(),
                "center_ijk": q.tolist(),
                "depth_mm": float(dep),
                "nearest_vertex_mm": float(d[n].min()) if len(pts) > 1 else None,
                "oar_distance_mm": {},
            }
            for n, (p, q, dep) in enumerate(zip(pts, ijk, depth))
        ],
    }


def test_depth_equals_the_independent_checker_and_counts_the_array_border_as_outside(make_affine):
    from tps_checker import Solid

    shape = (14, 12, 9)
    affine = make_affine(shape, (1.5, 1.0, 2.0), "oblique")
    mask = np.zeros(shape, dtype=bool)
    mask[3:12, 2:, 2:8] = True  # touches the j border: the solid closes half a voxel beyond
    gtv = Volume(mask, affine)
    rng = np.random.default_rng(3)
    ijk = np.argwhere(mask)[rng.choice(mask.sum(), 40, replace=False)] + rng.uniform(
        -0.49, 0.49, (40, 3)
    )
    pts = ijk @ affine[:3, :3].T + affine[:3, 3]
    truth = Solid.from_mask(mask, affine).depth(pts)  # TPS surface model, tests' own code
    outside = affine[:3, :3] @ [1.0, 5.0, 4.0] + affine[:3, 3]  # voxel (1, 5, 4): background
    doc = hand_doc(gtv, [*pts, outside], depth=[*truth, 0.0])
    report = verify_plan(doc, gtv=gtv)
    assert "reported_values" not in report.violated_rules, report.violations
    # The border layer j = 11 is half a voxel (0.5 mm) from the solid's face at j = 11.5, the
    # nearest face of the box there (analytic: other faces are >= 5 mm away).
    border = affine[:3, :3] @ [6.0, 11.0, 4.0] + affine[:3, 3]
    assert verify_plan(hand_doc(gtv, [border], depth=[0.5]), gtv=gtv).ok
    bad = verify_plan(hand_doc(gtv, [border], depth=[0.5], diameter_mm=2.0, margin_mm=0.5), gtv=gtv)
    assert bad.violated_rules == ("gtv_margin",)
    assert bad.violations[0].message == (
        "P1 centre is 0.5 mm deep; the GTV margin rule needs >= 1.5 mm (1 mm short)"
    )


# -- bad input: LatticeError codes through main() ---------------------------------------------


@pytest.fixture
def main_with_verify(monkeypatch):
    """``main(argv)`` of the real CLI with the verify subcommand registered (if not yet)."""
    build = cli_main.build_parser

    def build_with_verify():
        parser = build()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "verify" not in sub.choices:
            register(sub)
        return parser

    monkeypatch.setattr(cli_main, "build_parser", build_with_verify)

    def run(argv):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            return cli_main.main([str(a) for a in argv]), err.getvalue()

    return run


def test_exit_codes_through_main(main_with_verify, planned, doc, tmp_path):
    assert main_with_verify(["verify", planned[1]])[0] == 0
    code, err = main_with_verify(["verify", tmp_path / "missing.json"])
    assert code == InputFileError.exit_code == 3 and "plan not found" in err
    (tmp_path / "broken.json").write_text("{not json")
    assert main_with_verify(["verify", tmp_path / "broken.json"])[0] == 3
    shifted = copy.deepcopy(doc)
    shifted["grid"]["affine"][0][3] += 2.0
    code, err = main_with_verify(["verify", save(shifted, tmp_path)])
    assert (
        code == GridMismatchError.exit_code == 5 and "different grid than plan.json's grid" in err
    )
    # The mask is the file planned from: what was edited is plan.json (it said "resample it
    # onto the grid of the plan's grid").
    assert "so plan.json's grid was edited: restore plan.json, or plan again" in err
    assert "grid of the plan's grid" not in err and "resample" not in err
    doc["vertices"][0]["center_lps_mm"][2] += 1.0
    assert main_with_verify(["verify", save(doc, tmp_path)])[0] == VIOLATION_EXIT_CODE


def test_missing_input_mask_is_an_input_error(doc, tmp_path):
    doc["inputs"]["oars"][0]["path"] = str(tmp_path / "gone.nii.gz")
    with pytest.raises(InputFileError, match="file not found"):
        verify_plan_file(save(doc, tmp_path))
    del doc["inputs"]["gtv"]
    with pytest.raises(LatticeError, match="no GTV file"):
        verify_plan_file(save(doc, tmp_path))
