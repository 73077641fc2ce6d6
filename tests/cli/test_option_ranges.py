"""Issue 12, classes 2, 5 and part of 8: every numeric option has a documented range, checked
before any work; ``--oar`` and the other NAME=VALUE / PATH:MM options are read without
guessing; sphericity never exceeds 1; a one-slice GTV with --allow-empty draws its picture.

The range cases give ``lattice plan`` inputs that do not exist: a value checked before any
work fails with its ParameterError (exit 2), never with "file not found" (exit 3). Each case
asserts the exit code, exactly one line on stderr naming the option and its range, and that
nothing was written (no output folder, no hidden temporary folder beside it).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_helpers import run

from lattice.analysis.dose import DoseProxyParameters
from lattice.analysis.measure import measure_lesion
from lattice.analysis.stv import contract_gtv
from lattice.batch import make_jobs, read_manifest
from lattice.errors import ParameterError
from lattice.planning.parameters import (
    MAX_LENGTH_MM,
    RANGES,
    check_range,
    parse_oar_spec,
    parse_roi_spec,
    range_text,
)
from lattice.planning.placement import plan_vertices
from lattice.planning.plan import PlanParameters
from lattice.volume import Volume
from lattice_cli.main import build_parser
from lattice_cli.options import number, whole

FAST = ["--no-picture", "--no-dicom", "--mesh-format", "none"]
SHAPE = (40, 40, 20)
VOXEL_MM = (1.5, 1.5, 3.0)
README = Path(__file__).resolve().parents[2] / "README.md"


def _affine() -> np.ndarray:
    aff = np.diag([*VOXEL_MM, 1.0])
    aff[:3, 3] = -np.array(SHAPE) * VOXEL_MM / 2
    return aff


def _save(path: Path, data: np.ndarray) -> Path:
    img = nib.Nifti1Image(
        np.asarray(data, dtype=np.int16 if data.dtype != np.uint8 else np.uint8), _affine()
    )
    img.set_sform(_affine(), code=1)
    img.set_qform(_affine(), code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def _ball(radius_mm: float, shift_vox=(0, 0, 0)) -> np.ndarray:
    ijk = np.indices(SHAPE).reshape(3, -1).T - np.array(shift_vox)
    ras = ijk * VOXEL_MM + _affine()[:3, 3]
    return (np.linalg.norm(ras, axis=1) < radius_mm).reshape(SHAPE).astype(np.uint8)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A 44 mm ball GTV on a 40 x 40 x 20 grid, its CT, and an OAR beside it."""
    folder = tmp_path_factory.mktemp("ranges")
    gtv = _ball(22.0)
    files = {
        "ct": _save(folder / "ct.nii.gz", np.where(gtv, 40, -1000).astype(np.int16)),
        "gtv": _save(folder / "gtv.nii.gz", gtv),
        "oar": _save(folder / "oar.nii.gz", (np.roll(gtv, 30, axis=0) & ~gtv).astype(np.uint8)),
    }
    one = np.zeros(SHAPE, np.uint8)
    one[:, :, 10] = gtv[:, :, 10]
    files["gtv_slice"] = _save(folder / "gtv_slice.nii.gz", one)
    return files


def assert_refused(code, err, parent: Path, phrases, expected=2):
    """Exit code, one ``lattice: error:`` line holding the phrases, nothing written."""
    assert code == expected, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lattice: error: "), err
    assert "Traceback" not in err and "Warning" not in err
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    assert sorted(p.name for p in parent.iterdir()) == [], "something was written"


# -- every numeric option of lattice plan, checked before any work --------------------------

