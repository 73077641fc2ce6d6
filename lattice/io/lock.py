"""The lock of an output folder: ``.OUT.lock`` beside the folder (not inside it: the folder
is swapped), held while a run writes, so that a second run into the same folder fails at
once instead of replacing the first run's plan.

The lock is ``flock(2)``: the kernel drops it when its holder ends, even by SIGKILL, so a
lock is never stale; the file names the holder (PID, command, start) for the message of a
run that finds it taken, and is removed by the holder when it ends. Without ``fcntl``
(Windows) no lock is taken. The other checks of an output folder are in
:mod:`lattice.io.folder`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputLockedError, OutputWriteError
from .folder import sibling_stem

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


#: Seconds a run that finds the lock taken waits for the holder's description to appear
#: (the holder writes it right after taking the lock).
HOLDER_READ_S = 0.2


# Locks this process holds: lock path -> (thread, depth). A run takes the lock of its
# folder once and the writer takes it again: the same thread re-enters, any other waits its
# turn like another process would.
_HELD: dict[str, tuple[int, int]] = {}


_HELD_GUARD = threading.Lock()


def lock_path(folder: Path) -> Path:
    """The lock file of output folder ``folder`` (resolved): ``.NAME.lock`` beside it."""
    return folder.parent / f".{sibling_stem(folder)}.lock"


@contextlib.contextmanager
def output_lock(folder: Path, *, command: str = "lattice") -> Iterator[Path]:
    """Hold the lock of output folder ``folder`` (from :func:`resolve_output_folder`).

    Missing parent folders are made first (and removed again when no output was made in
    them). Re-entrant in one thread.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    OutputLockedError
        Another run holds the lock; the message names it (PID, command, start).
    OutputWriteError
        The parent folder cannot be made, or the lock file cannot be written there.
    """
    path = lock_path(folder)
    key = str(path)
    me = threading.get_ident()
    with _HELD_GUARD:
        owner, depth = _HELD.get(key, (me, 0))
        if depth and owner == me:
            _HELD[key] = (me, depth + 1)
    if depth and owner == me:
        try:
            yield path
        finally:
            with _HELD_GUARD:
                _HELD[key] = (me, _HELD[key][1] - 1)
        return
    made = _make_parents(folder.parent)
    try:
        fd = _acquire(path, folder, command)
    except BaseException:
        _remove_made(made, folder)
        raise
    with _HELD_GUARD:
        _HELD[key] = (me, 1)
    try:
        yield path
    finally:
        with _HELD_GUARD:
            del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still held: a run that opened it retries (see _acquire)
        os.close(fd)
        _remove_made(made, folder)


def remove_stale_lock(folder: Path) -> bool:
    """Remove the lock file of ``folder`` when no process holds it: one a run left behind
    when it was stopped between taking the lock and letting it go (SIGTERM or SIGKILL at
    that moment). Harmless otherwise (the next run takes a free lock over); removed so that
    no dot-file stays beside the outputs. Returns whether a file was removed."""
    path = lock_path(folder)
    if fcntl is None or not path.is_file():
        return False
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not os.path.samestat(os.fstat(fd), os.stat(path)):
            return False
        os.unlink(path)  # while held, as the holder does (see _acquire)
        return True
    except OSError:  # held by a running run, or gone meanwhile: leave it
        return False
    finally:
        os.close(fd)


def _make_parents(parent: Path) -> list[Path]:
    made: list[Path] = []
    missing = []
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:  # made by a run started at the same time
            continue
        except OSError as exc:
            _remove_made(made, folder)
            raise OutputWriteError(
                f"cannot create '{folder}' ({exc.strerror}); choose another --out folder"
            ) from None
        made.append(folder)
    return made


def _remove_made(made: list[Path], folder: Path) -> None:
    """Remove the parent folders this run made, if it left nothing in them."""
    if folder.exists():
        return
    for parent in reversed(made):
        try:
            os.rmdir(parent)
        except OSError:
            return


def _acquire(path: Path, folder: Path, command: str) -> int:
    if fcntl is None:  # pragma: no cover - Windows: no lock
        return os.open(os.devnull, os.O_RDONLY)
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise OutputWriteError(
                f"cannot write to '{path.parent}' ({exc.strerror}); choose another --out folder"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputWriteError(
                    f"cannot lock '{path}' ({exc.strerror}); choose another --out folder"
                ) from None
            raise OutputLockedError(
                f"another run is writing the output folder '{folder}' ({_holder(path)}); wait "
                "for it to end, or choose another --out folder"
            ) from None
        try:  # the holder removes the file before it lets go: ours must still be the file
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            record = {
                "pid": os.getpid(),
                "command": command,
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(record) + "\n").encode())
            return fd
        os.close(fd)
    raise OutputLockedError(
        f"the lock '{path}' keeps changing hands; wait for the other "
        "runs into this folder to end, or choose another --out folder"
    )


def _holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its file says."""
    deadline = time.monotonic() + HOLDER_READ_S
    while True:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            return f"{record['command']}, PID {int(record['pid'])}, started {record['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() > deadline:
                return f"its lock is '{path}'"
            time.sleep(0.01)
