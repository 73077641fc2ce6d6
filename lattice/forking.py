"""Work done in a forked child process beside this one, its result sent back pickled.

A plan run without a picture worker (``--no-picture``) leaves the machine's second core
idle; :class:`Forked` puts work that the run needs only later (the GTV's measurements, the
independent verification) on it. The child is a fork, so it starts with this process's
memory (the masks, the plan) at no copying cost and imports nothing again.
:func:`split_work` shares one job between this process and a child, each writing its part
into a :func:`shared_array` (the slices of the planner's distance tables).

Forking is only safe in a process that runs no other thread (a thread holding a lock, an
import's for one, would leave it held in the child): :func:`may_fork` says whether this
process may. The child ends with ``os._exit``: it runs none of this process's cleanup
(atexit handlers, temporary folders, locks).
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import pickle
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

T = TypeVar("T")
U = TypeVar("U")

#: Set to "0" to do the work in the planning process itself (no picture worker, no forked
#: child): ``lattice batch`` does so when every core already runs a plan of its own.
FORK_ENV = "LATTICE_PICTURE_PROCESS"


def _cores_to_spare() -> bool:
    """The environment (:data:`FORK_ENV`) does not say that every core runs a plan."""
    return os.environ.get(FORK_ENV, "1") != "0"


def may_start_process() -> bool:
    """Whether the work may go to another process: ``fork`` exists, the environment
    (:data:`FORK_ENV`) does not say no, and this process may have children (daemonic ones,
    Dask workers for one, may not)."""
    return (
        "fork" in mp.get_all_start_methods()
        and _cores_to_spare()
        and not mp.current_process().daemon
    )


def may_fork() -> bool:
    """:func:`may_start_process`, and no other thread runs in this process."""
    return may_start_process() and threading.active_count() == 1


class Forked(Generic[T]):
    """``fn()`` run in a forked child from now on; :meth:`result` waits for its value.

    Create it only where :func:`may_fork` is true. :meth:`result` raises the error ``fn``
    raised (pickled back; an unpicklable one as a RuntimeError with its text). A child that
    dies without an answer (killed, out of memory) is not an error of ``fn``: :meth:`result`
    then returns ``fallback()`` computed in this process, or raises OSError without one.
    :meth:`cancel` (or leaving a ``with`` block) kills a child whose result is not wanted.
    """

    def __init__(self, fn: Callable[[], T], *, fallback: Callable[[], T] | None = None) -> None:
        self._fallback = fallback
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:  # no memory or process left for a child: nothing is left open
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # pragma: no cover - the child; coverage does not follow it
            os.close(read_fd)
            _run_child(fn, write_fd)
        os.close(write_fd)
        self._pid: int | None = pid
        self._fd = read_fd

    def result(self) -> T:
        """Wait for the child; its value (or its error raised here)."""
        if self._pid is None:
            raise RuntimeError("the result of a forked call is collected once")
        # The pipe is closed by the block below, even when Ctrl-C stops the read: cancel()
        # (leaving a with block) then only kills and reaps the child.
        fd, self._fd = self._fd, -1
        with os.fdopen(fd, "rb") as fh:
            message = fh.read()  # until the child closes its end (it exits)
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        if message:
            ok, value = pickle.loads(message)
            if ok:
                return value  # type: ignore[no-any-return]
            raise value
        if self._fallback is not None:
            return self._fallback()
        raise OSError(f"a helper process stopped without an answer (wait status {status})")

    def cancel(self) -> None:
        """Kill the child, if its result was not collected, and reap it."""
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # pragma: no cover - already reaped elsewhere
            pass
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        os.waitpid(pid, 0)

    def __enter__(self) -> Forked[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


def usable_cpus() -> int:
    """Processors this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def on_two_threads(first: Callable[[], T], second: Callable[[], U]) -> tuple[T, U]:
    """``(first(), second())``, ``second`` in a thread of its own where this process may run
    on two processors and the environment (:data:`FORK_ENV`) does not say that every core
    runs a plan of its own (for work that releases the GIL, numpy's loops): joined before
    this returns, so that a later fork finds no other thread. ``first``'s error is raised
    if it fails, else ``second``'s. Where no thread can be started, both run here."""
    if usable_cpus() < 2 or not _cores_to_spare():
        return first(), second()
    box: list[Any] = []

    def run() -> None:
        try:
            box.append((True, second()))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            box.append((False, exc))

    thread = threading.Thread(target=run, name="lattice-second")
    try:
        thread.start()
    except RuntimeError:  # no thread left to start (a process limit)
        return first(), second()
    try:
        a = first()
    finally:
        thread.join()
    ok, b = box[0]
    if not ok:
        raise b
    return a, b


def shared_array(shape: tuple[int, ...], dtype: Any, fill: float) -> NDArray[Any]:
    """A new array, every element ``fill``, in memory that the children this process forks
    from now on share (an anonymous shared mapping): what a child writes into it, this
    process sees. Copy the results out (``np.array``) before forking children that should
    not share them."""
    count = int(np.prod(shape))
    buffer = mmap.mmap(-1, max(count * np.dtype(dtype).itemsize, 1))  # shared, zero-filled
    array = np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)
    if fill != 0:
        array[...] = fill
    return array


def split_work(
    work: Callable[[Sequence[int]], None],
    items: Sequence[int],
    costs: Sequence[float],
    *,
    min_cost: float,
) -> bool:
    """``work(items)``, the items split in two runs of about equal cost, the second in a
    forked child, when the whole costs at least ``min_cost`` and :func:`may_split` allows
    (else, or when no child can be forked, all here, in order). ``work`` writes its results
    into :func:`shared_array` arrays, each item's into its own part; a child that dies
    without an answer has its part done here. True when a child was used.
    """
    total = float(sum(costs))
    if len(items) < 2 or total < min_cost or not may_split():
        work(items)
        return False
    cut = int(np.searchsorted(np.cumsum(costs), total / 2.0)) + 1
    cut = min(max(cut, 1), len(items) - 1)
    first, second = list(items[:cut]), list(items[cut:])
    try:
        child = Forked(lambda: work(second), fallback=lambda: work(second))
    except OSError:  # no child to be had (memory, process limits): all here
        work(items)
        return False
    with child:
        work(first)
        child.result()
    return True


def may_split() -> bool:
    """Whether :func:`split_work` would fork: :func:`may_fork`, on two processors or more."""
    return may_fork() and usable_cpus() >= 2


def _run_child(fn: Callable[[], object], write_fd: int) -> None:  # pragma: no cover - a child
    """Run ``fn``, write ``(ok, value or error)`` pickled to ``write_fd``, and exit."""
    try:
        # The parent handles Ctrl-C and SIGTERM (and removes its temporary folders); this
        # child just stops, and the parent, woken by the closed pipe, goes on.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            answer: tuple[bool, object] = (True, fn())
        except BaseException as exc:  # noqa: BLE001 - sent to the parent
            answer = (False, exc)
        try:
            message = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - an unpicklable value or error: its text
            what = answer[1] if not answer[0] else exc
            message = pickle.dumps((False, RuntimeError(f"{type(what).__name__}: {what}")))
        with os.fdopen(write_fd, "wb") as fh:
            fh.write(message)
    finally:
        os._exit(0)
