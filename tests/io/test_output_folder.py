"""The output folder (issue 12, classes 3 and 6): one run at a time, never into its own
inputs, and any ``--out`` path either works or fails at once with one line.

* Concurrency: ``.OUT.lock`` (flock) beside the folder. Four runs started at once into one
  ``--out``: one plan, three exit 6 naming the winner; ``lattice batch`` obeys the same lock;
  a lock left by a killed run does not stop the next one.
* Inputs inside the output folder are refused (exit 2), with ``--force`` or without, however
  they are spelt (symbolic links either way, ``..``, relative paths, ``--out`` through a
  link), for every input option; the folder and the input are left byte for byte.
* Paths: any legal name works (240 and 255 bytes, multi-byte), also with ``--force`` and the
  derived DICOM CT; a file, a file on the way, a link loop, a dangling link, a name too long,
  a NUL, an unwritable parent fail with one line (exit 7) before anything is planned; the
  current folder or one holding it is refused (exit 2); a failed ``--force`` swap leaves the
  previous plan whole and no hidden folder behind.

Every failing case checks the exit code, exactly one ``lattice: error:`` line on stderr (no
traceback, no warning), and that nothing was written: the parent folder lists what it listed
before (no ``.OUT.*`` folder or lock left) and an existing folder is unchanged.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import lock_holder, run, snapshot

from lattice.io.folder import resolve_output_folder
from lattice.io.lock import lock_path, output_lock, remove_stale_lock
from lattice.io.plan_writer import PLAN_FILES, remove_stale_stages
from lattice_cli.main import main

PHANTOM = Path(__file__).resolve().parents[2] / "sample_data" / "phantom"
FAST = ["--no-picture", "--no-dicom", "--mesh-format", "none"]
#: The phantom's files a plan written without FAST holds (DICOM, no picture, no meshes).
DICOM_PLAN = ["--no-picture", "--mesh-format", "none"]


def _plan(out, *extra, ct=None, gtv=None):
    return [
        "plan",
        "--ct",
        ct or PHANTOM / "ct.nii.gz",
        "--gtv",
        gtv or PHANTOM / "gtv.nii.gz",
        "--out",
        out,
        *extra,
    ]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lattice: error: "), stderr
    assert "Traceback" not in stderr and "Warning" not in stderr
    return lines[0]


def no_planning(monkeypatch):
    """Make planning fail the test: a path error must come before any planning."""
    import lattice.planning.placement

    def plan_vertices(*args, **kwargs):
        raise AssertionError("planned before the output path was checked")

    monkeypatch.setattr(lattice.planning.placement, "plan_vertices", plan_vertices)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A plan folder with DICOM (ct_dicom/, rtstruct.dcm), written once; tests copy it."""
    out = tmp_path_factory.mktemp("template") / "out"
    assert main([str(a) for a in _plan(out, *DICOM_PLAN)]) == 0
    return out


@pytest.fixture()
def plan_folder(template, tmp_path):
    """A fresh copy of the template in ``tmp_path/work/out``; the test runs in ``work``."""
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    shutil.copytree(template, out)
    return out


# -- concurrency ----------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="flock locks are POSIX only")
def test_a_lock_file_left_by_a_killed_run_is_removed_and_a_held_one_kept(tmp_path):
    folder = resolve_output_folder(tmp_path / "out")
    holder = lock_holder(folder)
    try:
        assert not remove_stale_lock(folder)  # held: kept
        assert lock_path(folder).is_file()
    finally:
        holder.kill()  # SIGKILL: no clean-up, the kernel drops the flock, the file stays
        holder.communicate()
    assert lock_path(folder).is_file()
    assert remove_stale_lock(folder)
    assert not lock_path(folder).exists()
    assert not remove_stale_lock(folder)  # nothing left to remove
    with output_lock(folder):  # and the folder can be locked again
        assert lock_path(folder).is_file()


