"""Colours and resolution shared by the 2-D and 3-D pictures (no matplotlib import)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import OutputWriteError
from ..volume import Volume

#: Figure resolution of the overview and 3-D pictures (dots per inch).
FIGURE_DPI = 110
#: zlib level of the PNG pictures (Pillow's default is 6): level 3 encodes the three pictures
#: of a full-size plan in about half the time (0.28 -> 0.15 s) for files about 5 % larger;
#: the pixels are the same.
PNG_PIL_KWARGS = {"compress_level": 3}

GTV_COLOR = "#ff2a2a"
TARGET_COLOR = "#ffd21f"
VERTEX_COLOR = "#00e5ff"
STV_COLOR = "#ff8c00"
#: Cold (valley) spheres: a violet-blue apart from the vertices' cyan and the valley's blue.
COLD_COLOR = "#6a3dff"
#: Support shells (--shells-mm), light to dark green outwards: as their RTSTRUCT colours
#: (lattice.io.support_outputs.RING_COLORS).
SHELL_COLORS = ("#aaffaa", "#5adc5a", "#1eaa3c", "#0a7828", "#00501e")
#: OAR colours, in the order the OARs are given (repeating after the last).
OAR_COLORS = ("#ff4fd8", "#4cff4c", "#5a8cff", "#d2b48c", "#ffffff", "#b07cff", "#a0e000")
NO_OARS: Mapping[str, Volume] = MappingProxyType({})

#: Named CT windows (level, width) in HU: ``lattice show --window`` and the viewer's presets.
CT_WINDOWS_HU: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "soft": (40.0, 400.0),
        "lung": (-600.0, 1500.0),
        "bone": (400.0, 1800.0),
        "brain": (40.0, 80.0),
        "mediastinum": (50.0, 350.0),
    }
)
#: Colour of the patient orientation letters on the slice views.
LETTER_COLOR_2D = "#ffe680"


def save_png(fig: Any, path: str | Path, *, dpi: float, what: str) -> Path:
    """Write the matplotlib figure ``fig`` as a PNG at ``path`` (``what``: the picture's name
    in the error); OutputWriteError when it cannot be written."""
    out = Path(path)
    try:
        fig.savefig(out, format="png", dpi=dpi, pil_kwargs=dict(PNG_PIL_KWARGS))
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write the {what} '{out}': {exc}; check that the folder exists and is writable"
        ) from exc
    return out
