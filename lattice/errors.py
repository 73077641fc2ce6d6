"""Errors raised by lattice.

Every error is a :class:`LatticeError`; the subclasses that describe bad values also inherit
:class:`ValueError`. Each class carries the process exit code the CLI uses for it, so the
catalogue in the README and the CLI cannot drift apart. Messages say what was wrong, the value
seen, and what to do about it.
"""

from __future__ import annotations


class LatticeError(Exception):
    """Base class of every error lattice raises on purpose."""

    exit_code: int = 1


class InputFileError(LatticeError, ValueError):
    """An input file is missing, unreadable, or not the format expected."""

    exit_code = 3


class MaskError(LatticeError, ValueError):
    """A mask's content is unusable: empty, ambiguous labels, wrong dimensionality."""

    exit_code = 4


class GridMismatchError(LatticeError, ValueError):
    """Two volumes that must share a voxel grid do not."""

    exit_code = 5


class ParameterError(LatticeError, ValueError):
    """A planning parameter is out of range or contradicts another."""

    exit_code = 2


class OutputExistsError(LatticeError, FileExistsError):
    """An output file already exists and overwriting was not asked for."""

    exit_code = 6


class OutputLockedError(OutputExistsError):
    """Another run is writing the same output folder (it holds the folder's lock)."""

    exit_code = 6


class OutputWriteError(LatticeError, OSError):
    """The output folder cannot be created or written."""

    exit_code = 7
