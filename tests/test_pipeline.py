"""lattice.run_plan: the pipeline behind ``lattice plan``, called from Python.

The command and the library write the same plan.json for the same case (apart from the
durations and generated UIDs it records); a request can hold volumes built in memory; the
README's Python API example runs as written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run

import lattice
from lattice.errors import ParameterError
from lattice.pipeline import NiftiInputs, PlanOptions, VolumeInputs
from lattice.planning.parameters import OarSpec
from lattice.planning.rules import Oar

ROOT = Path(__file__).resolve().parents[1]
PHANTOM = ROOT / "sample_data" / "phantom"
README = ROOT / "README.md"
#: Keys whose values are measured durations (they differ from run to run).
DURATIONS = {"seconds"}


def _without_durations(value):
    """The document without durations, and without the UID of the derived DICOM CT series
    (a new UID per run: it stamps the run as a timestamp would)."""
    if isinstance(value, dict) and "derived_ct_dicom" in value:
        value = {
            **value,
            "derived_ct_dicom": {
                k: v for k, v in value["derived_ct_dicom"].items() if k != "series_instance_uid"
            },
        }
    if isinstance(value, dict):
        return {k: _without_durations(v) for k, v in value.items() if k not in DURATIONS}
    if isinstance(value, list):
        return [_without_durations(v) for v in value]
    return value


def test_command_and_run_plan_write_the_same_plan_json(tmp_path, capfd):
    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    code, out, err = run(
        capfd,
        [
            "plan",
            "--ct",
            PHANTOM / "ct.nii.gz",
            "--gtv",
            PHANTOM / "gtv.nii.gz",
            "--oar",
            f"{PHANTOM / 'cord.nii.gz'}:8",
            "--out",
            cli_out,
            "--protocol",
            "mayo",
            "--spacing-mm",
            "25",
            "--stv-fraction",
            "0.3",
            "--dose-peak-gy",
            "12",
        ],
    )
    assert code == 0, err
    request = lattice.PlanRequest(
        NiftiInputs(
            PHANTOM / "ct.nii.gz",
            PHANTOM / "gtv.nii.gz",
            oars=[OarSpec("cord", PHANTOM / "cord.nii.gz", 8.0)],
        ),
        api_out,
        parameters=lattice.PlanParameters.from_protocol("mayo", min_spacing_mm=25),
        options=PlanOptions(stv_fraction=0.3, dose=lattice.DoseProxyParameters(peak_gy=12.0)),
    )
    outcome = lattice.run_plan(request)
    assert outcome.folder == api_out
    cli_doc = json.loads((cli_out / "plan.json").read_text(encoding="utf-8"))
    api_doc = json.loads((api_out / "plan.json").read_text(encoding="utf-8"))
    assert _without_durations(api_doc) == _without_durations(cli_doc)
    assert _without_durations(outcome.document) == _without_durations(api_doc)
    assert sorted(p.name for p in api_out.iterdir()) == sorted(p.name for p in cli_out.iterdir())
    assert outcome.plan.n_vertices == api_doc["summary"]["n_vertices"] > 0
    assert outcome.lesion == api_doc["lesion"]
    assert list(outcome.warnings) == api_doc["warnings"]


def test_a_request_holds_volumes_built_in_memory(tmp_path):
    shape, voxel_mm = (48, 48, 24), (1.5, 1.5, 3.0)
    affine = np.diag([*voxel_mm, 1.0])
    affine[:3, 3] = -np.array(shape) * voxel_mm / 2
    ijk = np.indices(shape).reshape(3, -1).T
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    gtv = (np.linalg.norm(ras, axis=1) < 28.0).reshape(shape)
    organ = (np.linalg.norm(ras - [40.0, 0.0, 0.0], axis=1) < 10.0).reshape(shape)
    request = lattice.PlanRequest(
        VolumeInputs(
            lattice.Volume(gtv, affine), oars=[Oar("organ", lattice.Volume(organ, affine), 5.0)]
        ),
        tmp_path / "out",
        parameters=lattice.PlanParameters(diameter_mm=10, min_spacing_mm=18),
        options=PlanOptions(mesh_format=None),
    )
    outcome = lattice.run_plan(request)
    doc = outcome.document
    assert doc["world_frame"]["input"].startswith("Volumes given to the library")
    assert doc["parameters"]["oar_clearance_mm"] == {"organ": 5.0}
    assert doc["verification"]["ok"] and outcome.plan.n_vertices > 0
    assert (tmp_path / "out" / "vertices.nii.gz").is_file()
    assert not (tmp_path / "out" / "overview.png").exists()  # no CT: no picture, no DICOM CT
    with pytest.raises(ParameterError) as raised:
        lattice.PlanParameters(diameter_mm=20, min_spacing_mm=10)
    assert raised.value.parameter == "min_spacing_mm"


def _readme_python_api_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]


def test_readme_python_api_example_runs(tmp_path, monkeypatch):
    """The notebook-style example of README "Python API", on the sample data."""
    shutil.copytree(PHANTOM, tmp_path / "sample_data" / "phantom")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_python_api_example(), str(README), "exec"), namespace)  # noqa: S102
    plans = tmp_path / "plans"
    assert (plans / "phantom" / "plan.json").is_file()
    folders = sorted(p.name for p in plans.iterdir())
    assert len(folders) > 2 and os.path.isdir(plans / folders[-1])
