"""lattice view: viewer.html written again from a plan folder and its recorded inputs; never
over an existing page without --force; --open hands the page to the default browser."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from cli_helpers import run_redirected as run
from conftest import REPO_ROOT

SAMPLE = REPO_ROOT / "sample_data" / "STS_001"


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """A plan of the bundled case with its pictures but without viewer.html."""
    root = tmp_path_factory.mktemp("view")
    for name in ("ct.nii.gz", "gtv.nii.gz"):
        shutil.copy(SAMPLE / name, root / name)
    out = root / "plan"
    argv = ["plan", "--ct", root / "ct.nii.gz", "--gtv", root / "gtv.nii.gz", "--out", out]
    code, _, err = run([*argv, "--no-viewer", "--no-dicom"])
    assert code == 0, err
    assert (out / "overview.png").is_file() and not (out / "viewer.html").exists()
    return root, out


def test_view_writes_the_page_into_the_plan_folder_once(planned):
    _, out = planned
    code, stdout, err = run(["view", out])
    assert code == 0, err
    page = out / "viewer.html"
    assert f"wrote {page}" in stdout
    first = page.read_bytes()
    assert first.startswith(b"<!DOCTYPE html>") and b"lattice-meta" in first
    code, _, err = run(["view", out])
    assert code == 6 and "--force" in err and page.read_bytes() == first
    code, _, err = run(["view", out, "--force"])
    assert code == 0 and page.read_bytes() == first  # deterministic


def test_view_out_and_open(planned, tmp_path, monkeypatch):
    _, out = planned
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    target = tmp_path / "elsewhere.html"
    code, _, err = run(["view", out, "--out", target, "--open"])
    assert code == 0, err
    assert opened == [target.resolve().as_uri()]
    assert target.stat().st_size > 100_000


def test_view_reports_a_missing_plan_or_input(planned, tmp_path):
    root, out = planned
    code, _, err = run(["view", tmp_path])
    assert code == 3 and "plan.json" in err
    moved = root / "moved"
    shutil.copytree(out, moved / "plan")
    (root / "gtv.nii.gz").rename(root / "gtv.moved")
    try:
        code, _, err = run(["view", moved / "plan", "--force"])
    finally:
        (root / "gtv.moved").rename(root / "gtv.nii.gz")
    assert code == 3 and "GTV" in err and err.count("\n") == 1


def test_view_console_script_runs(planned, tmp_path):
    _, out = planned
    proc = subprocess.run(
        [sys.executable, "-m", "lattice_cli", "view", out, "--out", tmp_path / "v.html"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "v.html").is_file()