#: option -> (library range name, bad values beyond the examples of the issue)
PLAN_BAD = {
    "--diameter-mm": (
        "diameter_mm",
        ["1e-9", "0.0499", "0", "-5", "nan", "inf", "5000.1", "1e300"],
    ),
    "--spacing-mm": ("min_spacing_mm", ["0", "-30", "nan", "-inf", "5001", "1e20"]),
    "--gtv-margin-mm": ("gtv_margin_mm", ["-0.001", "nan", "inf", "5000.5", "1e30"]),
    "--shell-width-mm": ("shell_width_mm", ["0", "-1", "nan", "6000", "1e20"]),
    "--coplanar-mm": ("coplanar_mm", ["-1", "nan", "1e9"]),
    "--coplanar-spacing-mm": ("coplanar_spacing_mm", ["0", "-80", "inf", "1e300"]),
    "--rotation-step-deg": ("rotation_step_deg", ["1e-6", "0.49", "0", "-5", "90.5", "nan", "inf"]),
    "--time-budget-s": ("time_budget_s", ["0", "-1", "nan", "inf", "1e30", "3601"]),
    "--max-vertices": (
        "max_vertices",
        ["0", "-3", "10001", "99999999999999999999", "1" + "0" * 40],
    ),
    "--count": ("count", ["0", "-1", "10001", "1000000000000000000000000000"]),
    "--min-vertices": ("min_vertices", ["0", "10001", "99999999999999999999"]),
    "--gtv-label": ("gtv_label", ["0", "-1", "2147483648", "1" + "0" * 30]),
    "--stv-margin-mm": ("stv_margin_mm", ["-1", "nan", "1e300"]),
    "--stv-fraction": ("stv_fraction", ["0", "1", "1.5", "-0.2", "nan"]),
    "--dose-peak-gy": ("dose_peak_gy", ["0", "-15", "nan", "1e308", "10001"]),
    "--dose-valley-gy": ("dose_valley_gy", ["-1", "inf", "1e308"]),
    "--dose-falloff-mm": ("dose_falloff_mm", ["-1", "nan", "50.01", "1e9"]),
}
#: What an option needs beside it to be used at all.
NEEDS = {
    "--shell-width-mm": ["--mode", "shell"],
    "--coplanar-mm": ["--coplanar-spacing-mm", "80"],
    "--coplanar-spacing-mm": ["--coplanar-mm", "20"],
}
PLAN_CASES = [(opt, v) for opt, (_, values) in PLAN_BAD.items() for v in values]


def _plan_argv(tmp_path, *extra):
    """lattice plan on inputs that do not exist: only a check before any work can answer."""
    return [
        "plan",
        "--ct",
        tmp_path / "absent_ct.nii.gz",
        "--gtv",
        tmp_path / "absent.nii.gz",
        "--out",
        tmp_path / "out",
        *FAST,
        *extra,
    ]


@pytest.mark.parametrize("option, value", PLAN_CASES, ids=[f"{o} {v}" for o, v in PLAN_CASES])
def test_plan_option_out_of_range_is_refused_before_any_work(option, value, tmp_path, capfd):
    parent = tmp_path / "work"
    parent.mkdir()
    name = PLAN_BAD[option][0]
    code, _, err = run(capfd, _plan_argv(parent, *NEEDS.get(option, []), f"{option}={value}"))
    assert_refused(code, err, parent, [option])
    r = RANGES[name]
    # The message gives the range (or, for a length, the patient-sized limit).
    assert range_text(name) in err or "longer than any patient" in err or "expected a" in err, err
    assert "got" in err or "longer than any patient" in err
    if r.integer:
        assert "whole number" in err


@pytest.mark.parametrize(
    "option, value",
    [
        ("--count", "2.0"),
        ("--count", "1e30"),
        ("--max-vertices", "1e30"),
        ("--min-vertices", "3.5"),
        ("--gtv-label", "1.0"),
        ("--count", "0x10"),
        ("--diameter-mm", "1_5"),
        ("--spacing-mm", "3O"),
        ("--diameter-mm", "١٥"),
        ("--rotation-step-deg", ""),
        ("--oar", "oar.nii.gz:1_0"),
    ],
)
def test_a_number_is_read_as_typed_or_refused(option, value, tmp_path, capfd):
    """Integers given as floats, Python's lenient spellings (1_5, non-ASCII digits, hex):
    refused by argparse in one line, not silently converted."""
    parent = tmp_path / "work"
    parent.mkdir()
    code, _, err = run(capfd, _plan_argv(parent, f"{option}={value}"))
    assert_refused(code, err, parent, [option, "expected a" if option != "--oar" else "mm"])


