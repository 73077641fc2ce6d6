"""``lattice`` command line: the parser, the dispatch to the commands (one module each in
this package) and the mapping of errors to one line and an exit code (:mod:`lattice.errors`).

Exit codes (README "Exit codes" has the catalogue): 0 success (an empty plan only with
--allow-empty); 1 internal error; 2 bad parameters or usage (also: no vertex fits); 3 unreadable
input file; 4 unusable mask; 5 grids differ; 6 output exists (use --force); 7 output cannot be
written; 8 lattice verify found a violation; 9 lattice batch finished with failed jobs; 130
interrupted (Ctrl-C, SIGTERM); 141 stdout closed (a pipe).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import os
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from lattice import __version__
from lattice.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    exit_status,
    terminate_as_interrupt,
)
from lattice.plan_options import OPTION_NAMES
from lattice_cli import batch, evaluate, measure, plan, report, rois, scart, show, verify, view

_IMPORTED_AT = time.perf_counter()


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"lattice: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lattice", description="LATTICE / SFRT vertex geometry planner.")
    parser.add_argument("--version", action="version", version=f"lattice {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    plan.register(sub)
    verify.register(sub)
    scart.register(sub)
    rois.register(sub)
    measure.register(sub)
    report.register(sub)
    show.register(sub)
    view.register(sub)
    evaluate.register(sub)
    batch.register(sub, plan.add_plan_parameters)
    for command in sub.choices.values():
        # SUPPRESS: an absent flag after the command must not undo one given before it.
        command.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show tracebacks on errors",
        )
    return parser


def _skip_final_collection() -> None:
    gc.disable()
    gc.freeze()


def _process_start() -> float:
    """``time.perf_counter()`` reading at the start of this process, so that a run time
    includes interpreter start-up and imports.

    Linux: the process's start in clock ticks since boot (/proc/self/stat, field 22; 10 ms
    resolution) against CLOCK_BOOTTIME, the clock it is counted on. Elsewhere, or if that
    fails or gives an age that start-up cannot explain (more than 30 s before this module
    was imported): now, i.e. start-up and imports are not counted.
    """
    now = time.perf_counter()
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # after the command name
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - age if 0.0 <= age <= now - _IMPORTED_AT + 30.0 else now


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (never raises for expected errors).

    The run time ``plan`` prints counts from the process's start when called as the
    command (``argv`` None), from this call otherwise (tests, lattice batch's workers).
    """
    if argv is None:  # the command itself
        started = _process_start()
        # At exit, skip the interpreter's last searches of every object for reference cycles
        # (0.1-0.3 s after a plan, after the printed time); the OS reclaims the memory.
        atexit.register(_skip_final_collection)
    else:
        started = time.perf_counter()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started = started
    try:
        with terminate_as_interrupt():
            return int(args.func(args))
    except BrokenPipeError:  # `lattice ... | head`: the reader left; say nothing more
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE  # as a shell reports a command stopped by SIGPIPE
    except KeyboardInterrupt:
        done = (
            "finished plans and summary.csv are kept; run the same command again to go on"
            if args.command == "batch"
            else "no output was written"
        )
        print(f"lattice: interrupted; {done}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the CLI must end with one line, not a traceback
        if args.debug and not isinstance(exc, MemoryError):
            raise
        # The parameters of lattice plan's errors are named as its options.
        code, line = exit_status(exc, option_names=OPTION_NAMES if args.command == "plan" else None)
        print(line, file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
