"""Where an output folder goes and how it is written: the ``--out`` path checked before any
work, its lock, and the atomic write (:func:`write_staged`).

An output folder ``OUT`` is written into hidden temporary folders beside it and renamed into
place (see :func:`write_staged`), so the checks here look at the path the
kernel will use, before anything is planned:

* :func:`resolve_output_folder` follows symbolic links (a loop, a dangling link, a file on
  the way, a name too long for the file system: one clear error each) and returns the
  absolute folder that will be written; two spellings of one folder resolve alike;
* :func:`check_not_around_cwd` refuses the current folder or one holding it (a folder that
  is swapped whole cannot be the one a shell sits in);
* :func:`check_inputs_outside` refuses a run whose inputs are inside its output folder, which
  that run would replace (decided: refused, never copied: the user keeps the one copy and
  chooses where it lives);
* :func:`~lattice.io.lock.output_lock` holds ``.OUT.lock`` beside the folder (not inside it:
  the folder is swapped), so that a second run into the same folder fails at once instead of
  replacing the first run's plan (:mod:`lattice.io.lock`).

The lock is ``flock(2)``: the kernel drops it when its holder ends, even by SIGKILL, so a
lock is never stale; the file names the holder (PID, command, start) for the message of a
run that finds it taken, and is removed by the holder when it ends. Without ``fcntl``
(Windows) no lock is taken.

:func:`write_staged` writes into a hidden temporary folder beside ``OUT``
(:func:`make_stage`, named by :func:`stage_prefix` after the writing process) and renames it
into place; :func:`remove_stale_stages` removes what a killed run left behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import (
    LatticeError,
    OutputExistsError,
    OutputWriteError,
    ParameterError,
)

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
        raise OutputWriteError(
            f"--out {str(out)!r} is not a usable path ({exc}); choose another --out folder"
        ) from None


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
                    "fix the link or choose another --out folder"
                ) from None
            missing.append(probe.name)
            probe = probe.parent
        except OSError as exc:
            raise _unusable(out, exc) from None
    if not stat.S_ISDIR(st.st_mode):
        if not missing:
            raise OutputWriteError(f"output path '{out}' is a file; pass a folder with --out")
        raise OutputWriteError(
            f"'{probe}' is a file, so --out '{out}' cannot be made in it; "
            "choose another --out folder"
        )
    try:
        folder = probe.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a loop (Python < 3.13)
        raise _unusable(
            out, exc if isinstance(exc, OSError) else OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        ) from None
    for name in reversed(missing):  # folders yet to be made: no link can be among them
        folder = folder.parent if name == ".." else folder / name
    return folder


def _unusable(out: Path, exc: OSError) -> OutputWriteError:
    shown = str(out) if len(str(out)) <= 80 else f"{str(out)[:60]}...{str(out)[-12:]}"
    if exc.errno == errno.ELOOP:
        return OutputWriteError(
            f"--out '{shown}' goes through a symbolic link loop "
            f"({exc.strerror}); fix the link or choose another --out "
            "folder"
        )
    if exc.errno == errno.ENAMETOOLONG:
        return OutputWriteError(
            f"--out '{shown}' is too long for the file system "
            f"({exc.strerror}; a name may have {_name_max(out.parent)} "
            "bytes); choose a shorter --out folder"
        )
    if exc.errno == errno.ENOTDIR:
        blocker = out.absolute()
        while not blocker.is_file() and blocker != blocker.parent:
            blocker = blocker.parent
        return OutputWriteError(
            f"'{blocker}' is a file, so --out '{shown}' cannot be made in "
            "it; choose another --out folder"
        )
    return OutputWriteError(
        f"cannot use --out '{shown}' ({exc.strerror}); choose another --out folder"
    )


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
        raise ParameterError(
            f"--out '{out_dir}' {what} ('{cwd}'), which a run would replace "
            "whole; pass a new folder for the plan (e.g. --out plan)"
        )


def check_inputs_outside(
    folder: Path, out_dir: str | Path, inputs: Iterable[tuple[str, str | Path | None]]
) -> None:
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
                        parameters=[option],
                    )


# -- writing a folder atomically: temporary folders beside it, renamed into place --------


def check_output_folder(
    out_dir: str | Path,
    *,
    force: bool,
    names: Sequence[str],
    inputs: Iterable[tuple[str, str | Path | None]] = (),
) -> Path:
    """Fail early if the folder cannot be written, holds the run's ``inputs``, or would lose
    files without ``force``; the resolved folder (see the module's docstring).

    Raises
    ------
    OutputWriteError
        See :func:`resolve_output_folder`; or the parent folder (where
        the folder is staged) is not writable.
    ParameterError
        The folder is (or holds) the current folder, or holds one of ``inputs``.
    OutputExistsError
        ``names`` exist in it and ``force`` is not set.
    """
    out = Path(out_dir)
    folder = resolve_output_folder(out)
    check_not_around_cwd(folder, out)
    check_inputs_outside(folder, out, inputs)
    if folder.is_dir() and not force:
        clash = [n for n in names if (folder / n).exists()]
        if clash:
            raise OutputExistsError(
                f"'{out}' already holds {', '.join(clash)}; pass --force to replace them or "
                "choose another --out folder"
            )
    parent = _existing_parent(folder.parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        held = (
            f", where --out '{out}' is staged and renamed into place"
            if parent == folder.parent and folder.exists()
            else ""
        )
        raise OutputWriteError(
            f"cannot write to '{parent}' (permission denied){held}; choose another --out folder"
        )
    return folder


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def write_staged(
    out_dir: str | Path,
    write: Callable[[Path], Sequence[str]],
    *,
    owned: Sequence[str],
    force: bool,
) -> dict[str, Path]:
    """Write an output folder atomically.

    ``write(stage)`` writes files into a temporary folder beside ``out_dir`` and returns
    their names, the completeness marker (a JSON document) last. They are moved into place
    only when all are written. A new folder appears whole (one rename). An existing folder
    that holds only ``owned`` files (a previous output) is swapped: renamed aside, the new
    one renamed in, the old one removed, so at every instant the folder is complete or
    absent. In a folder that also holds other files (which are left alone) the files are
    moved one by one: the old marker goes first and the new one lands last, so a marker
    always describes the files beside it; files in ``owned`` that this run did not write
    are removed. Temporary folders left by a killed run are removed by the next one.

    Raises
    ------
    OutputExistsError
        ``owned`` files exist and ``force`` is not set.
    OutputWriteError
        The folder cannot be created or written (nothing is left behind).
    """
    from .lock import output_lock  # the lock names its file after sibling_stem, from here

    out = check_output_folder(out_dir, force=force, names=owned)
    with output_lock(out):
        out = check_output_folder(out_dir, force=force, names=owned)  # now that it is ours
        remove_stale_stages(out)
        try:
            stage = make_stage(out, "partial", out.parent)
        except OSError as exc:
            raise OutputWriteError(
                f"cannot create a folder in '{out.parent}' ({exc.strerror}); {_advice(exc)}"
            ) from exc
        try:
            names = list(write(stage))
            return _move_into_place(stage, out, names, owned)
        except LatticeError:  # says what failed and what to do (a drawing is no disk problem)
            raise
        except OSError as exc:
            raise OutputWriteError(
                f"writing to '{out_dir}' failed ({exc}); nothing was written; {_advice(exc)}"
            ) from exc
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def _advice(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space or choose another --out folder"
    return "choose another --out folder"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


#: Kinds of temporary folder beside a plan folder: the plan being written, the derived CT,
#: a replaced plan on its way out.
STAGE_KINDS = ("partial", "ct", "old")


def stage_prefix(out: Path, kind: str) -> str:
    """Name prefix of a temporary folder beside ``out``: hidden, naming this process so a
    later run can tell a dead run's leftovers from a running one's, and short enough for
    any legal folder name (:func:`sibling_stem`)."""
    return f".{sibling_stem(out)}.{kind}-{os.getpid()}-"


def make_stage(out: Path, kind: str, parent: Path) -> Path:
    """A new temporary folder for ``out`` in ``parent`` (:func:`stage_prefix`), with the
    permissions of a folder made normally (mkdtemp makes it private; it becomes output)."""
    stage = Path(tempfile.mkdtemp(prefix=stage_prefix(out, kind), dir=parent))
    _as_if_made_normally(stage, 0o777)
    return stage


def publish(tmp: str | Path, path: str | Path) -> Path:
    """Rename a finished temporary file (from ``tempfile.mkstemp`` beside ``path``) into
    place, atomically, with the permissions of a file made normally (mkstemp makes it
    private)."""
    _as_if_made_normally(tmp, 0o666)
    os.replace(tmp, path)
    return Path(path)


@contextlib.contextmanager
def atomic_open(path: str | Path, *, newline: str | None = None) -> Iterator[IO[str]]:
    """A UTF-8 text file written beside ``path`` (``tempfile.mkstemp``) and renamed onto it
    by :func:`publish` when the block ends; if the block raises, the temporary file is
    removed and ``path`` is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent.absolute())
    try:
        with os.fdopen(fd, "w", newline=newline, encoding="utf-8") as fh:
            yield fh
        publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def refuse_existing(path: str | Path, *, force: bool) -> None:
    """Raise :class:`OutputExistsError` when the output file ``path`` exists and ``force``
    is False (called before the work that makes it, and again by :func:`write_text_file`)."""
    if not force and Path(path).exists():
        raise OutputExistsError(
            f"'{path}' already exists; pass --force to replace it or choose another --out"
        )


