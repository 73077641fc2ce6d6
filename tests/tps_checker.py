"""An independent checker of vertex plans under the TPS surface model (issue 11).

Nothing here imports ``lattice``: the model is rebuilt from the definitions in
docs/surface_model.md and docs/vocabulary.md ("Terms": "GTV surface", "depth", "GTV margin",
"OAR clearance") with numpy, scipy,
scikit-image, nibabel and pydicom only.

The model
---------
A structure (the GTV, or an OAR) is the solid a treatment planning system rebuilds from its
slice contours:

* The *grid frame* is the CT grid scaled to mm: a point with fractional voxel index
  ``(i, j, k)`` has grid coordinates ``u = i*dx, v = j*dy, w = k*dz`` (``dx, dy, dz`` the
  lengths of the affine's columns). For an affine with orthogonal columns (flipped, permuted
  or oblique grids included) this map is an isometry of world space, so every distance can
  be measured in the grid frame. Sheared affines are refused.
* Slice ``k`` is the plane ``w = k*dz``. Its outline is a set of closed polygons in
  ``(u, v)``:

  - for a mask, the marching-squares contours at level 0.5 of that slice
    (:func:`skimage.measure.find_contours` on the slice padded with a frame of zeros, so
    every outline closes); they pass half way between inside and outside voxel centres;
  - for an RTSTRUCT, the ROI's own ``ContourData`` polygons (LPS mm), mapped into the grid
    and assigned to the slice plane they lie on.

  The slice's *region* is the set of points inside an odd number of its polygons (even-odd
  rule; a nested polygon is a hole). Points are classified by the crossing number.
* Each region is extruded from ``w_k - dz/2`` to ``w_k + dz/2`` (its *slab*). The solid is
  the union of these prisms. Slices without an outline, and every slice beyond the array
  (or beyond the contoured range), are empty.

Distances (``q`` the in-plane position of ``p``, ``w`` its slice coordinate)::

    dz_j(w)  = max(0, |w - w_j| - dz/2)                 distance from w to slab j's interval
    d_in_j   = dist(q, boundary of region j) if q in region j else 0
    d_out_j  = 0 if q in region j else dist(q, boundary of region j)

    depth(p) = min_j sqrt(d_in_j^2 + dz_j^2)     (all j, empty slabs have d_in = 0)
    dist(p)  = min_j sqrt(d_out_j^2 + dz_j^2)    (non-empty slabs only; inf if none)

``depth`` is the distance from ``p`` to the complement of the solid (the complement is the
union over j of "outside region j" x "slab j"), ``dist`` the distance to the solid. A point
outside the solid has depth 0. Point-to-segment distances are computed exactly in float64
over all segments of a slab (vectorised, in chunks); the only pruning is by ``dz_j``, which
is exact: a slab with ``dz_j(w) >= current best`` cannot lower the minimum.

Rules checked (``check_plan``), D the vertex diameter::

    depth(centre)         >= gtv_margin_mm + D/2         - 1e-6
    dist_oar(centre)      >= oar_clearance_mm[oar] + D/2 - 1e-6
    depth(centre)         <= gtv_margin_mm + D/2 + shell_width_mm + 1e-6   (mode "shell")

A brute-force vertex count reference (:func:`best_translation_count`) places the textbook
lattices (own generator) axis-aligned to world space at random translations and counts the
points deep enough. It uses a cheap bound from voxel centres that is provably safe for mask
solids (see :meth:`Solid.depth_at_least`), and the exact depth in the uncertain band.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import find_contours

#: Chunk size: points x segments evaluated at once.
_CHUNK_PAIRS = 2_000_000
#: Tolerance of the rules (mm).
TOL_MM = 1e-6
#: A polygon lies "on" a slice plane when its points are within this many slice gaps of it.
PLANE_TOL_SLICES = 1e-3


# -- geometry primitives -------------------------------------------------------------------


def _segments_of(polygons):
    """(m, 2) start and end points of every edge of the closed polygons."""
    starts, ends = [], []
    for poly in polygons:
        poly = np.asarray(poly, dtype=np.float64)
        if len(poly) >= 2 and np.array_equal(poly[0], poly[-1]):
            poly = poly[:-1]
        if len(poly) < 2:
            continue
        starts.append(poly)
        ends.append(np.roll(poly, -1, axis=0))
    if not starts:
        return np.zeros((0, 2)), np.zeros((0, 2))
    return np.concatenate(starts), np.concatenate(ends)


def inside_even_odd(q, a, b):
    """Crossing number test: whether each point ``q`` (n, 2) is inside the polygons whose
    edges run from ``a`` to ``b`` (m, 2), by the even-odd rule. Vectorised, chunked."""
    q = np.asarray(q, dtype=np.float64)
    out = np.zeros(len(q), dtype=bool)
    if len(a) == 0 or len(q) == 0:
        return out
    ax, ay, bx, by = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    straddle_dy = by - ay
    step = max(1, _CHUNK_PAIRS // len(a))
    for s in range(0, len(q), step):
        qx = q[s : s + step, 0:1]
        qy = q[s : s + step, 1:2]
        straddles = (ay > qy) != (by > qy)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = ax + (qy - ay) * (bx - ax) / straddle_dy
        crossings = np.count_nonzero(straddles & (qx < x_cross), axis=1)
        out[s : s + step] = (crossings % 2) == 1
    return out


def distance_to_segments(q, a, b):
    """Exact Euclidean distance from each point ``q`` (n, 2) to the nearest of the segments
    ``a[m] -> b[m]``; inf when there are no segments. Vectorised, chunked."""
    q = np.asarray(q, dtype=np.float64)
    out = np.full(len(q), np.inf)
    if len(a) == 0 or len(q) == 0:
        return out
    ab = b - a
    ab2 = np.einsum("ij,ij->i", ab, ab)
    safe = np.where(ab2 > 0, ab2, 1.0)
    step = max(1, _CHUNK_PAIRS // len(a))
    for s in range(0, len(q), step):
        qa_x = q[s : s + step, 0:1] - a[:, 0]
        qa_y = q[s : s + step, 1:2] - a[:, 1]
        t = (qa_x * ab[:, 0] + qa_y * ab[:, 1]) / safe
        t = np.where(ab2 > 0, np.clip(t, 0.0, 1.0), 0.0)
        dx = qa_x - t * ab[:, 0]
        dy = qa_y - t * ab[:, 1]
        out[s : s + step] = np.sqrt(np.min(dx * dx + dy * dy, axis=1))
    return out


# -- the solid -----------------------------------------------------------------------------


@dataclass
class Slab:
    """One slice's region: polygon edges in grid-frame mm (u, v)."""

    a: np.ndarray
    b: np.ndarray

    @property
    def empty(self) -> bool:
        return len(self.a) == 0