@pytest.mark.parametrize(
    "extra, phrases",
    [
        (["--oar", "oar.nii.gz:nan"], ["clearance for OAR 'oar'", "finite"]),
        (["--oar", "x=oar.nii.gz:-3"], ["clearance for OAR 'x'", "must be >= 0"]),
        (["--oar", "oar.nii.gz:1e9"], ["clearance for OAR 'oar'", "longer than any patient"]),
        (["--diameter-mm", "15", "--spacing-mm", "10"], ["would overlap"]),
        (["--count", "3", "--max-vertices", "5"], ["cannot be combined"]),
        (["--min-vertices", "5", "--max-vertices", "2"], ["exceeds"]),
        (["--dose-peak-gy", "3", "--dose-valley-gy", "5"], ["peak > valley"]),
    ],
    ids=[
        "clearance nan",
        "clearance negative",
        "clearance 1e9",
        "spacing < diameter",
        "count with max",
        "min > max",
        "valley above peak",
    ],
)
def test_rules_between_options_are_checked_before_any_work(extra, phrases, tmp_path, capfd):
    parent = tmp_path / "work"
    parent.mkdir()
    code, _, err = run(capfd, _plan_argv(parent, *extra))
    assert_refused(code, err, parent, phrases)


# -- the same ranges in the library -------------------------------------------------------------

LIBRARY_BAD = [
    ("diameter_mm", 1e-9),
    ("diameter_mm", math.nan),
    ("min_spacing_mm", 1e20),
    ("rotation_step_deg", 1e-6),
    ("shell_width_mm", 1e20),
    ("time_budget_s", 1e30),
    ("count", 10**30),
    ("count", 1e30),
    ("count", 2.0),
    ("count", True),
    ("max_vertices", 1e30),
    ("max_vertices", 10**20),
    ("min_vertices", 0),
    ("translation_steps", 65),
    ("gtv_margin_mm", -math.inf),
]


@pytest.mark.parametrize("name, value", LIBRARY_BAD, ids=[f"{n}={v}" for n, v in LIBRARY_BAD])
def test_plan_vertices_enforces_the_same_ranges(name, value):
    """A notebook gets the ParameterError the command gives (never OverflowError, a hang,
    or a plan)."""
    gtv = Volume(_ball(22.0).astype(bool), _affine())
    kw = {name: value}
    if name == "shell_width_mm":
        kw["mode"] = "shell"
    with pytest.raises(ParameterError) as raised:
        plan_vertices(gtv, **kw)
    assert name in str(raised.value)
    with pytest.raises(ParameterError):
        PlanParameters(**kw).validate()


@pytest.mark.parametrize(
    "kw", [dict(peak_gy=1e308), dict(falloff_mm=1e9), dict(valley_gy=math.nan), dict(peak_gy=True)]
)
def test_dose_proxy_parameters_enforce_their_ranges(kw):
    with pytest.raises(ParameterError, match="dose proxy"):
        DoseProxyParameters(**kw).validate()


def test_stv_margin_beyond_any_patient_is_refused_without_a_numpy_warning():
    gtv = Volume(_ball(22.0).astype(bool), _affine())
    with pytest.raises(ParameterError, match="longer than any patient"):
        contract_gtv(gtv, margin_mm=1e300)


