"""plan.json against its published schema (issue 12, class 7: hand-edited or foreign plans).

* Every plan.json the tool writes validates against ``lattice/io/plan.schema.json`` (NIfTI and
  DICOM input, OARs, shell mode, snapping, STV, dose proxy, --count, --pattern max, the empty
  plan, a protocol, a batch job, and the library's own ``Plan.to_dict``), so the schema cannot
  drift from the writer.
* A hand-edited plan.json (missing keys, wrong types, "NaN" strings and NaN literals, nested
  wrong types, an unknown plan parameter) makes ``lattice verify``, ``report`` and ``show`` exit
  3 with one line naming the first problem by its JSON path: no traceback, nothing written.
* What stays accepted: extra keys at the top level (other tools annotate plans), an older
  plan's ``world_frame`` string, the plan written before the surface model (fixture).
"""

from __future__ import annotations

import copy
import json
import math
from importlib.resources import files
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from cli_helpers import run

from lattice.io.planfolder import plan_schema, validate_plan_document
from lattice_cli.main import main

REPO = Path(__file__).resolve().parents[2]
SHAPE = (40, 40, 20)
VOXEL_MM = (1.5, 1.5, 3.0)
RULES = ["--diameter-mm", "12", "--spacing-mm", "20", "--gtv-margin-mm", "3"]
FAST = ["--mesh-format", "none", "--no-picture"]


def schema_errors(doc) -> list[str]:
    validator = jsonschema.Draft202012Validator(plan_schema())
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, make_affine, ellipsoid_mask, write_nifti):
    folder = tmp_path_factory.mktemp("schema_inputs")
    affine = make_affine(SHAPE, VOXEL_MM, "lps")
    centre = affine[:3, :3] @ ((np.array(SHAPE) - 1) / 2) + affine[:3, 3]
    gtv = ellipsoid_mask((SHAPE, affine), centre, 20.0)
    oar = np.roll(ellipsoid_mask((SHAPE, affine), centre, 6.0), 14, axis=0) & ~gtv
    return {
        "ct": write_nifti(folder, "ct.nii.gz", np.where(gtv, 40, -1000).astype(np.int16), affine),
        "gtv": write_nifti(folder, "gtv.nii.gz", gtv, affine),
        "oar": write_nifti(folder, "oar.nii.gz", oar, affine),
    }


@pytest.fixture(scope="module")
def plan_dir(inputs, tmp_path_factory):
    """A plan folder with its pictures (for show and report), from NIfTI inputs."""
    out = tmp_path_factory.mktemp("schema_plan") / "plan"
    assert (
        main(
            [
                str(a)
                for a in [
                    "plan",
                    "--ct",
                    inputs["ct"],
                    "--gtv",
                    inputs["gtv"],
                    "--oar",
                    f"oar={inputs['oar']}:3",
                    "--out",
                    out,
                    *RULES,
                    "--mesh-format",
                    "none",
                ]
            ]
        )
        == 0
    )
    return out


# --- every plan.json the tool writes validates ---------------------------------------------

WRITERS = {
    "OARs, shell mode, snapping, STV, dose proxy": [
        "--oar",
        "oar={oar}:3",
        "--mode",
        "shell",
        "--snap-to-slices",
        "--stv-margin-mm",
        "4",
        "--dose-peak-gy",
        "15",
        "--no-dicom",
    ],
    "--count": ["--count", "2", "--no-dicom"],
    "--pattern max": ["--pattern", "max", "--time-budget-s", "0.5", "--no-dicom"],
    "the empty plan": ["--gtv-margin-mm", "40", "--allow-empty", "--no-dicom"],
    "a protocol": ["--protocol", "mayo", "--no-dicom"],
}


def test_the_plan_with_pictures_validates(plan_dir):
    doc = json.loads((plan_dir / "plan.json").read_text(encoding="utf-8"))
    assert schema_errors(doc) == []
    assert isinstance(doc["world_frame"], dict) and "surface_model" in doc


@pytest.mark.parametrize("route", list(WRITERS))
def test_every_plan_json_written_validates(inputs, tmp_path, capfd, route):
    extra = [a.format(**inputs) for a in WRITERS[route]]
    if "--gtv-margin-mm" in extra:  # replaces the rules' margin
        rules = RULES[:4]
    else:
        rules = RULES
    code, _, err = run(
        capfd,
        [
            "plan",
            "--ct",
            inputs["ct"],
            "--gtv",
            inputs["gtv"],
            "--out",
            tmp_path / "p",
            *rules,
            *FAST,
            *extra,
        ],
    )
    assert code == 0, err
    doc = json.loads((tmp_path / "p" / "plan.json").read_text(encoding="utf-8"))
    assert schema_errors(doc) == []


