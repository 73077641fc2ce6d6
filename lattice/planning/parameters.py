"""The valid range of every numeric parameter, and the ``[NAME=]PATH[:MM]`` syntax of an OAR.

One table, :data:`RANGES`, holds the range of each numeric parameter of the library and of
the command line (keyed by the library's name; ``lattice --help`` and the README print the
same text). :class:`~lattice.planning.plan.PlanParameters`, the dose proxy, the STV contraction and
the ``lattice`` command check values against it before any work, so a notebook and the
command get the same one-line :class:`~lattice.errors.ParameterError`.

Each bound has a reason: beyond it a value is a unit or typing mistake (a length longer than
any patient), would exhaust time or memory (60 million search angles, a Gaussian wider than
the CT), or gives a result no one can use (a vertex thinner than a hair). NaN and infinity are
never valid; a count must be a whole number (``2.0`` is refused, not rounded).

>>> check_range("diameter_mm", 15)
15.0
>>> check_range("count", 1e30)                          # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
ParameterError: count must be a whole number from 1 to 10000, got 1e+30
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParameterError

#: Longest length a parameter may have: beyond any patient (and far from integer overflow in
#: the voxel arithmetic), so a larger value is a unit or typing mistake.
MAX_LENGTH_MM = 5000.0
#: Smallest vertex diameter. A vertex's ``rtstruct.dcm`` circle has 64 points written to
#: 1 µm; below 0.05 mm neighbouring points are less than 2.5 µm apart and the contour
#: degenerates (at 1e-9 mm all 64 are one point). Real vertices are 5-20 mm; a diameter below
#: the CT's voxel diagonal is planned with a warning when a sphere holds no voxel centre.
MIN_DIAMETER_MM = 0.05
#: Most vertices a plan may ask for (--count, --max-vertices, --min-vertices): LATTICE plans
#: hold tens; vertices.nii.gz labels them in 16 bits.
MAX_VERTICES = 10_000
#: Finest orientation search step: the search weighs symmetry / step angles (60 / step for
#: hcp, times 13 tilts with --orientations 3d), and refines the best poses at a quarter and
#: a sixteenth of the step; 1e-6 deg would be 60 million angles.
MIN_ROTATION_STEP_DEG = 0.5
#: Longest time budget of --pattern max: its work limits end the packing long before.
MAX_TIME_BUDGET_S = 3600.0
#: Widest Gaussian fall-off of the dose proxy: the filter's kernel spans 4 sigma each side,
#: and a wider one is a flat blur of the whole GTV (1e9 mm exhausts memory).
MAX_FALLOFF_MM = 50.0
#: Highest dose proxy level: any unit (Gy or cGy), far from float overflow.
MAX_DOSE_LEVEL = 10_000.0
#: Largest label a label map may select (int32).
MAX_LABEL = 2**31 - 1
#: Most plans ``lattice batch`` runs at once on one machine.
MAX_WORKERS = 256


@dataclass(frozen=True)
class Range:
    """An interval of valid values, its unit, and why it ends there.

    ``low_open`` / ``high_open``: the bound itself is excluded. ``integer``: only whole
    numbers (Python or NumPy integers; not floats such as ``2.0``, not bools).
    """

    low: float
    high: float
    unit: str = ""
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    why_low: str = ""
    why_high: str = ""

    def text(self) -> str:
        """``'between 0.05 and 5000 mm'``, ``'> 0 and <= 3600 s'``, ``'a whole number from 1
        to 10000'``: as ``--help``, the README and the error messages give it."""
        unit = f" {self.unit}" if self.unit else ""
        if self.integer:
            return f"a whole number from {int(self.low)} to {int(self.high)}"
        if not self.low_open and not self.high_open:
            return f"between {self.low:g} and {self.high:g}{unit}"
        lo = f"> {self.low:g}" if self.low_open else f">= {self.low:g}"
        hi = f"< {self.high:g}" if self.high_open else f"<= {self.high:g}"
        return f"{lo} and {hi}{unit}"

    def contains(self, value: float) -> bool:
        lo_ok = value > self.low if self.low_open else value >= self.low
        hi_ok = value < self.high if self.high_open else value <= self.high
        return lo_ok and hi_ok


