"""Where an output folder goes: the ``--out`` path checked before any work, and its lock.

An output folder ``OUT`` is written into hidden temporary folders beside it and renamed into
place (see :func:`lattice.export.write_staged`), so the checks here look at the path the
kernel will use, before anything is planned:

* :func:`resolve_output_folder` follows symbolic links (a loop, a dangling link, a file on
  the way, a name too long for the file system: one clear error each) and returns the
  absolute folder that will be written; two spellings of one folder resolve alike;
* :func:`check_not_around_cwd` refuses the current folder or one holding it (a folder that
  is swapped whole cannot be the one a shell sits in);
* :func:`check_inputs_outside` refuses a run whose inputs are inside its output folder, which
  that run would replace (decided: refused, never copied: the user keeps the one copy and
  chooses where it lives);
* :func:`output_lock` holds ``.OUT.lock`` beside the folder (not inside it: the folder is
  swapped), so that a second run into the same folder fails at once instead of replacing
  the first run's plan.

The lock is ``flock(2)``: the kernel drops it when its holder ends, even by SIGKILL, so a
lock is never stale; the file names the holder (PID, command, start) for the message of a
run that finds it taken, and is removed by the holder when it ends. Without ``fcntl``
(Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import OutputLockedError, OutputWriteError, ParameterError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Longest file name (bytes) when the file system does not say (``pathconf``): ext4, XFS,
#: btrfs, APFS and NTFS all allow 255.
NAME_MAX_DEFAULT = 255
#: Bytes a hidden sibling adds to the folder's stem: ``.`` STEM ``.`` kind (at most 7,
#: ``partial``) ``-`` PID (at most 10 digits) ``-`` and mkdtemp's 8 random characters.
SIBLING_EXTRA_BYTES = 29
#: Characters of a long name kept in its siblings' stem, before the hash of the whole name.
HASHED_HEAD_CHARS = 40
#: Seconds a run that finds the lock taken waits for the holder's description to appear
#: (the holder writes it right after taking the lock).
HOLDER_READ_S = 0.2

# Locks this process holds: lock path -> (thread, depth). A run takes the lock of its
# folder once and the writer takes it again: the same thread re-enters, any other waits its
# turn like another process would.
_HELD: dict[str, tuple[int, int]] = {}
_HELD_GUARD = threading.Lock()


def sibling_stem(out: Path) -> str:
    """The name ``out``'s hidden siblings start with: its own name, or, when a sibling would
    be longer than the file system allows, the name's start and a hash of the whole name
    (any legal folder name works)."""
    name = out.name
    if len(os.fsencode(name)) + SIBLING_EXTRA_BYTES <= _name_max(out.parent):
        return name
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    return f"{name[:HASHED_HEAD_CHARS]}~{digest}"


def _name_max(folder: Path) -> int:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pathconf(_existing_ancestor(folder), "PC_NAME_MAX"))
    return NAME_MAX_DEFAULT


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def lock_path(folder: Path) -> Path:
    """The lock file of output folder ``folder`` (resolved): ``.NAME.lock`` beside it."""
    return folder.parent / f".{sibling_stem(folder)}.lock"


def resolve_output_folder(out_dir: str | Path) -> Path:
    """The absolute folder that writing ``out_dir`` would create or replace, links followed.

    Raises
    ------
    OutputWriteError
        The path is a file, lies under a file, goes through a symbolic link loop or a
        dangling link, is too long for the file system, cannot be reached, or holds a NUL.
    """
    out = Path(out_dir)
    try:
        return _resolve(out)
    except ValueError as exc:  # an embedded NUL character
        raise OutputWriteError(f"--out {str(out)!r} is not a usable path ({exc}); choose "
                               "another --out folder") from None


def _resolve(out: Path) -> Path:
    path = out.absolute()
    missing: list[str] = []
    probe = path
    while True:
        try:
            st = os.stat(probe)
            break
        except FileNotFoundError:
            if os.path.islink(probe):
                raise OutputWriteError(
                    f"--out '{out}' goes through the symbolic link '{probe}', which points "
                    f"to '{os.readlink(probe)}', which does not exist; create that folder, "
                    "fix the link or choose another --out folder") from None
            missing.append(probe.name)
            probe = probe.parent
        except OSError as exc:
            raise _unusable(out, exc) from None
    if not stat.S_ISDIR(st.st_mode):
        if not missing:
            raise OutputWriteError(f"output path '{out}' is a file; pass a folder with --out")
        raise OutputWriteError(f"'{probe}' is a file, so --out '{out}' cannot be made in it; "
                               "choose another --out folder")
    try:
        folder = probe.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a loop (Python < 3.13)
        raise _unusable(out, exc if isinstance(exc, OSError)
                        else OSError(errno.ELOOP, os.strerror(errno.ELOOP))) from None
    for name in reversed(missing):  # folders yet to be made: no link can be among them
        folder = folder.parent if name == ".." else folder / name
    return folder


def _unusable(out: Path, exc: OSError) -> OutputWriteError:
    shown = str(out) if len(str(out)) <= 80 else f"{str(out)[:60]}...{str(out)[-12:]}"
    if exc.errno == errno.ELOOP:
        return OutputWriteError(f"--out '{shown}' goes through a symbolic link loop "
                                f"({exc.strerror}); fix the link or choose another --out "
                                "folder")
    if exc.errno == errno.ENAMETOOLONG:
        return OutputWriteError(f"--out '{shown}' is too long for the file system "
                                f"({exc.strerror}; a name may have {_name_max(out.parent)} "
                                "bytes); choose a shorter --out folder")
    if exc.errno == errno.ENOTDIR:
        blocker = out.absolute()
        while not blocker.is_file() and blocker != blocker.parent:
            blocker = blocker.parent
        return OutputWriteError(f"'{blocker}' is a file, so --out '{shown}' cannot be made in "
                                "it; choose another --out folder")
    return OutputWriteError(f"cannot use --out '{shown}' ({exc.strerror}); choose another "
                            "--out folder")


def check_not_around_cwd(folder: Path, out_dir: str | Path) -> None:
    """Refuse an output folder that is the current folder or holds it.

    Raises
    ------
    ParameterError
    """
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the current folder was removed: it cannot be the output
        return
    if folder == cwd or folder in cwd.parents:
        what = "is the current folder" if folder == cwd else "holds the current folder"
        raise ParameterError(f"--out '{out_dir}' {what} ('{cwd}'), which a run would replace "
                             "whole; pass a new folder for the plan (e.g. --out plan)")


def check_inputs_outside(folder: Path, out_dir: str | Path,
                         inputs: Iterable[tuple[str, str | Path | None]]) -> None:
    """Refuse inputs inside the output folder ``folder`` (resolved), however they are spelt.

    Each input is compared as written (made absolute, ``..`` folded: a link inside the folder
    is the folder's) and with its links followed (a link elsewhere into the folder).

    Parameters
    ----------
    inputs : iterable of (parameter name, path or None)
        e.g. ``("gtv", Path("out/lattice_target.nii.gz"))``; None is skipped. The error
        names the input as the ``{name}`` field of its :class:`ParameterError`.

    Raises
    ------
    ParameterError
        Naming the input (its parameter), the path and the folder.
    """
    roots = {folder, Path(os.path.abspath(out_dir))}
    for option, path in inputs:
        if path is None:
            continue
        spellings = {Path(os.path.abspath(path))}
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            spellings.add(Path(path).resolve())
        for spelling in spellings:
            for root in roots:
                if spelling == root or root in spelling.parents:
                    where = "is" if spelling == root else "is inside"
                    raise ParameterError(
                        f"{{{option}}} '{path}' {where} the output folder '{out_dir}', which "
                        "this run would write into and, with --force, replace whole; copy the "
                        "input out of that folder first or choose another --out folder",
                        parameters=[option])


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
            raise OutputWriteError(f"cannot create '{folder}' ({exc.strerror}); choose "
                                   "another --out folder") from None
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
            raise OutputWriteError(f"cannot write to '{path.parent}' ({exc.strerror}); choose "
                                   "another --out folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputWriteError(f"cannot lock '{path}' ({exc.strerror}); choose "
                                       "another --out folder") from None
            raise OutputLockedError(
                f"another run is writing the output folder '{folder}' ({_holder(path)}); wait "
                "for it to end, or choose another --out folder") from None
        try:  # the holder removes the file before it lets go: ours must still be the file
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            record = {"pid": os.getpid(), "command": command,
                      "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(record) + "\n").encode())
            return fd
        os.close(fd)
    raise OutputLockedError(f"the lock '{path}' keeps changing hands; wait for the other "
                            "runs into this folder to end, or choose another --out folder")


def _holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its file says."""
    deadline = time.monotonic() + HOLDER_READ_S
    while True:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            return (f"{record['command']}, PID {int(record['pid'])}, started "
                    f"{record['started']}")
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() > deadline:
                return f"its lock is '{path}'"
            time.sleep(0.01)
