"""ROI names (issue 14, item 3): ``--roi-names default|tg263``, ``--roi-prefix``,
``--roi-name-map``.

A synthetic plan with every ROI lattice writes (combined and per-vertex vertices, cold
spheres, STV, GTV, valley, LATTICE target) is exported under every scheme and several
prefixes; the names are read back with pydicom and checked against the 16-character limit,
case-insensitive uniqueness and DICOM LO rules computed here; dciodvfy checks a TG-263
structure set. Shell and ring ROIs (other branches) are named through the same table: their
default names are renamed here as the writers will make them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from cli_helpers import run

from lattice.errors import InputFileError, ParameterError
from lattice.io.cold_outputs import cold_roi
from lattice.io.dicom_series import derived_series, write_series
from lattice.io.roi_names import ROI_NAME_RULES, RoiNaming, roi_records
from lattice.io.rtstruct_write import RoiSpec, plan_rois, write_rtstruct
from lattice.planning.placement import plan_vertices
from lattice.volume import Volume

REPO = Path(__file__).resolve().parents[2]
STS_001 = REPO / "sample_data" / "STS_001"
#: Prefixes that fit every ROI of each scheme: the default names are up to 14 characters
#: (LATTICE_TARGET, LATTICE_VALLEY) and 15 with shells, the TG-263 ones up to 13.
PREFIXES = {"default": ("", "L"), "tg263": ("", "L1_", "L2a")}
CASES = [(scheme, prefix) for scheme, prefixes in PREFIXES.items() for prefix in prefixes]
#: The ROIs of other parts of issue 14 (shells, SCART rings, one ROI per cold sphere) as
#: their writers name them by default, widest bounds included.
OTHER_DEFAULTS = (
    "LATTICE_SH00_05",
    "LATTICE_SH05_15",
    "LATTICE_SH15_35",
    "LATTICE_SH100_150",
    "GTV_RING02_12",
    "STV_RING02_12",
    "COLD_01",
    "COLD_12",
)


def _lo_ok(name: str) -> bool:
    """DICOM LO (PS3.5 6.2): at most 64 characters, no backslash, no control character."""
    return len(name) <= 64 and "\\" not in name and all(ord(c) >= 32 for c in name)


def _check(names: list[str]) -> None:
    assert all(1 <= len(n) <= 16 for n in names), names
    assert len({n.casefold() for n in names}) == len(names), names
    assert all(_lo_ok(n) and n == n.strip() for n in names), names


@pytest.fixture(scope="module")
def full_plan(make_volume, ellipsoid_mask, tmp_path_factory):
    """A plan with vertices and cold spheres, its derived series and every RoiSpec."""
    grid = make_volume((70, 64, 40), (1.0, 1.0, 2.5), "lps")
    gtv = ellipsoid_mask(grid, (0.0, 0.0, 0.0), (32.0, 29.0, 45.0))
    plan = plan_vertices(
        Volume(gtv, grid.affine),
        diameter_mm=10.0,
        min_spacing_mm=25.0,
        gtv_margin_mm=3.0,
        cold_spheres=True,
        cold_diameter_mm=6.0,
        cold_gap_mm=2.0,
    )
    assert plan.n_vertices >= 4 and plan.cold is not None and len(plan.cold) >= 1
    out = tmp_path_factory.mktemp("names")
    ct = Volume(np.where(gtv, 40, -800).astype(np.int16), grid.affine)
    series = derived_series(grid, patient_name="PHANTOM^NAMES", patient_id="PH2")
    write_series(series, ct, out / "ct")
    stv = Volume(ellipsoid_mask(grid, (0.0, 0.0, 0.0), (15.0, 14.0, 20.0)), grid.affine)
    rois = plan_rois(plan, series.grid, stv=stv, gtv=True)
    rois += cold_roi(plan, series.grid)
    return {"plan": plan, "series": series, "rois": rois, "out": out}


@pytest.mark.parametrize(("scheme", "prefix"), CASES)
def test_every_name_fits_and_is_unique_in_the_written_rtstruct(full_plan, scheme, prefix, tmp_path):
    naming = RoiNaming(scheme, prefix=prefix)
    rois = naming.rename(full_plan["rois"])
    path = write_rtstruct(tmp_path / "rs.dcm", full_plan["series"], rois)
    ds = pydicom.dcmread(path)
    written = [str(r.ROIName) for r in ds.StructureSetROISequence]
    defaults = [r.name for r in full_plan["rois"]]
    assert written == [naming.name(d) for d in defaults]
    _check(written)
    assert len(written) == full_plan["plan"].n_vertices + 6  # VTX + per vertex + 5 others
    if scheme == "default":
        assert written == [prefix + d for d in defaults]
    else:
        # TG-263: helpers (not evaluated) start with 'z'; targets with their type
        helpers = {"LATTICE_TARGET", "LATTICE_COLD"}
        for d, n in zip(defaults, written):
            if d in helpers:
                assert n.startswith("z" + prefix), (d, n)
            else:
                assert n.startswith(prefix + ("GTV" if d == "GTV" else "PTV")), (d, n)
    records = roi_records(rois)
    assert [r["name"] for r in records] == written
    assert [r["default_name"] for r in records] == defaults
    assert [r["type"] for r in records] == [
        str(o.RTROIInterpretedType) for o in ds.RTROIObservationsSequence
    ]
    assert [r["color"] for r in records] == [
        list(map(int, c.ROIDisplayColor)) for c in ds.ROIContourSequence
    ]


@pytest.mark.parametrize(("scheme", "prefix"), CASES)
def test_other_parts_rois_are_named_by_the_same_table(full_plan, scheme, prefix):
    naming = RoiNaming(scheme, prefix=prefix)
    names = [naming.name(d) for d in (*OTHER_DEFAULTS, *(r.name for r in full_plan["rois"]))]
    if scheme == "default":
        names.remove(prefix + "LATTICE_SH100_150")  # 17 characters: its own writer refuses it
    _check(names)
    tg = RoiNaming("tg263")
    assert [tg.name(d) for d in OTHER_DEFAULTS] == [
        "zRing00_05",
        "zRing05_15",
        "zRing15_35",
        "zRing100_150",
        "zRingGTV02_12",
        "zRingSTV02_12",
        "zPTV_Cold01",
        "zPTV_Cold12",
    ]


def test_a_name_too_long_is_refused_with_the_roi_and_the_fix():
    spec = RoiSpec("STV_RING100_150", "CONTROL", (1, 2, 3), [])
    with pytest.raises(ParameterError) as info:
        RoiNaming("tg263", prefix="L1_").rename([spec])
    message = str(info.value)
    assert "STV_RING100_150 cannot be named 'zL1_RingSTV100_150'" in message
    assert "18 characters, more than 16" in message and "roi_prefix" in message


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy (Debian package dicom3tools) is not installed",
)
def test_dciodvfy_finds_no_error_in_a_tg263_structure_set(full_plan, tmp_path):
    rois = RoiNaming("tg263", prefix="L1_").rename(full_plan["rois"])
    path = write_rtstruct(tmp_path / "rs.dcm", full_plan["series"], rois)
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    lines = (result.stdout + result.stderr).splitlines()
    assert not [line for line in lines if line.startswith(("Error", "Warning"))], lines


def test_map_names_are_used_as_given_and_checked():
    naming = RoiNaming("tg263", name_map={"LATTICE_VTX": "zPTV_Peak", "VTX_02": "Peak 2"})
    assert naming.name("LATTICE_VTX") == "zPTV_Peak"
    assert naming.name("VTX_02") == "Peak 2"
    assert naming.name("VTX_03") == "PTV03_High"
    with pytest.raises(ParameterError, match="LATTICE_VTX, VTX_nn, LATTICE_VALLEY") as info:
        RoiNaming(name_map={"LATTICE_PEAKS": "Peaks"})
    assert "'LATTICE_PEAKS' is not an ROI lattice writes" in str(info.value)
    for value, why in (
        ("A_VALLEY_NAME_TOO_LONG", "22 characters"),
        ("Valley\\1", "backslash"),
        ("Valley\n", "control character"),
        (" Valley", "space"),
        ("", "empty"),
    ):
        with pytest.raises(ParameterError, match=why):
            RoiNaming(name_map={"LATTICE_VALLEY": value})
    with pytest.raises(ParameterError, match="must be a string"):
        RoiNaming(name_map={"LATTICE_VALLEY": 3})
    # TPSs compare names without regard to case: ptv_high collides with PTV_High
    with pytest.raises(ParameterError, match="both be named"):
        RoiNaming("tg263", name_map={"LATTICE_TARGET": "ptv_high"})


def test_bad_scheme_and_prefix_are_refused():
    with pytest.raises(ParameterError, match="default, tg263"):
        RoiNaming("rtog")
    for prefix in ("A\\", "\tA", " A", "X" * 16):
        with pytest.raises(ParameterError, match="roi_prefix"):
            RoiNaming(prefix=prefix)
    # 7 characters leave PTV01_High (10) no room: refused when the naming is made
    with pytest.raises(ParameterError, match="VTX_01 cannot be named 'LESION_PTV01_High'"):
        RoiNaming("tg263", prefix="LESION_")


def test_map_file_errors(tmp_path):
    with pytest.raises(InputFileError, match="cannot read"):
        RoiNaming.from_options(map_path=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{LATTICE_VTX: x}")
    with pytest.raises(InputFileError, match="not JSON"):
        RoiNaming.from_options(map_path=tmp_path / "bad.json")
    (tmp_path / "list.json").write_text('["LATTICE_VTX"]')
    with pytest.raises(InputFileError, match="holds a list"):
        RoiNaming.from_options(map_path=tmp_path / "list.json")


def test_every_rule_renames_its_own_example():
    for rule in ROI_NAME_RULES:
        example = rule.pattern.replace(r"(\d+)", "07")
        assert rule.match(example)
        assert len(RoiNaming("tg263").name(example)) <= 16
        assert RoiNaming("tg263").name(example).startswith("z") != rule.evaluated


def test_cli_plan_with_tg263_prefix_and_map(capfd, tmp_path):
    """Names in rtstruct.dcm, plan.json (rois, parameters, map sha256) and objectives agree."""
    name_map = tmp_path / "names.json"
    name_map.write_text(json.dumps({"LATTICE_VALLEY": "zValley", "GTV": "GTVp"}))
    out = tmp_path / "plan"
    argv = ["plan", "--ct", STS_001 / "ct.nii.gz", "--gtv", STS_001 / "gtv.nii.gz", "--out", out]
    argv += ["--no-picture", "--mesh-format", "none", "--cold-spheres", "--stv-margin-mm", "8"]
    argv += ["--roi-names", "tg263", "--roi-prefix", "L1_", "--roi-name-map", name_map]
    argv += ["--shells-mm", "0,5,15,35", "--scart-ring-mm", "2,12"]
    code, _, err = run(capfd, argv)
    assert code == 0, err
    doc = json.loads((out / "plan.json").read_text())
    ds = pydicom.dcmread(out / "rtstruct.dcm")
    written = [str(r.ROIName) for r in ds.StructureSetROISequence]
    assert [r["name"] for r in doc["rois"]] == written
    _check(written)
    assert {
        "zValley",
        "GTVp",
        "L1_PTV_High",
        "zL1_GTV_Lattice",
        "zL1_PTV_Cold",
        "L1_PTV^STV",
    } <= set(written)
    rings = {"zL1_Ring00_05", "zL1_Ring05_15", "zL1_Ring15_35", "zL1_RingGTV02_12"}
    assert rings | {"zL1_RingSTV02_12"} <= set(written)
    types = {r["name"]: r["type"] for r in doc["rois"]}
    assert types["zL1_Ring05_15"] == "AVOIDANCE" and types["zL1_RingGTV02_12"] == "CONTROL"
    if shutil.which("dciodvfy"):
        run_ = subprocess.run(
            ["dciodvfy", str(out / "rtstruct.dcm")], capture_output=True, text=True
        )
        lines = (run_.stdout + run_.stderr).splitlines()
        assert not [line for line in lines if line.startswith("Error")], lines
    p = doc["parameters"]
    assert (p["roi_names"], p["roi_prefix"]) == ("tg263", "L1_")
    assert p["roi_name_map"]["sha256"] == hashlib.sha256(name_map.read_bytes()).hexdigest()
    assert p["roi_name_map"]["names"] == {"LATTICE_VALLEY": "zValley", "GTV": "GTVp"}
    structures = {r["structure"] for r in doc["objectives"]["rows"]}
    assert structures == {"L1_PTV_High", "zValley", "L1_PTV^STV", "zL1_PTV_Cold"}
    # the vertex names of the tables and markups stay the default ones (stable keys)
    assert doc["vertices"][0]["name"] == "VTX_01"


def test_cli_refuses_a_bad_map_before_any_work(capfd, tmp_path):
    name_map = tmp_path / "names.json"
    name_map.write_text(json.dumps({"LATTICE_PEAK": "Peak"}))
    out = tmp_path / "plan"
    argv = ["plan", "--ct", STS_001 / "ct.nii.gz", "--gtv", STS_001 / "gtv.nii.gz", "--out", out]
    code, _, err = run(capfd, [*argv, "--roi-name-map", name_map])
    assert code == 2
    assert "--roi-name-map: 'LATTICE_PEAK' is not an ROI lattice writes" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    code, _, err = run(capfd, [*argv, "--roi-prefix", "A_VERY_LONG_"])
    assert code == 2 and "--roi-prefix" in err and not out.exists()


def test_a_manifest_map_path_is_relative_to_the_manifest(tmp_path):
    from lattice.manifest import read_manifest

    folder = tmp_path / "cohort"
    folder.mkdir()
    (folder / "m.csv").write_text(
        "case,ct,gtv,roi_names,roi_name_map\nP1,ct.nii.gz,gtv.nii.gz,tg263,maps/names.json\n"
    )
    (case,) = read_manifest(folder / "m.csv")
    assert case.parameters["roi_names"] == "tg263"
    assert Path(case.parameters["roi_name_map"]) == folder / "maps" / "names.json"


def test_the_early_check_covers_the_rois_the_options_ask_for():
    from lattice.io.tps_outputs import TpsOptions, check_tps_options

    tps = TpsOptions(RoiNaming("tg263", prefix="L1_"))
    check_tps_options(tps, None, stv=True, cold=True, gtv=True, rings=["STV_RING02_12"])
    with pytest.raises(ParameterError, match="STV_RING100_150"):
        check_tps_options(tps, None, rings=["STV_RING100_150"])
    check_tps_options(tps, None, n_vertices=10000)  # L1_PTV10000_High: 16 characters
    wider = TpsOptions(RoiNaming("tg263", prefix="L12_"))
    with pytest.raises(ParameterError, match="VTX_10000 cannot be named 'L12_PTV10000_High'"):
        check_tps_options(wider, None, n_vertices=10000)
