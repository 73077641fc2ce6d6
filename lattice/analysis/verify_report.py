"""What the independent verifier reports: violations, the report, tolerances, message format.

See :mod:`lattice.analysis.verify` for the rules checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Rule checks forgive this much (mm). Centres are written with full float precision, so a
#: recomputed distance differs from the planner's only by float rounding (~1e-12 mm on
#: 100 mm); 1 nm is far above that and far below anything of clinical meaning.
RULE_TOLERANCE_MM = 1e-6

#: Reported per-vertex values may differ from the recomputation by this much (mm): the
#: planner rounds derived distances to 1 µm (an error of at most 0.5 µm).
REPORT_TOLERANCE_MM = 1e-3

#: With snap_to_slices a centre's k index must be a whole number within this: the planner
#: rounds k and maps back to the world, which leaves ~1e-12 of float rounding.
SLICE_INDEX_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Violation:
    """One broken rule.

    Attributes
    ----------
    rule : str
        Rule name (see the module docstring), e.g. ``"gtv_margin"``.
    vertex_ids : tuple of int
        Ids (``vertex["id"]``) of the vertices involved; empty for plan-level findings.
    message : str
        What is wrong, in the units and words of the rule.
    """

    rule: str
    vertex_ids: tuple[int, ...]
    message: str


@dataclass(frozen=True)
class VerificationReport:
    """Outcome of verifying a plan.

    Attributes
    ----------
    violations : tuple of Violation
    warnings : tuple of str
        Things the verifier could not check or that look odd without breaking a rule.
    n_vertices : int
    checks : tuple of dict
        One entry per rule checked: ``{"rule": str, "worst_slack_mm": float or None,
        "detail": str}`` (plus ``"oar"`` for OAR clearances). The worst slack is the
        smallest room left by any vertex (negative when violated); None when the rule has no
        distance (a count) or nothing to measure (no vertices).
    """

    violations: tuple[Violation, ...]
    warnings: tuple[str, ...]
    n_vertices: int
    checks: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when no rule is violated."""
        return not self.violations

    @property
    def violated_rules(self) -> tuple[str, ...]:
        """Names of the violated rules, each once, in order of first appearance."""
        return tuple(dict.fromkeys(v.rule for v in self.violations))


def format_mm(mm: float) -> str:
    """A distance for a message: to 1 µm, without trailing zeros; tiny values in full, huge
    ones (a hand-edited 1e308, the inf it overflows to) in 6 digits."""
    if mm != 0 and abs(mm) < 1e-3:
        return f"{mm:.2g}"
    if not abs(mm) < 1e9:
        return f"{mm:.6g}"
    return f"{mm:.3f}".rstrip("0").rstrip(".")


def format_point(p: Any) -> str:
    return "(" + ", ".join(format_mm(float(v)) for v in p) + ")"


class Checker:
    """Accumulates violations and per-rule worst slacks for one plan."""

    def __init__(self, names: list[str], ids: list[int]) -> None:
        self.names = names
        self.ids = ids
        self.violations: list[Violation] = []
        self.checks: list[dict[str, Any]] = []

    def worst(
        self, rule: str, slack: NDArray[np.float64] | None, detail: str, **extra: Any
    ) -> None:
        value = None if slack is None or len(slack) == 0 else round(float(np.min(slack)), 6)
        self.checks.append({"rule": rule, "worst_slack_mm": value, "detail": detail, **extra})

    def add(self, rule: str, vertices: tuple[int, ...], message: str) -> None:
        self.violations.append(Violation(rule, tuple(self.ids[i] for i in vertices), message))
