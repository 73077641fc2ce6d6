"""lattice show: a written plan drawn again from its folder and recorded inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_helpers import run_redirected as run
from conftest import REPO_ROOT
from PIL import Image

SAMPLE = REPO_ROOT / "sample_data" / "STS_001"
PICTURES = ("overview.png", "overview3d.png", "vertices.png")


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    root = tmp_path_factory.mktemp("show")
    for name in ("ct.nii.gz", "gtv.nii.gz"):
        shutil.copy(SAMPLE / name, root / name)
    out = root / "plan"
    code, _, err = run(
        [
            "plan",
            "--ct",
            root / "ct.nii.gz",
            "--gtv",
            root / "gtv.nii.gz",
            "--out",
            out,
            "--no-picture",
        ]
    )
    assert code == 0, err
    assert not (out / "viewer.html").exists()  # --no-picture skips the viewer too
    return root, out


def test_show_draws_from_the_folder(planned, tmp_path):
    root, out = planned
    before = json.loads((out / "plan.json").read_text())
    code, stdout, err = run(["show", out, "--out", tmp_path / "soft"])
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "soft").iterdir()) == sorted(PICTURES)
    (root / "ct.nii.gz").rename(root / "ct.moved")  # the derived ct_dicom/ stands in
    try:
        code, _, err = run(["show", out, "--out", tmp_path / "lung", "--window", "lung"])
    finally:
        (root / "ct.moved").rename(root / "ct.nii.gz")
    assert code == 0, err
    soft = np.asarray(Image.open(tmp_path / "soft" / "overview.png").convert("L"), float)
    lung = np.asarray(Image.open(tmp_path / "lung" / "overview.png").convert("L"), float)
    assert soft.shape == lung.shape and np.abs(soft - lung).mean() > 1.0  # another window
    assert json.loads((out / "plan.json").read_text()) == before  # nothing planned again


def test_show_errors(planned, tmp_path):
    root, out = planned
    code, _, err = run(["show", tmp_path])
    assert code == 3 and "no plan.json" in err
    code, _, err = run(["show", out, "--out", tmp_path / "a"])
    assert code == 0, err
    code, _, err = run(["show", out, "--out", tmp_path / "a"])
    assert code == 6 and "--force" in err
    (root / "gtv.nii.gz").rename(root / "gtv.moved")
    try:
        code, _, err = run(["show", out, "--out", tmp_path / "b"])
    finally:
        (root / "gtv.moved").rename(root / "gtv.nii.gz")
    assert code == 3 and "is gone" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
