"""Static QA pictures: CT, GTV, LATTICE target, OARs and vertex spheres.

- :mod:`~lattice.render.layout`: where the overview panels cut the grid (planes, crop,
  sphere circles, edge letters), from world-space arithmetic alone, without matplotlib;
- :mod:`~lattice.render.slices`: the 2-D overview, :func:`render_overview` (axial, coronal
  and sagittal panels, radiological view), and :mod:`~lattice.render.montage`:
  :func:`render_vertex_montage`, the axial slices through the vertex centres;
- :mod:`~lattice.render.three_d`: :func:`render_3d`, the surfaces and spheres seen from two
  viewpoints;
- :mod:`~lattice.render.style`: the colours and resolution they share;
- :mod:`~lattice.render.report`: ``report.html``, the pictures and numbers of a plan folder;
- :mod:`~lattice.render.worker`: the background worker that draws the pictures (and writes
  the derived DICOM CT) while the plan is made.

The names below are imported on first use, so ``lattice.render.layout`` stays free of
matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AXIS_ALIGNED_TOLERANCE_DEG": "lattice.render.layout",
    "DEFAULT_CONTEXT_MM": "lattice.render.layout",
    "SECOND_LETTER_MIN_COMPONENT": "lattice.render.layout",
    "OverviewGeometry": "lattice.render.layout",
    "PanelGeometry": "lattice.render.layout",
    "PanelName": "lattice.render.layout",
    "VertexCut": "lattice.render.layout",
    "axial_panel_at": "lattice.render.layout",
    "montage_layers": "lattice.render.layout",
    "montage_slices": "lattice.render.layout",
    "overview_geometry": "lattice.render.layout",
    "DEFAULT_WINDOW_HU": "lattice.render.slices",
    "FIGURE_SIZE_IN": "lattice.render.slices",
    "MAX_MONTAGE_PANELS": "lattice.render.montage",
    "MONTAGE_COLUMNS": "lattice.render.montage",
    "MONTAGE_DPI": "lattice.render.montage",
    "MONTAGE_EXACT_PANELS": "lattice.render.montage",
    "GROUPED_TOLERANCE_D": "lattice.render.montage",
    "SCALE_BAR_MM": "lattice.render.slices",
    "SMALL_CUT_MM": "lattice.render.slices",
    "render_overview": "lattice.render.slices",
    "render_vertex_montage": "lattice.render.montage",
    "FIGURE_DPI": "lattice.render.style",
    "LETTER_BAND_PX": "lattice.render.three_d",
    "MAX_FACES_3D": "lattice.render.three_d",
    "VIEWS_3D": "lattice.render.three_d",
    "View3D": "lattice.render.three_d",
    "render_3d": "lattice.render.three_d",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lattice.render' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