def test_four_runs_at_once_make_one_plan_and_the_others_exit_6(tmp_path):
    out = tmp_path / "runs" / "out"
    # A plan that takes 3 s (a sleep before planning, as on a large CT): the first run still
    # holds the folder while the others, started with it, arrive on a loaded machine.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import time\n"
        "import lattice.planning.placement\n"
        "_plan = lattice.planning.placement.plan_vertices\n"
        "def plan_vertices(*args, **kwargs):\n"
        "    time.sleep(3)\n"
        "    return _plan(*args, **kwargs)\n"
        "lattice.planning.placement.plan_vertices = plan_vertices\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
    }
    argv = [sys.executable, "-m", "lattice_cli", *map(str, _plan(out, *FAST))]
    runs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]
    results = [(p, *p.communicate(timeout=180)) for p in runs]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 6, 6, 6], [e for _, _, e in results]
    winner = next(p for p, _, _ in results if p.returncode == 0)
    messages = [one_error_line(err) for p, _, err in results if p.returncode == 6]
    locked = [m for m in messages if "another run is writing the output folder" in m]
    assert locked, messages  # the lock, not only the "already holds" check, stopped them
    for message in locked:
        assert f"lattice plan, PID {winner.pid}," in message
        assert "wait for it to end, or choose another --out folder" in message
    assert listing(out.parent) == ["out"]  # no lock file, no temporary folder
    assert sorted(p.name for p in out.iterdir()) == [
        "lattice_target.nii.gz",
        "objectives.csv",
        "objectives.json",
        "plan.json",
        "report.html",
        "vertices.csv",
        "vertices.mrk.json",
        "vertices.nii.gz",
    ]
    assert main(["verify", str(out)]) == 0


def test_a_run_into_a_locked_folder_exits_6_naming_the_holder(tmp_path, capfd, monkeypatch):
    out = tmp_path / "out"
    holder = lock_holder(out)
    try:
        before = listing(tmp_path)
        no_planning(monkeypatch)
        code, _, stderr = run(capfd, _plan(out, *FAST, "--force"))
        assert code == 6
        line = one_error_line(stderr)
        assert f"'{out}'" in line and f"(the holder, PID {holder.pid}, started " in line
        assert listing(tmp_path) == before == [f".{out.name}.lock"]
    finally:
        holder.communicate("")
    assert listing(tmp_path) == []  # the holder removed its lock file
    monkeypatch.undo()
    assert run(capfd, _plan(out, *FAST))[0] == 0


def test_the_lock_of_a_killed_run_does_not_stop_the_next(tmp_path, capfd):
    out = tmp_path / "out"
    holder = lock_holder(out)
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    assert listing(tmp_path) == [".out.lock"]  # left behind, but the kernel let go
    code, _, stderr = run(capfd, _plan(out, *FAST))
    assert code == 0, stderr
    assert listing(tmp_path) == ["out"]


def test_two_spellings_of_one_folder_share_its_lock(tmp_path, capfd):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    holder = lock_holder(tmp_path / "link")
    try:
        code, _, stderr = run(capfd, _plan(tmp_path / "x" / ".." / "real", *FAST))
        assert code == 6 and "another run is writing" in one_error_line(stderr)
    finally:
        holder.communicate("")


def test_the_lock_is_reentrant_in_one_thread_and_exclusive_between_threads(tmp_path):
    import threading

    folder = resolve_output_folder(tmp_path / "a" / "out")
    seen = []
    with output_lock(folder, command="outer"):
        with output_lock(folder, command="inner"):  # the writer inside the command
            pass
        assert lock_path(folder).exists()  # still held by the outer

        def other():
            try:
                with output_lock(folder):
                    seen.append("entered")
            except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                seen.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(seen) == 1 and type(seen[0]).__name__ == "OutputLockedError"
    assert seen[0].exit_code == 6 and "outer, PID" in str(seen[0])
    assert not (tmp_path / "a").exists()  # the parent it made, removed: nothing was written


