"""Property (issue 12): over the documented range of every numeric option of ``lattice plan``
and just beyond it, the outcome is only ever a documented error (exit 2, or 4 for a label
the mask lacks; one ``lattice: error:`` line; nothing written) or a plan that ``lattice
verify`` accepts.

Values are drawn per option from its range in :data:`lattice.planning.parameters.RANGES`: inside
(log-uniform for lengths), on each bound, just beyond each bound (the next float, or one more
for a count), and nonsense (NaN, infinities, negatives). A value outside its range must be
refused naming the option. The inputs are a small synthetic ball GTV (24 x 24 x 12 voxels)
with an OAR beside it; the command runs in-process with --no-picture --no-dicom
--mesh-format none. The profile is the fixed, derandomized one of tests/planning/test_properties.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from lattice.errors import ParameterError
from lattice.planning.parameters import RANGES, check_range
from lattice_cli.main import main

SHAPE = (24, 24, 12)
VOXEL_MM = (2.0, 2.0, 3.0)
FAST = ["--no-picture", "--no-dicom", "--mesh-format", "none"]

#: option -> library range name; every numeric option of ``lattice plan``.
OPTIONS = {
    "--diameter-mm": "diameter_mm",
    "--spacing-mm": "min_spacing_mm",
    "--gtv-margin-mm": "gtv_margin_mm",
    "--oar": "oar_clearance_mm",
    "--shell-width-mm": "shell_width_mm",
    "--coplanar-mm": "coplanar_mm",
    "--coplanar-spacing-mm": "coplanar_spacing_mm",
    "--rotation-step-deg": "rotation_step_deg",
    "--time-budget-s": "time_budget_s",
    "--max-vertices": "max_vertices",
    "--count": "count",
    "--min-vertices": "min_vertices",
    "--gtv-label": "gtv_label",
    "--stv-margin-mm": "stv_margin_mm",
    "--stv-fraction": "stv_fraction",
    "--dose-peak-gy": "dose_peak_gy",
    "--dose-valley-gy": "dose_valley_gy",
    "--dose-falloff-mm": "dose_falloff_mm",
}
#: The ``lattice: error:`` messages of valid parameters the input cannot satisfy.
CANNOT_PLAN = (
    "no room for a vertex",
    "no vertex fits",
    "are required",
    "too small for this",
    "would overlap",
    "leaves nothing of the GTV",
    "cannot be combined",
    "exceeds",
    "peak > valley",
    "is not larger than half the voxel diagonal",
    "is not in mask",
    "the co-planar rule needs both",
    "cannot be contracted",
    "cannot be placed",
)


def _profile(default_examples: int) -> settings:
    """Fixed and derandomized: CI runs the same examples every time."""
    return settings(
        max_examples=int(os.environ.get("LATTICE_PROPERTY_EXAMPLES", "0") or 0) or default_examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        phases=list(Phase),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("option_properties")
    aff = np.diag([*VOXEL_MM, 1.0])
    aff[:3, 3] = -np.array(SHAPE) * VOXEL_MM / 2
    ras = np.indices(SHAPE).reshape(3, -1).T * VOXEL_MM + aff[:3, 3]
    gtv = (np.linalg.norm(ras, axis=1) < 17.0).reshape(SHAPE)
    oar = (np.linalg.norm(ras - [20.0, 0, 0], axis=1) < 6.0).reshape(SHAPE) & ~gtv
    paths = {}
    for name, data in (
        ("ct", np.where(gtv, 40, -1000).astype(np.int16)),
        ("gtv", gtv.astype(np.uint8)),
        ("oar", oar.astype(np.uint8)),
    ):
        img = nib.Nifti1Image(data, aff)
        img.set_sform(aff, code=1)
        img.set_qform(aff, code=1)
        paths[name] = folder / f"{name}.nii.gz"
        nib.save(img, paths[name])
    return paths


@st.composite
def value_for(draw, name: str):
    """(text, inside): a value of the option's range, on or just beyond a bound, or
    nonsense."""
    r = RANGES[name]
    kind = draw(st.sampled_from(["inside", "inside", "inside", "bound", "beyond", "nonsense"]))
    if r.integer:
        low, high = int(r.low), int(r.high)
        if kind == "inside":  # small counts mostly: the plans stay fast
            v = draw(st.integers(low, min(high, low + 6)) | st.integers(low, high))
        elif kind == "bound":
            v = draw(st.sampled_from([low, high]))
        elif kind == "beyond":
            v = draw(st.sampled_from([low - 1, high + 1, high * 10**20, -(10**30)]))
        else:
            return draw(st.sampled_from(["nan", "2.0", "1e3", "-inf"])), False
        return str(v), r.contains(v)
    low, high = float(r.low), float(r.high)
    if kind == "inside":
        lo = max(low, 1e-3 if low == 0 else low)
        if name in ("rotation_step_deg",):  # coarse searches keep each example fast
            lo = 15.0
        v = draw(
            st.floats(math.log(lo), math.log(high)).map(math.exp)
            if high / lo > 100
            else st.floats(lo, high)
        )
        v = min(max(v, low), high)
    elif kind == "bound":
        v = draw(st.sampled_from([low, high]))
        if name == "rotation_step_deg":
            v = high
    elif kind == "beyond":
        v = draw(
            st.sampled_from(
                [
                    math.nextafter(low, -math.inf),
                    math.nextafter(high, math.inf),
                    high * 1.001,
                    -1.0,
                    1e20,
                    1e300,
                ]
            )
        )
    else:
        v = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    return repr(v), r.contains(v) and math.isfinite(v)


@st.composite
def plan_options(draw):
    """Up to three numeric options, with what each needs beside it."""
    chosen = draw(st.lists(st.sampled_from(sorted(OPTIONS)), min_size=1, max_size=3, unique=True))
    argv, outside = [], []
    for option in chosen:
        text, inside = draw(value_for(OPTIONS[option]))
        if not inside:
            outside.append(option)
        if option == "--oar":
            argv += ["--oar", f"{{oar}}:{text}"]
        else:
            argv += [f"{option}={text}"]
        if option == "--shell-width-mm":
            argv += ["--mode", "shell"]
        if option == "--coplanar-mm" and "--coplanar-spacing-mm" not in chosen:
            argv += ["--coplanar-spacing-mm", "40"]
        if option == "--coplanar-spacing-mm" and "--coplanar-mm" not in chosen:
            argv += ["--coplanar-mm", "10"]
    if "--stv-margin-mm" in chosen and "--stv-fraction" in chosen:
        argv = [a for a in argv if not a.startswith("--stv-fraction")]
        outside = [o for o in outside if o != "--stv-fraction"]
    if draw(st.booleans()):
        argv.append("--allow-empty")
    argv += ["--rotation-step-deg", "30"] if "--rotation-step-deg" not in chosen else []
    return argv, outside


@_profile(80)
@given(drawn=plan_options())
def test_numeric_options_give_a_documented_error_or_a_verified_plan(drawn, inputs, capfd):
    argv, outside = drawn
    argv = [a.replace("{oar}", str(inputs["oar"])) for a in argv]
    if "--oar" not in argv:
        argv += ["--oar", f"{inputs['oar']}:3"]
    parent = Path(tempfile.mkdtemp(prefix="optprop-"))
    out = parent / "out"
    try:
        capfd.readouterr()
        try:
            code = main(
                [
                    "plan",
                    "--ct",
                    str(inputs["ct"]),
                    "--gtv",
                    str(inputs["gtv"]),
                    "--out",
                    str(out),
                    *FAST,
                    *argv,
                ]
            )
        except SystemExit as exc:  # argparse: a number not written as one
            code = exc.code
        _, err = capfd.readouterr()
        lines = err.splitlines()
        assert "Traceback" not in err and "internal error" not in err, err
        if code == 0:
            event("plan")
            assert not outside, f"{outside} out of range, yet planned"
            assert all(ln.startswith("lattice: warning: ") for ln in lines), err
            doc = json.loads((out / "plan.json").read_text())
            assert doc["verification"]["ok"]
            capfd.readouterr()
            assert main(["verify", str(out)]) == 0, capfd.readouterr()
            return
        assert code in (2, 4), err
        assert len(lines) == 1 and lines[0].startswith("lattice: error: "), err
        assert not out.exists() and sorted(p.name for p in parent.iterdir()) == []
        if outside:
            event("refused: out of range")
            label = "clearance for OAR" if outside[0] == "--oar" else outside[0]
            assert any(o in lines[0] for o in (*outside, "clearance for OAR")), (label, err)
        else:
            event("refused: cannot plan")
            assert any(p in lines[0] for p in CANNOT_PLAN), err
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@_profile(200)
@given(name=st.sampled_from(sorted(RANGES)), data=st.data())
def test_check_range_agrees_with_the_documented_text(name, data):
    """The library check and the range text agree at and around every bound."""
    text, inside = data.draw(value_for(name))
    r = RANGES[name]
    try:
        value = int(text) if r.integer else float(text)
    except ValueError:
        value = float(text)  # '2.0', '1e3', '-inf' for a count: a float
    if inside:
        assert check_range(name, value) == value
    else:
        with pytest.raises(ParameterError) as raised:
            check_range(name, value)
        message = str(raised.value)
        assert name in message and ("longer than any patient" in message or r.text() in message)
