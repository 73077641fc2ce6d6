"""The values a dose grid may hold: finite, not negative, and of a size radiotherapy gives.

A dose in Gy is a finite number, never below 0. A NaN, an infinity or a negative value is
refused (:class:`~lattice.io.rtdose.DoseError`, one line naming how many voxels, the worst
one with its index and RAS position, and what to do):

- by :class:`~lattice.io.rtdose.DoseVolume` itself, so by every reader
  (:func:`~lattice.io.rtdose.read_rtdose`, :func:`~lattice.io.rtdose.read_dose_nifti`) and
  any dose volume built by hand, on the dose's own grid;
- by :func:`lattice.analysis.evaluate.evaluate_dose` on the CT grid, where NaN stands for
  "no dose" only on the voxels outside the dose grid.

Three doses are possible but nearly always a mistake, and only warned about
(:func:`dose_value_warnings`; ``evaluation.json`` records the warnings): 0 Gy everywhere in
the GTV (PVDR and ePVDR are then undefined), a GTV maximum of at most
:data:`IMPLAUSIBLY_LOW_GY` (a dose in Gy stored as cGy, a relative dose), and a maximum above
:data:`IMPLAUSIBLE_DOSE_GY` (usually a dose in cGy stored as Gy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DOSE_ROUNDING_GY",
    "IMPLAUSIBLE_DOSE_GY",
    "IMPLAUSIBLY_LOW_GY",
    "check_dose_values",
    "refuse_negative",
    "refuse_non_finite",
    "dose_value_warnings",
]

#: A dose this close to 0 is 0: values down to -DOSE_ROUNDING_GY are rounding, kept as they
#: are, and a dose whose maximum is below it counts as all zero. 0.1 mGy lies above float32
#: rounding of any dose up to 800 Gy (1.2e-7 of the value), below the 16-bit RT Dose
#: quantisation step of a 15 Gy plan (0.23 mGy), and far below the 0.01 Gy printed.
DOSE_ROUNDING_GY = 1e-4
#: A dose above this is not a radiotherapy dose: external-beam maxima, radiosurgery shots
#: included, stay below about 150 Gy, a whole course included. A dose in cGy stored as Gy
#: passes it as soon as its maximum is above 2 Gy (every SFRT peak: 8-20 Gy per fraction),
#: which a 1000 Gy limit would miss for peaks below 10 Gy (the seed trial's 8 Gy).
IMPLAUSIBLE_DOSE_GY = 200.0
#: A GTV whose dose peaks at no more than this (and above 0) holds no SFRT vertex dose
#: (8-20 Gy per fraction): a dose in Gy stored as cGy reads 100 times too low (15 Gy as
#: 0.15), a relative dose read as Gy peaks near 1.
IMPLAUSIBLY_LOW_GY = 1.0


def _where(
    index: tuple[int, ...], affine_ras: NDArray[np.float64] | None, rtdose_order: bool
) -> str:
    """``voxel [i, j, k], RAS (x, y, z) mm``; an RT Dose's index as frame, row and column."""
    i, j, k = (int(n) for n in index)
    text = f"frame {k}, row {j}, column {i} (from 0)" if rtdose_order else f"voxel [{i}, {j}, {k}]"
    if affine_ras is not None:
        ras = np.asarray(affine_ras, dtype=np.float64) @ [i, j, k, 1.0]
        text += f", RAS ({ras[0]:.1f}, {ras[1]:.1f}, {ras[2]:.1f}) mm"
    return text


def refuse_non_finite(
    dose_gy: NDArray[np.floating[Any]],
    *,
    source: str,
    affine_ras: NDArray[np.float64] | None = None,
    rtdose_order: bool = False,
    skip: NDArray[np.bool_] | None = None,
) -> None:
    """Refuse NaN and infinite dose values (outside ``skip``).

    Parameters
    ----------
    dose_gy : (I, J, K) ndarray of float
    source : str
        What the dose is, for the message (``"dose NIfTI 'd.nii.gz'"``).
    affine_ras : (4, 4) ndarray of float, optional
        Voxel index to RAS mm: the example voxel's position is given with it.
    rtdose_order : bool
        Name the example voxel as an RT Dose's frame, row and column (``(I, J, K)`` =
        ``(column, row, frame)``, :mod:`lattice.io.rtdose`).
    skip : (I, J, K) ndarray of bool, optional
        Voxels where a NaN is allowed (no dose: outside the dose grid).

    Raises
    ------
    DoseError
        At least one NaN or infinite value.
    """
    from lattice.io.rtdose import DoseError

    dose = np.asarray(dose_gy)
    bad = ~np.isfinite(dose)
    if skip is not None:
        bad &= ~np.asarray(skip, dtype=bool)
    n_bad = int(np.count_nonzero(bad))
    if not n_bad:
        return
    n_nan = int(np.count_nonzero(bad & np.isnan(dose)))
    kinds = [f"{n} {word}" for n, word in ((n_nan, "NaN"), (n_bad - n_nan, "infinite")) if n]
    first = tuple(int(n) for n in np.argwhere(bad)[0])
    raise DoseError(
        f"{source} holds {' and '.join(kinds)} value{'s' if n_bad > 1 else ''} of its "
        f"{dose.size} voxels (the first at {_where(first, affine_ras, rtdose_order)}: "
        f"{float(dose[first])}); a dose must be a finite number of Gy: export it again "
        "from the TPS, with 0 (not NaN) where nothing was calculated"
    )


