"""lattice.forking: work in a forked child, and the plan run that uses it without a picture
worker (the lesion's measurements and the verification beside the parent's work)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lattice import forking
from lattice.analysis import verify
from lattice.analysis.verify_report import VerificationReport, Violation
from lattice.errors import LatticeError, MaskError
from lattice.forking import FORK_ENV, Forked, may_fork
from lattice.pipeline import NiftiInputs, PlanOptions, PlanRequest, run_plan
from lattice.planning.parameters import OarSpec
from lattice.planning.plan import PlanParameters

pytestmark = pytest.mark.skipif(
    "fork" not in __import__("multiprocessing").get_all_start_methods(), reason="no fork"
)


def test_the_value_comes_back_from_another_process():
    child = Forked(lambda: (os.getpid(), np.arange(5) * 2))
    pid, values = child.result()
    assert pid != os.getpid()
    assert values.tolist() == [0, 2, 4, 6, 8]


def test_a_large_value_comes_back_whole():
    big = np.random.default_rng(0).random(300_000)  # 2.4 MB: far more than a pipe buffers
    assert np.array_equal(Forked(lambda: big * 1.0).result(), big)


def test_the_error_of_the_call_is_raised_here():
    def fail():
        raise MaskError("the GTV mask is empty")

    child = Forked(fail)
    with pytest.raises(MaskError, match="the GTV mask is empty"):
        child.result()


def test_an_unpicklable_error_arrives_as_its_text():
    class Local(Exception):  # a local class cannot be pickled
        pass

    def fail():
        raise Local("odd")

    with pytest.raises(RuntimeError, match="Local: odd"):
        Forked(fail).result()


def test_a_child_killed_without_an_answer_falls_back_or_says_so():
    def die():
        os.kill(os.getpid(), 9)

    assert Forked(die, fallback=lambda: "here").result() == "here"
    with pytest.raises(OSError, match="stopped without an answer"):
        Forked(die).result()


def test_cancel_stops_a_child_at_once_and_reaps_it():
    child = Forked(lambda: time.sleep(60))
    pid = child._pid
    start = time.monotonic()
    child.cancel()
    assert time.monotonic() - start < 5
    with pytest.raises(ChildProcessError):  # reaped: no such child any more
        os.waitpid(pid, os.WNOHANG)
    with pytest.raises(RuntimeError, match="once"):
        child.result()


def test_no_fork_beside_another_thread_or_when_the_environment_says_no(monkeypatch):
    monkeypatch.setenv(FORK_ENV, "1")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not may_fork()
    finally:
        stop.set()
        other.join()
    monkeypatch.setenv(FORK_ENV, "0")
    assert not may_fork()


# -- the plan run -----------------------------------------------------------------------------


PHANTOM = Path(__file__).resolve().parents[1] / "sample_data" / "phantom"


def _request(out):
    inputs = NiftiInputs(
        PHANTOM / "ct.nii.gz",
        PHANTOM / "gtv.nii.gz",
        oars=[OarSpec("cord", PHANTOM / "cord.nii.gz", 8.0)],
    )
    params = PlanParameters(diameter_mm=10.0, min_spacing_mm=20.0, gtv_margin_mm=3.0)
    opts = PlanOptions(picture=False, dicom=False, mesh_format=None)
    return PlanRequest(inputs, out, parameters=params, options=opts)


# The runs go in a fresh interpreter: this test process may hold other libraries' threads
# (Dask's, once an earlier test imported distributed), and a process with other threads
# rightly never forks.


def _fresh(scenario: str, *args: str) -> dict:
    """``scenario(*args)`` of this module run in a fresh python; its JSON result."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import test_forking as t; print('RESULT ' + json.dumps(t.{scenario}(*{args!r})))"
    )
    env = {k: v for k, v in os.environ.items() if k != FORK_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line[len("RESULT ") :])


def _count_forks() -> list[str]:
    started: list[str] = []
    real = forking.Forked.__init__

    def counting(self, fn, **kw):
        started.append(fn.__qualname__)
        real(self, fn, **kw)

    forking.Forked.__init__ = counting  # type: ignore[method-assign]
    return started


