"""lattice batch and lattice.batch: manifest, grid, isolation, resume, Dask route.

The plans a batch writes are checked by the independent verifier (``lattice verify``), and
the counts in summary.csv against the plan folders' own plan.json; the Dask route must give
the same counts as local workers.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lattice.batch import (
    PLAN_PARAMETERS,
    expand_grid,
    make_jobs,
    parse_grid,
    read_manifest,
    sweep,
)
from lattice.errors import InputFileError, ParameterError
from lattice_cli.main import build_parser, main

PHANTOM = Path(__file__).resolve().parent.parent / "sample_data" / "phantom"
FAST = ["--no-picture", "--no-dicom", "--mesh-format", "none"]


def _manifest(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _summary(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def cohort(tmp_path):
    """Two readable phantom cases (one with an OAR, one with its own diameter) and one whose
    GTV file is truncated on purpose."""
    broken = tmp_path / "broken_gtv.nii.gz"
    data = (PHANTOM / "gtv.nii.gz").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    rows = [
        {
            "case": "P1",
            "ct": str(PHANTOM / "ct.nii.gz"),
            "gtv": str(PHANTOM / "gtv.nii.gz"),
            "oars": f"{PHANTOM / 'cord.nii.gz'}:8",
            "gtv_margin_mm": "",
        },
        {
            "case": "P2",
            "ct": str(PHANTOM / "ct.nii.gz"),
            "gtv": str(PHANTOM / "gtv.nii.gz"),
            "oars": "",
            "gtv_margin_mm": "8",
        },
        {
            "case": "BROKEN",
            "ct": str(PHANTOM / "ct.nii.gz"),
            "gtv": str(broken),
            "oars": "",
            "gtv_margin_mm": "",
        },
    ]
    return _manifest(tmp_path / "cohort.csv", rows)


def test_batch_parameters_are_the_plan_options_other_than_inputs_and_output():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    dests = {a.dest for a in sub.choices["plan"]._actions if a.dest != "help"}
    inputs = {
        "ct",
        "gtv",
        "oar",
        "reference_ct_dicom",
        "ct_dicom",
        "ct_series",
        "rtstruct",
        "gtv_name",
        "oar_name",
        "out",
        "force",
        "debug",
    }
    assert set(PLAN_PARAMETERS) == dests - inputs


def test_grid_expands_to_every_combination_first_axis_slowest():
    grid = expand_grid(parse_grid(["spacing_mm=20,25,30", "diameter_mm=10,15"]))
    assert len(grid) == 6
    assert grid[0] == {"spacing_mm": "20", "diameter_mm": "10"}
    assert grid[1] == {"spacing_mm": "20", "diameter_mm": "15"}
    assert {tuple(g.values()) for g in grid} == {
        (s, d) for s in ("20", "25", "30") for d in ("10", "15")
    }


@pytest.mark.parametrize(
    "spec, fragment",
    [
        (["spacing_mm"], "NAME=V1,V2"),
        (["spacing=20"], "not a plan parameter"),
        (["spacing_mm=20", "spacing_mm=25"], "given twice"),
        (["spacing_mm="], "no values"),
    ],
)
def test_bad_grid_entries_are_refused(spec, fragment):
    with pytest.raises(ParameterError, match=fragment):
        parse_grid(spec)


def test_manifest_paths_are_relative_to_the_manifest_and_oars_split(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    path = _manifest(
        folder / "m.csv",
        [
            {
                "case": "A",
                "ct": "ct.nii.gz",
                "gtv": "g.nii.gz",
                "oars": "cord=c.nii.gz:10; b.nii.gz:5",
                "diameter_mm": "12",
            }
        ],
    )
    (case,) = read_manifest(path)
    assert case.ct == folder / "ct.nii.gz" and case.gtv == folder / "g.nii.gz"
    assert case.oars == (f"cord={folder / 'c.nii.gz'}:10", f"{folder / 'b.nii.gz'}:5")
    assert case.parameters == {"diameter_mm": "12"}


@pytest.mark.parametrize(
    "rows, columns, error, fragment",
    [
        (
            [{"case": "A", "ct": "c", "gtv": "g", "diameter": "1"}],
            None,
            ParameterError,
            "not a plan parameter",
        ),
        ([{"case": "A", "ct": "c"}], None, InputFileError, "no column gtv"),
        (
            [{"case": "A", "ct": "c", "gtv": "g"}, {"case": "A", "ct": "c", "gtv": "g"}],
            None,
            ParameterError,
            "repeat",
        ),
        ([{"case": "../x", "ct": "c", "gtv": "g"}], None, ParameterError, "case name"),
        ([{"case": "A", "ct": "", "gtv": "g"}], None, ParameterError, "no ct path"),
        ([], ["case", "ct", "gtv"], ParameterError, "no cases"),
    ],
)
def test_bad_manifests_are_refused_with_the_reason(tmp_path, rows, columns, error, fragment):
    path = _manifest(tmp_path / "m.csv", rows, columns)
    with pytest.raises(error, match=fragment):
        read_manifest(path)


def test_grid_values_override_defaults_and_manifest_columns_cannot_clash(tmp_path):
    path = _manifest(
        tmp_path / "m.csv", [{"case": "A", "ct": "c", "gtv": "g", "diameter_mm": "12"}]
    )
    cases = read_manifest(path)
    (job,) = make_jobs(
        cases,
        tmp_path / "out",
        grid=[{"spacing_mm": "40"}],
        defaults={"spacing_mm": 30.0, "gtv_margin_mm": 4, "no_dicom": True},
    )
    assert job.parameters == {
        "spacing_mm": "40",
        "gtv_margin_mm": "4",
        "no_dicom": "true",
        "diameter_mm": "12",
    }
    argv = list(job.argv)
    assert argv[argv.index("--spacing-mm") + 1] == "40"
    assert argv[argv.index("--diameter-mm") + 1] == "12"
    assert "--no-dicom" in argv
    assert job.out_dir == tmp_path / "out" / "A" / "spacing_mm-40"
    with pytest.raises(ParameterError, match="both a manifest column and a grid axis"):
        make_jobs(cases, tmp_path / "out", grid=[{"diameter_mm": "10"}])


def test_batch_isolates_a_broken_case_and_rerun_skips_finished_rows(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "batch",
        str(cohort),
        "--out",
        str(out),
        "--grid",
        "spacing_mm=25,35",
        "--workers",
        "2",
        *FAST,
    ]
    assert main(argv) == 9  # ran to the end, some jobs failed
    err = capsys.readouterr().err
    assert err.count("case BROKEN") == 2
    rows = _summary(out / "summary.csv")
    assert [(r["case"], r["spacing_mm"]) for r in rows] == [
        (c, s) for c in ("P1", "P2", "BROKEN") for s in ("25", "35")
    ]
    for row in rows:
        if row["case"] == "BROKEN":
            assert row["status"] == "failed" and row["exit_code"] == "3"
            assert "broken_gtv.nii.gz" in row["error"] and row["n_vertices"] == ""
            assert not Path(row["plan_dir"]).exists()
            continue
        assert row["status"] == "ok", row
        plan_dir = Path(row["plan_dir"])
        doc = json.loads((plan_dir / "plan.json").read_text())
        assert int(row["n_vertices"]) == doc["summary"]["n_vertices"] > 0
        assert doc["parameters"]["min_spacing_mm"] == float(row["spacing_mm"])
        margin = 8.0 if row["case"] == "P2" else 5.0
        assert doc["parameters"]["gtv_margin_mm"] == margin
        assert main(["verify", str(plan_dir)]) == 0  # the independent verifier agrees
    p1 = [r for r in rows if r["case"] == "P1"]
    assert all(
        json.loads((Path(r["plan_dir"]) / "plan.json").read_text())["parameters"][
            "oar_clearance_mm"
        ]
        == {"cord": 8.0}
        for r in p1
    )

    stamps = {
        r["plan_dir"]: (Path(r["plan_dir"]) / "plan.json").stat().st_mtime_ns
        for r in rows
        if r["status"] == "ok"
    }
    (tmp_path / "broken_gtv.nii.gz").write_bytes((PHANTOM / "gtv.nii.gz").read_bytes())
    capsys.readouterr()
    assert main(argv) == 0  # the repaired case now plans; the finished ones are skipped
    assert "4 done before, skipped" in capsys.readouterr().out
    again = _summary(out / "summary.csv")
    assert all(r["status"] == "ok" for r in again)
    assert {
        r["plan_dir"]: (Path(r["plan_dir"]) / "plan.json").stat().st_mtime_ns
        for r in again
        if r["plan_dir"] in stamps
    } == stamps
    assert [r["resumed"] for r in again] == ["True"] * 4 + ["False"] * 2


def test_rerun_with_other_parameters_needs_force(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["batch", str(cohort), "--out", str(out), "--workers", "1", *FAST]
    main(base)
    capsys.readouterr()
    assert main([*base, "--diameter-mm", "12"]) == 6
    err = capsys.readouterr().err.strip()
    assert "--force" in err and len(err.splitlines()) == 1
    assert main([*base, "--diameter-mm", "12", "--force"]) == 9  # BROKEN still fails
    rows = _summary(out / "summary.csv")
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 2 and all(r["diameter_mm_used"] == "12.0" for r in ok)


def test_bad_grid_value_stops_the_batch_before_anything_runs(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(cohort), "--out", str(out), "--grid", "diameter_mm=ten", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ten" in err and "diameter-mm" in err
    assert not out.exists()


def test_python_sweep_returns_rows_like_the_command(cohort, tmp_path):
    jobs = make_jobs(
        read_manifest(cohort),
        tmp_path / "api",
        grid=expand_grid({"diameter_mm": [12, 15]}),
        defaults={"no_picture": True, "no_dicom": True, "mesh_format": "none"},
    )
    seen = []
    rows = sweep(jobs, workers=2, progress=lambda row, done, total: seen.append(done))
    assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
    assert [r["case"] for r in rows] == ["P1", "P1", "P2", "P2", "BROKEN", "BROKEN"]
    assert [r["diameter_mm"] for r in rows] == [12, 15] * 3
    assert sorted(seen) == list(range(1, 7))
    for row in rows:
        if row["status"] == "ok":
            doc = json.loads((Path(row["plan_dir"]) / "plan.json").read_text())
            assert row["n_vertices"] == doc["summary"]["n_vertices"]
            assert doc["parameters"]["diameter_mm"] == row["diameter_mm"]
    pandas = pytest.importorskip("pandas", reason="pandas is optional")
    frame = pandas.DataFrame(rows)
    assert len(frame) == 6 and "n_vertices" in frame


def test_dask_route_gives_the_same_counts_as_local_workers(cohort, tmp_path):
    distributed = pytest.importorskip("distributed", reason="pip install 'lattice-sfrt[dask]'")
    local, remote = tmp_path / "local", tmp_path / "dask"
    grid = ["--grid", "spacing_mm=25,35"]
    assert main(["batch", str(cohort), "--out", str(local), "--workers", "2", *grid, *FAST]) == 9
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        assert (
            main(
                [
                    "batch",
                    str(cohort),
                    "--out",
                    str(remote),
                    "--scheduler",
                    cluster.scheduler_address,
                    *grid,
                    *FAST,
                ]
            )
            == 9
        )
    a, b = _summary(local / "summary.csv"), _summary(remote / "summary.csv")
    keys = ("case", "spacing_mm", "status", "exit_code", "n_vertices", "nearest_vertex_min_mm")
    assert [tuple(r[k] for k in keys) for r in a] == [tuple(r[k] for k in keys) for r in b]
    assert sum(r["status"] == "ok" for r in b) == 4


def test_unreachable_scheduler_is_one_line(cohort, tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("lattice.batch.DASK_CONNECT_TIMEOUT_S", 1)
    assert (
        main(
            [
                "batch",
                str(cohort),
                "--out",
                str(tmp_path / "o"),
                "--scheduler",
                "tcp://127.0.0.1:9",
                *FAST,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Dask scheduler" in err


def test_manifest_errors_exit_with_their_code(tmp_path, capsys):
    assert main(["batch", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")]) == 3
    gz = tmp_path / "m.csv"
    gz.write_bytes(gzip.compress(b"case,ct,gtv\n"))
    assert main(["batch", str(gz), "--out", str(tmp_path / "o")]) == 3
    assert not (tmp_path / "o").exists()


def test_a_case_that_crashes_its_worker_fails_alone(tmp_path, monkeypatch):
    """A plan that kills its worker process (as a segfault would) is recorded as failed; the
    jobs that shared the worker run again and succeed."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "import nibabel\n"
        "_load = nibabel.load\n"
        "def load(path, *a, **k):\n"
        "    if 'CRASH' in str(path):\n"
        "        os._exit(139)  # dies without a word, like a segmentation fault\n"
        "    return _load(path, *a, **k)\n"
        "nibabel.load = load\n"
    )
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    )
    # Forked workers (Linux) inherit this process's nibabel rather than running the hook;
    # the job run again alone is spawned and gets the hook.
    import nibabel

    load = nibabel.load

    def crashing_load(path, *args, **kwargs):
        if "CRASH" in str(path):
            os._exit(139)
        return load(path, *args, **kwargs)

    monkeypatch.setattr(nibabel, "load", crashing_load)
    crash = tmp_path / "CRASH_gtv.nii.gz"
    crash.write_bytes((PHANTOM / "gtv.nii.gz").read_bytes())
    rows = [
        {
            "case": f"P{i}",
            "ct": str(PHANTOM / "ct.nii.gz"),
            "gtv": str(crash if i == 2 else PHANTOM / "gtv.nii.gz"),
        }
        for i in range(1, 5)
    ]
    jobs = make_jobs(
        read_manifest(_manifest(tmp_path / "m.csv", rows)),
        tmp_path / "out",
        defaults={"no_picture": True, "no_dicom": True, "mesh_format": "none"},
    )
    result = sweep(jobs, workers=2)
    assert [(r["case"], r["status"]) for r in result] == [
        ("P1", "ok"),
        ("P2", "failed"),
        ("P3", "ok"),
        ("P4", "ok"),
    ]
    assert result[1]["exit_code"] == 139