_LENGTH = Range(0.0, MAX_LENGTH_MM, "mm")
_POSITIVE_LENGTH = Range(0.0, MAX_LENGTH_MM, "mm", low_open=True)
_VERTEX_COUNT = Range(1, MAX_VERTICES, integer=True, why_high="LATTICE plans hold tens of vertices")

#: Valid range of each numeric parameter, by library name (the option is ``--`` + the name
#: with ``-`` for ``_``, but ``--spacing-mm`` for ``min_spacing_mm``).
RANGES: dict[str, Range] = {
    "diameter_mm": Range(
        MIN_DIAMETER_MM,
        MAX_LENGTH_MM,
        "mm",
        why_low=f"a vertex's 64-point contour degenerates below {MIN_DIAMETER_MM:g} mm",
    ),
    "min_spacing_mm": _POSITIVE_LENGTH,
    "gtv_margin_mm": _LENGTH,
    "cold_diameter_mm": Range(
        MIN_DIAMETER_MM,
        MAX_LENGTH_MM,
        "mm",
        why_low=f"a cold sphere's 64-point contour degenerates below {MIN_DIAMETER_MM:g} mm",
    ),
    "cold_gap_mm": _LENGTH,
    "oar_clearance_mm": _LENGTH,
    "shell_width_mm": _POSITIVE_LENGTH,
    "coplanar_mm": _LENGTH,
    "coplanar_spacing_mm": _POSITIVE_LENGTH,
    "rotation_step_deg": Range(
        MIN_ROTATION_STEP_DEG,
        90.0,
        "deg",
        why_low="a finer step only multiplies the poses searched: the "
        "best are refined to 1/16 of the step",
    ),
    "translation_steps": Range(1, 64, integer=True),
    "time_budget_s": Range(
        0.0,
        MAX_TIME_BUDGET_S,
        "s",
        low_open=True,
        why_high="the packing's work limits end it long before",
    ),
    "max_vertices": _VERTEX_COUNT,
    "min_vertices": _VERTEX_COUNT,
    "count": _VERTEX_COUNT,
    "gtv_label": Range(1, MAX_LABEL, integer=True, why_low="0 is the background"),
    "stv_margin_mm": _LENGTH,
    "stv_fraction": Range(0.0, 1.0, low_open=True, high_open=True),
    "dose_peak_gy": Range(0.0, MAX_DOSE_LEVEL, "Gy", low_open=True),
    "dose_valley_gy": Range(0.0, MAX_DOSE_LEVEL, "Gy"),
    "peak_dose_gy": Range(0.0, MAX_DOSE_LEVEL, "Gy", low_open=True),
    "valley_dose_gy": Range(0.0, MAX_DOSE_LEVEL, "Gy"),
    "dose_falloff_mm": Range(
        0.0,
        MAX_FALLOFF_MM,
        "mm",
        why_high="a wider Gaussian blurs the whole GTV flat and its filter exhausts memory",
    ),
    "window_level_hu": Range(-10_000.0, 40_000.0, "HU"),
    "window_width_hu": Range(0.0, 50_000.0, "HU", low_open=True),
    "workers": Range(1, MAX_WORKERS, integer=True),
}