def test_check_range_accepts_its_bounds_and_numpy_numbers():
    for name, r in RANGES.items():
        for bound, open_ in ((r.low, r.low_open), (r.high, r.high_open)):
            value = int(bound) if r.integer else float(bound)
            if open_:
                with pytest.raises(ParameterError):
                    check_range(name, value)
            else:
                assert check_range(name, value) == value
    assert check_range("count", np.int64(3)) == 3
    assert check_range("diameter_mm", np.float32(15)) == 15.0


# -- the ranges are documented: --help of every command and the README -------------------------


def _numeric_actions():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "plan" in a.choices)
    for command, p in sub.choices.items():
        for action in p._actions:
            if action.type in (number, whole):
                yield command, action


def test_every_numeric_option_of_every_command_shows_its_range_in_help():
    seen = set()
    for command, action in _numeric_actions():
        assert action.help and any(RANGES[n].text() in action.help for n in RANGES), (
            command,
            action.option_strings,
        )
        seen.add(command)
    assert {"plan", "batch", "scart", "measure"} <= seen
    show = build_parser()._subparsers._group_actions[0].choices["show"]  # --window
    window = next(a for a in show._actions if "--window" in a.option_strings)
    assert RANGES["window_level_hu"].text() in window.help


def test_readme_lists_every_range():
    text = README.read_text(encoding="utf-8")
    for name, r in RANGES.items():
        if name == "translation_steps":  # a library-only parameter
            continue
        assert f"| {r.text()} |" in text, (name, r.text())


# -- the other commands ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, phrases",
    [
        (["scart", "--stv-margin-mm", "1e300"], ["--stv-margin-mm", "longer than any patient"]),
        (["scart", "--stv-fraction", "nan"], ["--stv-fraction", "finite"]),
        (["scart", "--stv-fraction", "1", "--gtv-label", "0"], ["--gtv-label", "whole number"]),
        (["measure", "--gtv-label", "99999999999999999999"], ["--gtv-label", "whole number"]),
        (["show", "--window", "nan,400"], ["window level", "finite"]),
        (["show", "--window", "40,0"], ["window width", "positive"]),
        (["show", "--window", "40,1e9"], ["window width", "50000"]),
        (["batch", "--workers", "0"], ["--workers", "whole number from 1"]),
        (["batch", "--workers", "100000"], ["--workers", "whole number from 1"]),
        (["batch", "--workers", "2.0"], ["--workers", "expected a whole number"]),
    ],
)
def test_numeric_options_of_the_other_commands(argv, phrases, case, tmp_path, capfd):
    parent = tmp_path / "work"
    parent.mkdir()
    out = parent / "out"
    command = argv[0]
    if command == "scart":
        argv = [*argv, "--ct", case["ct"], "--gtv", case["gtv"], "--out", out]
    elif command == "measure":
        argv = [*argv, "--gtv", case["gtv"], "--json", out]
    elif command == "show":
        argv = [*argv, parent / "no_plan", "--out", out]
    else:
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"case,ct,gtv\nP1,{case['ct']},{case['gtv']}\n")
        argv = [*argv, manifest, "--out", out]
    code, _, err = run(capfd, argv)
    assert_refused(code, err, parent, phrases)


@pytest.mark.parametrize(
    "grid",
    [
        ["spacing_mm=30,nan"],
        ["diameter_mm=15,1e-9"],
        ["count=2,2.0"],
        ["rotation_step_deg=1e-6"],
        ["shell_width_mm=1e20", "mode=shell"],
        ["max_vertices=3,99999999999999999999"],
        ["dose_falloff_mm=3,1e9"],
        ["time_budget_s=inf"],
    ],
)
def test_batch_grid_value_out_of_range_stops_before_anything_runs(grid, case, tmp_path, capfd):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case,ct,gtv\nP1,{case['ct']},{case['gtv']}\n")
    parent = tmp_path / "work"
    parent.mkdir()
    code, _, err = run(capfd, ["batch", manifest, "--out", parent / "out", *FAST, "--grid", *grid])
    assert_refused(code, err, parent, ["case P1"])