def test_a_plan_folder_the_batch_did_not_write_is_not_replaced(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    mine = out / "P1"
    assert (
        main(
            [
                "plan",
                "--ct",
                str(PHANTOM / "ct.nii.gz"),
                "--gtv",
                str(PHANTOM / "gtv.nii.gz"),
                "--out",
                str(mine),
                "--spacing-mm",
                "40",
                *FAST,
            ]
        )
        == 0
    )
    before = (mine / "plan.json").read_bytes()
    argv = ["batch", str(cohort), "--out", str(out), "--workers", "1", *FAST]
    for _ in range(2):  # and not on a rerun either
        assert main(argv) == 9
        rows = {r["case"]: r for r in _summary(out / "summary.csv")}
        assert rows["P1"]["exit_code"] == "6" and "--force" in rows["P1"]["error"]
        assert (mine / "plan.json").read_bytes() == before
    assert main([*argv, "--force"]) == 9  # BROKEN still fails; P1 is replaced when asked
    assert json.loads((mine / "plan.json").read_text())["parameters"]["min_spacing_mm"] == 30
    capsys.readouterr()


def test_resume_works_from_another_folder_with_relative_paths(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("ct.nii.gz", "gtv.nii.gz"):
        (data / name).write_bytes((PHANTOM / name).read_bytes())
    _manifest(data / "m.csv", [{"case": "A", "ct": "ct.nii.gz", "gtv": "gtv.nii.gz"}])
    monkeypatch.chdir(tmp_path)
    assert main(["batch", "data/m.csv", "--out", "out", "--workers", "1", *FAST]) == 0
    monkeypatch.chdir(data)
    assert main(["batch", "m.csv", "--out", "../out", "--workers", "1", *FAST]) == 0
    assert "1 done before, skipped" in capsys.readouterr().out


def test_grid_values_that_would_share_a_folder_are_refused(tmp_path):
    path = _manifest(tmp_path / "m.csv", [{"case": "A", "ct": "c", "gtv": "g"}])
    with pytest.raises(ParameterError, match="share the folder"):
        make_jobs(
            read_manifest(path),
            tmp_path / "o",
            grid=expand_grid({"size_rule": ["short_axis_mm>30", "short_axis_mm<30"]}),
        )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("case,ct,gtv\nA,c,g,extra\n", "more fields than the first line"),
        ("case,ct,gtv,\nA,c,g,\n", "has no name"),
        ("case,ct,gtv,ct\nA,c,g,d\n", "appears twice"),
        ("case,ct,gtv\nruns,c,g\n", "taken by the batch"),
        ("case,ct,gtv\nPt1,c,g\npt1,c,g\n", "repeat"),
    ],
)
def test_malformed_manifest_lines_are_named(tmp_path, text, fragment):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ParameterError, match=fragment):
        read_manifest(path)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_ctrl_c_stops_the_batch_cleanly_and_a_rerun_goes_on(tmp_path):
    sample = PHANTOM.parent / "STS_001"
    path = _manifest(
        tmp_path / "m.csv",
        [
            {"case": f"C{i}", "ct": str(sample / "ct.nii.gz"), "gtv": str(sample / "gtv.nii.gz")}
            for i in range(1, 4)
        ],
    )
    out = tmp_path / "out"
    # 12 plans: enough that a loaded machine cannot finish them all between the first
    # finished plan and the Ctrl-C (with 6 the batch sometimes ended first, exit 0).
    argv = [
        sys.executable,
        "-m",
        "lattice_cli",
        "batch",
        str(path),
        "--out",
        str(out),
        "--grid",
        "spacing_mm=25,27,30,33",
        "--workers",
        "2",
    ]
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not any('"ok"' in p.read_text() for p in (out / "runs").glob("*.json") if p.is_file()):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole group
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 130, err
    assert "finished plans and summary.csv are kept" in err
    with pytest.raises(ProcessLookupError):  # no worker left running
        for _ in range(100):
            os.killpg(process.pid, 0)
            time.sleep(0.1)
    assert not [p for p in out.rglob(".*") if p.parent.name != "runs"]  # no temporary folders
    folders = [p for p in out.glob("C*/*") if p.is_dir()]
    assert folders and all((p / "plan.json").is_file() for p in folders)
    done = _summary(out / "summary.csv")
    ok = {r["plan_dir"] for r in done if r["status"] == "ok"}
    # Every plan the summary calls finished is there; a plan whose worker was stopped just
    # after its folder was renamed in (its row still says running) is complete but not
    # counted, and the rerun plans it again.
    assert ok and ok <= {str(p) for p in folders}
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(ok)} done before, skipped" in rerun.stdout
    assert len(_summary(out / "summary.csv")) == 12


