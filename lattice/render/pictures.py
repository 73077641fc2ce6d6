"""The three pictures of a plan, drawn together: what ``lattice plan`` (in its picture
worker) and ``lattice show`` both write.

Importing this module loads no matplotlib: the renderers are imported when drawing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from numpy.typing import ArrayLike

from ..volume import Volume
from .layout import DEFAULT_CONTEXT_MM

#: The axial, coronal and sagittal overview.
OVERVIEW_NAME = "overview.png"
#: The 3-D picture, written beside overview.png.
THREE_D_NAME = "overview3d.png"
#: The montage of axial slices through the vertex centres.
MONTAGE_NAME = "vertices.png"
#: Every picture of a plan, in the order they are drawn.
PICTURE_NAMES = (OVERVIEW_NAME, THREE_D_NAME, MONTAGE_NAME)


def draw_plan_pictures(
    path: str | Path,
    *,
    ct: Volume,
    gtv: Volume,
    lattice_target: Volume | None,
    centers_ras_mm: ArrayLike,
    diameter_mm: float,
    oars: Mapping[str, Volume],
    stv: Volume | None,
    cold: Volume | None,
    title: str,
    shells: Volume | None = None,
    window: tuple[float, float] | None = None,
    context_mm: float = DEFAULT_CONTEXT_MM,
    cold_centers_ras_mm: ArrayLike | None = None,
    cold_diameter_mm: float | None = None,
    fork_3d: bool = False,
) -> None:
    """Draw the overview at ``path``, and :data:`THREE_D_NAME` and :data:`MONTAGE_NAME`
    beside it (the montage only when there are vertices). ``window``: the CT window (level,
    width) in HU, None for the renderers' default. ``cold``: the cold spheres' label map on
    the CT grid (overview and montage), ``cold_centers_ras_mm`` and ``cold_diameter_mm``
    the same spheres for the 3-D picture. ``fork_3d``: draw the 3-D picture in a forked
    child meanwhile (the picture worker does, on a machine whose other core has finished its
    own work); only where forking is safe, in a process without other threads."""
    # Through the package's names (lattice.render.render_overview...), as callers see them.
    from . import DEFAULT_WINDOW_HU, render_3d, render_overview, render_vertex_montage

    path = Path(path)
    shown = DEFAULT_WINDOW_HU if window is None else window

    def draw_3d() -> None:
        render_3d(
            path.with_name(THREE_D_NAME),
            gtv=gtv,
            centers_ras_mm=centers_ras_mm,
            diameter_mm=diameter_mm,
            oars=oars,
            title=title,
            cold_centers_ras_mm=cold_centers_ras_mm,
            cold_diameter_mm=cold_diameter_mm,
        )

    slices: dict[str, Any] = dict(
        ct=ct,
        gtv=gtv,
        lattice_target=lattice_target,
        centers_ras_mm=centers_ras_mm,
        diameter_mm=diameter_mm,
        oars=oars,
        stv=stv,
        title=title,
        window=shown,
        context_mm=context_mm,
        cold=cold,
    )
    if not fork_3d:
        render_overview(path, **slices, shells=shells)
        draw_3d()
        render_vertex_montage(
            path.with_name(MONTAGE_NAME), **slices, cold_centers_ras_mm=cold_centers_ras_mm
        )
        return
    with _in_child(draw_3d):
        render_overview(path, **slices, shells=shells)
        render_vertex_montage(
            path.with_name(MONTAGE_NAME), **slices, cold_centers_ras_mm=cold_centers_ras_mm
        )


@contextmanager
def _in_child(draw: Callable[[], None]) -> Iterator[None]:
    """Run ``draw`` in a forked child while the block runs; raise its error after the block
    (a child that died without a word: ``draw`` runs here). The block's own error comes
    first (the child is then stopped)."""
    from ..forking import Forked

    with Forked(draw, fallback=draw) as child:  # a child killed (out of memory): drawn here
        yield
        child.result()