@dataclass
class Solid:
    """A stack of prisms in the grid frame of a (4, 4) voxel-to-RAS ``affine``.

    ``slabs`` maps the slice index k to its :class:`Slab`; every other k is empty.
    ``mask`` (optional) is the boolean voxel mask the outlines came from; it enables the
    fast safe bound of :meth:`depth_at_least`.
    """

    affine: np.ndarray
    slabs: dict
    name: str = ""
    mask: np.ndarray | None = None
    _bound: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.affine = np.asarray(self.affine, dtype=np.float64)
        lin = self.affine[:3, :3]
        self.spacing = np.linalg.norm(lin, axis=0)
        rot = lin / self.spacing
        if np.abs(rot.T @ rot - np.eye(3)).max() > 1e-5:
            raise ValueError(f"affine columns are not orthogonal (sheared grid):\n{lin}")
        self._inv = np.linalg.inv(lin)
        self.dz = float(self.spacing[2])
        self.slabs = {int(k): s for k, s in self.slabs.items() if not s.empty}
        ks = sorted(self.slabs)
        self.k_range = (ks[0], ks[-1]) if ks else None

    # construction ---------------------------------------------------------------------

    @classmethod
    def from_mask(cls, mask, affine, name=""):
        """Outlines by marching squares at 0.5 of each slice ``mask[:, :, k]``."""
        mask = np.asarray(mask).astype(bool)
        if mask.ndim != 3:
            raise ValueError(f"mask must be 3-D, got shape {mask.shape}")
        affine = np.asarray(affine, dtype=np.float64)
        dx, dy = np.linalg.norm(affine[:3, :2], axis=0)
        slabs = {}
        for k in np.flatnonzero(mask.any(axis=(0, 1))):
            padded = np.pad(mask[:, :, k].astype(np.float64), 1)
            contours = find_contours(padded, 0.5)
            polys = [
                np.column_stack(((c[:, 0] - 1.0) * dx, (c[:, 1] - 1.0) * dy)) for c in contours
            ]
            slabs[int(k)] = Slab(*_segments_of(polys))
        return cls(affine, slabs, name=name, mask=mask)

    @classmethod
    def from_polygons_ras(cls, polygons_ras, affine, name=""):
        """Closed polygons given as (n, 3) RAS mm arrays, each on one slice plane."""
        affine = np.asarray(affine, dtype=np.float64)
        lin_inv = np.linalg.inv(affine[:3, :3])
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        per_slice: dict[int, list] = {}
        for poly in polygons_ras:
            poly = np.asarray(poly, dtype=np.float64).reshape(-1, 3)
            ijk = (poly - affine[:3, 3]) @ lin_inv.T
            k = np.rint(ijk[:, 2])
            if np.ptp(k) != 0 or np.abs(ijk[:, 2] - k).max() > PLANE_TOL_SLICES:
                raise ValueError(
                    f"{name}: a contour does not lie on a slice plane "
                    f"(k from {ijk[:, 2].min():.4f} to {ijk[:, 2].max():.4f})"
                )
            per_slice.setdefault(int(k[0]), []).append(ijk[:, :2] * spacing[:2])
        slabs = {k: Slab(*_segments_of(p)) for k, p in per_slice.items()}
        return cls(affine, slabs, name=name)

    @classmethod
    def from_rtstruct(cls, path, roi_name, affine):
        """The ROI's ContourSequence polygons (LPS mm) of an RTSTRUCT file."""
        return cls.from_polygons_ras(
            read_rtstruct_polygons_ras(path, roi_name), affine, name=roi_name
        )

    # coordinates ----------------------------------------------------------------------

    def to_grid(self, points_ras):
        """(n, 3) grid-frame mm (u, v, w) of world points."""
        p = np.atleast_2d(np.asarray(points_ras, dtype=np.float64))
        return ((p - self.affine[:3, 3]) @ self._inv.T) * self.spacing

    def _slab_interval_distance(self, w, j):
        return np.maximum(0.0, np.abs(w - j * self.dz) - self.dz / 2)

    # distances -------------------------------------------------------------------------

    def _sweep(self, g, contribution, cap):
        """min over slabs j of contribution(j, q, dz_j); slabs visited outwards from each
        point's own slab, pruned exactly by dz_j >= current best."""
        n = len(g)
        best = np.full(n, float(cap))
        if n == 0:
            return best
        q, w = g[:, :2], g[:, 2]
        k0 = np.floor(w / self.dz + 0.5).astype(np.int64)
        lo, hi = self.k_range if self.k_range else (0, 0)
        o_max = int(max(np.max(np.abs(k0 - lo)), np.max(np.abs(k0 - hi)))) + 2
        for step in range(0, 2 * o_max + 1):
            o = (step + 1) // 2 * (1 if step % 2 else -1)
            lower = max(0, abs(o) - 1) * self.dz
            active = np.flatnonzero(lower < best)
            if len(active) == 0:
                break
            j_all = k0[active] + o
            for j in np.unique(j_all):
                idx = active[j_all == j]
                dzj = self._slab_interval_distance(w[idx], j)
                keep = dzj < best[idx]
                idx, dzj = idx[keep], dzj[keep]
                if len(idx) == 0:
                    continue
                val = contribution(int(j), q[idx], dzj)
                best[idx] = np.minimum(best[idx], val)
        return best

    def _depth_contribution(self, j, q, dzj):
        slab = self.slabs.get(j)
        if slab is None:
            return dzj  # empty slab: the whole slab is outside
        inside = inside_even_odd(q, slab.a, slab.b)
        val = dzj.copy()
        if inside.any():
            d_in = distance_to_segments(q[inside], slab.a, slab.b)
            val[inside] = np.hypot(d_in, dzj[inside])
        return val

    def _distance_contribution(self, j, q, dzj):
        slab = self.slabs.get(j)
        if slab is None:
            return np.full(len(q), np.inf)
        inside = inside_even_odd(q, slab.a, slab.b)
        val = dzj.copy()
        out = ~inside
        if out.any():
            val[out] = np.hypot(distance_to_segments(q[out], slab.a, slab.b), dzj[out])
        return val

    def depth(self, points_ras, cap=np.inf):
        """Distance from each point to the outside of the solid (0 outside it), exact.

        With a finite ``cap`` the result is ``min(depth, cap)`` (also exact), which needs
        only the slabs within ``cap``.
        """
        g = self.to_grid(points_ras)
        if self.k_range is None:
            return np.zeros(len(g))
        return self._sweep(g, self._depth_contribution, cap)

    def distance(self, points_ras, cap=np.inf):
        """Distance from each point to the solid (0 inside it), exact; inf if empty."""
        g = self.to_grid(points_ras)
        if self.k_range is None:
            return np.full(len(g), np.inf)
        return self._sweep(g, self._distance_contribution, cap)

    def contains(self, points_ras):
        """Whether each point lies in the solid (in slab k's region, k its own slice)."""
        g = self.to_grid(points_ras)
        k0 = np.floor(g[:, 2] / self.dz + 0.5).astype(np.int64)
        out = np.zeros(len(g), dtype=bool)
        for j in np.unique(k0):
            slab = self.slabs.get(int(j))
            if slab is not None:
                sel = k0 == j
                out[sel] = inside_even_odd(g[sel, :2], slab.a, slab.b)
        return out

    # fast decision for many points (mask solids) ---------------------------------------

    def depth_at_least(self, points_ras, threshold):
        """Whether ``depth(p) >= threshold`` for each point: exact result, fast for masks.

        For a mask solid, let E(p) be the distance from p to the nearest *outside* voxel
        centre (voxels beyond the array count as outside). Two bounds hold:

        * ``depth <= E``: an outside centre lies in its own slab at an in-plane grid node
          whose value is 0 < 0.5, i.e. outside that slice's region, so it is a point of the
          complement.
        * ``depth >= E - h``, ``h = sqrt(dx^2 + dy^2 + (dz/2)^2)``: the nearest complement
          point x lies in some slab k, in-plane outside the open region of slice k. The
          marching-squares cell of slice k holding x's in-plane position cannot have four
          inside corners (such a cell lies wholly inside the region, since contours only
          cross cell edges between corners of different values), so one of its corners is
          an outside centre within sqrt(dx^2 + dy^2) in-plane and dz/2 in w of x.

        E is taken from a KD-tree of the outside centres that touch an inside voxel
        (26-neighbourhood). That equals the true E unless p lies in the closed half-voxel
        box of an outside centre (if the nearest outside centre c had no inside neighbour,
        stepping from c one voxel towards p along every axis where p is more than half a
        voxel from c gives a closer outside centre); such a c is a corner of p's voxel-
        centre cell, so when one of the 8 corners is outside, depth <= E <= the cell's
        diagonal, which is below ``threshold`` whenever this shortcut is used.

        Points with ``E < threshold`` are False, ``E - h >= threshold`` True, the rest are
        decided by the exact :meth:`depth` (capped at ``threshold``).
        """
        p = np.atleast_2d(np.asarray(points_ras, dtype=np.float64))
        n = len(p)
        result = np.zeros(n, dtype=bool)
        if self.k_range is None or n == 0:
            return result
        if self.mask is None:
            return self.depth(p, cap=threshold) >= threshold
        b = self._bound_data()
        diag = float(np.linalg.norm(self.spacing))
        if threshold <= diag:
            return self.depth(p, cap=threshold) >= threshold
        ijk = self.to_grid(p) / self.spacing
        # Outside the index box of the mask grown by half a voxel: outside the solid.
        inbox = np.all((ijk > b["lo"] - 0.5) & (ijk < b["hi"] + 0.5), axis=1)
        cand = np.flatnonzero(inbox)
        if len(cand) == 0:
            return result
        base = np.floor(ijk[cand]).astype(np.int64)
        corners_inside = np.ones(len(cand), dtype=bool)
        padded = b["padded"]  # mask padded by 1 voxel of background on every side
        for off in np.ndindex(2, 2, 2):
            c = base + np.array(off) + 1  # index into padded
            ok = np.all((c >= 0) & (c < np.array(padded.shape)), axis=1)
            val = np.zeros(len(c), dtype=bool)
            val[ok] = padded[c[ok, 0], c[ok, 1], c[ok, 2]]
            corners_inside &= val
        cand = cand[corners_inside]
        if len(cand) == 0:
            return result
        e = b["tree"].query(self.to_grid(p[cand]))[0]
        sure = e - b["h"] >= threshold
        result[cand[sure]] = True
        unsure = cand[(e >= threshold) & ~sure]
        if len(unsure):
            result[unsure] = self.depth(p[unsure], cap=threshold) >= threshold
        return result

    def _bound_data(self):
        if not self._bound:
            padded = np.pad(self.mask, 1)
            ring = ndimage.binary_dilation(padded, structure=np.ones((3, 3, 3), bool)) & ~padded
            ijk = np.argwhere(ring).astype(np.float64) - 1.0
            idx = np.argwhere(self.mask)
            dx, dy, dz = self.spacing
            self._bound.update(
                padded=padded,
                tree=cKDTree(ijk * self.spacing),
                lo=idx.min(axis=0).astype(float),
                hi=idx.max(axis=0).astype(float),
                h=float(np.sqrt(dx * dx + dy * dy + (dz / 2) ** 2)),
            )
        return self._bound

    def world_bounds(self):
        """(2, 3) world box (RAS mm) enclosing the solid."""
        if self.mask is not None:
            idx = np.argwhere(self.mask)
            lo, hi = idx.min(0) - 0.5, idx.max(0) + 0.5
        else:
            uv = np.concatenate([s.a for s in self.slabs.values()]) / self.spacing[:2]
            lo = np.r_[uv.min(0), self.k_range[0] - 0.5]
            hi = np.r_[uv.max(0), self.k_range[1] + 0.5]
        corners = np.array(
            [
                [
                    lo[0] if a == 0 else hi[0],
                    lo[1] if b_ == 0 else hi[1],
                    lo[2] if c == 0 else hi[2],
                ]
                for a, b_, c in np.ndindex(2, 2, 2)
            ]
        )
        world = corners @ self.affine[:3, :3].T + self.affine[:3, 3]
        return np.stack([world.min(0), world.max(0)])