def test_an_oar_without_clearance_stops_the_batch_before_anything_runs(tmp_path, capsys):
    path = _manifest(
        tmp_path / "m.csv",
        [
            {
                "case": "A",
                "ct": str(PHANTOM / "ct.nii.gz"),
                "gtv": str(PHANTOM / "gtv.nii.gz"),
                "oars": str(PHANTOM / "cord.nii.gz"),
            }
        ],
    )
    out = tmp_path / "out"
    assert main(["batch", str(path), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no clearance" in err and "case A" in err
    assert not out.exists()
    assert main(["batch", str(path), "--out", str(out), "--protocol", "mayo", *FAST]) == 0


@pytest.mark.parametrize("cpus, forks", [(1, False), (2, False), (3, True)])
def test_pictures_get_a_process_only_with_a_core_to_spare(
    cohort, tmp_path, monkeypatch, cpus, forks
):
    """Two workers: a plan draws in a process of its own only when this process may run on
    more cores than that (its affinity, as a cpuset or taskset sets it, not the machine's
    count)."""
    import lattice.batch as batch

    monkeypatch.setattr(batch, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # a large host: not what counts
    seen = []
    real = batch.ProcessPoolExecutor

    def pool(*args, **kwargs):
        seen.append(kwargs["initargs"])
        return real(*args, **kwargs)

    monkeypatch.setattr(batch, "ProcessPoolExecutor", pool)
    jobs = make_jobs(read_manifest(cohort), tmp_path / "out", defaults={"no_picture": True})
    rows = sweep(jobs[:1], workers=2)
    assert rows[0]["status"] == "ok"
    assert seen == [(forks,)]


def test_default_workers_are_the_usable_cores(cohort, tmp_path, monkeypatch):
    import lattice.batch as batch
    import lattice.forking as forking

    monkeypatch.setattr(forking, "usable_cpus", lambda: 3)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    asked = []
    monkeypatch.setattr(batch, "sweep", lambda jobs, **kw: asked.append(kw["workers"]) or [])
    main(["batch", str(cohort), "--out", str(tmp_path / "out")] + FAST)
    monkeypatch.setattr(forking, "usable_cpus", lambda: 1000)  # more than --workers accepts
    main(["batch", str(cohort), "--out", str(tmp_path / "out2")] + FAST)
    from lattice.planning.parameters import MAX_WORKERS

    assert asked == [3, MAX_WORKERS]