def test_batch_jobs_obey_the_lock_of_their_plan_folder(tmp_path, capsys):
    from lattice.batch import make_jobs, read_manifest

    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"case,ct,gtv\nP1,{PHANTOM / 'ct.nii.gz'},{PHANTOM / 'gtv.nii.gz'}\n")
    sweep = tmp_path / "sweep"
    (job,) = make_jobs(read_manifest(manifest), sweep)
    argv = ["batch", str(manifest), "--out", str(sweep), "--workers", "1", *FAST]
    holder = lock_holder(job.out_dir)
    try:
        assert main(argv) == 9
        row = json.loads(job.row_path.read_text())
        assert row["status"] == "failed" and row["exit_code"] == 6
        assert f"another run is writing the output folder '{job.out_dir}'" in row["error"]
        assert f"the holder, PID {holder.pid}" in row["error"]
        assert not job.out_dir.exists()
    finally:
        holder.communicate("")
    capsys.readouterr()
    assert main(argv) == 0  # the holder is gone: the job runs
    assert (job.out_dir / "plan.json").is_file()
    assert main(["verify", str(job.out_dir)]) == 0


# -- inputs inside the output folder ---------------------------------------------------------


def _copy_out(plan_folder: Path, name: str) -> Path:
    """A copy of the plan folder's ``name`` outside it."""
    target = plan_folder.parent.parent / "elsewhere" / name
    target.parent.mkdir(exist_ok=True)
    copy = shutil.copytree if (plan_folder / name).is_dir() else shutil.copy2
    copy(plan_folder / name, target)
    return target


def _dicom(out, ct_dicom, rtstruct, *extra):
    return [
        "plan",
        "--ct-dicom",
        ct_dicom,
        "--rtstruct",
        rtstruct,
        "--gtv-name",
        "GTV",
        "--out",
        out,
        *FAST,
        *extra,
    ]


def _link(at: Path, to: Path) -> Path:
    at.symlink_to(to)
    return at


# id -> (argv(out) with the plan folder at `out` = tmp/work/out, run from tmp/here; the option
# the error names)
INSIDE = {
    "--ct-dicom: the folder's ct_dicom/, --force": (
        lambda o: _dicom(o, o / "ct_dicom", _copy_out(o, "rtstruct.dcm"), "--force"),
        "--ct-dicom",
    ),
    "--rtstruct: the folder's rtstruct.dcm, --force": (
        lambda o: _dicom(o, _copy_out(o, "ct_dicom"), o / "rtstruct.dcm", "--force"),
        "--rtstruct",
    ),
    "--gtv: the folder's lattice_target.nii.gz, --force": (
        lambda o: _plan(o, *FAST, "--force", gtv=o / "lattice_target.nii.gz"),
        "--gtv",
    ),
    "--gtv: the folder's lattice_target.nii.gz, no --force": (
        lambda o: _plan(o, *FAST, gtv=o / "lattice_target.nii.gz"),
        "--gtv",
    ),
    "--ct: a CT the user put into the folder": (
        lambda o: _plan(o, *FAST, "--force", ct=shutil.copy2(PHANTOM / "ct.nii.gz", o)),
        "--ct",
    ),
    "--oar: the folder's vertices.nii.gz": (
        lambda o: _plan(o, *FAST, "--force", "--oar", f"{o / 'vertices.nii.gz'}:3"),
        "--oar",
    ),
    "--oar NAME=: in a sub-folder of the folder": (
        lambda o: _plan(
            o,
            *FAST,
            "--force",
            "--oar",
            f"cord={_copy_into(o, 'masks', PHANTOM / 'cord.nii.gz')}:3",
        ),
        "--oar",
    ),
    "--reference-ct-dicom: the folder's ct_dicom/ (a plan without it removes it)": (
        lambda o: _plan(
            o,
            "--no-picture",
            "--mesh-format",
            "none",
            "--force",
            "--reference-ct-dicom",
            o / "ct_dicom",
        ),
        "--reference-ct-dicom",
    ),
    "relative paths": (
        lambda o: _plan("../work/out", *FAST, "--force", gtv="../work/out/lattice_target.nii.gz"),
        "--gtv",
    ),
    "relative paths through .. and .": (
        lambda o: _plan(
            "../work/./out/", *FAST, "--force", gtv="../here/../work/out/./lattice_target.nii.gz"
        ),
        "--gtv",
    ),
    "input through a link to the folder": (
        lambda o: _plan(
            o, *FAST, "--force", gtv=_link(o.parent / "alias", o) / "lattice_target.nii.gz"
        ),
        "--gtv",
    ),
    "input is a link elsewhere pointing into the folder": (
        lambda o: _plan(
            o, *FAST, "--force", gtv=_link(o.parent / "my_gtv.nii.gz", o / "lattice_target.nii.gz")
        ),
        "--gtv",
    ),
    "input is a link inside the folder pointing elsewhere": (
        lambda o: _plan(
            o, *FAST, "--force", gtv=_link(o / "lattice_target_link.nii.gz", PHANTOM / "gtv.nii.gz")
        ),
        "--gtv",
    ),
    "--out through a link to the folder": (
        lambda o: _plan(
            _link(o.parent / "alias", o), *FAST, "--force", gtv=o / "lattice_target.nii.gz"
        ),
        "--gtv",
    ),
    "--out is the --ct-dicom folder itself": (
        lambda o: _dicom(o / "ct_dicom", o / "ct_dicom", _copy_out(o, "rtstruct.dcm"), "--force"),
        "--ct-dicom",
    ),
    "--out holds the input folder (an ancestor)": (
        lambda o: _plan(o.parent, *FAST, "--force", gtv=o / "lattice_target.nii.gz"),
        "--gtv",
    ),
}


