"""The inputs of a :class:`~lattice.pipeline.PlanRequest`: NIfTI files, a DICOM CT series
with its RTSTRUCT, or volumes in memory (see :mod:`lattice.pipeline`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .planning.parameters import OarSpec, check_range
from .volume import Volume

if TYPE_CHECKING:
    from .planning.rules import Oar


@dataclass(frozen=True)
class NiftiInputs:
    """A NIfTI CT with its GTV and OAR masks on the CT grid.

    Attributes
    ----------
    ct, gtv : Path
    oars : sequence of OarSpec
        Each organ's name, mask file and clearance (None: the protocol's).
    gtv_label : int, optional
        The GTV's label when ``gtv`` is a label map.
    reference_ct_dicom : Path, optional
        The DICOM series the CT was converted from: ``rtstruct.dcm`` references it (the grids
        must match); without it a DICOM series derived from the CT is written to ct_dicom/.
    """

    ct: Path
    gtv: Path
    oars: Sequence[OarSpec] = ()
    gtv_label: int | None = None
    reference_ct_dicom: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ct", Path(self.ct))
        object.__setattr__(self, "gtv", Path(self.gtv))
        object.__setattr__(self, "oars", tuple(self.oars))
        if self.reference_ct_dicom is not None:
            object.__setattr__(self, "reference_ct_dicom", Path(self.reference_ct_dicom))
        if self.gtv_label is not None:
            check_range("gtv_label", self.gtv_label)

    def oar_clearances(self) -> list[tuple[str, str, float | None]]:
        """(name, how the input names it, clearance or None) per OAR."""
        return [(o.name, str(o.path), o.clearance_mm) for o in self.oars]

    def paths(self) -> list[tuple[str, Path | None]]:
        """Every input path, by parameter name (none may be inside the output folder)."""
        return [
            ("ct", self.ct),
            ("gtv", self.gtv),
            *(("oar", o.path) for o in self.oars),
            ("reference_ct_dicom", self.reference_ct_dicom),
        ]


@dataclass(frozen=True)
class DicomInputs:
    """A DICOM CT series and the RTSTRUCT drawn on it.

    Attributes
    ----------
    ct_dicom : Path
        Folder holding the CT series.
    rtstruct : Path
    gtv_name : str
        The GTV's ROI name.
    oars : sequence of (str, float or None)
        Each organ's ROI name and clearance (None: the protocol's).
    series_uid : str, optional
        SeriesInstanceUID to read when the folder holds several series.
    """

    ct_dicom: Path
    rtstruct: Path
    gtv_name: str
    oars: Sequence[tuple[str, float | None]] = ()
    series_uid: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ct_dicom", Path(self.ct_dicom))
        object.__setattr__(self, "rtstruct", Path(self.rtstruct))
        object.__setattr__(self, "oars", tuple(tuple(o) for o in self.oars))

    def oar_clearances(self) -> list[tuple[str, str, float | None]]:
        return [(name, name, mm) for name, mm in self.oars]

    def paths(self) -> list[tuple[str, Path | None]]:
        return [("ct_dicom", self.ct_dicom), ("rtstruct", self.rtstruct)]


@dataclass(frozen=True, eq=False)
class VolumeInputs:
    """Volumes in memory: the GTV, the OARs with their clearances, and the CT (for the
    pictures and the derived DICOM series; without it neither is made).

    Attributes
    ----------
    gtv : Volume
    oars : sequence of Oar
    ct : Volume, optional
    """

    gtv: Volume
    oars: Sequence[Oar] = ()
    ct: Volume | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "oars", tuple(self.oars))

    def oar_clearances(self) -> list[tuple[str, str, float | None]]:
        return [(o.name, o.name, float(o.clearance_mm)) for o in self.oars]

    def paths(self) -> list[tuple[str, Path | None]]:
        return []


Inputs = NiftiInputs | DicomInputs | VolumeInputs


def ct_check(inputs: Inputs) -> Any:
    """What the worker checks the CT's values with (None for a DICOM series, whose CT
    numbers its rescale tags give; see :mod:`lattice.io.ct_values`)."""
    if isinstance(inputs, DicomInputs):
        return None
    from .io.ct_values import ct_value_warnings

    name = "the CT volume" if isinstance(inputs, VolumeInputs) else f"CT '{inputs.ct}'"
    return lambda ct: ct_value_warnings(ct, name=name)


def ct_loader(inputs: Inputs) -> Any:
    """A function reading the CT (called in the picture worker)."""
    if isinstance(inputs, DicomInputs):

        def load_dicom() -> Volume:
            from .io.dicom import load_series

            return load_series(inputs.ct_dicom, series_uid=inputs.series_uid).grid

        return load_dicom
    if isinstance(inputs, VolumeInputs):
        ct = inputs.ct
        return lambda: ct

    def load_nifti() -> Volume:
        from .io.nifti import load_image

        return load_image(inputs.ct, name=f"CT '{inputs.ct}'")

    return load_nifti
