"""What the command line imports before it runs a command: its parser (every command's
options, help texts, defaults and choices) needs none of the heavy libraries, so
``lattice --help`` and argument errors are quick, and a plan imports each only when used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Each takes 0.1-0.6 s to import; the parser must not need them.
HEAVY = ("matplotlib", "trimesh", "skimage", "pydicom", "nibabel", "scipy")


def _imported_after(code: str) -> set[str]:
    """The top-level packages in sys.modules after ``code`` ran in a fresh interpreter."""
    listing = "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    script = f"{code}\nimport json, sys\n{listing}"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    [
        "import lattice_cli.main",
        "from lattice_cli.main import build_parser; build_parser()",
        "import lattice, lattice.plan_options, lattice.pipeline",
    ],
)
def test_the_parser_imports_no_heavy_library(code):
    assert _imported_after(code).isdisjoint(HEAVY)


def test_plan_help_imports_no_heavy_library():
    code = (
        "import contextlib, io\n"
        "from lattice_cli.main import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['plan', '--help'])"
    )
    assert _imported_after(code).isdisjoint(HEAVY)