def _copy_into(folder: Path, sub: str, source: Path) -> Path:
    (folder / sub).mkdir()
    return Path(shutil.copy2(source, folder / sub))


@pytest.mark.parametrize("case", list(INSIDE))
def test_an_input_inside_the_output_folder_is_refused(case, plan_folder, capfd, monkeypatch):
    work = plan_folder.parent
    root = work.parent
    (root / "here").mkdir()
    monkeypatch.chdir(root / "here")
    make_argv, option = INSIDE[case]
    argv = make_argv(plan_folder)
    before = snapshot(root), listing(root), listing(work)
    no_planning(monkeypatch)
    code, _, stderr = run(capfd, argv)
    assert code == 2, stderr
    line = one_error_line(stderr)
    assert line.startswith(f"lattice: error: {option} '")
    assert "the output folder" in line and "copy the input out of that folder first" in line
    # The folder and the inputs untouched; no lock file, no temporary folder.
    assert (snapshot(root), listing(root), listing(work)) == before


def test_a_folder_of_the_users_inputs_is_not_an_output_folder(tmp_path, capfd, monkeypatch):
    """Without --force and without a plan in it: still refused (the run would write there)."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("ct.nii.gz", "gtv.nii.gz"):
        shutil.copy2(PHANTOM / name, data)
    before = snapshot(data)
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run(capfd, _plan("data", *FAST, ct="data/ct.nii.gz", gtv="data/gtv.nii.gz"))
    assert code == 2
    assert one_error_line(stderr).startswith(
        "lattice: error: --ct 'data/ct.nii.gz' is inside the output folder 'data'"
    )
    assert snapshot(data) == before and listing(tmp_path) == ["data"]


def test_an_input_beside_the_output_folder_is_fine(plan_folder, capfd):
    """A name that only starts like the folder's is not inside it."""
    gtv = Path(shutil.copy2(PHANTOM / "gtv.nii.gz", plan_folder.parent / "out_gtv.nii.gz"))
    code, _, stderr = run(capfd, _plan(plan_folder, *FAST, "--force", gtv=gtv))
    assert code == 0, stderr