def test_batch_manifest_value_out_of_range_stops_before_anything_runs(case, tmp_path, capfd):
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "case,ct,gtv,diameter_mm\n"
        f"P1,{case['ct']},{case['gtv']},15\nP2,{case['ct']},{case['gtv']},nan\n"
    )
    parent = tmp_path / "work"
    parent.mkdir()
    code, _, err = run(capfd, ["batch", manifest, "--out", parent / "out", *FAST])
    assert_refused(code, err, parent, ["case P2", "diameter", "finite"])


# -- --oar [NAME=]PATH[:MM]: the file named is the file loaded -----------------------------------


@pytest.fixture
def decoy_folder(case, tmp_path, monkeypatch):
    """``run=1/cord.nii.gz`` (the real organ, beside the GTV) and a decoy ``1/cord.nii.gz``
    (another organ, far away) in the current folder: the old reading loaded the decoy."""
    monkeypatch.chdir(tmp_path)
    gtv = _ball(22.0)
    real = _save(
        tmp_path / "run=1" / "cord.nii.gz", (np.roll(gtv, 28, axis=0) & ~gtv).astype(np.uint8)
    )
    decoy = _save(tmp_path / "1" / "cord.nii.gz", np.roll(_ball(4.0), -16, axis=0))
    return real, decoy


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "spec",
    ["{abs}:10", "run=1/cord.nii.gz:10", "cord={abs}:10", "spinal cord=run=1/cord.nii.gz:10"],
    ids=[
        "absolute path with '='",
        "relative path with '='",
        "NAME= and a path with '='",
        "name with a space",
    ],
)
def test_oar_path_with_equals_sign_loads_the_named_file(spec, case, decoy_folder, capfd):
    real, decoy = decoy_folder
    out = decoy_folder[0].parents[1] / "out"
    spec = spec.format(abs=real)
    code, _, err = run(
        capfd,
        ["plan", "--ct", case["ct"], "--gtv", case["gtv"], "--out", out, *FAST, "--oar", spec],
    )
    assert code == 0, err
    doc = json.loads((out / "plan.json").read_text())
    [oar] = doc["inputs"]["oars"]
    assert oar["path"] == str(real.resolve()) and oar["sha256"] == _sha(real)
    assert oar["clearance_mm"] == 10
    expected_name = spec.split("=", 1)[0] if not spec.startswith(("/", "run=")) else "cord"
    assert oar["name"] == expected_name
    assert run(capfd, ["verify", out])[0] == 0


@pytest.mark.parametrize(
    "spec, phrases",
    [
        ("oar.nii.gz:10mm", ["'10mm'", "not a clearance"]),
        ("oar.nii.gz:", ["not a clearance"]),
        ("=oar.nii.gz:10", ["NAME before '='", "empty"]),
        ("cord=:10", ["empty"]),
        (":10", ["no PATH"]),
    ],
    ids=["unit in clearance", "empty clearance", "empty name", "empty path", "only MM"],
)
def test_malformed_oar_is_one_usage_error(spec, phrases, case, tmp_path, capfd):
    parent = tmp_path / "work"
    parent.mkdir()
    code, _, err = run(
        capfd,
        [
            "plan",
            "--ct",
            case["ct"],
            "--gtv",
            case["gtv"],
            "--out",
            parent / "out",
            *FAST,
            "--oar",
            spec,
        ],
    )
    assert_refused(code, err, parent, ["--oar", *phrases])


