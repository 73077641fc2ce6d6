"""Helpers shared by the CLI tests: run ``main`` in-process and snapshot folders."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
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


def lock_holder(folder: Path, command: str = "the holder") -> subprocess.Popen:
    """Another process holding the output lock of ``folder`` (as ``command``) until its
    stdin closes (``process.communicate("")``)."""
    code = (
        "import sys; from lattice.io.folder import resolve_output_folder\n"
        "from lattice.io.lock import output_lock\n"
        "with output_lock(resolve_output_folder(sys.argv[1]), command=sys.argv[2]):\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(folder), command],
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process
