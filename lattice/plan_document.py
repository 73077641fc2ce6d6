"""plan.json's document for :func:`lattice.pipeline.run_plan`, checked by the independent
verifier (:func:`lattice.analysis.verify.verify_plan`) before anything is written; and the
GTV's measurements.

Both are needed only at the end of the run. Where the run may fork (no picture worker on the
second core, no other thread: :func:`lattice.forking.may_fork`) they are made in forked
children while this process goes on: the measurements while it plans, the verification while
it writes the masks. Either way the numbers are the same: the child runs the same function
on the same arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import LatticeError
from .forking import Forked
from .planning.plan import Plan
from .volume import Volume

if TYPE_CHECKING:
    from .analysis.dose import DoseProxyParameters
    from .analysis.measure import LesionMeasurements
    from .analysis.verify_report import VerificationReport


def plan_document(
    plan: Plan,
    *,
    gtv: Volume,
    inputs: dict[str, Any],
    series: Any,
    warnings: list[str],
    stv: Any,
    dose: DoseProxyParameters | None,
) -> dict[str, Any]:
    """plan.json's document before its verification: the plan's record (slice positions on
    ``series``' grid when there is one), the run's ``warnings`` first, the frame of reference,
    the STV and the dose proxy when asked."""
    document = plan.to_dict(inputs=inputs, slice_grid=None if series is None else series.grid)
    document["warnings"] = [*warnings, *document["warnings"]]
    if series is not None and series.frame_of_reference_uid:  # rtstruct.dcm's, the CT's
        document["frame_of_reference_uid"] = series.frame_of_reference_uid
    if stv is not None:
        document["stv"] = stv.to_dict()
    if dose is not None:
        from .analysis.dose import dose_proxy_metrics

        document["dose_proxy"] = dose_proxy_metrics(
            gtv, plan.centers_ras_mm, diameter_mm=plan.parameters.diameter_mm, params=dose
        )
    return document


class Verification:
    """The independent verification of ``document`` against the masks, started now (in a
    forked child with ``fork``) and collected by :meth:`document`."""

    def __init__(
        self,
        document: dict[str, Any],
        *,
        gtv: Volume,
        oars: Mapping[str, Volume],
        fork: bool,
    ) -> None:
        self._document = document

        def verify() -> VerificationReport:
            from .analysis.verify import verify_plan

            return verify_plan(document, gtv=gtv, oars=oars, check_reported_depth=False)

        self._verify = verify
        # A child killed without an answer (out of memory, say): verified here instead.
        self._child = Forked(verify, fallback=verify) if fork else None

    def document(self) -> dict[str, Any]:
        """The document with its verification record; LatticeError when the plan fails it
        (a bug: nothing is written)."""
        child, self._child = self._child, None
        report = self._verify() if child is None else child.result()
        if not report.ok:
            raise LatticeError(
                "the plan failed its own independent verification ("
                + "; ".join(v.message for v in report.violations[:3])
                + "); nothing was written; please report this as a bug"
            )
        document = self._document
        document["verification"] = {
            "ok": True,
            "by": "lattice.verify (independent recomputation from the masks)",
            "checks": list(report.checks),
        }
        return document

    def cancel(self) -> None:
        """Stop a child whose answer is no longer wanted (the run failed before the end)."""
        if self._child is not None:
            self._child.cancel()
            self._child = None


class Measuring:
    """The GTV's measurements (:func:`~lattice.analysis.measure.measure_lesion`), started
    now in a forked child with ``fork``; :meth:`take` collects them."""

    def __init__(self, gtv: Volume, *, fork: bool) -> None:
        self._gtv = gtv

        def measure() -> LesionMeasurements:
            from .analysis.measure import measure_lesion

            return measure_lesion(gtv)

        self._child = Forked(measure, fallback=measure) if fork else None

    def take(self, plan_gtv: Volume) -> LesionMeasurements | None:
        """The measurements if ``plan_gtv`` is the GTV measured, else None (then, and
        without a child, the writer measures the plan's GTV itself)."""
        child, self._child = self._child, None
        if child is None:
            return None
        if plan_gtv is not self._gtv:
            child.cancel()
            return None
        return child.result()

    def cancel(self) -> None:
        """Stop a child whose answer is no longer wanted."""
        if self._child is not None:
            self._child.cancel()
            self._child = None