def test_oar_spec_rules(tmp_path):
    (tmp_path / "run=1").mkdir()
    (tmp_path / "run=1" / "c.nii.gz").write_bytes(b"x")
    (tmp_path / "odd.nii.gz:5").write_bytes(b"x")  # a file whose name ends like a clearance
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "c.nii.gz").write_bytes(b"x")
    s = parse_oar_spec("run=1/c.nii.gz:7", base=tmp_path)  # the existing path wins
    assert (s.name, s.path, s.clearance_mm) == ("c", tmp_path / "run=1/c.nii.gz", 7.0)
    s = parse_oar_spec("odd.nii.gz:5", base=tmp_path)  # the whole text is a file
    assert (s.path, s.clearance_mm) == (tmp_path / "odd.nii.gz:5", None)
    s = parse_oar_spec("/no/such/run=1/c.nii.gz:3")  # a separator before '=': a path
    assert (s.name, str(s.path)) == ("c", "/no/such/run=1/c.nii.gz")
    s = parse_oar_spec("cord=1/c.nii.gz", base=tmp_path)
    assert (s.name, s.path, s.clearance_mm, s.named) == (
        "cord",
        tmp_path / "1/c.nii.gz",
        None,
        True,
    )
    for text in ("run=1/c.nii.gz:7", "cord=1/c.nii.gz:2.5", "/a/b=c/d.nii.gz:0.1"):
        spec = parse_oar_spec(text, base=tmp_path)
        again = parse_oar_spec(spec.text())  # batch writes it back for lattice plan
        assert (again.name, again.path, again.clearance_mm) == (
            spec.name,
            spec.path,
            spec.clearance_mm,
        )


def test_batch_manifest_oar_with_equals_sign_in_its_folder(case, tmp_path):
    folder = tmp_path / "cohort"
    _save(folder / "run=1" / "cord.nii.gz", np.zeros(SHAPE, np.uint8))
    _save(folder / "1" / "cord.nii.gz", np.zeros(SHAPE, np.uint8))
    manifest = folder / "m.csv"
    manifest.write_text(
        f"case,ct,gtv,oars\nP1,{case['ct']},{case['gtv']},"
        "run=1/cord.nii.gz:10;cord2=1/cord.nii.gz:5\n"
    )
    [job] = make_jobs(read_manifest(manifest), tmp_path / "out")
    oars = [job.argv[i + 1] for i, a in enumerate(job.argv) if a == "--oar"]
    assert oars == [
        f"{folder / 'run=1' / 'cord.nii.gz'}:10",
        f"cord2={folder / '1' / 'cord.nii.gz'}:5",
    ]
    parsed = build_parser().parse_args(["plan", *job.argv])
    assert [(n, p, c) for n, p, c in parsed.oar] == [
        ("cord", folder / "run=1" / "cord.nii.gz", 10.0),
        ("cord2", folder / "1" / "cord.nii.gz", 5.0),
    ]


def test_oar_name_roi_named_like_a_clearance_wins():
    assert parse_roi_spec("Lung:5", ["Lung", "Lung:5"]) == ("Lung:5", None)
    assert parse_roi_spec("Lung:5", ["Lung"]) == ("Lung", 5.0)
    assert parse_roi_spec("Cord:PRV", ["Cord:PRV"]) == ("Cord:PRV", None)
    assert parse_roi_spec("Cord:PRV") == ("Cord:PRV", None)
    with pytest.raises(ParameterError, match="no ROI name"):
        parse_roi_spec(":5")


# -- a diameter below the voxel diagonal: planned, with a warning that is true --------------------


def test_vertex_without_a_voxel_centre_is_warned_and_recorded(case, tmp_path, capfd):
    out = tmp_path / "out"
    code, _, err = run(
        capfd,
        [
            "plan",
            "--ct",
            case["ct"],
            "--gtv",
            case["gtv"],
            "--out",
            out,
            "--no-picture",
            "--mesh-format",
            "none",
            "--diameter-mm",
            "0.06",
        ],
    )
    assert code == 0, err
    doc = json.loads((out / "plan.json").read_text())
    warning = next(w for w in doc["warnings"] if "hold no voxel centre" in w)
    assert f"lattice: warning: {warning}" in err.splitlines()
    labels = set(np.unique(np.asarray(nib.load(out / "vertices.nii.gz").dataobj))) - {0}
    n = doc["summary"]["n_vertices"]
    empty = n - len(labels)
    assert empty > 0 and warning.startswith(f"{empty} of {n} vertex spheres")
    assert "at least 3.68 mm" in warning
    assert run(capfd, ["verify", out])[0] == 0