def check_range(
    name: str, value: Any, *, label: str | None = None, parameter: str | None = None
) -> Any:
    """``value`` as a float (an int for whole-number ranges) if it is in ``RANGES[name]``.

    Parameters
    ----------
    name : str
        A key of :data:`RANGES`.
    value : number
        Python or NumPy number; a string is not a number here (see :func:`parse_number`).
    label : str, optional
        How the message names the value (default ``name``, as the ``{name}`` field of the
        error).
    parameter : str, optional
        The ``{field}`` ``label`` holds, if any (:class:`~lattice.errors.ParameterError`).

    Raises
    ------
    ParameterError
        Not a number, not whole where it must be, NaN, infinite, or out of range; the
        message gives the range.
    """
    r = RANGES[name]
    # The error names the parameter as its {name} field, for callers to spell (the CLI: as
    # the option).
    fields = [parameter] if parameter else [] if label else [name]
    label = label or "{" + name + "}"
    want = r.text()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError.of(fields, f"{label} must be a number ({want}), got {value!r}")
    if r.integer and not isinstance(value, numbers.Integral):
        raise ParameterError.of(fields, f"{label} must be {want}, got {float(value)!r}")
    number: Any = int(value) if isinstance(value, numbers.Integral) and r.integer else float(value)
    if not math.isfinite(number):
        raise ParameterError.of(
            fields, f"{label} must be a finite number ({want}), got {_show(value)}"
        )
    if r.contains(number):
        return number
    if number > r.high and r.unit == "mm" and r.high == MAX_LENGTH_MM:
        raise ParameterError.of(
            fields,
            f"{label} of {_show(value)} mm is longer than any "
            f"patient (the limit is {MAX_LENGTH_MM:g} mm); check the "
            "units (mm)",
        )
    if number <= 0 and (r.low > 0 or r.low_open) and not r.integer:
        raise ParameterError.of(
            fields, f"{label} must be a positive number ({want}), got {_show(value)}"
        )
    if number < 0 and r.low == 0:
        raise ParameterError.of(fields, f"{label} must be >= 0 ({want}), got {_show(value)}")
    why = r.why_high if number > r.high else r.why_low
    why = f" ({why})" if why else ""
    raise ParameterError.of(fields, f"{label} must be {want}, got {_show(value)}{why}")


def range_text(name: str) -> str:
    """The range of ``RANGES[name]`` as ``--help`` and the README print it."""
    return RANGES[name].text()


def _show(value: Any) -> str:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = int(value)
        return str(number) if abs(number) < 10**15 else f"{float(number):g}"
    return f"{float(value):g}"


# --- the text of a number on the command line ----------------------------------------------

_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NON_FINITE = re.compile(r"[+-]?(nan|inf|infinity)", re.IGNORECASE)


def read_number(text: str, *, integer: bool = False) -> float | int:
    """A number as typed on the command line or in a manifest: ASCII decimal digits, an
    optional sign, fraction and exponent (``nan`` and ``inf`` too, for the range check to
    name). ``1_000``, ``0x10`` and non-ASCII digits, which Python's ``float`` and ``int``
    read, are refused; with ``integer``, so is anything but digits (``2.0``, ``1e3``).

    Raises
    ------
    ValueError
        Not a number of that kind; the message says what was expected.
    """
    s = text.strip()
    if integer:
        if not _INTEGER.fullmatch(s):
            raise ValueError(f"expected a whole number (digits only, e.g. 12), got {text!r}")
        return int(s)
    if not (_FLOAT.fullmatch(s) or _NON_FINITE.fullmatch(s)):
        raise ValueError(f"expected a number (e.g. 15 or 2.5), got {text!r}")
    return float(s) + 0.0  # -0 is 0: "margin -0 mm" would be printed and recorded


# --- --oar [NAME=]PATH[:MM] -------------------------------------------------------------------


@dataclass(frozen=True)
class OarSpec:
    """One ``--oar`` value: the organ's name, its mask file, its clearance (None: the
    protocol's)."""

    name: str
    path: Path
    clearance_mm: float | None
    named: bool = False

    def text(self) -> str:
        """The spec written back, read the same way by :func:`parse_oar_spec` when the path
        is absolute: ``NAME=`` when the name was given, the clearance exactly."""
        c = self.clearance_mm
        mm = "" if c is None else f":{int(c)}" if c.is_integer() and abs(c) < 1e15 else f":{c!r}"
        return f"{self.name + '=' if self.named else ''}{self.path}{mm}"


