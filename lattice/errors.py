"""Errors raised by lattice.

Every error is a :class:`LatticeError`; the subclasses that describe bad values also inherit
:class:`ValueError`. Each class carries the process exit code the CLI uses for it, so the
catalogue in the README and the CLI cannot drift apart. Messages say what was wrong, the value
seen, and what to do about it.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

#: The process exit codes of the ``lattice`` command (README "Exit codes"), all of them.
EXIT_OK = 0
#: An internal error (a bug), or out of memory.
EXIT_INTERNAL = 1
#: Bad parameters or usage (also: no vertex fits).
EXIT_USAGE = 2
#: An input file is unreadable.
EXIT_INPUT = 3
#: A mask is unusable.
EXIT_MASK = 4
#: Grids differ.
EXIT_GRID = 5
#: The output exists (use --force), or another run holds it.
EXIT_OUTPUT_EXISTS = 6
#: The output cannot be written.
EXIT_OUTPUT_WRITE = 7
#: ``lattice verify`` found a violation.
EXIT_VIOLATION = 8
#: ``lattice batch`` ran to the end with failed jobs.
EXIT_JOBS_FAILED = 9
#: Interrupted (Ctrl-C, SIGTERM), as a shell reports SIGINT.
EXIT_INTERRUPTED = 130
#: stdout closed (a pipe), as a shell reports a command stopped by SIGPIPE.
EXIT_BROKEN_PIPE = 141


class LatticeError(Exception):
    """Base class of every error lattice raises on purpose."""

    exit_code: int = EXIT_INTERNAL


class InputFileError(LatticeError, ValueError):
    """An input file is missing, unreadable, or not the format expected."""

    exit_code = EXIT_INPUT


class MaskError(LatticeError, ValueError):
    """A mask's content is unusable: empty, ambiguous labels, wrong dimensionality."""

    exit_code = EXIT_MASK


class GridMismatchError(LatticeError, ValueError):
    """Two volumes that must share a voxel grid do not."""

    exit_code = EXIT_GRID


class ParameterError(LatticeError, ValueError):
    """A planning parameter is out of range or contradicts another.

    The message may name parameters as ``{name}`` fields, listed in ``parameters``:
    ``str(exc)`` spells them as the library does (``min_spacing_mm``), :meth:`render` as a
    caller wants (the command line: ``--spacing-mm``).

    >>> exc = ParameterError("{min_spacing_mm} must be > 0", parameters=["min_spacing_mm"])
    >>> str(exc), exc.parameter, exc.render({"min_spacing_mm": "--spacing-mm"})
    ('min_spacing_mm must be > 0', 'min_spacing_mm', '--spacing-mm must be > 0')
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, parameters: Sequence[str] = ()) -> None:
        self.template = message
        self.parameters = tuple(parameters)
        super().__init__(self.render())

    @classmethod
    def of(cls, parameters: Sequence[str], message: str) -> ParameterError:
        """``ParameterError(message, parameters=parameters)``."""
        return cls(message, parameters=parameters)

    @property
    def parameter(self) -> str | None:
        """The parameter the error is about (the first one named), or None."""
        return self.parameters[0] if self.parameters else None

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each ``{name}`` field spelt ``names[name]`` (default: the name)."""
        text = self.template
        for name in self.parameters:
            text = text.replace("{" + name + "}", (names or {}).get(name, name))
        return text

    def __reduce__(self) -> Any:  # keep the fields across processes
        return (_parameter_error, (type(self), self.template, self.parameters))


def _parameter_error(
    cls: type[ParameterError], message: str, parameters: Sequence[str]
) -> ParameterError:
    return cls(message, parameters=parameters)


class OutputExistsError(LatticeError, FileExistsError):
    """An output file already exists and overwriting was not asked for."""

    exit_code = EXIT_OUTPUT_EXISTS


class OutputLockedError(OutputExistsError):
    """Another run is writing the same output folder (it holds the folder's lock)."""

    exit_code = EXIT_OUTPUT_EXISTS


class OutputWriteError(LatticeError, OSError):
    """The output folder cannot be created or written."""

    exit_code = EXIT_OUTPUT_WRITE


def one_line(exc: BaseException) -> str:
    """An error message on one line (messages quoted from nibabel may hold newlines)."""
    return " ".join(str(exc).split())


def exit_status(
    exc: BaseException, *, option_names: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """The exit code and the one line the command prints for ``exc``.

    ``option_names`` spells the parameters a :class:`ParameterError` names (see
    :meth:`ParameterError.render`). Lines of lattice's own errors begin
    ``lattice: error:``; anything unexpected is an internal error.
    """
    if isinstance(exc, LatticeError):
        text = exc.render(option_names) if isinstance(exc, ParameterError) else str(exc)
        return exc.exit_code, f"lattice: error: {' '.join(text.split())}"
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "lattice: interrupted; no output was written"
    if isinstance(exc, MemoryError):
        return EXIT_INTERNAL, "lattice: error: out of memory; crop the CT around the GTV"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        # A full disk or quota outside the staged writes (a temporary folder, say).
        where = f" ('{exc.filename}')" if exc.filename else ""
        return EXIT_OUTPUT_WRITE, (
            f"lattice: error: writing failed: {exc.strerror}{where}; "
            "nothing was written; free space or choose another --out "
            "folder"
        )
    return EXIT_INTERNAL, (
        f"lattice: internal error: {type(exc).__name__}: {one_line(exc)} "
        "(rerun with --debug and report it)"
    )


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler cancelling the run, ``kill``) is handled like Ctrl-C: the run
    stops, its temporary folders are removed, nothing half-written is left. Only in the main
    thread (elsewhere signals cannot be handled)."""

    def interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: let the cleanup run
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
