"""``viewer.html``: one self-contained page to scroll and turn a plan, opened by double-click
in any current browser, with no network access.

The page is a small viewer of our own in plain JavaScript (``viewer.js`` and ``viewer.css``,
package data inlined here): three linked slice views (axial, coronal, sagittal; canvas 2-D,
radiological, orientation letters from the affine as in the pictures) with a crosshair that
reads out RAS and LPS mm and HU, window/level presets, scrolling; toggleable overlays (GTV,
LATTICE target, STV, OARs as their 0.5-level outlines; vertex and cold spheres as their true
cross-sections with each view's plane); a vertex list that jumps to each vertex; a 3-D view
(GTV and OAR surfaces, spheres; orthographic, rotate by dragging, zoom by the wheel). The data
are packed by :mod:`~lattice.render.viewer_data`. A Content-Security-Policy of
``default-src 'none'`` lets the browser load nothing from anywhere.

Scripted navigation: the page reads its URL fragment, e.g.
``viewer.html#vertex=3&overlay.gtv=0&window=lung`` (see :data:`HASH_KEYS`), and exposes
``window.latticeViewer.state()`` and ``.viewLayout(name)``; ``document.body.dataset.ready``
is ``"1"`` once drawn, ``dataset.errors`` lists any script error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io.folder import write_text_file
from ..volume import Volume
from .style import CT_WINDOWS_HU, LETTER_COLOR_2D
from .viewer_data import VIEWER_MAX_BYTES, ViewerBase, pack_base, viewer_payload

if TYPE_CHECKING:
    from ..planning.plan import Plan

#: The page's file name in a plan folder.
VIEWER_NAME = "viewer.html"
#: The URL-fragment keys the page understands (``#key=value&...``).
HASH_KEYS = {
    "vertex": "N: select vertex N (1-based) and move every view to its centre",
    "cold": "N: the same for cold sphere N",
    "ras": "x,y,z: move the crosshair to this RAS point (mm)",
    "window": "NAME or LEVEL,WIDTH: CT window (" + ", ".join(CT_WINDOWS_HU) + ")",
    "overlay.KEY": "0 or 1: hide or show a structure (gtv, target, stv, oar0.., vertices, "
    "cold) or the CT (ct)",
    "crosshair": "0 or 1",
    "labels": "0 or 1: the vertex ids",
    "yaw, pitch": "degrees: the 3-D view's rotation (0, 0: from anterior)",
    "zoom": "factor: the 3-D view's zoom",
}


def viewer_info(document: Mapping[str, Any]) -> dict[str, Any]:
    """What the page shows beside the volumes, from a plan.json document (or the same keys
    from :meth:`~lattice.planning.plan.Plan.to_dict`): title, diameter, vertices (centre,
    depth, nearest neighbour, OAR distances) and cold spheres."""
    p = document.get("parameters") or {}
    keep = ("id", "name", "center_ras_mm", "center_lps_mm", "depth_mm", "nearest_vertex_mm")
    vertices = [
        {**{k: v.get(k) for k in keep}, "oar_distance_mm": dict(v.get("oar_distance_mm") or {})}
        for v in document.get("vertices") or []
    ]
    cold = [
        {k: c.get(k) for k in ("id", "name", "center_ras_mm", "center_lps_mm", "diameter_mm")}
        for c in document.get("cold_spheres") or []
    ]
    return {
        "title": plan_title(p),
        "lattice_version": document.get("lattice_version"),
        "diameter_mm": float(p.get("diameter_mm", 0.0)),
        "cold_diameter_mm": cold[0]["diameter_mm"] if cold else None,
        "vertices": vertices,
        "cold_spheres": cold,
        "windows": {k: list(v) for k, v in CT_WINDOWS_HU.items()},
        "letter_color": LETTER_COLOR_2D,
    }


def plan_viewer_info(plan: Plan) -> dict[str, Any]:
    """:func:`viewer_info` of a plan in memory (the same values plan.json records)."""
    from .. import __version__
    from ..planning.cold_plan import cold_document

    p = plan.parameters
    keys = ("pattern", "mode", "min_spacing_mm", "gtv_margin_mm", "diameter_mm")
    return viewer_info(
        {
            "lattice_version": __version__,
            "parameters": {k: getattr(p, k) for k in keys},
            "vertices": plan.vertex_records(),
            **cold_document(plan.cold),
        }
    )


def plan_title(parameters: Mapping[str, Any]) -> str:
    """The pictures' title line of a plan's parameters."""
    p = parameters
    return (
        f"LATTICE {str(p.get('pattern', '')).upper()} {p.get('mode', '')}, spacing "
        f"{_g(p.get('min_spacing_mm'))} mm, GTV margin {_g(p.get('gtv_margin_mm'))} mm"
    )


def _g(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def viewer_html(meta: Mapping[str, Any], blobs: Mapping[str, str]) -> str:
    """The page: ``meta`` as JSON and each blob in a ``<script type=
    "application/octet-stream">`` element, with the viewer's code and style inlined."""
    assets = resources.files("lattice.render")
    script = assets.joinpath("viewer.js").read_text(encoding="utf-8")
    style = assets.joinpath("viewer.css").read_text(encoding="utf-8")
    data = json.dumps(_finite(meta), separators=(",", ":"), allow_nan=False)
    # "</" would end the script element early; "<\/" is the same JSON string.
    data = data.replace("</", "<\\/")
    title = str(meta.get("title", "LATTICE plan")).replace("&", "&amp;").replace("<", "&lt;")
    parts = [
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{title} - viewer</title><style>{style}</style></head><body>",
        f"<script type='application/json' id='lattice-meta'>{data}</script>",
    ]
    parts += [
        f"<script type='application/octet-stream' data-blob='{name}'>{text}</script>"
        for name, text in blobs.items()
    ]
    parts.append(f"<script>{script}</script></body></html>\n")
    return "".join(parts)


