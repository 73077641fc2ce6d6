"""``report.html``: a one-page, self-contained plan report (pictures embedded, no network).

Built from a plan folder's ``plan.json``, its pictures and, once ``lattice evaluate`` has run,
its ``evaluation.json`` and ``evaluation.png`` only, so it can be made again from an earlier
run without re-planning. Every value is escaped; pictures are inlined as ``data:`` URIs; there
is no script and no external resource. The cold-sphere and evaluation sections are in
:mod:`lattice.render.report_sections`.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io.planfolder import PlanDocument
from .report_sections import (
    EVALUATION_PICTURE,
    cold_section,
    evaluation_section,
    plan_json_sha256,
    read_evaluation,
)
from .report_tps import tps_sections

#: Pictures embedded when present in the plan folder, with their captions.
PICTURES = (
    ("overview.png", "Axial, coronal and sagittal planes through the most vertices"),
    ("overview3d.png", "3-D view: GTV surface and vertex spheres"),
    ("vertices.png", "Every axial slice through a vertex centre"),
)

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1180px;
       color: #1d2330; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px;
  border-bottom: 1px solid #ccd; padding-bottom: 3px; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
td, th { border: 1px solid #ccd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef0f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.warn { background: #fff4d6; border: 1px solid #e0b400; padding: 6px 10px; }
.ok { color: #16723a; font-weight: 600; } .bad { color: #b3261e; font-weight: 600; }
.note { color: #556; font-size: 12px; } code { font-size: 12px; word-break: break-all; }
figure { margin: 12px 0; } figure img { max-width: 100%; border: 1px solid #ccd; }
"""


def _world_frame(frame: Any) -> str:
    """plan.json's world_frame as HTML: a mapping (coordinate -> its frame, input route) or,
    in older plans, one string."""
    if not isinstance(frame, Mapping):
        return f"world frame {_e(frame)}"
    items = [
        f"<code>{_e(k)}</code>: {_e(v)}"
        for k, v in frame.items()
        if k not in ("input", "input_frame")
    ]
    return f"input: {_e(frame.get('input'))}; " + "; ".join(items)


def render_report(
    doc: Mapping[str, Any] | PlanDocument,
    pictures: Mapping[str, bytes],
    evaluation: Mapping[str, Any] | None = None,
    *,
    plan_sha256: str | None = None,
) -> str:
    """The report's HTML from a plan document (plan.json's mapping, or read) and PNG bytes by
    file name; with ``evaluation`` (evaluation.json, its picture ``evaluation.png`` in
    ``pictures``) a dose-evaluation section, left out with a note if it records a plan.json
    sha256 other than ``plan_sha256``."""
    plan = doc if isinstance(doc, PlanDocument) else PlanDocument(dict(doc))
    p, s = plan.parameters, plan.summary
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>LATTICE plan report</title><style>{_CSS}</style></head><body>"
    ]
    parts.append(
        f"<h1>LATTICE plan: {_e(s.get('n_vertices'))} vertices, "
        f"{_e(str(p.get('pattern', '')).upper())} {_e(p.get('mode', ''))}</h1>"
    )
    parts.append(
        f"<p class='note'>lattice {_e(plan.lattice_version)}; "
        f"{_world_frame(plan.world_frame)}. A geometry plan for the treatment "
        "planning system: lattice calculates no dose"
        + ("; the dose evaluated below is the TPS's" if evaluation else "")
        + ".</p>"
    )
    verification = plan.verification
    if verification:
        ok = verification.get("ok")
        parts.append(
            f"<p>Independent verification: <span class='{'ok' if ok else 'bad'}'>"
            f"{'every rule holds' if ok else 'FAILED'}</span> "
            f"({_e(verification.get('by'))}).</p>"
        )
    warnings = plan.warnings
    parts.append("<h2>Warnings</h2>")
    parts.append("".join(f"<p class='warn'>{_e(w)}</p>" for w in warnings) or "<p>None.</p>")
    parts.append("<h2>Pictures</h2>")
    for name, caption in PICTURES:
        if name in pictures:
            data = base64.b64encode(pictures[name]).decode("ascii")
            parts.append(
                f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption class='note'>{_e(caption)} ({_e(name)})</figcaption>"
                "</figure>"
            )
    parts.append(
        evaluation_section(evaluation, pictures.get(EVALUATION_PICTURE), plan_sha256=plan_sha256)
    )
    parts.append("<h2>Lesion</h2>")
    parts.append(_lesion(plan))
    parts.append("<h2>Plan summary</h2>")
    parts.append(_table([(k, v) for k, v in s.items()]))
    d = plan.dose_proxy
    if d:
        parts.append("<h2>Dose proxy (geometric, not a dose calculation)</h2>")
        parts.append(f"<p class='note'>{_e(d.get('model'))}</p>")
        parts.append(_table([(k, v) for k, v in d.items() if k != "model"]))
    if plan.stv:
        parts.append("<h2>SCART target (STV)</h2>")
        parts.append(_table([(k, v) for k, v in plan.stv.items()]))
    parts.append(_rings(plan.data, p))
    parts.append(tps_sections(plan))
    parts.append("<h2>Vertices</h2>")
    parts.append(_vertex_table(plan.vertices))
    parts.append(cold_section(plan.data.get("cold_spheres")))
    parts.append("<h2>Parameters</h2>")
    parts.append(_table([(k, v) for k, v in p.items()]))
    parts.append("<h2>Inputs</h2>")
    parts.append(_inputs(plan.inputs))
    parts.append("<h2>Search</h2>")
    parts.append(_table([(k, v) for k, v in plan.search.items()]))
    parts.append("</body></html>\n")
    return "".join(parts)


def folder_pictures(folder: str | Path) -> dict[str, bytes]:
    """The report's pictures found in a plan folder (:data:`PICTURES`, ``evaluation.png``)."""
    folder = Path(folder)
    names = [name for name, _ in PICTURES] + [EVALUATION_PICTURE]
    return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}


def report_of_folder(folder: str | Path, pictures: Mapping[str, bytes] | None = None) -> str:
    """The report's HTML for a plan folder: plan.json, the pictures (default
    :func:`folder_pictures`) and evaluation.json when there is one."""
    folder = Path(folder)
    doc = PlanDocument.read(folder)
    return render_report(
        doc,
        folder_pictures(folder) if pictures is None else pictures,
        read_evaluation(folder),
        plan_sha256=plan_json_sha256(folder),
    )


def write_report(folder: str | Path, path: str | Path | None = None) -> Path:
    """Write ``report.html`` (or ``path``) for the plan folder ``folder``, atomically (written
    beside it and renamed in: never half a report)."""
    from ..io.folder import atomic_open

    folder = Path(folder)
    text = report_of_folder(folder)
    target = Path(path) if path is not None else folder / "report.html"
    with atomic_open(target) as fh:
        fh.write(text)
    return target


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, float)) for v in value):
            return "(" + ", ".join(_fmt(v) for v in value) + ")"
        return "; ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


def _table(rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _lesion(plan: PlanDocument) -> str:
    if not plan.lesion:
        return "<p>Not measured.</p>"
    m = plan.lesion_measurements
    rows = [
        ("GTV volume", f"{m.get('volume_cc', 0):.2f} cc"),
        (
            "long axis (axial, RECIST-style)",
            f"{m.get('long_axis_mm', 0):.1f} mm on slice k = {m.get('axial_slice_index')}",
        ),
        ("short axis (perpendicular, same slice)", f"{m.get('short_axis_mm', 0):.1f} mm"),
        ("3-D maximum diameter", f"{m.get('max_diameter_3d_mm', 0):.1f} mm"),
        ("sphericity", f"{m.get('sphericity', 0):.3f}"),
    ]
    out = _table(rows)
    rules = plan.size_rules
    if rules:
        out += "<table><tr><th>size rule</th><th>value</th><th>verdict</th><th>source</th></tr>"
        for r in rules:
            verdict = (
                "<span class='ok'>met</span>"
                if r.get("met")
                else "<span class='bad'>not met</span>"
            )
            out += (
                f"<tr><td>{_e(r.get('rule'))}</td><td class='num'>{_e(r.get('value'))}</td>"
                f"<td>{verdict}</td><td>{_e(r.get('source'))}</td></tr>"
            )
        out += "</table>"
    return out


def _rings(data: Mapping[str, Any], p: Mapping[str, Any]) -> str:
    """A line per support shell and SCART ring (``lattice plan --shells-mm``,
    ``--scart-ring-mm``), or nothing."""
    rings = [*(data.get("shells") or []), *(data.get("scart_rings") or [])]
    if not rings:
        return ""
    clip = p.get("body") or "GTV"
    lines = [
        f"<p>{_e(r['name'])}: {_e(r['inner_mm'])}-{_e(r['outer_mm'])} mm from the "
        f"{'vertex sphere surfaces' if r['around'] == 'vertices' else _e(r['around'])}, "
        f"{_e(_fmt(r['volume_cc']))} cc</p>"
        for r in rings
    ]
    note = (
        f"<p class='note'>Support shells within the {_e(clip)}; helper ROIs for the optimiser.</p>"
    )
    return "<h2>Helper rings</h2>" + note + "".join(lines)


def _vertex_table(vertices: Sequence[Mapping[str, Any]]) -> str:
    if not vertices:
        return "<p>No vertex fits the rules.</p>"
    oars = sorted({k for v in vertices for k in (v.get("oar_distance_mm") or {})})
    head = (
        "<tr><th>name</th><th>centre RAS mm</th><th>centre LPS mm</th>"
        "<th>depth mm</th><th>nearest vertex mm</th>"
        + "".join(f"<th>to {_e(o)} mm</th>" for o in oars)
        + "</tr>"
    )
    rows = []
    for v in vertices:
        cells = [
            f"<td>{_e(v.get('name'))}</td>",
            f"<td class='num'>{_e(_point(v.get('center_ras_mm')))}</td>",
            f"<td class='num'>{_e(_point(v.get('center_lps_mm')))}</td>",
            f"<td class='num'>{_e(_num(v.get('depth_mm')))}</td>",
            f"<td class='num'>{_e(_num(v.get('nearest_vertex_mm')))}</td>",
        ]
        cells += [
            f"<td class='num'>{_e(_num((v.get('oar_distance_mm') or {}).get(o)))}</td>"
            for o in oars
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _inputs(inputs: Mapping[str, Any]) -> str:
    rows = []
    for key, entry in inputs.items():
        entries = entry if isinstance(entry, list) else [entry]
        for item in entries:
            if not isinstance(item, Mapping):
                continue
            where = item.get("path") or item.get("dicom_folder") or item.get("folder") or ""
            extra = ", ".join(
                f"{k}: {v}"
                for k, v in item.items()
                if k not in ("path", "dicom_folder", "folder", "sha256") and v is not None
            )
            rows.append(
                f"<tr><th>{_e(key)}</th><td><code>{_e(where)}</code>"
                f"{'<br>' + _e(extra) if extra else ''}</td>"
                f"<td><code>{_e(item.get('sha256', '-'))}</code></td></tr>"
            )
    return (
        "<table><tr><th>input</th><th>file and details</th><th>sha256</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _point(p: Any) -> str:
    return "-" if not p else ", ".join(f"{float(v):.2f}" for v in p)


def _num(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}"