def test_dicom_route_plan_json_validates(plan_dir, tmp_path, capfd):
    code, _, err = run(
        capfd,
        [
            "plan",
            "--ct-dicom",
            plan_dir / "ct_dicom",
            "--rtstruct",
            plan_dir / "rtstruct.dcm",
            "--gtv-name",
            "GTV",
            "--out",
            tmp_path / "d",
            *RULES,
            *FAST,
        ],
    )
    assert code == 0, err
    doc = json.loads((tmp_path / "d" / "plan.json").read_text(encoding="utf-8"))
    assert "rtstruct" in doc["inputs"] and schema_errors(doc) == []
    assert run(capfd, ["verify", tmp_path / "d"])[0] == 0


def test_batch_job_plan_json_validates(inputs, tmp_path, capfd):
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case,ct,gtv\nA,{inputs['ct']},{inputs['gtv']}\n", encoding="utf-8")
    code, _, err = run(
        capfd,
        [
            "batch",
            manifest,
            "--out",
            tmp_path / "b",
            "--no-dicom",
            "--no-picture",
            "--mesh-format",
            "none",
        ],
    )
    assert code == 0, err
    (doc_path,) = (tmp_path / "b").rglob("plan.json")
    assert schema_errors(json.loads(doc_path.read_text(encoding="utf-8"))) == []


def test_library_plan_document_validates(make_volume, ellipsoid_mask):
    from lattice.planning.placement import plan_vertices

    vol = make_volume(SHAPE, VOXEL_MM, "oblique")
    gtv = vol.with_array(ellipsoid_mask(vol, vol.ijk_to_ras((np.array(SHAPE) - 1) / 2), 20.0))
    doc = plan_vertices(gtv, diameter_mm=12, min_spacing_mm=20, gtv_margin_mm=3).to_dict()
    assert schema_errors(json.loads(json.dumps(doc))) == []


def test_schema_is_package_data():
    assert files("lattice.io").joinpath("plan.schema.json").is_file()
    assert '"plan.schema.json"' in (REPO / "pyproject.toml").read_text(encoding="utf-8")
    jsonschema.Draft202012Validator.check_schema(plan_schema())


# --- what stays accepted ------------------------------------------------------------------


def test_extra_top_level_keys_and_old_world_frame_are_accepted(plan_dir, tmp_path, capfd):
    """Other tools may annotate a plan; plans before 0.2 name the world frame in a string."""
    doc = json.loads((plan_dir / "plan.json").read_text(encoding="utf-8"))
    doc["approved_by"] = {"name": "Dr. X", "when": "2025-01-01"}
    doc["world_frame"] = "RAS+ mm (NIfTI); center_lps_mm is DICOM LPS"
    (tmp_path / "plan.json").write_text(json.dumps(doc), encoding="utf-8")
    code, out, err = run(capfd, ["verify", tmp_path / "plan.json"])
    assert code == 0, out + err


def test_plan_before_the_surface_model_validates():
    doc = json.loads(
        (REPO / "tests" / "fixtures" / "plan_before_surface_model.json").read_text(encoding="utf-8")
    )
    assert isinstance(doc["world_frame"], str) and "surface_model" not in doc
    assert schema_errors(doc) == []


# --- hand-edited plans: one line, exit 3 ----------------------------------------------------


def _set(path, value):
    def edit(doc):
        *parents, last = path
        node = doc
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


def _delete(*path):
    def edit(doc):
        *parents, last = path
        node = doc
        for key in parents:
            node = node[key]
        del node[last]

    return edit


