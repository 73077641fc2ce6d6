"""report.html: self-contained, complete, rebuilt from a plan folder alone, and rendered by
headless Chromium without console errors (skipped where Chromium is not installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import matplotlib.image
import pytest
from cli_helpers import run_redirected as run
from conftest import REPO_ROOT

SAMPLE = REPO_ROOT / "sample_data" / "STS_001"


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
    """A plan of the bundled case whose input files are deleted afterwards."""
    root = tmp_path_factory.mktemp("report")
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
            "--no-dicom",
            "--dose-peak-gy",
            "15",
            "--size-rule",
            "NCT05602415",
        ]
    )
    assert code == 0, err
    for name in ("ct.nii.gz", "gtv.nii.gz"):
        (root / name).unlink()  # `lattice report` must not need them
    return out


def test_report_is_self_contained_and_complete(plan_dir):
    text = (plan_dir / "report.html").read_text(encoding="utf-8")
    doc = json.loads((plan_dir / "plan.json").read_text())
    sources = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)""", text)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert "url(" not in text  # no external resources in the style sheet either
    for v in doc["vertices"]:
        assert f"<td>{v['name']}</td>" in text
    assert doc["inputs"]["ct"]["sha256"] in text and doc["inputs"]["gtv"]["sha256"] in text
    assert f"{doc['lesion']['measurements']['long_axis_mm']:.1f} mm" in text
    assert "long_axis_mm &gt;= 50" in text  # the size rule asked for, escaped
    assert "not a dose calculation" in text


def test_report_command_rebuilds_without_inputs(plan_dir, tmp_path):
    before = (plan_dir / "report.html").read_text(encoding="utf-8")
    code, _, err = run(["report", plan_dir])
    assert code == 6 and "--force" in err
    code, out, err = run(["report", plan_dir, "--out", tmp_path / "again.html"])
    assert code == 0, err
    assert "3 pictures embedded" in out
    assert (tmp_path / "again.html").read_text(encoding="utf-8") == before
    code, _, err = run(["report", tmp_path])
    assert code == 3 and "no plan.json" in err


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium (Debian package chromium) is not installed"
)
def test_report_renders_in_headless_chromium(plan_dir, tmp_path):
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,2400",
            f"--screenshot={shot}",
            "--enable-logging=stderr",
            "--v=0",
            (plan_dir / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    problems = [
        line
        for line in proc.stderr.splitlines()
        if "CONSOLE" in line or "Failed to load resource" in line or "net::ERR" in line
    ]
    assert not problems, problems
    image = matplotlib.image.imread(shot)
    assert image.shape[0] == 2400 and image.shape[1] == 1280
    assert image[..., :3].std() > 0.05  # not a blank page
