"""The report's cold-sphere and dose-evaluation sections (``report.html``).

- **Cold spheres** (``lattice plan --cold-spheres``): one row per sphere of plan.json's
  ``cold_spheres``: id, name, centre RAS and LPS mm, diameter, distance to the nearest
  vertex centre.
- **Dose evaluation** (after ``lattice evaluate``): the metrics of ``evaluation.json`` (GTV
  D_x, PVDR, peaks, valley, ePVDR, threshold volumes, cold spheres, per vertex, onion
  shells, OARs, profile minima, the dose file) and ``evaluation.png``.

report.html is a view of the plan folder: ``lattice evaluate`` writes it again with the
evaluation, and ``lattice report`` includes the evaluation when ``evaluation.json`` is in
the folder. An evaluation records the sha256 of the plan.json it was made on
(``plan.plan_json_sha256``); one made on another plan.json (a plan replaced since) is not
shown as this plan's: the section says so instead.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputFileError

__all__ = [
    "EVALUATION_JSON",
    "EVALUATION_PICTURE",
    "cold_section",
    "evaluation_section",
    "plan_json_sha256",
    "read_evaluation",
]

#: The files of ``lattice evaluate`` the report reads.
EVALUATION_JSON = "evaluation.json"
EVALUATION_PICTURE = "evaluation.png"


def plan_json_sha256(folder: str | Path) -> str:
    """SHA-256 (hex) of the folder's plan.json bytes."""
    return hashlib.sha256((Path(folder) / "plan.json").read_bytes()).hexdigest()


def read_evaluation(folder: str | Path) -> dict[str, Any] | None:
    """``evaluation.json`` of a plan folder, or None when there is none.

    Raises
    ------
    InputFileError
        The file is there but is not a JSON object.
    """
    path = Path(folder) / EVALUATION_JSON
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(
            f"cannot read '{path}' ({exc}); run `lattice evaluate --force` again or remove it"
        ) from exc
    if not isinstance(document, dict):
        raise InputFileError(f"'{path}' is not a JSON object; run `lattice evaluate --force`")
    return document


def cold_section(cold_spheres: Sequence[Mapping[str, Any]] | None) -> str:
    """The cold-sphere table ("" for a plan without cold spheres)."""
    if not cold_spheres:
        return ""
    head = (
        "<tr><th>id</th><th>name</th><th>centre RAS mm</th><th>centre LPS mm</th>"
        "<th>diameter mm</th><th>nearest vertex centre mm</th></tr>"
    )
    rows = "".join(
        f"<tr><td class='num'>{_e(c.get('id'))}</td><td>{_e(c.get('name'))}</td>"
        f"<td class='num'>{_point(c.get('center_ras_mm'))}</td>"
        f"<td class='num'>{_point(c.get('center_lps_mm'))}</td>"
        f"<td class='num'>{_num(c.get('diameter_mm'))}</td>"
        f"<td class='num'>{_num(c.get('nearest_peak_mm'))}</td></tr>"
        for c in cold_spheres
    )
    return (
        f"<h2>Cold spheres ({len(cold_spheres)})</h2><p class='note'>Low-dose optimiser "
        "targets at the holes between the vertices (the LATTICE_COLD or COLD_nn ROIs of "
        "rtstruct.dcm; cold.csv, "
        f"cold.mrk.json, cold.nii.gz).</p><table>{head}{rows}</table>"
    )


def evaluation_section(
    evaluation: Mapping[str, Any] | None, picture: bytes | None, *, plan_sha256: str | None
) -> str:
    """The dose-evaluation section ("" without an evaluation).

    ``plan_sha256``: the sha256 of the plan.json the report is made from; an evaluation
    recording another one is named as stale, its numbers left out.
    """
    if not evaluation:
        return ""
    made_on = (evaluation.get("plan") or {}).get("plan_json_sha256")
    if plan_sha256 is not None and made_on is not None and made_on != plan_sha256:
        return (
            "<h2>Dose evaluation</h2><p class='warn'>evaluation.json was made on another "
            "plan.json than this one (the plan was replaced since); its numbers are not "
            "shown. Run <code>lattice evaluate PLAN_DIR --dose FILE --force</code> again.</p>"
        )
    parts = ["<h2>Dose evaluation (TPS dose)</h2>", _dose_line(evaluation)]
    parts += [f"<p class='warn'>{_e(w)}</p>" for w in evaluation.get("warnings") or []]
    if picture is not None:
        data = base64.b64encode(picture).decode("ascii")
        parts.append(
            f"<figure><img alt='DVH and profiles' src='data:image/png;base64,{data}'>"
            "<figcaption class='note'>Cumulative DVHs and dose profiles between nearest "
            f"vertices ({EVALUATION_PICTURE})</figcaption></figure>"
        )
    parts.append(_summary_table(evaluation))
    parts.append(_structure_table(evaluation))
    parts.append(_vertex_table(evaluation.get("vertices") or []))
    parts.append(_shell_table(evaluation.get("shells") or []))
    return "".join(parts)


def _dose_line(evaluation: Mapping[str, Any]) -> str:
    dose = evaluation.get("dose") or {}
    plan = evaluation.get("plan") or {}
    checked = "checked" if plan.get("frame_checked") else "NOT checked"
    return (
        f"<p class='note'>Dose <code>{_e(dose.get('path'))}</code> (sha256 "
        f"<code>{_e(dose.get('sha256'))}</code>), units {_e(dose.get('units'))}, summation "
        f"{_e(dose.get('summation_type'))}; frame of reference {checked}. Conventions in "
        f"evaluation.json (<code>conventions</code>).</p>"
    )


def _summary_table(r: Mapping[str, Any]) -> str:
    gtv, peaks, valley = r.get("gtv") or {}, r.get("peaks") or {}, r.get("valley") or {}
    t = r.get("threshold_volumes") or {}
    rows = [
        ("PVDR (GTV D10 / D90)", _num(r.get("pvdr_d10_d90"))),
        ("ePVDR (mean peak / mean valley)", _num(r.get("epvdr"))),
        (
            "GTV " + ", ".join(f"D{p}" for p in (2, 5, 10, 50, 90, 95, 98)) + ", mean (Gy)",
            ", ".join(_num(gtv.get(f"D{p}_gy")) for p in (2, 5, 10, 50, 90, 95, 98))
            + f"; {_num(gtv.get('mean_gy'))}",
        ),
        ("peaks: mean, D95 (Gy)", f"{_num(peaks.get('mean_gy'))}, {_num(peaks.get('D95_gy'))}"),
        (
            "valley: mean, D50, D90 (Gy)",
            ", ".join(_num(valley.get(k)) for k in ("mean_gy", "D50_gy", "D90_gy")),
        ),
        (
            ">= 70 % / <= 20 % of the GTV max (cc)",
            f"{_num(t.get('peak_volume_cc'))} / {_num(t.get('valley_volume_cc'))}",
        ),
        ("vertices per 100 cc (HCND)", _num(r.get("hcnd_per_100cc"))),
        ("lowest valley minimum of the profiles (Gy)", _num(_lowest(r.get("profiles")))),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td class='num'>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _structure_table(r: Mapping[str, Any]) -> str:
    """Cold spheres and OARs: mean, max and (OARs) D0.03cc."""
    rows = []
    cold = r.get("cold")
    if cold:
        rows.append(("cold spheres", cold.get("mean_gy"), cold.get("max_gy"), None))
        rows += [
            (f"cold sphere {s.get('id')}", s.get("mean_gy"), s.get("max_gy"), None)
            for s in cold.get("spheres") or []
        ]
    for name, o in (r.get("oars") or {}).items():
        rows.append((f"OAR {name}", o.get("mean_gy"), o.get("max_gy"), o.get("D0.03cc_gy")))
    if not rows:
        return ""
    head = "<tr><th>structure</th><th>mean Gy</th><th>max Gy</th><th>D0.03cc Gy</th></tr>"
    body = "".join(
        f"<tr><td>{_e(n)}</td><td class='num'>{_num(a)}</td><td class='num'>{_num(b)}</td>"
        f"<td class='num'>{_num(c)}</td></tr>"
        for n, a, b, c in rows
    )
    return f"<table>{head}{body}</table>"


def _vertex_table(vertices: Sequence[Mapping[str, Any]]) -> str:
    if not vertices:
        return ""
    head = "<tr><th>vertex</th><th>mean Gy</th><th>max Gy</th><th>D95 Gy</th></tr>"
    body = "".join(
        f"<tr><td class='num'>{_e(v.get('id'))}</td><td class='num'>{_num(v.get('mean_gy'))}"
        f"</td><td class='num'>{_num(v.get('max_gy'))}</td>"
        f"<td class='num'>{_num(v.get('D95_gy'))}</td></tr>"
        for v in vertices
    )
    return f"<table>{head}{body}</table>"


def _shell_table(shells: Sequence[Mapping[str, Any]]) -> str:
    if not shells:
        return ""
    head = "<tr><th>onion shell (depth mm)</th><th>volume cc</th><th>mean Gy</th><th>CV</th></tr>"
    body = "".join(
        f"<tr><td>{_e(s.get('index'))} ({_num(s.get('depth_from_mm'))}-"
        f"{_num(s.get('depth_to_mm'))})</td><td class='num'>{_num(s.get('volume_cc'))}</td>"
        f"<td class='num'>{_num(s.get('mean_gy'))}</td><td class='num'>{_num(s.get('cv'))}</td>"
        "</tr>"
        for s in shells
    )
    return f"<table>{head}{body}</table>"


def _lowest(profiles: Any) -> float | None:
    lows = [p.get("min_gy") for p in profiles or [] if p.get("min_gy") is not None]
    return min(lows) if lows else None


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _point(p: Any) -> str:
    return "-" if not p else ", ".join(f"{float(v):.2f}" for v in p)


def _num(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}"
