"""The helper rings of a plan (:mod:`lattice.planning.support`) as files: ``shells.nii.gz``,
``gtv_rings.nii.gz``, ``stv_rings.nii.gz`` (label k = ring k) and their ROIs in
``rtstruct.dcm``; and the body they are clipped to, read from the inputs.

ROIs (default names, <= 16 characters): ``LATTICE_SH00_05``... AVOIDANCE, one green per
shell from light (nearest the vertices) to dark; ``GTV_RING02_12``... and
``STV_RING02_12``... CONTROL, in amber and pink (:data:`RING_COLORS`). They are traced from
the label maps by the same path as ``LATTICE_TARGET`` (marching squares through the
voxel-centre midpoints, :func:`lattice.io.rtstruct_contours.mask_contours`). A shell has the
vertex spheres as holes; with ``valley_contours='keyhole'`` each hole is joined to its
outline, as for ``LATTICE_VALLEY``, for readers that OR the contours of a slice.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GridMismatchError, MaskError
from ..grid import Grid
from ..inputs import DicomInputs, Inputs, NiftiInputs
from ..planning.support import SupportOptions, SupportRings, support_rings
from ..volume import Volume
from .nifti import save_volume

__all__ = [
    "RING_COLORS",
    "SUPPORT_FILES",
    "add_support",
    "load_body",
    "plan_support",
    "shells_of_folder",
    "support_rois",
    "write_support_files",
]

#: The files :func:`write_support_files` may write.
SUPPORT_FILES = ("shells.nii.gz", "gtv_rings.nii.gz", "stv_rings.nii.gz")
_FILE_OF = {
    "shell": "shells.nii.gz",
    "gtv_ring": "gtv_rings.nii.gz",
    "stv_ring": "stv_rings.nii.gz",
}
#: RTSTRUCT colours (RGB 0-255): shells from light to dark green, then the GTV rings
#: (amber) and the STV rings (pink), darker outwards.
RING_COLORS = {
    "shell": ((170, 255, 170), (90, 220, 90), (30, 170, 60), (10, 120, 40), (0, 80, 30)),
    "gtv_ring": ((255, 200, 60), (230, 150, 20), (190, 110, 0)),
    "stv_ring": ((255, 150, 220), (230, 90, 180), (180, 40, 140)),
}
_TYPES = {"shell": "AVOIDANCE", "gtv_ring": "CONTROL", "stv_ring": "CONTROL"}
_AROUND = {"shell": "the vertex sphere surfaces", "gtv_ring": "the GTV", "stv_ring": "the STV"}


def _volume_of(support: SupportRings, kind: str) -> Volume | None:
    return {"shell": support.shells, "gtv_ring": support.gtv_rings, "stv_ring": support.stv_rings}[
        kind
    ]


def write_support_files(support: SupportRings | None, stage: Path) -> list[str]:
    """Write the label maps of the rings made into ``stage``; their names."""
    if support is None:
        return []
    names = []
    for kind, name in _FILE_OF.items():
        volume = _volume_of(support, kind)
        if volume is not None:
            names.append(save_volume(volume, stage / name).name)
    return names


def support_rois(
    support: SupportRings | None, grid: Grid | Volume, *, valley_contours: str = "holes"
) -> list[Any]:
    """The ROIs of the rings on the slices of ``grid`` (a ring with no voxel is left out)."""
    from .dicom import on_grid
    from .rtstruct_contours import keyhole_contours, mask_contours
    from .rtstruct_write import RoiSpec

    if support is None:
        return []
    rois = []
    on_series: dict[str, Any] = {}  # each label map in the series' index order, once
    for record in support.records:
        if record.kind not in on_series:
            volume = _volume_of(support, record.kind)
            assert volume is not None
            on_series[record.kind] = on_grid(
                volume, grid, name="the rings", grid_name="the DICOM series"
            )
        mask = on_series[record.kind]
        contours = mask_contours(mask.with_array(np.asarray(mask.array) == record.label))
        if not contours:
            continue
        if valley_contours == "keyhole":
            contours = keyhole_contours(contours, grid)
        colors = RING_COLORS[record.kind]
        clipped = record.kind == "shell" or support.options.body is not None
        rois.append(
            RoiSpec(
                record.name,
                _TYPES[record.kind],
                colors[min(record.label, len(colors)) - 1],
                contours,
                f"{record.inner_mm}-{record.outer_mm} mm from {_AROUND[record.kind]}"
                + (f", within the {support.clip}" if clipped else ""),
            )
        )
    return rois


def load_body(
    body: str | Path | Volume, inputs: Inputs, reference: Volume, *, frame: str | None = None
) -> tuple[Volume, str]:
    """The body mask on the grid of ``reference`` (the GTV), and how plan.json names it.

    A Volume is used as given; with NIfTI inputs ``body`` is a mask file on the CT grid; with
    DICOM inputs the name of an ROI of the source RTSTRUCT, rasterised as the GTV is (its
    frame of reference must be ``frame``, the CT's, when both are known).

    Raises
    ------
    InputFileError, MaskError
        Unreadable, empty, or an ROI name not in the structure set (the names are listed).
    GridMismatchError
        Not on the CT grid, or an ROI in another frame of reference.
    """
    if isinstance(body, Volume):
        return body, "body (in memory)"
    if isinstance(inputs, DicomInputs):
        return _body_roi(str(body), inputs, reference, frame), f"ROI {body}"
    from .nifti import load_mask

    path = Path(body)
    mask = load_mask(path, label_hint="give a body mask with one label")
    ct_name = f"CT '{inputs.ct}'" if isinstance(inputs, NiftiInputs) else "the CT"
    reference.check_same_grid(mask, name=ct_name, other_name=f"body mask '{path}'")
    return reference.with_array(np.asarray(mask.array, dtype=bool)), str(path.resolve())


def _body_roi(name: str, inputs: DicomInputs, reference: Volume, frame: str | None) -> Volume:
    from .rtstruct_read import check_usable, rasterise_roi, read_rtstruct

    structures = read_rtstruct(inputs.rtstruct)
    roi = structures.get(name)  # MaskError listing the names present
    if frame and roi.frame_of_reference_uid and roi.frame_of_reference_uid != frame:
        raise GridMismatchError(
            f"ROI '{roi.name}' in '{inputs.rtstruct}' is in frame of reference "
            f"{roi.frame_of_reference_uid}, the CT in {frame}; choose a body drawn on that CT"
        )
    check_usable(roi, structures)
    mask = rasterise_roi(roi, reference, source=str(inputs.rtstruct)).mask
    if not mask.array.any():
        raise MaskError(
            f"body ROI '{roi.name}' in '{inputs.rtstruct}' encloses no voxel centre of the CT; "
            "choose the ROI of the patient's outline"
        )
    return reference.with_array(np.asarray(mask.array, dtype=bool))


def plan_support(
    options: SupportOptions | None, inputs: Inputs, loaded: Any, plan: Any, stv: Any
) -> SupportRings | None:
    """The helper rings of a plan as :func:`lattice.run_plan` makes them (None: not asked):
    ``loaded`` holds the inputs read (``gtv``, ``series``), ``stv`` the STV result or None."""
    if options is None or not options.any:
        return None
    options.check_stv(stv is not None)
    body = label = None
    if options.body is not None:
        series = loaded.series
        frame = None if series is None else series.frame_of_reference_uid
        body, label = load_body(options.body, inputs, loaded.gtv, frame=frame)
    rings = support_rings(
        loaded.gtv,
        plan.centers_ras_mm,
        diameter_mm=plan.parameters.diameter_mm,
        options=options,
        stv=None if stv is None else stv.stv,
        body=body,
        body_label=label,
    )
    if options.body is None or isinstance(options.body, Volume):
        return rings
    if isinstance(inputs, DicomInputs):
        record = {"roi": str(options.body)}
    else:
        from .nifti import sha256_file

        record = {"path": label or str(options.body), "sha256": sha256_file(options.body)}
    return dataclasses.replace(rings, body_record=record)


def shells_of_folder(folder: str | Path, reference: Volume) -> Volume | None:
    """The support shells of a written plan folder (``shells.nii.gz``) on ``reference``'s
    grid, or None when the plan has none (``lattice show`` draws them).

    Raises
    ------
    InputFileError, GridMismatchError
        Unreadable, or not on the plan's grid.
    """
    from .nifti import load_image

    path = Path(folder) / "shells.nii.gz"
    if not path.is_file():
        return None
    shells = load_image(path, name=f"support shells '{path}'")
    reference.check_same_grid(shells, name="the plan's grid", other_name=f"'{path}'")
    return shells.with_array(np.rint(np.asarray(shells.array)).astype(np.uint8))


def add_support(document: dict[str, Any], support: SupportRings | None) -> dict[str, Any]:
    """plan.json with the rings' parameters, records and warnings (unchanged without)."""
    if support is None:
        return document
    document["parameters"] = {**document["parameters"], **support.parameters()}
    document.update(support.document())
    if support.body_record:
        document["inputs"] = {**document.get("inputs", {}), "body": support.body_record}
    document["warnings"] = [*document.get("warnings", []), *support.warnings]
    return document