_SEPARATORS = tuple(s for s in (os.sep, os.altsep, "/", "\\") if s)


def parse_oar_spec(text: str, *, base: Path | None = None) -> OarSpec:
    """Read ``[NAME=]PATH[:MM]`` without guessing.

    The rules, in order:

    1. An existing file always wins: when the whole text is a file, it is the path (no
       clearance); when the text before ``:MM`` is one, that is the path, ``=`` and all
       (``run=1/cord.nii.gz:10`` with a folder ``run=1``).
    2. ``:MM`` after the last ``:`` must be a number (``PATH:10mm`` is refused).
    3. Otherwise ``NAME=`` is a name only when NAME is not empty and holds no path separator
       (``/`` or ``\\``) and no ``:``; ``/data/run=1/cord.nii.gz`` is a path.

    Parameters
    ----------
    text : str
    base : Path, optional
        Folder relative paths are taken from (a batch manifest's folder; default the
        current folder). The returned path is ``base / PATH``.

    Raises
    ------
    ParameterError
        An empty path or name, or text after the last ``:`` that is not a number (the
        clearance's range is checked with the plan's parameters).
    """

    def where(p: str) -> Path:
        return Path(p) if base is None else base / p

    def exists(p: str) -> bool:
        return bool(p) and where(p).is_file()

    if exists(text):
        return OarSpec(_default_name(text), where(text), None)
    body, sep, mm = text.rpartition(":")
    clearance = None
    if sep and _is_number(mm):
        clearance = float(read_number(mm))
    elif sep:
        raise ParameterError(
            f"--oar {text!r}: {mm!r} after the last ':' is not a clearance in "
            f"mm, and there is no file {text!r}; write [NAME=]PATH:MM (e.g. "
            "cord.nii.gz:10)"
        )
    else:
        body = text
    if not body:
        raise ParameterError(
            f"--oar {text!r} has no PATH; write [NAME=]PATH:MM (e.g. cord.nii.gz:10)"
        )
    name, eq, rest = body.partition("=")
    if exists(body) or not eq or any(s in name for s in (*_SEPARATORS, ":")):
        return OarSpec(_default_name(body), where(body), clearance)
    if not name.strip() or not rest:
        raise ParameterError(
            f"--oar {text!r}: the NAME before '=' or the PATH after it is "
            "empty; write NAME=PATH:MM (e.g. cord=cord.nii.gz:10)"
        )
    return OarSpec(name, where(rest), clearance, named=True)


def _is_number(text: str) -> bool:
    try:
        read_number(text)
    except ValueError:
        return False
    return True


def _default_name(path: str) -> str:
    """An OAR's name from its file name: ``cord.nii.gz`` -> ``cord``."""
    return Path(path).name.removesuffix(".gz").removesuffix(".nii")


def parse_roi_spec(text: str, roi_names: list[str] | None = None) -> tuple[str, float | None]:
    """``--oar-name NAME[:MM]``: (ROI name, clearance or None).

    ``:MM`` is a clearance only when MM is a number and the whole text is not itself one of
    ``roi_names`` (an ROI named ``Lung:5`` wins over ``Lung`` with a 5 mm clearance).

    Raises
    ------
    ParameterError
        An empty name.
    """
    if roi_names is not None and text in roi_names:
        return text, None
    name, sep, mm = text.rpartition(":")
    if sep and _is_number(mm):
        if not name:
            raise ParameterError(
                f"--oar-name {text!r} has no ROI name before ':'; write "
                "NAME:MM (e.g. SpinalCord:10)"
            )
        return name, float(read_number(mm))
    if not text:
        raise ParameterError("--oar-name needs an ROI name (list them: lattice rois RS.dcm)")
    return text, None