# -- paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, options",
    [
        ("a" * 240, DICOM_PLAN),
        ("b" * 255, DICOM_PLAN),
        ("é" * 120, FAST),
        ("plan with spaces", FAST),
    ],
    ids=[
        "240 characters",
        "255 characters (the longest legal name)",
        "240 bytes of multi-byte characters",
        "spaces",
    ],
)
def test_any_legal_folder_name_works_also_with_force(name, options, tmp_path, capfd):
    """With DICOM the run also stages the derived CT (the 'ct' sibling); --force swaps the
    folder (the 'old' sibling)."""
    out = tmp_path / name
    for extra in ([], ["--force"]):
        code, _, stderr = run(capfd, _plan(out, *options, *extra))
        assert code == 0, stderr
        assert listing(tmp_path) == [name]  # no hidden folder or lock left behind
    assert (out / "plan.json").is_file()
    assert (out / "ct_dicom").is_dir() == (options is DICOM_PLAN)
    assert main(["verify", str(out)]) == 0


def test_a_trailing_slash_and_a_missing_parent_are_fine(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run(capfd, _plan("new/deeper/out/", *FAST))
    assert code == 0, stderr
    assert listing(tmp_path / "new" / "deeper") == ["out"]


def _file(path: Path) -> Path:
    path.write_text("a file, not a folder\n")
    return path


# id -> (make the --out argument in the folder `base` (the current folder), code, phrases)
BAD_PATHS = {
    "--out is a file": (lambda b: _file(b / "out"), 7, ["is a file", "pass a folder"]),
    "--out is a file, with a trailing slash": (
        lambda b: f"{_file(b / 'out')}/",
        7,
        ["is a file", "pass a folder"],
    ),
    "--out under a file": (
        lambda b: _file(b / "notes.txt") / "out",
        7,
        ["is a file, so --out", "cannot be made"],
    ),
    "--out deeper under a file": (
        lambda b: _file(b / "notes.txt") / "a" / "b" / "out",
        7,
        ["is a file, so --out"],
    ),
    "--out is a symbolic link loop": (
        lambda b: _link(b / "loop", b / "loop"),
        7,
        ["symbolic link loop", "fix the link"],
    ),
    "--out under a symbolic link loop": (
        lambda b: _link(b / "loop", b / "loop") / "out",
        7,
        ["symbolic link loop"],
    ),
    "--out is a pair of links pointing at each other": (
        lambda b: _link(b / "ping", _link(b / "pong", b / "ping")),
        7,
        ["symbolic link loop"],
    ),
    "--out is a dangling link": (
        lambda b: _link(b / "out", b / "gone" / "target"),
        7,
        ["which does not exist", "create that folder, fix the link"],
    ),
    "--out under a dangling link": (
        lambda b: _link(b / "data", b / "unmounted") / "out",
        7,
        ["which does not exist"],
    ),
    "--out name longer than the file system allows": (
        lambda b: b / ("c" * 256),
        7,
        ["is too long for the file system", "a shorter --out"],
    ),
    "a parent name longer than the file system allows": (
        lambda b: b / ("d" * 300) / "out",
        7,
        ["is too long for the file system"],
    ),
    "--out holds a NUL character": (
        lambda b: "out\0x",
        7,
        ["is not a usable path", "choose another --out folder"],
    ),
    "--out .": (lambda b: ".", 2, ["is the current folder", "pass a new folder"]),
    "--out '' (the current folder)": (lambda b: "", 2, ["is the current folder"]),
    "--out sub/.. (the current folder)": (
        lambda b: (b / "sub").mkdir() or "sub/..",
        2,
        ["is the current folder"],
    ),
    "--out .. (holds the current folder)": (
        lambda b: "..",
        2,
        ["holds the current folder", "pass a new folder"],
    ),
    "--out / (holds the current folder)": (lambda b: "/", 2, ["holds the current folder"]),
    "--out is a link to the current folder": (
        lambda b: _link(b / "here", b),
        2,
        ["is the current folder"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_PATHS))
def test_a_bad_output_path_fails_at_once_with_one_line(case, tmp_path, capfd, monkeypatch):
    base = tmp_path / "base"
    base.mkdir()
    monkeypatch.chdir(base)
    make_out, expected, phrases = BAD_PATHS[case]
    out = make_out(base)
    before = snapshot(tmp_path), listing(base)
    no_planning(monkeypatch)
    started = time.perf_counter()
    code, _, stderr = run(capfd, _plan(out, *FAST, "--force"))
    assert code == expected, stderr
    line = one_error_line(stderr)
    for phrase in phrases:
        assert phrase in line, (phrase, line)
    assert (snapshot(tmp_path), listing(base)) == before  # nothing written, no ..old-*
    assert time.perf_counter() - started < 5  # before the CT is even read


@pytest.mark.parametrize("existing", [True, False], ids=["writable --out", "new --out"])
def test_a_read_only_parent_is_one_line_exit_7(existing, tmp_path, capfd, is_root):
    if is_root:
        pytest.skip("running as root: permissions do not stop writing")
    parent = tmp_path / "locked"
    parent.mkdir()
    out = parent / "out"
    if existing:
        out.mkdir()
    parent.chmod(0o555)
    try:
        code, _, stderr = run(capfd, _plan(out, *FAST))
    finally:
        parent.chmod(0o755)
    assert code == 7
    line = one_error_line(stderr)
    assert "(permission denied)" in line and "choose another --out folder" in line
    assert listing(parent) == (["out"] if existing else [])
    if existing:
        assert listing(out) == []


def test_an_unreachable_parent_is_one_line_exit_7(tmp_path, capfd, is_root):
    if is_root:
        pytest.skip("running as root: permissions do not stop reading")
    parent = tmp_path / "closed"
    parent.mkdir()
    parent.chmod(0o000)
    try:
        code, _, stderr = run(capfd, _plan(parent / "out", *FAST))
    finally:
        parent.chmod(0o755)
    assert code == 7
    assert "choose another --out folder" in one_error_line(stderr)
    assert listing(parent) == []


def test_a_failed_force_swap_keeps_the_previous_plan_and_leaves_nothing(
    plan_folder, capfd, monkeypatch
):
    """The second rename of the swap fails (EBUSY, as for a mount point): undone."""
    before = snapshot(plan_folder)
    real = os.rename

    def rename(src, dst, *args, **kwargs):
        if Path(src).name.startswith(".out.partial-"):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(src), None, str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    code, _, stderr = run(capfd, _plan(plan_folder, *FAST, "--force"))
    assert code == 7
    line = one_error_line(stderr)
    assert "Device or resource busy" in line and "nothing was written" in line
    assert "free space" not in line  # the advice fits the cause
    assert snapshot(plan_folder) == before
    assert listing(plan_folder.parent) == ["out"]


def test_a_replaced_plan_of_a_killed_run_is_put_back(plan_folder):
    """Killed between the two renames of a swap: the old plan is aside, ``out`` missing."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    before = snapshot(plan_folder)
    aside = plan_folder.parent / f".out.old-{dead}-abcd1234"
    os.rename(plan_folder, aside)
    partial = plan_folder.parent / f".out.partial-{dead}-efgh5678"
    partial.mkdir()
    assert remove_stale_stages(plan_folder) == [partial]
    assert snapshot(plan_folder) == before and listing(plan_folder.parent) == ["out"]


def test_long_names_hash_their_hidden_siblings(tmp_path):
    from lattice.io.plan_writer import stage_prefix

    short, long = tmp_path / "plan", tmp_path / ("x" * 240)
    assert stage_prefix(short, "partial").startswith(".plan.partial-")
    assert lock_path(short).name == ".plan.lock"
    prefix = stage_prefix(long, "partial")
    assert prefix.startswith(".xxxx") and "~" in prefix and len(prefix) + 8 <= 255
    assert len(lock_path(long).name) <= 255
    assert stage_prefix(tmp_path / ("x" * 239 + "y"), "partial") != prefix  # the hash differs


def test_plan_files_list_is_what_a_full_plan_holds(template):
    """The folder the tests copy is a real plan folder (guards the fixtures above)."""
    assert set(os.listdir(template)) <= set(PLAN_FILES)
    assert {"ct_dicom", "rtstruct.dcm", "lattice_target.nii.gz"} <= set(os.listdir(template))
