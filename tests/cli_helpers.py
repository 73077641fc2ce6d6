"""Helpers shared by the CLI tests: run ``main`` in-process and snapshot folders."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from lattice_cli.main import main


def run(capfd, argv):
    """``main(argv)`` in-process; (exit code, stdout, stderr), captured at the fd level."""
    capfd.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capfd.readouterr()
    return code, out, err


def run_redirected(argv):
    """Run ``main(argv)`` in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` (links not followed): its bytes and mtime."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }
