"""A batch job's row: what ``runs/<job>.json`` records of the plan it ran and what
``summary.csv`` tabulates (see :mod:`lattice.batch`)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputFileError, OutputWriteError
from .io.folder import atomic_open

if TYPE_CHECKING:
    from .batch import Job


#: Summary columns taken from plan.json's ``summary``.
SUMMARY_METRICS = (
    "n_vertices",
    "gtv_cc",
    "lattice_target_cc",
    "vertices_per_100cc_gtv",
    "vertex_volume_fraction_of_gtv",
    "nearest_vertex_min_mm",
    "nearest_vertex_mean_mm",
    "covering_radius_mm",
    "depth_min_mm",
    "fraction_in_outer_shell",
)


def read_row(path: Path) -> dict | None:
    """The row at ``path``; None when there is none, or it is damaged (the job runs again)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def job_row(
    job: Job, code: int, error: str, seconds: float, foreign: bool = False, *, warnings: int = 0
) -> dict[str, Any]:
    """The summary row of a job that ended with exit code ``code`` and, when it failed, the
    line the command would have printed (``error``)."""
    row: dict[str, Any] = {"case": job.case, **{k: _number(v) for k, v in job.parameters.items()}}
    ok = code == 0 and (job.out_dir / "plan.json").is_file()
    row["status"] = "ok" if ok else "failed"
    row["exit_code"] = code
    row["error"] = "" if ok else (error or f"exit code {code}").removeprefix("lattice: error: ")
    row["warnings"] = warnings if ok else 0
    if ok:
        from .io.planfolder import PlanDocument

        try:  # validated against plan.schema.json: a summary never reads a wrong type
            doc = PlanDocument.read(job.out_dir)
        except InputFileError as exc:
            ok, row["status"], row["error"] = False, "failed", str(exc)
    if ok:
        row.update({k: doc.summary.get(k) for k in SUMMARY_METRICS})
        p = doc.parameters
        row.update(
            {
                "diameter_mm_used": p.get("diameter_mm"),
                "spacing_mm_used": p.get("min_spacing_mm"),
                "gtv_margin_mm_used": p.get("gtv_margin_mm"),
            }
        )
        measured = doc.lesion_measurements
        row["long_axis_mm"] = measured.get("long_axis_mm")
        row["short_axis_mm"] = measured.get("short_axis_mm")
        row["size_rules_met"] = all(r.get("met") for r in doc.size_rules)
        if doc.dose_proxy:
            row["dose_d10_over_d90"] = doc.dose_proxy.get("d10_over_d90")
    else:
        row.update({k: None for k in SUMMARY_METRICS})
    row["seconds"] = round(seconds, 2)
    row["plan_dir"] = str(job.out_dir)
    row["argv"] = list(job.argv)
    row["foreign"] = foreign
    return row


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value


def write_row(row: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        json.dump(row, fh, indent=1)


def write_summary(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write rows as a CSV (columns in first-seen order; ``argv`` and ``foreign`` left
    out), atomically."""
    path = Path(path)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns and k not in ("argv", "foreign")]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, newline="") as fh:
            writer = csv.DictWriter(fh, columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _cell(row.get(k)) for k in columns})
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write '{path}' ({exc.strerror}); choose another --out folder"
        ) from exc
    return path


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value
