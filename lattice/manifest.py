"""The cases and parameter sets of ``lattice batch``: the manifest CSV and the grid.

A manifest names each case's inputs (``case``, ``ct``, ``gtv``, optional ``oars``) and may
give any plan parameter (:data:`PLAN_PARAMETERS`, the options of ``lattice plan``) as a
column; a grid (``spacing_mm=20,25``) sweeps parameters over every case.
:func:`lattice.batch.make_jobs` turns both into jobs.
"""

from __future__ import annotations

import csv
import itertools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputFileError, ParameterError
from .plan_options import FALSE_WORDS, PLAN_OPTION, PLAN_OPTIONS, TRUE_WORDS
from .planning.parameters import parse_oar_spec

#: Parameters a manifest column, a grid axis or a default may set: the options of
#: ``lattice plan`` other than its inputs and output, named like them (``--spacing-mm`` is
#: ``spacing_mm``): :data:`lattice.plan_options.PLAN_OPTIONS`.
PLAN_PARAMETERS: tuple[str, ...] = tuple(o.name for o in PLAN_OPTIONS)
#: Parameters that are on/off flags of ``lattice plan``.
FLAG_PARAMETERS = frozenset(o.name for o in PLAN_OPTIONS if o.kind == "flag")
#: Columns every manifest has, and the optional OAR column.
MANIFEST_COLUMNS = ("case", "ct", "gtv")
OAR_COLUMN = "oars"
_CASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
RUNS_FOLDER = "runs"
SUMMARY_NAME = "summary.csv"


@dataclass(frozen=True)
class Case:
    """One manifest row: a case name, its inputs (absolute paths), per-case parameters."""

    name: str
    ct: Path
    gtv: Path
    oars: tuple[str, ...] = ()
    parameters: Mapping[str, str] = field(default_factory=dict)


def check_parameter_name(name: str, where: str) -> None:
    """Refuse a name that is not one of :data:`PLAN_PARAMETERS` (``where`` says whose)."""
    if name not in PLAN_PARAMETERS:
        raise ParameterError(
            f"{where}: '{name}' is not a plan parameter; use one of {', '.join(PLAN_PARAMETERS)}"
        )


def parameter_text(value: Any) -> str:
    """A parameter value as the command line writes it (15.0 -> '15')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_csv(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of the manifest CSV and its column names (stripped)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = [c.strip() for c in reader.fieldnames or []]
    except FileNotFoundError:
        raise InputFileError(f"manifest not found: '{path}'; check the path") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(
            f"cannot read manifest '{path}' ({exc}); it must be a UTF-8 CSV "
            "file with the columns case, ct, gtv"
        ) from None
    return rows, columns


def _parameter_columns(path: Path, columns: list[str]) -> list[str]:
    """The manifest's parameter columns, once every column is checked."""
    unnamed = [i + 1 for i, c in enumerate(columns) if not c]
    if unnamed:
        raise ParameterError(
            f"manifest '{path}': column {unnamed[0]} of the first line has no "
            "name (a trailing comma?); name every column or remove it"
        )
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ParameterError(
            f"manifest '{path}': column {', '.join(twice)} appears twice; keep one"
        )
    missing = [c for c in MANIFEST_COLUMNS if c not in columns]
    if missing:
        raise InputFileError(
            f"manifest '{path}' has no column {', '.join(missing)} (columns: "
            f"{', '.join(columns) or 'none'}); the first line must name the "
            "columns case, ct, gtv and optionally oars and plan parameters"
        )
    extra = [c for c in columns if c not in (*MANIFEST_COLUMNS, OAR_COLUMN)]
    for c in extra:
        check_parameter_name(c, f"manifest '{path}' column")
    return extra