def _finite(value: Any) -> Any:
    """JSON-ready: inf and NaN (no neighbour, no OAR) become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def base_of(
    ct: Volume,
    gtv: Volume,
    oars: Mapping[str, Volume],
    box: tuple[slice, slice, slice],
    *,
    max_bytes: int = VIEWER_MAX_BYTES,
) -> ViewerBase:
    """:func:`~lattice.render.viewer_data.pack_base` of volumes already cropped to ``box``
    of the CT grid."""
    return pack_base(
        ct,
        gtv,
        oars,
        crop_start=(box[0].start, box[1].start, box[2].start),
        max_bytes=max_bytes,
    )


def build_viewer_html(
    *,
    ct: Volume,
    gtv: Volume,
    lattice_target: Volume | None,
    oars: Mapping[str, Volume],
    stv: Volume | None,
    info: Mapping[str, Any],
    shells: Volume | None = None,
    max_bytes: int = VIEWER_MAX_BYTES,
) -> str:
    """The page of a plan from its volumes on the CT grid and :func:`viewer_info`: cropped
    to the pictures' box (the GTV plus the context margin), original resolution when the
    page fits in ``max_bytes``, else downsampled (:mod:`~lattice.render.viewer_data`).

    Raises
    ------
    MaskError
        An empty GTV.
    GridMismatchError
        A sheared grid.
    """
    from .worker import job_box

    box = job_box(gtv)
    base = base_of(
        ct.crop(box),
        gtv.crop(box),
        {n: m.crop(box) for n, m in oars.items()},
        box,
        max_bytes=max_bytes,
    )
    meta, blobs = viewer_payload(
        base,
        target=None if lattice_target is None else lattice_target.crop(box),
        stv=None if stv is None else stv.crop(box),
        info=info,
        shells=None if shells is None else shells.crop(box),
    )
    return viewer_html(meta, blobs)


def plan_folder_viewer_html(folder: str | Path, *, max_bytes: int = VIEWER_MAX_BYTES) -> str:
    """The page of a written plan folder, from plan.json and the inputs it records.

    Raises
    ------
    InputFileError
        plan.json or a recorded input is missing or unreadable.
    GridMismatchError
    """
    from ..io.planfolder import load_plan_volumes
    from ..io.support_outputs import shells_of_folder

    v = load_plan_volumes(folder)
    return build_viewer_html(
        ct=v.ct,
        gtv=v.gtv,
        lattice_target=v.lattice_target,
        oars=v.oars,
        stv=v.stv,
        info=viewer_info(v.document),
        shells=shells_of_folder(folder, v.lattice_target),
        max_bytes=max_bytes,
    )


def write_viewer(path: str | Path, html: str, *, force: bool = False) -> Path:
    """Write the page at ``path`` atomically (whole or not at all).

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is False.
    OutputWriteError
        It cannot be written.
    """
    return write_text_file(path, html, force=force, what="viewer")
