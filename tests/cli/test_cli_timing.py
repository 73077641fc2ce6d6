"""The run time ``lattice plan`` prints is the process's wall time, start-up included.

Timed from outside: the printed time must not exceed the wall time of the subprocess, and
may fall short of it only by what happens outside the measured span (fork and exec before
the interpreter exists, the last lines printed and the interpreter's exit after it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_data" / "STS_001"
#: What the printed time may miss: exec before the interpreter runs and the exit after the
#: line is printed (the README promises "start-up included", which alone is 0.3-0.5 s).
ALLOWED_SHORTFALL_S = 0.15


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the process start time is read from /proc on Linux",
)
@pytest.mark.parametrize(
    "outputs",
    [["--no-picture", "--no-dicom", "--mesh-format", "none"], []],
    ids=["lean", "every output"],
)
def test_printed_run_time_includes_start_up(tmp_path, outputs):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    argv = [
        sys.executable,
        "-m",
        "lattice_cli",
        "plan",
        "--ct",
        str(SAMPLE / "ct.nii.gz"),
        "--gtv",
        str(SAMPLE / "gtv.nii.gz"),
        "--out",
        str(tmp_path / "out"),
        "--diameter-mm",
        "15",
        "--spacing-mm",
        "30",
        "--gtv-margin-mm",
        "5",
        *outputs,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"; (\d+\.\d\d) s$", proc.stdout.splitlines()[0])
    assert m, proc.stdout
    printed = float(m.group(1))
    assert printed <= wall + 0.005, f"printed {printed} s, the process took {wall:.3f} s"
    assert printed >= wall - ALLOWED_SHORTFALL_S, (
        f"printed {printed} s, but the process took {wall:.3f} s from outside"
    )


def test_in_process_runs_time_from_the_call(tmp_path, capsys):
    """main([...]) called inside a long-lived process (tests, lattice batch's workers) times
    the call, not the process's whole life."""
    from lattice_cli.main import main

    time.sleep(0.3)  # this process is already older than the run will take
    t0 = time.perf_counter()
    code = main(
        [
            "plan",
            "--ct",
            str(SAMPLE / "ct.nii.gz"),
            "--gtv",
            str(SAMPLE / "gtv.nii.gz"),
            "--out",
            str(tmp_path / "out"),
            "--no-picture",
            "--no-dicom",
            "--mesh-format",
            "none",
        ]
    )
    inside = time.perf_counter() - t0
    assert code == 0
    printed = float(
        re.search(r"; (\d+\.\d\d) s$", capsys.readouterr().out.splitlines()[0]).group(1)
    )
    assert printed <= inside + 0.005