def read_manifest(path: str | Path) -> list[Case]:
    """Read a manifest CSV: columns ``case``, ``ct``, ``gtv``, optional ``oars``
    (``[NAME=]PATH:MM`` entries separated by ``;``) and optional parameter columns named like
    :data:`PLAN_PARAMETERS`. Relative paths are taken from the manifest's folder; an empty
    parameter cell leaves that parameter to the defaults.

    Raises
    ------
    InputFileError
        The manifest is missing or not a CSV with the required columns.
    ParameterError
        Unknown columns, repeated or unusable case names, empty inputs.
    """
    path = Path(path)
    rows, columns = _read_csv(path)
    extra = _parameter_columns(path, columns)
    base = Path(os.path.abspath(path)).parent  # absolute, '..' folded: resumable from anywhere
    cases: list[Case] = []
    for line, raw in enumerate(rows, start=2):
        if None in raw:  # csv.DictReader keeps the surplus fields of a row under None
            raise ParameterError(
                f"manifest '{path}' line {line} has more fields than the "
                "first line names (a comma in a path? put the field in double "
                "quotes)"
            )
        row = {k.strip(): (v or "").strip() for k, v in raw.items()}
        name = row["case"]
        where = f"manifest '{path}' line {line}"
        if name in (RUNS_FOLDER, SUMMARY_NAME):
            raise ParameterError(
                f"{where}: the case name {name!r} is taken by the batch's own "
                "output; rename the case"
            )
        if not _CASE_NAME.match(name):
            raise ParameterError(
                f"{where}: case name {name!r} must start with a letter or "
                "digit and hold only letters, digits, '.', '_' and '-' (it "
                "names the case's output folder)"
            )
        for c in ("ct", "gtv"):
            if not row[c]:
                raise ParameterError(f"{where}: case {name} has no {c} path")
        oars = tuple(
            _resolve_oar(entry.strip(), base, where)
            for entry in row.get(OAR_COLUMN, "").split(";")
            if entry.strip()
        )
        parameters = {c: row[c] for c in extra if row[c] != ""}
        if "body" in parameters:  # a mask file (--body), from the manifest's folder too
            parameters["body"] = os.path.abspath(base / parameters["body"])
        if parameters.get("roi_name_map"):  # a file, relative to the manifest as the inputs
            parameters["roi_name_map"] = os.path.abspath(base / parameters["roi_name_map"])
        cases.append(
            Case(
                name,
                Path(os.path.abspath(base / row["ct"])),
                Path(os.path.abspath(base / row["gtv"])),
                oars,
                parameters,
            )
        )
    names = [c.name.casefold() for c in cases]  # Pt1 and pt1 share a folder on macOS
    repeated = sorted({c.name for c in cases if names.count(c.name.casefold()) > 1})
    if repeated:
        raise ParameterError(
            f"manifest '{path}': case names repeat ({', '.join(repeated)}); "
            "every case needs its own name"
        )
    if not cases:
        raise ParameterError(f"manifest '{path}' lists no cases")
    return cases


def _resolve_oar(entry: str, base: Path, where: str) -> str:
    """``[NAME=]PATH[:MM]`` read as ``lattice plan --oar`` reads it (an existing file wins;
    ``NAME=`` only without a path separator; see
    :func:`lattice.planning.parameters.parse_oar_spec`), PATH taken from ``base`` when relative,
    written back as ``NAME=/absolute/path[:MM]``, which the command reads the same way."""
    try:
        spec = parse_oar_spec(entry, base=base)
    except ParameterError as exc:
        raise ParameterError(f"{where}: {exc}") from None
    return spec.text()


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
    """``['spacing_mm=20,25', 'diameter_mm=10,15']`` -> ``{'spacing_mm': ['20', '25'], ...}``.

    Raises
    ------
    ParameterError
        A malformed entry, an unknown parameter, an axis given twice, or no values.
    """
    grid: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(
                f"grid entry {spec!r} must look like NAME=V1,V2 (e.g. spacing_mm=20,25,30)"
            )
        check_parameter_name(name, f"grid entry {spec!r}")
        if name in grid:
            raise ParameterError(
                f"grid axis '{name}' is given twice; list all its values in one entry"
            )
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not items:
            raise ParameterError(f"grid entry {spec!r} has no values")
        grid[name] = items
    return grid


def expand_grid(grid: Mapping[str, Iterable[Any]]) -> list[dict[str, str]]:
    """Every combination of the grid's values (the first axis varies slowest); ``[{}]`` for
    an empty grid."""
    axes = {name: [parameter_text(v) for v in values] for name, values in grid.items()}
    for name, values in axes.items():
        check_parameter_name(name, "grid axis")
        if not values:
            raise ParameterError(f"grid axis '{name}' has no values")
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def plan_argv(case: Case, parameters: Mapping[str, str], out_dir: Path) -> list[str]:
    """The job of ``case`` with ``parameters`` as ``lattice plan`` arguments (a job's identity:
    a rerun with other arguments is another job)."""
    argv = ["--ct", str(case.ct), "--gtv", str(case.gtv)]
    for oar in case.oars:
        argv += ["--oar", oar]
    for name, value in parameters.items():
        option = PLAN_OPTION[name].flag
        if name in FLAG_PARAMETERS:
            text = value.lower()
            if text not in TRUE_WORDS | FALSE_WORDS:
                raise ParameterError(
                    f"case {case.name}: {name} is an on/off flag; write true "
                    f"or false, not {value!r}"
                )
            if text in TRUE_WORDS:
                argv.append(option)
        elif name == "size_rule":  # several rules: separated by ';'
            for rule in value.split(";"):
                argv += [option, rule.strip()]
        else:
            argv += [option, value]
    argv += ["--out", str(out_dir)]
    return argv


def folder_name(values: Mapping[str, str]) -> str:
    """The folder of a parameter set: ``diameter_mm-10_spacing_mm-20``."""
    return "_".join(f"{k}-{re.sub(r'[^A-Za-z0-9.+-]', '-', v)}" for k, v in values.items())