NAN = float("nan")
# id -> (edit of the document, JSON path the message names)
CORRUPTIONS = {
    "no parameters": (_delete("parameters"), "'parameters'"),
    "no grid": (_delete("grid"), "'grid'"),
    "no vertices": (_delete("vertices"), "'vertices'"),
    "no diameter": (_delete("parameters", "diameter_mm"), "'diameter_mm'"),
    "no vertex centre": (_delete("vertices", 0, "center_ras_mm"), "$.vertices[0]"),
    "diameter a string": (_set(("parameters", "diameter_mm"), "15"), "$.parameters.diameter_mm"),
    "diameter 'NaN'": (_set(("parameters", "diameter_mm"), "NaN"), "$.parameters.diameter_mm"),
    "diameter NaN literal": (_set(("parameters", "diameter_mm"), NAN), "$.parameters.diameter_mm"),
    "depth 'NaN'": (_set(("vertices", 0, "depth_mm"), "NaN"), "$.vertices[0].depth_mm"),
    "Infinity in the affine": (_set(("grid", "affine", 0, 0), math.inf), "$.grid.affine[0][0]"),
    "centre of 2 numbers": (
        _set(("vertices", 0, "center_ras_mm"), [1.0, 2.0]),
        "$.vertices[0].center_ras_mm",
    ),
    "centre of strings": (
        _set(("vertices", 0, "center_ras_mm"), ["a", "b", "c"]),
        "$.vertices[0].center_ras_mm[0]",
    ),
    "vertices an object": (_set(("vertices",), {"1": [0, 0, 0]}), "$.vertices"),
    "a vertex a number": (_set(("vertices", 0), 7), "$.vertices[0]"),
    "vertex id a string": (_set(("vertices", 0, "id"), "1"), "$.vertices[0].id"),
    "grid shape strings": (_set(("grid", "shape"), ["40", "40", "20"]), "$.grid.shape[0]"),
    "affine 3 x 4": (_set(("grid", "affine"), [[1.0, 0, 0, 0]] * 3), "$.grid.affine"),
    "oars a string": (_set(("inputs", "oars"), "cord"), "$.inputs.oars"),
    "gtv input a list": (_set(("inputs", "gtv"), ["gtv.nii.gz"]), "$.inputs.gtv"),
    "gtv label a float": (_set(("inputs", "gtv", "label"), 1.5), "$.inputs.gtv.label"),
    "clearance a string": (
        _set(("parameters", "oar_clearance_mm", "oar"), "3 mm"),
        "$.parameters.oar_clearance_mm.oar",
    ),
    "clearances a list": (
        _set(("parameters", "oar_clearance_mm"), [3]),
        "$.parameters.oar_clearance_mm",
    ),
    "negative margin": (_set(("parameters", "gtv_margin_mm"), -2), "$.parameters.gtv_margin_mm"),
    "unknown pattern": (_set(("parameters", "pattern"), "hexagonal"), "$.parameters.pattern"),
    "unknown plan parameter": (_set(("parameters", "max_dose_gy"), 20), "'max_dose_gy'"),
    "max_vertices a float": (
        _set(("parameters", "max_vertices"), 2.5),
        "$.parameters.max_vertices",
    ),
    "world_frame a number": (_set(("world_frame",), 5), "$.world_frame"),
    "warnings a string": (_set(("warnings",), "none"), "$.warnings"),
    "n_vertices a string": (_set(("summary", "n_vertices"), "7"), "$.summary.n_vertices"),
    "lesion volume a string": (
        _set(("lesion", "measurements", "volume_cc"), "big"),
        "$.lesion.measurements.volume_cc",
    ),
    "size rule met 'yes'": (
        _set(("lesion", "size_rules", 0, "met"), "yes"),
        "$.lesion.size_rules[0].met",
    ),
    "verification ok 'yes'": (_set(("verification", "ok"), "yes"), "$.verification.ok"),
    "dose_proxy a string": (_set(("dose_proxy",), "high"), "$.dose_proxy"),
    "stv a list": (_set(("stv",), [1]), "$.stv"),
    "rtstruct without a path": (_set(("inputs", "rtstruct"), {"sha256": "0"}), "$.inputs"),
}


def _corrupt(plan_dir: Path, tmp_path: Path, edit) -> Path:
    """A copy of the plan folder (plan.json, target, pictures) with plan.json edited."""
    folder = tmp_path / "edited"
    folder.mkdir()
    for p in plan_dir.iterdir():
        if p.is_file():
            (folder / p.name).write_bytes(p.read_bytes())
    doc = json.loads((plan_dir / "plan.json").read_text(encoding="utf-8"))
    edit(doc)
    (folder / "plan.json").write_text(json.dumps(doc, allow_nan=True), encoding="utf-8")
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


COMMANDS = {
    "verify": lambda folder, tmp: ["verify", folder / "plan.json"],
    "report": lambda folder, tmp: ["report", folder, "--out", tmp / "report.html"],
    "show": lambda folder, tmp: ["show", folder, "--out", tmp / "pictures"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_hand_edited_plan_fails_in_one_line(plan_dir, tmp_path, capfd, command, corruption):
    edit, named = CORRUPTIONS[corruption]
    folder = _corrupt(plan_dir, tmp_path, edit)
    before = _snapshot(tmp_path)
    code, out, err = run(capfd, COMMANDS[command](folder, tmp_path))
    assert code == 3, out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lattice: error: "), err
    assert "is not a plan document" in lines[0] and named in lines[0], lines[0]
    assert "Traceback" not in err and "Warning" not in err
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed


def test_a_plan_that_is_not_an_object_fails_in_one_line(plan_dir, tmp_path, capfd):
    folder = _corrupt(plan_dir, tmp_path, lambda doc: None)
    (folder / "plan.json").write_text("[1, 2, 3]\n", encoding="utf-8")
    for command in COMMANDS:
        code, _, err = run(capfd, COMMANDS[command](folder, tmp_path))
        assert code == 3 and len(err.splitlines()) == 1, (command, err)


def test_first_problem_is_reported_by_path():
    doc = {
        "grid": {"shape": [1, 1, 1], "affine": np.eye(4).tolist()},
        "parameters": {"diameter_mm": 10, "min_spacing_mm": 20, "gtv_margin_mm": 1},
        "vertices": [{"center_ras_mm": [0, 0, 0]}],
    }
    assert validate_plan_document(copy.deepcopy(doc), "doc") == doc
    doc["vertices"][0]["center_ras_mm"][2] = "x"
    with pytest.raises(
        Exception,
        match=r"\$\.vertices\[0\]\.center_ras_mm\[2\] is the string "
        r"'x', expected number",
    ):
        validate_plan_document(doc, "doc")