def test_diameter_at_the_voxel_diagonal_gives_no_such_warning(case, tmp_path, capfd):
    out = tmp_path / "out"
    code, _, err = run(
        capfd,
        [
            "plan",
            "--ct",
            case["ct"],
            "--gtv",
            case["gtv"],
            "--out",
            out,
            *FAST,
            "--diameter-mm",
            "3.68",
            "--spacing-mm",
            "20",
        ],
    )
    assert code == 0, err
    assert "hold no voxel centre" not in err


# -- sphericity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("voxel_mm", [(1.0, 1.0, 1.0), (0.7, 0.7, 2.5), (2.0, 1.0, 0.5)])
@pytest.mark.parametrize(
    "shape", ["one voxel", "13-voxel nodule", "19-voxel ball", "rod", "plate", "ball r4"]
)
def test_sphericity_never_exceeds_one(shape, voxel_mm):
    c = np.indices((11, 11, 11)) - 5
    r2 = (c**2).sum(0)
    masks = {
        "one voxel": r2 == 0,
        "13-voxel nodule": ((abs(c[0]) <= 1) & (abs(c[1]) <= 1) & (c[2] == 0))
        | ((c[2] == 1) & (c[0] >= 0) & (c[1] >= 0) & (c[0] + c[1] <= 1))
        | ((c[2] == -1) & (c[0] == 0) & (c[1] == 0)),
        "19-voxel ball": r2 <= 2,
        "rod": (abs(c[0]) <= 4) & (r2 - c[0] ** 2 == 0),
        "plate": c[2] == 0,
        "ball r4": r2 <= 16,
    }
    mask = masks[shape]
    if shape == "13-voxel nodule":
        assert mask.sum() == 13
    aff = np.diag([-voxel_mm[0], voxel_mm[1], voxel_mm[2], 1.0])  # a flip: handedness
    s = measure_lesion(Volume(mask, aff)).sphericity
    assert 0.0 < s <= 1.0, s
    if shape == "ball r4" and len(set(voxel_mm)) == 1:
        assert s > 0.85


def test_one_voxel_sphericity_is_the_octahedron():
    """Marching cubes turns one voxel into the octahedron with vertices half a voxel from its
    centre: sphericity (36 pi V^2)^(1/3) / A = (pi/3)^(1/3) ... = 0.8456."""
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    v, a = 4 / 3 * 0.5**3, 8 * math.sqrt(3) / 4 * (0.5 * math.sqrt(2)) ** 2
    expected = (36 * math.pi * v * v) ** (1 / 3) / a
    assert measure_lesion(Volume(mask, np.eye(4))).sphericity == pytest.approx(expected)


# -- a GTV on a single slice, --allow-empty: the pictures are drawn ------------------------------


@pytest.mark.parametrize("process", ["forked", "in-process"])
def test_single_slice_gtv_with_allow_empty_draws_the_picture(
    process, case, tmp_path, capfd, monkeypatch
):
    monkeypatch.setenv("LATTICE_PICTURE_PROCESS", "1" if process == "forked" else "0")
    out = tmp_path / "out"
    code, _, err = run(
        capfd,
        [
            "plan",
            "--ct",
            case["ct"],
            "--gtv",
            case["gtv_slice"],
            "--out",
            out,
            "--allow-empty",
            "--no-dicom",
            "--mesh-format",
            "none",
        ],
    )
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lattice: warning: no room for a vertex")
    for name in ("overview.png", "overview3d.png", "plan.json", "report.html"):
        assert (out / name).is_file(), name
    assert json.loads((out / "plan.json").read_text())["warnings"] == [
        lines[0].removeprefix("lattice: warning: ")
    ]


