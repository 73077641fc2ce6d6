"""A plan folder is complete or absent: runs stopped mid-write (SIGTERM, SIGKILL) leave no
partial plan, --force replaces a plan only once the new one is complete, and a rerun after a
kill completes and clears the dead run's temporary folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lattice.io.plan_writer import remove_stale_stages, stage_prefix
from lattice_cli.main import main

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "STS_001"
#: Seconds a stopped run may take to clean up (it waits for its picture process).
STOP_TIMEOUT_S = 60

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")


def _start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lattice_cli",
            "plan",
            "--ct",
            str(SAMPLE / "ct.nii.gz"),
            "--gtv",
            str(SAMPLE / "gtv.nii.gz"),
            "--out",
            str(out),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stop_mid_write(process: subprocess.Popen, out: Path, sig: int, *, group: bool) -> str:
    """Send ``sig`` once the run has begun writing its staged plan folder (its first mask
    is in the temporary folder beside ``out``); return what the run wrote to stderr."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        stages = list(out.parent.glob(f".{out.name}.partial-*"))
        if any((s / "vertices.nii.gz").exists() for s in stages):
            break
        if process.poll() is not None:
            pytest.fail(f"the run ended before it was stopped: {process.communicate()[1]}")
        time.sleep(0.005)
    else:
        process.kill()
        process.communicate()
        pytest.fail("the run never started writing")
    if group:
        os.killpg(process.pid, sig)
    else:
        process.send_signal(sig)
    return process.communicate(timeout=STOP_TIMEOUT_S)[1]


def _hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


def _complete(out: Path) -> dict:
    """plan.json of a complete folder; every file it names exists."""
    doc = json.loads((out / "plan.json").read_text())
    assert (out / "vertices.nii.gz").is_file() and (out / "report.html").is_file()
    return doc


def test_sigterm_mid_write_leaves_nothing(tmp_path):
    out = tmp_path / "plan"
    process = _start(out)
    err = _stop_mid_write(process, out, signal.SIGTERM, group=False)
    assert process.returncode == 130
    assert err.strip() == "lattice: interrupted; no output was written"
    assert not out.exists()
    assert _hidden(out) == []  # staged plan and derived CT folder removed


def test_sigkill_mid_write_leaves_no_plan_and_a_rerun_completes(tmp_path):
    out = tmp_path / "plan"
    process = _start(out)
    _stop_mid_write(process, out, signal.SIGKILL, group=True)
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()
    assert _hidden(out)  # the dead run could not clean up ...
    assert (
        main(
            [
                "plan",
                "--ct",
                str(SAMPLE / "ct.nii.gz"),
                "--gtv",
                str(SAMPLE / "gtv.nii.gz"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert _hidden(out) == []  # ... the rerun did
    _complete(out)
    assert main(["verify", str(out)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    for folder in (out, out / "ct_dicom"):  # made like any folder, not private to root
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask


def test_killed_force_run_keeps_the_previous_plan_whole(tmp_path):
    out = tmp_path / "plan"
    assert (
        main(
            [
                "plan",
                "--ct",
                str(SAMPLE / "ct.nii.gz"),
                "--gtv",
                str(SAMPLE / "gtv.nii.gz"),
                "--out",
                str(out),
                "--spacing-mm",
                "40",
            ]
        )
        == 0
    )
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    process = _start(out, "--force", "--spacing-mm", "25")
    _stop_mid_write(process, out, signal.SIGKILL, group=True)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert _complete(out)["parameters"]["min_spacing_mm"] == 40.0
    assert (
        main(
            [
                "plan",
                "--ct",
                str(SAMPLE / "ct.nii.gz"),
                "--gtv",
                str(SAMPLE / "gtv.nii.gz"),
                "--out",
                str(out),
                "--spacing-mm",
                "25",
                "--force",
            ]
        )
        == 0
    )
    assert _complete(out)["parameters"]["min_spacing_mm"] == 25.0
    assert _hidden(out) == []


def test_force_replaces_a_plan_folder_by_swapping_it_whole(tmp_path):
    out = tmp_path / "plan"
    base = [
        "plan",
        "--ct",
        str(SAMPLE / "ct.nii.gz"),
        "--gtv",
        str(SAMPLE / "gtv.nii.gz"),
        "--out",
        str(out),
        "--no-dicom",
        "--mesh-format",
        "none",
    ]
    assert main([*base, "--mesh-format", "stl"]) == 0
    inode = out.stat().st_ino
    assert (out / "vertices.stl").exists()
    assert main([*base, "--force"]) == 0
    assert out.stat().st_ino != inode  # a new folder, renamed into place
    assert not (out / "vertices.stl").exists()  # nothing of the old plan is kept
    _complete(out)


def test_only_dead_runs_temporary_folders_are_removed(tmp_path):
    out = tmp_path / "plan"
    mine = tmp_path / f"{stage_prefix(out, 'partial')}abcd1234"
    mine.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = tmp_path / f".plan.partial-{dead.stdout.strip()}-xyz_0123"
    theirs.mkdir()
    kept = [
        tmp_path / ".planx.partial-1-abcd1234",  # another output's
        tmp_path / ".plan.backup-2024-01",  # the user's own folders
        tmp_path / f".plan.partial-{dead.stdout.strip()}-notmine!",
        tmp_path / ".plan.old-99999999999999999999-abcd1234",
    ]
    for folder in kept:
        folder.mkdir()
    assert remove_stale_stages(out) == [theirs]
    assert mine.exists() and not theirs.exists()
    assert all(folder.exists() for folder in kept)


def test_a_symlinked_output_folder_is_written_through_the_link(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    argv = [
        "plan",
        "--ct",
        str(SAMPLE / "ct.nii.gz"),
        "--gtv",
        str(SAMPLE / "gtv.nii.gz"),
        "--out",
        str(link),
        "--no-dicom",
        "--mesh-format",
        "none",
        "--no-picture",
    ]
    assert main(argv) == 0
    assert main([*argv, "--force"]) == 0
    assert link.is_symlink() and (real / "plan.json").is_file()
    assert _hidden(link) == []


def test_atomic_open_replaces_whole_or_not_at_all(tmp_path):
    """A text file written through atomic_open appears whole when the block ends; when the
    block raises, the old file is untouched and no temporary file is left beside it."""
    from lattice.io.folder import atomic_open

    target = tmp_path / "rows.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("half")
            raise RuntimeError("stopped")
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.json"]
    with atomic_open(target) as fh:
        fh.write("new")
    assert target.read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.json"]