# -- file readers (pydicom / nibabel by hand) ----------------------------------------------


def load_mask_solid(path, label=None, name=""):
    """A NIfTI mask (nonzero, or == label) as a :class:`Solid` on its own affine."""
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    mask = (data == label) if label is not None else (data != 0)
    return Solid.from_mask(mask, img.affine, name=name or Path(path).name)


def read_rtstruct_polygons_ras(path, roi_name):
    """Closed planar polygons of ROI ``roi_name`` as (n, 3) RAS mm arrays."""
    import pydicom

    ds = pydicom.dcmread(str(path))
    numbers = [int(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName == roi_name]
    if len(numbers) != 1:
        names = [r.ROIName for r in ds.StructureSetROISequence]
        raise KeyError(f"ROI {roi_name!r} not (uniquely) in {path}: {names}")
    polys = []
    for rc in ds.ROIContourSequence:
        if int(rc.ReferencedROINumber) != numbers[0]:
            continue
        for c in getattr(rc, "ContourSequence", []):
            pts = np.asarray([float(x) for x in c.ContourData], dtype=np.float64).reshape(-1, 3)
            if len(pts) < 3:
                continue
            polys.append(pts * np.array([-1.0, -1.0, 1.0]))  # LPS -> RAS
    return polys


def ct_dicom_affine(folder):
    """(4, 4) voxel-to-RAS affine of a CT series folder (i along a row, j down a column,
    k along the slice normal in increasing position), read with pydicom by hand."""
    import pydicom

    slices = []
    for f in sorted(Path(folder).iterdir()):
        if not f.is_file():
            continue
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not a DICOM file
            continue
        if "ImagePositionPatient" not in ds:
            continue
        slices.append(ds)
    iop = np.array([float(x) for x in slices[0].ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    pos = np.array([[float(x) for x in s.ImagePositionPatient] for s in slices])
    order = np.argsort(pos @ normal)
    pos = pos[order]
    gaps = np.diff(pos @ normal)
    if len(gaps) and np.ptp(gaps) > 1e-3:
        raise ValueError(f"non-uniform slice gaps in {folder}: {gaps.min()}..{gaps.max()}")
    ps = [float(x) for x in slices[0].PixelSpacing]  # (row spacing, column spacing)
    lps = np.eye(4)
    lps[:3, 0] = row * ps[1]
    lps[:3, 1] = col * ps[0]
    lps[:3, 2] = (pos[-1] - pos[0]) / (len(pos) - 1) if len(pos) > 1 else normal
    lps[:3, 3] = pos[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


# -- plan check ----------------------------------------------------------------------------


@dataclass
class PlanCheck:
    """Result of :func:`check_plan`."""

    names: list
    centers_ras: np.ndarray
    diameter_mm: float
    required_depth_mm: float
    depth_mm: np.ndarray
    oar_required_mm: dict
    oar_distance_mm: dict
    violations: list
    shell_max_depth_mm: float | None = None

    @property
    def n_short(self) -> int:
        return int(np.count_nonzero(self.depth_mm < self.required_depth_mm - TOL_MM))

    def summary(self) -> str:
        n = len(self.depth_mm)
        if n == 0:
            return "no vertices"
        text = (
            f"{self.n_short} of {n} vertices short of depth "
            f"{self.required_depth_mm:.3f} mm; worst depth {self.depth_mm.min():.3f} mm"
        )
        for oar, d in self.oar_distance_mm.items():
            need = self.oar_required_mm[oar]
            short = int(np.count_nonzero(d < need - TOL_MM))
            text += f"; OAR {oar}: {short} of {n} closer than {need:.3f} mm, worst {d.min():.3f} mm"
        if self.shell_max_depth_mm is not None:
            deep = int(np.count_nonzero(self.depth_mm > self.shell_max_depth_mm + TOL_MM))
            text += f"; shell: {deep} deeper than {self.shell_max_depth_mm:.3f} mm"
        return text


def solids_of_plan(plan):
    """(GTV solid, {oar name: solid}) rebuilt from the plan's recorded input files."""
    inputs = plan["inputs"]
    oar_entries = inputs.get("oars") or []
    if inputs.get("rtstruct"):
        rs = inputs["rtstruct"]["path"]
        affine = ct_dicom_affine(inputs["ct"]["dicom_folder"])
        gtv = Solid.from_rtstruct(rs, inputs["gtv"]["roi"], affine)
        oars = {}
        for e in oar_entries:
            roi = e.get("roi") or e.get("name")
            oars[e.get("name", roi)] = Solid.from_rtstruct(rs, roi, affine)
        return gtv, oars
    gtv = load_mask_solid(inputs["gtv"]["path"], inputs["gtv"].get("label"), name="GTV")
    oars = {}
    for e in oar_entries:
        oars[e["name"]] = load_mask_solid(e["path"], e.get("label"), name=e["name"])
    return gtv, oars


def check_plan(plan_json, *, solids=None):
    """Measure every vertex of a plan.json under the surface model.

    ``plan_json`` is a path to plan.json (or to its folder) or the parsed dict. ``solids``
    optionally overrides the structures: ``(gtv_solid, {oar_name: solid})``.
    """
    if isinstance(plan_json, dict):
        plan = plan_json
    else:
        path = Path(plan_json)
        if path.is_dir():
            path = path / "plan.json"
        plan = json.loads(path.read_text())
    gtv, oars = solids if solids is not None else solids_of_plan(plan)
    par = plan["parameters"]
    d = float(par["diameter_mm"])
    margin = float(par["gtv_margin_mm"])
    clearance = {k: float(v) for k, v in (par.get("oar_clearance_mm") or {}).items()}
    verts = plan["vertices"]
    names = [v.get("name", str(i + 1)) for i, v in enumerate(verts)]
    centers = np.array([v["center_ras_mm"] for v in verts], dtype=np.float64).reshape(-1, 3)
    need = margin + d / 2
    depth = gtv.depth(centers)
    violations = []
    for name, dep in zip(names, depth):
        if dep < need - TOL_MM:
            violations.append(
                f"{name}: depth {dep:.4f} mm < {need:.4f} mm (short by {need - dep:.4f} mm)"
            )
    shell_max = None
    if par.get("mode") == "shell":
        width = par.get("shell_width_mm")
        width = d / 2 if width is None else float(width)
        shell_max = need + width
        for name, dep in zip(names, depth):
            if dep > shell_max + TOL_MM:
                violations.append(f"{name}: depth {dep:.4f} mm > shell limit {shell_max:.4f} mm")
    oar_dist, oar_need = {}, {}
    for oname, solid in oars.items():
        if oname not in clearance:
            raise KeyError(f"no clearance recorded for OAR {oname!r}: {clearance}")
        req = clearance[oname] + d / 2
        dist = solid.distance(centers)
        oar_dist[oname], oar_need[oname] = dist, req
        for name, dd in zip(names, dist):
            if dd < req - TOL_MM:
                violations.append(
                    f"{name}: {oname} distance {dd:.4f} mm < {req:.4f} mm "
                    f"(short by {req - dd:.4f} mm)"
                )
    return PlanCheck(names, centers, d, need, depth, oar_need, oar_dist, violations, shell_max)


# -- textbook lattices and the brute-force count reference ---------------------------------


def lattice_cell(pattern, spacing):
    """(cell (3, 3) columns, motif (m, 3) fractional) with nearest-neighbour distance
    ``spacing``, layers normal to +z (world axes, no rotation)."""
    s = float(spacing)
    if pattern == "sc":
        return s * np.eye(3), np.zeros((1, 3))
    if pattern == "bcc":
        return 2 * s / np.sqrt(3) * np.eye(3), np.array([[0, 0, 0], [0.5, 0.5, 0.5]])
    if pattern == "fcc":
        return np.sqrt(2) * s * np.eye(3), np.array(
            [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
        )
    if pattern == "hcp":
        c = s * np.sqrt(8 / 3)
        cell = np.array([[s, s / 2, 0], [0, s * np.sqrt(3) / 2, 0], [0, 0, c]])
        return cell, np.array([[0, 0, 0], [1 / 3, 1 / 3, 0.5]])
    raise ValueError(pattern)


def lattice_points_covering(pattern, spacing, lo, hi):
    """Untranslated lattice points covering the box [lo - cell, hi + cell] (world mm)."""
    cell, motif = lattice_cell(pattern, spacing)
    inv = np.linalg.inv(cell)
    corners = np.array(
        [
            [lo[0] if a == 0 else hi[0], lo[1] if b == 0 else hi[1], lo[2] if c == 0 else hi[2]]
            for a, b, c in np.ndindex(2, 2, 2)
        ]
    )
    frac = corners @ inv.T
    f_lo = np.floor(frac.min(0)) - 2
    f_hi = np.ceil(frac.max(0)) + 2
    axes = [np.arange(f_lo[i], f_hi[i] + 1) for i in range(3)]
    idx = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    pts = (idx[:, None, :] + motif[None]).reshape(-1, 3) @ cell.T
    return pts, cell


def best_translation_count(
    gtv, pattern, *, spacing, diameter, margin, oars=(), n_translations=1500, seed=0
):
    """Best vertex count over random translations (uniform in one unit cell, fixed seed) of
    the unrotated lattice, counting points with depth >= margin + D/2 (and distance >=
    clearance + D/2 to every ``(oar_solid, clearance)``). Returns (best, counts array)."""
    need = margin + diameter / 2
    box = gtv.world_bounds()
    base, cell = lattice_points_covering(pattern, spacing, box[0], box[1])
    rng = np.random.default_rng(seed)
    shifts = rng.random((n_translations, 3)) @ cell.T
    # Keep base points that can land in the box for some shift in one cell.
    ext = np.abs(cell).sum(axis=1)
    keep = np.all((base >= box[0] - ext - 1) & (base <= box[1] + 1), axis=1)
    base = base[keep]
    pts = (shifts[:, None, :] + base[None]).reshape(-1, 3)
    inbox = np.all((pts > box[0]) & (pts < box[1]), axis=1)
    ok = np.zeros(len(pts), dtype=bool)
    sel = np.flatnonzero(inbox)
    ok[sel] = gtv.depth_at_least(pts[sel], need)
    for solid, clearance in oars:
        sel = np.flatnonzero(ok)
        req = clearance + diameter / 2
        ok[sel] = solid.distance(pts[sel], cap=req) >= req
    counts = ok.reshape(n_translations, -1).sum(axis=1)
    return int(counts.max()), counts