def _run(out: str, flag: str) -> dict:
    os.environ[FORK_ENV] = flag
    started = _count_forks()
    may = may_fork()
    doc = run_plan(_request(Path(out))).document
    keys = ("lesion", "verification", "vertices", "summary")
    return {"may_fork": may, "started": sorted(started), **{k: doc[k] for k in keys}}


def test_a_run_without_pictures_forks_and_writes_the_same_plan(tmp_path):
    forked = _fresh("_run", str(tmp_path / "forked"), "1")
    here = _fresh("_run", str(tmp_path / "here"), "0")
    assert forked["may_fork"] and not here["may_fork"]
    assert forked["started"] == [
        "Measuring.__init__.<locals>.measure",
        "Verification.__init__.<locals>.verify",
    ]
    assert here["started"] == []
    assert forked["lesion"] == here["lesion"] and forked["lesion"]["measurements"]
    assert forked["verification"] == here["verification"] and forked["verification"]["ok"]
    assert forked["vertices"] == here["vertices"]
    assert forked["summary"] == here["summary"]


def _failed_run(out: str, flag: str) -> dict:
    def failing(document, **kw):
        return VerificationReport(
            violations=(Violation("gtv_margin", (1,), "vertex 1 is 0.2 mm too shallow"),),
            warnings=(),
            n_vertices=len(document["vertices"]),
        )

    os.environ[FORK_ENV] = flag
    verify.verify_plan = failing
    started = _count_forks()
    try:
        run_plan(_request(Path(out)))
    except LatticeError as exc:
        error = str(exc)
    else:
        error = ""
    try:
        os.waitpid(-1, os.WNOHANG)
        children_left = True
    except ChildProcessError:  # every child was stopped (the measuring one) and reaped
        children_left = False
    written = Path(out).exists() and any(Path(out).iterdir())
    return {"error": error, "children_left": children_left, "written": written, "forks": started}


@pytest.mark.parametrize("flag", ["1", "0"])
def test_a_failed_verification_in_the_child_writes_nothing(tmp_path, flag):
    result = _fresh("_failed_run", str(tmp_path / "out"), flag)
    assert "0.2 mm too shallow" in result["error"]
    assert not result["written"]
    assert not result["children_left"]
    assert len(result["forks"]) == (2 if flag == "1" else 0)


# -- split_work and shared_array ------------------------------------------------------------


def _squares_into(out):
    """A split_work job: item k writes k**2 (and the writing process's pid) into row k."""

    def work(items):
        for k in items:
            out[k, 0] = k * k
            out[k, 1] = os.getpid()

    return work


@pytest.fixture
def forkable(monkeypatch):
    """may_split() true even where an earlier test left a thread running (Dask's, say)."""
    monkeypatch.setattr(forking, "may_split", lambda: True)


def test_split_work_shares_the_items_with_a_child_that_writes_into_shared_memory(forkable):
    out = forking.shared_array((40, 2), np.int64, 0)
    items = list(range(40))
    costs = [1.0] * 20 + [3.0] * 20  # the cut falls at half the cost, not half the items
    used = forking.split_work(_squares_into(out), items, costs, min_cost=10.0)
    assert used
    assert out[:, 0].tolist() == [k * k for k in items]  # the child's rows reached us
    writers = out[:, 1]
    assert set(writers[:26]) == {os.getpid()}  # the first part here (26 of 40 hold 38 of 80)
    assert os.getpid() not in set(writers[-10:])  # the last part in another process
    cut = int(np.flatnonzero(writers != os.getpid())[0])
    assert abs(sum(costs[:cut]) - sum(costs[cut:])) <= max(costs)


def test_split_work_does_it_all_here_when_small_or_with_another_thread_running():
    out = forking.shared_array((6, 2), np.int64, -1)
    assert not forking.split_work(_squares_into(out), range(6), [1.0] * 6, min_cost=7.0)
    assert set(out[:, 1]) == {os.getpid()} and out[:, 0].tolist() == [0, 1, 4, 9, 16, 25]
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:  # forking beside a thread is unsafe: no child
        out[:] = -1
        assert not forking.split_work(_squares_into(out), range(6), [9.0] * 6, min_cost=1)
        assert set(out[:, 1]) == {os.getpid()}
    finally:
        stop.set()
        thread.join()


