"""Analytic dose phantoms: an ellipsoidal GTV on an anisotropic CT grid with vertex and cold
spheres, two OARs, and a dose ``valley floor + Gaussians on the vertices`` in world space.

Test modules import this by name (``from dose_phantoms import ...``) and wrap
:func:`make_phantom` in their own fixture."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice.analysis.evaluate import EvaluationMasks

#: The analytic dose: valley floor, peak height above it, Gaussian sigma.
VALLEY_GY, PEAK_GY, SIGMA_MM = 3.0, 15.0, 5.0
VERTEX_DIAMETER_MM, COLD_DIAMETER_MM = 10.0, 8.0


def world_points(shape: tuple[int, ...], affine_ras: NDArray[np.float64]) -> NDArray[np.float64]:
    """(I, J, K, 3) RAS mm of every voxel centre."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return ijk @ affine_ras[:3, :3].T + affine_ras[:3, 3]


def analytic_dose_gy(
    points_ras_mm: NDArray[np.float64], centers_ras_mm: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Valley floor plus a Gaussian of height PEAK - VALLEY on every vertex centre."""
    dose = np.full(points_ras_mm.shape[:-1], VALLEY_GY)
    for centre in centers_ras_mm:
        r2 = np.sum((points_ras_mm - centre) ** 2, axis=-1)
        dose += (PEAK_GY - VALLEY_GY) * np.exp(-r2 / (2 * SIGMA_MM**2))
    return dose


def ball_labels(
    points: NDArray[np.float64], centers: NDArray[np.float64], diameter_mm: float
) -> NDArray[np.int16]:
    labels = np.zeros(points.shape[:-1], dtype=np.int16)
    for n, centre in enumerate(centers, start=1):
        labels[np.sum((points - centre) ** 2, axis=-1) <= (diameter_mm / 2) ** 2] = n
    return labels


@dataclass
class Phantom:
    ct_shape: tuple[int, int, int]
    ct_affine_ras: NDArray[np.float64]
    points_ras_mm: NDArray[np.float64]
    vertex_centers_ras_mm: NDArray[np.float64]
    vertex_ids: list[int]
    cold_centers_ras_mm: NDArray[np.float64]
    masks: EvaluationMasks
    frame_uid: str = "1.2.826.0.1.3680043.8.498.4242"


@functools.cache
def make_phantom() -> Phantom:
    """GTV ellipsoid (semi-axes 32, 28, 24 mm) on a 1.2 x 1.1 x 2 mm CT with flipped x and y;
    six vertices 19-30 mm apart, two cold spheres, an OAR inside and one cut by the dose grid."""
    shape = (70, 72, 36)
    affine = np.array([[-1.2, 0, 0, 40.0], [0, -1.1, 0, 30.0], [0, 0, 2.0, -35.0], [0, 0, 0, 1]])
    points = world_points(shape, affine)
    centre = np.array([0.0, -10.0, 0.0])
    rel = (points - centre) / np.array([32.0, 28.0, 24.0])
    gtv = np.sum(rel**2, axis=-1) <= 1.0
    offsets = np.array(
        [[-11, -9, -6], [11, -9, -6], [0, 10, -7], [-11, 5, 9], [11, 5, 9], [0, -11, 10]],
        dtype=float,
    )
    vertices = centre + offsets
    cold = centre + np.array([[0.0, -3.0, -8.0], [0.0, 0.0, 6.0]])
    labels = ball_labels(points, vertices, VERTEX_DIAMETER_MM)
    oar_in = np.sum(((points - np.array([0.0, 26.0, 0.0])) / 8.0) ** 2, axis=-1) <= 1.0
    oar_cut = (
        np.sum(((points - np.array([0.0, -10.0, 31.0])) / np.array([10, 10, 6.0])) ** 2, axis=-1)
        <= 1.0
    )
    masks = EvaluationMasks(
        gtv=gtv,
        vertex_labels=labels,
        cold_labels=ball_labels(points, cold, COLD_DIAMETER_MM),
        oars={"Cord": oar_in, "Bowel": oar_cut & ~gtv},
    )
    return Phantom(shape, affine, points, vertices, [11, 12, 13, 14, 15, 16], cold, masks)


def coarse_shifted_affine_ras() -> NDArray[np.float64]:
    """Dose grid A: standard axial orientation (LPS rows +x, columns +y), 2.5 x 2.5 x 3 mm,
    origin off the CT lattice; covers the GTV, not all of the 'Bowel' OAR (z < 30.1)."""
    affine_lps = np.array(
        [[2.5, 0, 0, -39.3], [0, 2.5, 0, -31.2], [0, 0, 3.0, -30.8], [0, 0, 0, 1]]
    )
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps


def swapped_flipped_affine_ras() -> NDArray[np.float64]:
    """Dose grid B: rows along LPS +y, columns along +x (rows and columns swapped), so the
    plane normal is -z and frames run downwards; 2 x 3 x 2.5 mm."""
    affine_lps = np.array(
        [[0, 3.0, 0, -38.9], [2.0, 0, 0, -30.6], [0, 0, -2.5, 30.6], [0, 0, 0, 1]]
    )
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps


DOSE_SHAPES = {"A": (32, 30, 21), "B": (36, 27, 24)}
