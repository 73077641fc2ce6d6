"""lattice.forking: work in a forked child, and the plan run that uses it without a picture
worker (the lesion's measurements and the verification beside the parent's work)."""

from __future__ import annotations

import os
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
    assert may_fork()
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


def test_a_run_without_pictures_forks_and_writes_the_same_plan(tmp_path, monkeypatch):
    started = []
    real = forking.Forked.__init__

    def counting(self, fn, **kw):
        started.append(fn.__qualname__)
        real(self, fn, **kw)

    monkeypatch.setattr(forking.Forked, "__init__", counting)
    monkeypatch.setenv(FORK_ENV, "1")
    forked = run_plan(_request(tmp_path / "forked"))
    assert sorted(started) == [
        "Measuring.__init__.<locals>.measure",
        "Verification.__init__.<locals>.verify",
    ]
    monkeypatch.setenv(FORK_ENV, "0")
    started.clear()
    here = run_plan(_request(tmp_path / "here"))
    assert started == []
    a, b = forked.document, here.document
    assert a["lesion"] == b["lesion"] and a["lesion"]["measurements"]
    assert a["verification"] == b["verification"] and a["verification"]["ok"]
    assert a["vertices"] == b["vertices"]
    assert a["summary"] == b["summary"]


@pytest.mark.parametrize("flag", ["1", "0"])
def test_a_failed_verification_in_the_child_writes_nothing(tmp_path, monkeypatch, flag):
    def failing(document, **kw):
        return VerificationReport(
            violations=(Violation("gtv_margin", (1,), "vertex 1 is 0.2 mm too shallow"),),
            warnings=(),
            n_vertices=len(document["vertices"]),
        )

    monkeypatch.setattr(verify, "verify_plan", failing)
    monkeypatch.setenv(FORK_ENV, flag)
    out = tmp_path / "out"
    with pytest.raises(LatticeError, match="0.2 mm too shallow"):
        run_plan(_request(out))
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(ChildProcessError):  # the measuring child was stopped and reaped
        os.waitpid(-1, os.WNOHANG)
