"""Numeric option types and help texts shared by the commands.

argparse reads only the syntax here (ASCII digits: ``1_000`` and ``2.0`` for a count are
refused); the range of every value is the library's (:data:`lattice.planning.parameters.RANGES`),
checked by each command before any work, so ``--help``, the README and the errors agree.
"""

from __future__ import annotations

import argparse

from lattice.planning.parameters import range_text, read_number


def number(text: str) -> float:
    """argparse type: a decimal number (``nan`` and ``inf`` pass, for the range check)."""
    try:
        return float(read_number(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def whole(text: str) -> int:
    """argparse type: a whole number, digits only (any size: the range check names it)."""
    try:
        return int(read_number(text, integer=True))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ranged(text: str, name: str) -> str:
    """``text`` with the valid range of the library parameter ``name`` appended."""
    return f"{text}; {range_text(name)}"


def check_options(args: argparse.Namespace, names: dict[str, str]) -> None:
    """Check the given options (``{attribute: library range name}``) against their ranges;
    None means not given. Raises ParameterError naming the option as typed."""
    from lattice.planning.parameters import check_range

    for attr, name in names.items():
        value = getattr(args, attr, None)
        if value is not None:
            check_range(name, value, label="--" + attr.replace("_", "-"))
