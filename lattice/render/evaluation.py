"""evaluation.png: the cumulative DVHs and the peak-valley-peak profiles of an evaluation.

Drawn from the evaluation dict alone (its ``dvh`` and ``profiles`` sections), so the picture
can be redrawn from evaluation.json without the dose or the masks. Matplotlib's object API
with the Agg canvas: no pyplot, no global state.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .style import COLD_COLOR

__all__ = ["draw_evaluation", "STRUCTURE_COLOURS"]

#: Fixed colours of the evaluated structures (OARs cycle through OAR_COLOURS).
STRUCTURE_COLOURS = {
    "GTV": "#d62728",
    "peaks": "#ff7f0e",
    "valley": "#1f77b4",
    "cold spheres": COLD_COLOR,  # as in the plan's pictures
}
OAR_COLOURS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
#: Profiles drawn with a legend entry each; beyond this only the first ones are labelled.
LABELLED_PROFILES = 8
FIGURE_SIZE_IN = (12.0, 5.0)
DPI = 110


def draw_evaluation(
    evaluation: Mapping[str, Any], path: str | Path, *, title: str = "Dose evaluation"
) -> Path:
    """Write evaluation.png: DVH (left) and profiles between nearest vertices (right).

    Parameters
    ----------
    evaluation : mapping
        The dict of ``evaluate_dose`` (or evaluation.json read back).
    path : str or Path
    title : str

    Returns
    -------
    Path
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    dvh_axes, profile_axes = figure.subplots(1, 2)
    _draw_dvh(dvh_axes, evaluation)
    _draw_profiles(profile_axes, evaluation)
    figure.suptitle(
        f"{title}  -  PVDR (D10/D90) {_fmt(evaluation.get('pvdr_d10_d90'))}, "
        f"ePVDR {_fmt(evaluation.get('epvdr'))}"
    )
    path = Path(path)
    figure.savefig(path)
    return path


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2f}"


def _draw_dvh(axes: Any, evaluation: Mapping[str, Any]) -> None:
    dvh = evaluation.get("dvh") or {}
    dose = np.asarray(dvh.get("dose_gy", []), dtype=float)
    oar_index = 0
    for name, curve in (dvh.get("percent_volume") or {}).items():
        colour = STRUCTURE_COLOURS.get(name)
        if colour is None:
            colour = OAR_COLOURS[oar_index % len(OAR_COLOURS)]
            oar_index += 1
        axes.plot(
            dose,
            curve,
            color=colour,
            label=name,
            lw=2 if name == "GTV" else 1.5,
            ls="-" if name in STRUCTURE_COLOURS else "--",
        )
    gtv = evaluation.get("gtv") or {}
    for key in ("D10_gy", "D90_gy"):
        if gtv.get(key) is not None:
            axes.axvline(gtv[key], color="#d62728", lw=0.8, ls=":")
            axes.annotate(
                key[:-3],
                (gtv[key], 101),
                ha="center",
                va="bottom",
                fontsize=8,
                color="#d62728",
                annotation_clip=False,
            )
    axes.set(xlabel="dose (Gy)", ylabel="volume (%)", ylim=(0, 105), title="cumulative DVH")
    axes.set_xlim(left=0)
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend(fontsize=8, loc="upper right")


def _draw_profiles(axes: Any, evaluation: Mapping[str, Any]) -> None:
    profiles = evaluation.get("profiles") or []
    colours = _profile_colours(len(profiles))
    for n, profile in enumerate(profiles):
        distance = np.asarray(profile["distance_mm"], dtype=float)
        dose = np.array([np.nan if v is None else v for v in profile["dose_gy"]], dtype=float)
        label = f"{profile['from_id']}-{profile['to_id']}" if n < LABELLED_PROFILES else None
        axes.plot(distance, dose, color=colours[n], lw=1.2, label=label)
        if profile.get("min_gy") is not None:
            axes.plot(profile["min_at_mm"], profile["min_gy"], "o", color=colours[n], ms=4)
    thresholds = evaluation.get("threshold_volumes") or {}
    for key, text in (("peak_threshold_gy", "70 % max"), ("valley_threshold_gy", "20 % max")):
        if thresholds.get(key) is not None:
            axes.axhline(thresholds[key], color="0.4", lw=0.8, ls=":")
            axes.annotate(
                text,
                (1.0, thresholds[key]),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize=8,
                color="0.4",
            )
    axes.set(
        xlabel="distance from the first vertex centre (mm)",
        ylabel="dose (Gy)",
        title=f"profiles to the nearest vertex ({len(profiles)}; dots: valley minimum)",
    )
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    if not profiles:
        axes.text(
            0.5, 0.5, "fewer than two vertices: no profile", ha="center", transform=axes.transAxes
        )
    elif any(line.get_label()[:1] != "_" for line in axes.lines):
        axes.legend(fontsize=7, loc="upper center", ncol=4, title="vertex ids", title_fontsize=7)


def _profile_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(v) for v in np.linspace(0.0, 0.9, max(n, 1))]