def test_split_work_does_the_part_of_a_child_that_dies_and_raises_the_error_of_one_that_fails(
    forkable,
):
    parent = os.getpid()
    out = forking.shared_array((8,), np.int64, 0)

    def dies(items):
        if os.getpid() != parent:
            os._exit(3)  # killed, say: no answer
        out[list(items)] = 1

    assert forking.split_work(dies, range(8), [1.0] * 8, min_cost=1.0)
    assert out.tolist() == [1] * 8

    def fails(items):
        if os.getpid() != parent:
            raise ValueError("bad slice")

    with pytest.raises(ValueError, match="bad slice"):
        forking.split_work(fails, range(8), [1.0] * 8, min_cost=1.0)


def test_shared_array_is_filled_and_seen_by_a_child_and_its_parent():
    a = forking.shared_array((3, 4), np.float32, np.inf)
    assert a.shape == (3, 4) and a.dtype == np.float32 and np.isinf(a).all()
    Forked(lambda: a.__setitem__((1, 2), 5.0)).result()
    assert a[1, 2] == 5.0 and np.isinf(np.delete(a.ravel(), 6)).all()
    assert forking.shared_array((0, 3), np.int64, 0).shape == (0, 3)


def test_on_two_threads_returns_both_values_and_raises_either_error(monkeypatch):
    monkeypatch.setattr(forking, "usable_cpus", lambda: 2)
    monkeypatch.delenv(FORK_ENV, raising=False)
    names = []
    before = threading.active_count()
    a, b = forking.on_two_threads(
        lambda: threading.current_thread().name,
        lambda: names.append(threading.current_thread().name) or 7,
    )
    assert (a, b) == (threading.current_thread().name, 7) and names == ["lattice-second"]
    assert threading.active_count() == before  # joined: a fork after it is safe

    def bad():
        raise KeyError("second")

    with pytest.raises(KeyError, match="second"):
        forking.on_two_threads(lambda: 1, bad)
    with pytest.raises(KeyError, match="second"):
        forking.on_two_threads(bad, lambda: 1)
    here = (threading.current_thread().name,) * 2

    def names_of_both():
        return forking.on_two_threads(
            lambda: threading.current_thread().name, lambda: threading.current_thread().name
        )

    monkeypatch.setenv(FORK_ENV, "0")  # every core runs a plan of its own: both here
    assert names_of_both() == here
    monkeypatch.delenv(FORK_ENV)
    monkeypatch.setattr(forking, "usable_cpus", lambda: 1)  # one processor: both here
    assert names_of_both() == here


def test_an_interrupted_wait_kills_and_reaps_the_child():
    import signal

    def interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            with Forked(lambda: time.sleep(30)) as child:
                pid = child._pid
                signal.setitimer(signal.ITIMER_REAL, 0.3)  # Ctrl-C while result() waits
                child.result()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(ChildProcessError):  # killed and reaped: no zombie left
        os.waitpid(pid, os.WNOHANG)


def test_split_work_does_everything_here_when_no_child_can_be_forked(forkable, monkeypatch):
    def no_fork():
        raise OSError(12, "Cannot allocate memory")

    fds = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()
    monkeypatch.setattr(forking.os, "fork", no_fork)
    out = forking.shared_array((10, 2), np.int64, 0)
    assert not forking.split_work(_squares_into(out), range(10), [1.0] * 10, min_cost=1.0)
    assert out[:, 0].tolist() == [k * k for k in range(10)]
    assert set(out[:, 1]) == {os.getpid()}
    if fds:
        assert set(os.listdir("/proc/self/fd")) <= fds  # the pipe's ends were closed


def test_split_work_forks_only_with_two_processors(monkeypatch):
    monkeypatch.setattr(forking, "may_fork", lambda: True)
    monkeypatch.setattr(forking, "usable_cpus", lambda: 1)
    out = forking.shared_array((4, 2), np.int64, 0)
    assert not forking.split_work(_squares_into(out), range(4), [5.0] * 4, min_cost=1.0)
    assert set(out[:, 1]) == {os.getpid()}
