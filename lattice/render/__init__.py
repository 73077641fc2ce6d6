"""Static QA pictures: CT, GTV, LATTICE target, OARs and vertex spheres.

- :mod:`~lattice.render.layout`: where the overview panels cut the grid (planes, crop,
  sphere circles, edge letters), from world-space arithmetic alone, without matplotlib;
- :mod:`~lattice.render.slices`: the 2-D pictures, :func:`render_overview` (axial, coronal
  and sagittal panels, radiological view) and :func:`render_vertex_montage`;
- :mod:`~lattice.render.three_d`: :func:`render_3d`, the surfaces and spheres seen from two
  viewpoints;
- :mod:`~lattice.render.style`: the colours and resolution they share.
"""

from .layout import (
    AXIS_ALIGNED_TOLERANCE_DEG,
    DEFAULT_CONTEXT_MM,
    SECOND_LETTER_MIN_COMPONENT,
    OverviewGeometry,
    PanelGeometry,
    PanelName,
    VertexCut,
    axial_panel_at,
    montage_layers,
    overview_geometry,
)
from .slices import (
    DEFAULT_WINDOW_HU,
    FIGURE_SIZE_IN,
    MAX_MONTAGE_PANELS,
    MONTAGE_COLUMNS,
    MONTAGE_DPI,
    SCALE_BAR_MM,
    SMALL_CUT_MM,
    render_overview,
    render_vertex_montage,
)
from .style import FIGURE_DPI
from .three_d import LETTER_BAND_PX, MAX_FACES_3D, VIEWS_3D, View3D, render_3d

__all__ = [
    "AXIS_ALIGNED_TOLERANCE_DEG",
    "DEFAULT_CONTEXT_MM",
    "DEFAULT_WINDOW_HU",
    "FIGURE_DPI",
    "FIGURE_SIZE_IN",
    "LETTER_BAND_PX",
    "MAX_FACES_3D",
    "MAX_MONTAGE_PANELS",
    "MONTAGE_COLUMNS",
    "MONTAGE_DPI",
    "SCALE_BAR_MM",
    "SECOND_LETTER_MIN_COMPONENT",
    "SMALL_CUT_MM",
    "VIEWS_3D",
    "OverviewGeometry",
    "PanelGeometry",
    "PanelName",
    "VertexCut",
    "View3D",
    "axial_panel_at",
    "montage_layers",
    "overview_geometry",
    "render_3d",
    "render_overview",
    "render_vertex_montage",
]