@pytest.mark.parametrize("process", ["forked", "in-process"])
def test_a_failure_while_drawing_is_named_as_the_drawing(
    process, case, tmp_path, capfd, monkeypatch
):
    """Not "free space" nor an internal error: the drawing failed, and --no-picture skips
    it (exit 7, nothing written)."""
    import lattice.render as render

    def broken(*args, **kwargs):
        raise ValueError("zero-size array to reduction operation")

    monkeypatch.setattr(render, "render_overview", broken)
    monkeypatch.setenv("LATTICE_PICTURE_PROCESS", "1" if process == "forked" else "0")
    parent = tmp_path / "work"
    parent.mkdir()
    code, _, err = run(
        capfd,
        [
            "plan",
            "--ct",
            case["ct"],
            "--gtv",
            case["gtv_slice"],
            "--out",
            parent / "out",
            "--allow-empty",
            "--no-dicom",
            "--mesh-format",
            "none",
        ],
    )
    lines = [ln for ln in err.splitlines() if not ln.startswith("lattice: warning: ")]
    assert code == 7, err
    assert len(lines) == 1 and "drawing overview.png" in lines[0], err
    assert "free space" not in err and "--out folder" not in err and "--no-picture" in lines[0]
    assert lines[0].startswith("lattice: error: drawing overview.png")
    assert sorted(p.name for p in parent.iterdir()) == []


def test_length_limit_is_one_constant():
    assert RANGES["diameter_mm"].high == RANGES["shell_width_mm"].high == MAX_LENGTH_MM


def test_oar_name_picks_the_roi_named_as_typed(case, tmp_path, capfd):
    """``--oar-name LATTICE_VTX:5``: the ROI of that very name when the structure set has
    one (its clearance then from --protocol), else ROI LATTICE_VTX with 5 mm."""
    import pydicom

    first = tmp_path / "first"
    code, _, err = run(
        capfd,
        [
            "plan",
            "--ct",
            case["ct"],
            "--gtv",
            case["gtv"],
            "--out",
            first,
            "--no-picture",
            "--mesh-format",
            "none",
        ],
    )
    assert code == 0, err
    rs = pydicom.dcmread(first / "rtstruct.dcm")
    renamed = tmp_path / "renamed.dcm"
    roi = next(r for r in rs.StructureSetROISequence if r.ROIName == "VTX_01")
    roi.ROIName = "LATTICE_VTX:5"
    rs.save_as(renamed)
    dicom = [
        "plan",
        "--ct-dicom",
        first / "ct_dicom",
        "--gtv-name",
        "GTV",
        *FAST,
        "--allow-empty",
        "--protocol",
        "mayo",
    ]
    for rtstruct, roi_name, clearance in (
        (renamed, "LATTICE_VTX:5", 10.0),
        (first / "rtstruct.dcm", "LATTICE_VTX", 5.0),
    ):
        out = tmp_path / f"out-{rtstruct.stem}"
        code, _, err = run(
            capfd, [*dicom, "--rtstruct", rtstruct, "--out", out, "--oar-name", "LATTICE_VTX:5"]
        )
        assert code == 0, err
        [oar] = json.loads((out / "plan.json").read_text())["inputs"]["oars"]
        assert (oar["roi"], oar["clearance_mm"]) == (roi_name, clearance)


@pytest.mark.parametrize("text", ["-0", "-0.0", "-0e5", " -0 "])
def test_negative_zero_is_read_as_zero(text):
    """'--gtv-margin-mm -0' was printed and recorded as "margin -0 mm"."""
    import math

    from lattice.planning.parameters import read_number

    value = read_number(text)
    assert value == 0 and math.copysign(1.0, value) == 1.0 and f"{value:g}" == "0"
