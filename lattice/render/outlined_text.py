"""Short labels outlined in black (vertex ids, orientation letters, scale-bar lengths), drawn
as two path collections per panel instead of one text artist each.

A ``Text`` with a ``withStroke`` path effect costs ~2 ms to draw (layout, font look-up, the
glyphs turned into a path for the stroke, then drawn again as glyphs); a montage panel has a
dozen. Here each label's glyph outline (:class:`~matplotlib.textpath.TextPath`, cached per
string and font) is placed at its anchor: one collection strokes every label in black, a
second fills them in their colours on top, as the path effect does (stroke, then the text).
The labels keep their size in points whatever the axes limits, like text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.font_manager import FontProperties
from matplotlib.path import Path
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D

HorizontalAlignment = Literal["left", "center", "right"]
VerticalAlignment = Literal["bottom", "center", "top"]

#: Width (points) of the black outline around each label, as the former ``withStroke``.
OUTLINE_WIDTH_PT = 2.5
#: Above the data artists (outlines, discs): where matplotlib draws text.
TEXT_ZORDER = 3.0


@lru_cache(maxsize=512)
def _glyphs(
    text: str, size_pt: float, bold: bool
) -> tuple[Path, tuple[float, float, float, float]]:
    """The label's outline in points, baseline at 0, with its box ``(x0, x1, y0, y1)``: the
    ink's width, and vertically the ink grown to the line of "lp", as matplotlib aligns a
    line of text (so a label without descenders sits where a ``Text`` would)."""
    path = TextPath((0.0, 0.0), text, size=size_pt, prop=_font(bold))
    ink = path.vertices if len(path.vertices) else np.zeros((1, 2))
    x0, y0 = ink.min(axis=0)
    x1, y1 = ink.max(axis=0)
    line_y0, line_y1 = _line(size_pt, bold)
    return path, (float(x0), float(x1), float(min(y0, line_y0)), float(max(y1, line_y1)))


@lru_cache(maxsize=16)
def _line(size_pt: float, bold: bool) -> tuple[float, float]:
    """Lowest and highest ink (points from the baseline) of "lp" in that font."""
    y = TextPath((0.0, 0.0), "lp", size=size_pt, prop=_font(bold)).vertices[:, 1]
    return float(y.min()), float(y.max())


def _font(bold: bool) -> FontProperties:
    return FontProperties(weight="bold" if bold else "normal")


@dataclass
class OutlinedLabels:
    """Labels collected for one axes, drawn by :meth:`add_to`.

    Each label's box (see :func:`_glyphs`) is aligned on its anchor (``ha``, ``va``), given
    in data coordinates.
    """

    paths: list[Path] = field(default_factory=list)
    anchors: list[tuple[float, float]] = field(default_factory=list)
    colors: list[str] = field(default_factory=list)

    def add(
        self,
        x: float,
        y: float,
        text: str,
        *,
        size_pt: float,
        color: str,
        bold: bool = False,
        ha: HorizontalAlignment = "center",
        va: VerticalAlignment = "center",
    ) -> None:
        path, (x0, x1, y0, y1) = _glyphs(text, float(size_pt), bool(bold))
        dx = {"left": -x0, "center": -(x0 + x1) / 2, "right": -x1}[ha]
        dy = {"bottom": -y0, "center": -(y0 + y1) / 2, "top": -y1}[va]
        self.paths.append(Path(np.asarray(path.vertices) + (dx, dy), path.codes))
        self.anchors.append((float(x), float(y)))
        self.colors.append(color)

    def add_to(self, ax: Axes) -> None:
        """Add the outline collection, then the fill collection on top of it."""
        if not self.paths:
            return
        fig = ax.get_figure(root=True)
        assert fig is not None  # an axes of a figure
        points_to_px = Affine2D().scale(1 / 72.0) + fig.dpi_scale_trans
        offsets = np.array(self.anchors)

        def labels(**colours: Any) -> PathCollection:
            return PathCollection(
                self.paths,
                offsets=offsets,
                offset_transform=ax.transData,
                transform=points_to_px,
                zorder=TEXT_ZORDER,
                **colours,
            )

        stroke = labels(facecolors="none", edgecolors="black", linewidths=OUTLINE_WIDTH_PT)
        fill = labels(facecolors=self.colors, edgecolors="none")
        for collection in (stroke, fill):
            ax.add_collection(collection, autolim=False)