def write_text_file(path: str | Path, text: str, *, force: bool, what: str) -> Path:
    """Write one derived text output (a report, a viewer page) at ``path``, atomically
    (:func:`atomic_open`: whole or not at all).

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is False.
    OutputWriteError
        ``path`` is a folder or cannot be written; ``what`` names the file in the message.
    """
    path = Path(path)
    refuse_existing(path, force=force)
    if path.is_dir():
        raise OutputWriteError(f"'{path}' is a folder; give a file name for the {what}")
    try:
        with atomic_open(path) as fh:
            fh.write(text)
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write '{path}' ({exc.strerror or exc}); choose another --out"
        ) from exc
    return path


def _as_if_made_normally(path: str | Path, mode: int) -> None:
    """Give ``path`` the mode ``open``/``mkdir`` would have: ``mode`` less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def remove_stale_stages(out: Path) -> list[Path]:
    """Remove the temporary folders beside ``out`` (:func:`stage_prefix`) of processes that
    no longer run (a run killed with SIGKILL cannot clean up after itself). A replaced plan
    (``old``) of a run killed between its two renames is put back when ``out`` is missing."""
    parent = out.absolute().parent
    # Exactly what stage_prefix + mkdtemp make (8 random characters): never a user's folder.
    kinds = "|".join(STAGE_KINDS)
    pattern = re.compile(
        rf"^\.{re.escape(sibling_stem(out))}\.({kinds})-(\d{{1,10}})-"
        r"[a-z0-9_]{8}$"
    )
    removed = []
    with contextlib.suppress(OSError):
        for entry in sorted(parent.iterdir()):
            match = pattern.match(entry.name)
            if match and entry.is_dir() and not _alive(int(match.group(2))):
                if match.group(1) == "old" and not os.path.lexists(out.absolute()):
                    with contextlib.suppress(OSError):
                        os.rename(entry, out.absolute())
                        continue
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (True when unsure: its folder is then kept)."""
    if os.name != "posix":  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):  # another user's process, or no such pid
        return True
    return True