def refuse_negative(
    dose_gy: NDArray[np.floating[Any]],
    *,
    source: str,
    affine_ras: NDArray[np.float64] | None = None,
    rtdose_order: bool = False,
) -> None:
    """Refuse dose values below ``-DOSE_ROUNDING_GY`` (NaN is left alone).

    Parameters are those of :func:`refuse_non_finite`.

    Raises
    ------
    DoseError
        At least one value below ``-DOSE_ROUNDING_GY``; the message names the lowest.
    """
    from lattice.io.rtdose import DoseError

    dose = np.asarray(dose_gy)
    with np.errstate(invalid="ignore"):
        bad = dose < -DOSE_ROUNDING_GY
    n_bad = int(np.count_nonzero(bad))
    if not n_bad:
        return
    lowest = np.unravel_index(int(np.argmin(np.where(bad, dose, np.inf))), dose.shape)
    raise DoseError(
        f"{source} holds {n_bad} negative value{'s' if n_bad > 1 else ''} of its "
        f"{dose.size} voxels (the lowest, {float(dose[lowest]):.6g} Gy, at "
        f"{_where(lowest, affine_ras, rtdose_order)}; down to -{DOSE_ROUNDING_GY:g} Gy "
        "counts as rounding); "
        "a dose cannot be negative: export it again from the TPS (a B-spline or sinc "
        "resampling undershoots 0 beside steep fall-offs: resample it linearly, or clip it at 0)"
    )


def check_dose_values(
    dose_gy: NDArray[np.floating[Any]],
    *,
    source: str,
    affine_ras: NDArray[np.float64] | None = None,
    rtdose_order: bool = False,
) -> None:
    """Refuse NaN, infinite and negative values (:func:`refuse_non_finite`, then
    :func:`refuse_negative`).

    Raises
    ------
    DoseError

    Examples
    --------
    >>> check_dose_values(np.array([[[0.0, 12.5]]]), source="dose")
    >>> check_dose_values(np.array([[[0.0, -5.0]]]), source="dose")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lattice.io.rtdose.DoseError: dose holds 1 negative value of its 2 voxels ...
    """
    refuse_non_finite(dose_gy, source=source, affine_ras=affine_ras, rtdose_order=rtdose_order)
    refuse_negative(dose_gy, source=source, affine_ras=affine_ras, rtdose_order=rtdose_order)


def dose_value_warnings(
    dose_gy: NDArray[np.floating[Any]], gtv: NDArray[np.bool_], *, source: str = "the dose"
) -> list[str]:
    """Warnings for a dose that is all zero in the GTV, implausibly low in it, or
    implausibly high.

    Parameters
    ----------
    dose_gy : (I, J, K) ndarray of float
        NaN where there is no dose (ignored).
    gtv : (I, J, K) ndarray of bool
    source : str
        What the dose is, for the message.

    Returns
    -------
    list of str
        Empty for a plausible dose.
    """
    dose = np.asarray(dose_gy, dtype=np.float64)
    known = dose[np.isfinite(dose)]
    top = float(known.max()) if known.size else 0.0
    in_gtv = dose[np.asarray(gtv, dtype=bool) & np.isfinite(dose)]
    gtv_top = float(in_gtv.max()) if in_gtv.size else 0.0
    warnings = []
    if gtv_top <= DOSE_ROUNDING_GY:
        where = (
            f"on all {known.size} voxels it covers"
            if top <= DOSE_ROUNDING_GY
            else f"in the whole GTV (its maximum, {top:.4g} Gy, lies outside the GTV)"
        )
        warnings.append(
            f"{source} is 0 Gy {where}, so PVDR and ePVDR are undefined; check that "
            "the file is this plan's dose, exported after the dose was calculated"
        )
    elif gtv_top <= IMPLAUSIBLY_LOW_GY:
        warnings.append(
            f"{source} peaks at {gtv_top:.4g} Gy in the GTV, at most {IMPLAUSIBLY_LOW_GY:g} Gy "
            "and so below any SFRT vertex dose (8-20 Gy per fraction): check its units; a dose "
            "in Gy stored as cGy (an RT Dose with DoseUnits CGY on Gy values) reads 100 times "
            "too low, and a relative dose read as Gy peaks near 1"
        )
    if top > IMPLAUSIBLE_DOSE_GY:
        warnings.append(
            f"{source} reaches {top:.4g} Gy, above {IMPLAUSIBLE_DOSE_GY:g} Gy and so above "
            "any radiotherapy dose: check its units; a dose in cGy stored as "
            "Gy (a NIfTI exported in cGy, or an RT Dose with DoseUnits GY on cGy values) "
            "reads 100 times too high"
        )
    return warnings
