"""Regular vertex lattices whose nearest-neighbour distance equals the requested spacing.

Each pattern is a Bravais cell (basis vectors as columns) plus a motif of points inside it,
in a canonical orientation with its close-packed or cubic layers normal to +z:

========  =========================  =================  ============  ===================
pattern   cell                        motif (fractional)  layer step    density (1/S^3)
========  =========================  =================  ============  ===================
``sc``    cube, edge S                0                   S             1
``bcc``   cube, edge 2S/sqrt(3)       0, (1/2,1/2,1/2)    a/2           3 sqrt(3)/4 = 1.30
``fcc``   cube, edge sqrt(2) S        0 + 3 face centres  a/2           sqrt(2) = 1.41
``hcp``   hexagonal a = S,            0, (1/3,1/3,1/2)    c/2           sqrt(2) = 1.41
          c = S sqrt(8/3)
========  =========================  =================  ============  ===================

In every case the true nearest-neighbour distance is S (docs/patterns.md): peers that
call the BCC cube edge "spacing" put vertices 0.87 S apart; here the cell is scaled instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

from ..errors import ParameterError

PatternName = Literal["sc", "bcc", "fcc", "hcp"]
PATTERNS: tuple[str, ...] = get_args(PatternName)

#: Cells are built for a nearest-neighbour distance larger than asked by this relative amount,
#: so that float rounding in rotations and translations (~1e-13 relative) can never put two
#: vertices closer than the requested spacing. 30 mm becomes 30.00000003 mm.
SPACING_GUARD = 1e-9


@dataclass(frozen=True, eq=False)
class LatticePattern:
    """A lattice scaled to a nearest-neighbour distance.

    Attributes
    ----------
    name : str
        One of :data:`PATTERNS`.
    min_spacing_mm : float
        Nearest-neighbour distance in mm (the cells include :data:`SPACING_GUARD`).
    cell_mm : (3, 3) ndarray of float
        Bravais cell vectors as columns, in mm, canonical orientation.
    motif_frac : (m, 3) ndarray of float
        Points of one cell as fractions of the cell vectors.
    layer_step_mm : float
        Distance between adjacent point layers along z (canonical orientation).
    symmetry_deg : float
        Rotation about z that maps the lattice onto itself; orientations are searched in
        ``[0, symmetry_deg)``.
    primitive_mm : (3, 3) ndarray of float
        Primitive translation vectors (columns): every translation that maps the lattice
        onto itself is an integer combination of these, so a translation search over this
        cell sees each distinct placement once (the cubic BCC/FCC cells hold 2 and 4).
    """

    name: str
    min_spacing_mm: float
    cell_mm: NDArray[np.float64]
    motif_frac: NDArray[np.float64]
    layer_step_mm: float
    symmetry_deg: float
    primitive_mm: NDArray[np.float64]

    @property
    def motif_mm(self) -> NDArray[np.float64]:
        """(m, 3) float: motif points in mm."""
        return self.motif_frac @ self.cell_mm.T

    @property
    def density_per_mm3(self) -> float:
        """Vertices per mm^3 of an infinite lattice."""
        return len(self.motif_frac) / abs(float(np.linalg.det(self.cell_mm)))

    def points_in_ball(self, radius_mm: float) -> NDArray[np.float64]:
        """All lattice points (untranslated) within ``radius_mm`` of the origin.

        Returns
        -------
        (n, 3) ndarray of float
            Points in mm, canonical orientation, sorted deterministically.
        """
        # Index range: the cell's smallest height bounds how many cells a ball can span.
        inv = np.linalg.inv(self.cell_mm)
        n_max = np.ceil(radius_mm * np.linalg.norm(inv, axis=1)).astype(int) + 1
        axes = [np.arange(-n, n + 1) for n in n_max]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        frac = (grid[:, None, :] + self.motif_frac[None, :, :]).reshape(-1, 3)
        pts = frac @ self.cell_mm.T
        return pts[np.einsum("ij,ij->i", pts, pts) <= radius_mm**2]

    def stretched_z(self, factor: float) -> LatticePattern:
        """This lattice with every z coordinate multiplied by ``factor`` (>= 1).

        Stretching along one axis by a factor >= 1 never brings two points closer, so the
        nearest-neighbour distance stays >= ``min_spacing_mm``. Used to put layers on CT
        slice planes.
        """
        if factor < 1:
            raise ValueError(f"stretch factor must be >= 1, got {factor}")
        scale = np.diag([1.0, 1.0, factor])
        return LatticePattern(
            self.name,
            self.min_spacing_mm,
            scale @ self.cell_mm,
            self.motif_frac,
            self.layer_step_mm * factor,
            self.symmetry_deg,
            scale @ self.primitive_mm,
        )


def make_pattern(name: str, *, min_spacing_mm: float) -> LatticePattern:
    """Build the named lattice with nearest-neighbour distance ``min_spacing_mm``.

    Parameters
    ----------
    name : {'sc', 'bcc', 'fcc', 'hcp'}
    min_spacing_mm : float
        Centre-to-centre distance of nearest neighbours, mm (> 0).

    Raises
    ------
    ParameterError
        Unknown pattern or non-positive spacing.

    Examples
    --------
    >>> p = make_pattern("bcc", min_spacing_mm=30.0)
    >>> round(float(p.cell_mm[0, 0]), 3)  # cube edge 2S/sqrt(3)
    34.641
    """
    if not np.isfinite(min_spacing_mm) or min_spacing_mm <= 0:
        raise ParameterError(f"spacing must be a positive number of mm, got {min_spacing_mm}")
    s = float(min_spacing_mm) * (1.0 + SPACING_GUARD)
    if name == "sc":
        return LatticePattern(name, s, s * np.eye(3), np.zeros((1, 3)), s, 90.0, s * np.eye(3))
    if name == "bcc":
        a = 2.0 * s / np.sqrt(3.0)
        motif = np.array([[0, 0, 0], [0.5, 0.5, 0.5]], dtype=float)
        prim = a / 2 * np.array([[-1.0, 1, 1], [1, -1, 1], [1, 1, -1]])
        return LatticePattern(name, s, a * np.eye(3), motif, a / 2, 90.0, prim)
    if name == "fcc":
        a = np.sqrt(2.0) * s
        motif = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], dtype=float)
        prim = a / 2 * np.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])
        return LatticePattern(name, s, a * np.eye(3), motif, a / 2, 90.0, prim)
    if name == "hcp":
        c = s * np.sqrt(8.0 / 3.0)
        cell = np.array([[s, s / 2, 0.0], [0.0, s * np.sqrt(3.0) / 2, 0.0], [0.0, 0.0, c]])
        motif = np.array([[0, 0, 0], [1 / 3, 1 / 3, 0.5]], dtype=float)
        return LatticePattern(name, s, cell, motif, c / 2, 60.0, cell)
    raise ParameterError(f"unknown pattern {name!r}; choose one of {', '.join(PATTERNS)}")