def _move_into_place(
    stage: Path, out: Path, names: Sequence[str], owned: Sequence[str]
) -> dict[str, Path]:
    beside = stage.parent == out.absolute().parent
    swap = not out.is_symlink() and (not out.exists() or set(os.listdir(out)) <= set(owned))
    if beside and swap:
        if out.exists():  # a previous output, replaced (force): swap the folders
            old = make_stage(out, "old", stage.parent)
            try:
                os.replace(out, old)  # the empty placeholder is replaced by the old output
            except OSError:
                os.rmdir(old)
                raise
            try:
                os.rename(stage, out)
            except OSError:
                os.replace(old, out)  # the previous output back in place
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(stage, out)  # atomic: the folder appears complete
        stage.mkdir()  # so the caller's cleanup has something to remove
        return {n: out / n for n in names}
    marker = names[-1]
    (out / marker).unlink(missing_ok=True)  # until the new marker lands: no complete output
    for stale in set(owned) - set(names):
        _remove(out / stale)
    for n in names:  # the marker is last
        if (stage / n).is_dir():
            _remove(out / n)  # os.replace cannot replace a non-empty folder
        os.replace(stage / n, out / n)
    return {n: out / n for n in names}


def write_json(document: Mapping[str, Any], path: str | Path) -> Path:
    """Write a JSON document, indented, refusing NaN/inf."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2, allow_nan=False)
        fh.write("\n")
    return Path(path)
