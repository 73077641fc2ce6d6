"""plastimatch (Debian package ``plastimatch``) as the third-party reader of rtstruct.dcm.

The sample case is planned from NIfTI (so with the derived CT of ``ct_dicom/``), and
plastimatch rasterises the structure set onto that CT. Its masks must match what lattice
wrote as NIfTI:

- each vertex ROI ``VTX_nn`` within one voxel of label nn of ``vertices.nii.gz``: every
  voxel in one mask and not the other is a 26-neighbour of the other mask, and the
  centroids are less than a voxel apart on every axis;
- ``LATTICE_TARGET``: Dice >= 0.99 against ``lattice_target.nii.gz``;
- ``LATTICE_VALLEY`` written with ``--valley-contours keyhole``, read with plastimatch's
  default settings (contours OR-ed): within 1 % (symmetric difference / volume) of the GTV
  minus the vertices. Written with holes (the default, for Eclipse and RayStation), the
  same reader fills the holes and returns the whole GTV; with ``--xor-contours`` it reads
  them as holes.

The masks are read from plastimatch's NRRD files with a reader of this file's own.
"""

from __future__ import annotations

import functools
import gzip
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_helpers import run_redirected as run
from scipy import ndimage

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "STS_001"

pytestmark = pytest.mark.skipif(
    shutil.which("plastimatch") is None,
    reason="plastimatch (Debian package plastimatch) is not installed",
)


def read_nrrd(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(array indexed [i, j, k], 4x4 index -> LPS mm) of a NRRD file (raw or gzip)."""
    data = path.read_bytes()
    split = data.index(b"\n\n")
    fields = {}
    for line in data[:split].decode("ascii").splitlines()[1:]:
        if ": " in line and not line.startswith("#"):
            key, value = line.split(": ", 1)
            fields[key.strip()] = value.strip()
    assert fields["space"] == "left-posterior-superior", fields
    sizes = [int(v) for v in fields["sizes"].split()]
    dtype = {
        "unsigned char": np.uint8,
        "uchar": np.uint8,
        "short": np.int16,
        "unsigned short": np.uint16,
        "float": np.float32,
    }[fields["type"]]
    body = data[split + 2 :]
    if fields["encoding"] == "gzip":
        body = gzip.decompress(body)
    array = np.frombuffer(body, dtype=dtype).reshape(sizes[::-1]).transpose(2, 1, 0)
    directions = [
        [float(x) for x in d.strip("()").split(",")] for d in fields["space directions"].split()
    ]
    affine = np.eye(4)
    affine[:3, :3] = np.array(directions).T
    affine[:3, 3] = [float(x) for x in fields["space origin"].strip("()").split(",")]
    return array, affine


def onto(array: np.ndarray, lps_affine: np.ndarray, shape, ras_affine) -> np.ndarray:
    """A mask on another grid with the same voxel centres (any axis order or direction)."""
    idx, keep = _index_map(array.shape, lps_affine.tobytes(), tuple(shape), ras_affine.tobytes())
    out = np.zeros(shape, dtype=bool)
    out[idx] = array.reshape(-1)[keep] > 0
    assert not np.any(array.reshape(-1)[~keep])
    return out


@functools.lru_cache(maxsize=4)
def _index_map(shape, lps_bytes, target_shape, ras_bytes):
    lps_affine = np.frombuffer(lps_bytes).reshape(4, 4)
    ras_affine = np.frombuffer(ras_bytes).reshape(4, 4)
    ijk = np.indices(shape).reshape(3, -1)
    lps = lps_affine[:3, :3] @ ijk + lps_affine[:3, 3:4]
    ras = lps * np.array([[-1.0], [-1.0], [1.0]])
    inverse = np.linalg.inv(ras_affine)
    target = inverse[:3, :3] @ ras + inverse[:3, 3:4]
    rounded = np.rint(target)
    assert np.abs(target - rounded).max() < 1e-3  # the same voxel centres
    idx = rounded.astype(int)
    keep = np.all((idx >= 0) & (idx < np.array(target_shape)[:, None]), axis=0)
    return tuple(idx[:, keep]), keep


def plastimatch_masks(plan_dir: Path, out: Path, *extra: str) -> dict[str, np.ndarray]:
    """Every ROI of ``plan_dir/rtstruct.dcm`` rasterised by plastimatch on ct_dicom/, as
    boolean arrays on the NIfTI grid of the plan."""
    cmd = [
        "plastimatch",
        "convert",
        "--input",
        str(plan_dir / "rtstruct.dcm"),
        "--referenced-ct",
        str(plan_dir / "ct_dicom"),
        "--output-prefix",
        str(out),
        "--prefix-format",
        "nrrd",
        *extra,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    ref = nib.load(plan_dir / "vertices.nii.gz")
    masks = {}
    for path in sorted(out.glob("*.nrrd")):
        array, affine = read_nrrd(path)
        masks[path.stem] = onto(array, affine, ref.shape, ref.affine)
    return masks


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plastimatch")
    plans = {}
    for mode in ("keyhole", "holes"):
        plans[mode] = folder / mode
        code, _, err = run(
            [
                "plan",
                "--ct",
                SAMPLE / "ct.nii.gz",
                "--gtv",
                SAMPLE / "gtv.nii.gz",
                "--out",
                plans[mode],
                "--no-picture",
                "--mesh-format",
                "none",
                "--valley-contours",
                mode,
            ]
        )
        assert code == 0, err
    masks = {
        "keyhole": plastimatch_masks(plans["keyhole"], folder / "pm_keyhole"),
        "holes": plastimatch_masks(plans["holes"], folder / "pm_holes"),
        "holes_xor": plastimatch_masks(plans["holes"], folder / "pm_xor", "--xor-contours"),
    }
    img = nib.load(plans["keyhole"] / "vertices.nii.gz")
    return {
        "plans": plans,
        "masks": masks,
        "labels": np.asarray(img.dataobj),
        "voxel_mm": np.array(img.header.get_zooms()[:3], dtype=float),
        "gtv": np.asarray(nib.load(SAMPLE / "gtv.nii.gz").dataobj) > 0,
        "target": np.asarray(nib.load(plans["keyhole"] / "lattice_target.nii.gz").dataobj) > 0,
    }


def test_each_vertex_within_one_voxel(planned):
    labels = planned["labels"]
    masks = planned["masks"]["keyhole"]
    n = int(labels.max())
    assert n >= 3 and all(f"VTX_{i:02d}" in masks for i in range(1, n + 1))
    cube = np.ones((3, 3, 3), dtype=bool)
    differing = 0
    for i in range(1, n + 1):
        got, ref = masks[f"VTX_{i:02d}"], labels == i
        assert got.any() and ref.any()
        lo = np.maximum(np.argwhere(got | ref).min(axis=0) - 2, 0)
        box = tuple(slice(a, b + 3) for a, b in zip(lo, np.argwhere(got | ref).max(axis=0)))
        assert got[box].sum() == got.sum() and ref[box].sum() == ref.sum()
        got, ref = got[box], ref[box]
        # Every voxel of one mask lies in the other or touches it (26-neighbourhood).
        assert not np.any(got & ~ndimage.binary_dilation(ref, cube)), i
        assert not np.any(ref & ~ndimage.binary_dilation(got, cube)), i
        shift_vox = np.abs(np.argwhere(got).mean(axis=0) - np.argwhere(ref).mean(axis=0))
        assert np.all(shift_vox < 1.0), (i, shift_vox)
        assert abs(int(got.sum()) - int(ref.sum())) <= 0.02 * ref.sum(), i
        differing += int((got ^ ref).sum())
    # Both rasterise circles at voxel centres: nearly voxel-exact in practice.
    assert differing <= n * 5, differing


def test_lattice_target_dice(planned):
    got, ref = planned["masks"]["keyhole"]["LATTICE_TARGET"], planned["target"]
    dice = 2 * (got & ref).sum() / (got.sum() + ref.sum())
    assert dice >= 0.99, dice
    gtv = planned["masks"]["keyhole"]["GTV"]
    assert 2 * (gtv & planned["gtv"]).sum() / (gtv.sum() + planned["gtv"].sum()) >= 0.99


def valley_error(got: np.ndarray, planned: dict) -> float:
    """Volume of the symmetric difference / volume of GTV minus the vertices."""
    truth = planned["gtv"] & (planned["labels"] == 0)
    return float((got ^ truth).sum() / truth.sum())


def test_keyhole_valley_read_with_default_settings(planned):
    assert valley_error(planned["masks"]["keyhole"]["LATTICE_VALLEY"], planned) <= 0.01


def test_holes_valley_is_the_whole_gtv_by_default(planned):
    """The defect --valley-contours keyhole works around: plastimatch ORs the contours of a
    slice, so the valley written with holes comes back as the GTV; --xor-contours reads the
    holes."""
    valley = planned["masks"]["holes"]["LATTICE_VALLEY"]
    vertex_fraction = (planned["labels"] > 0).sum() / planned["gtv"].sum()
    assert vertex_fraction > 0.02
    assert valley_error(valley, planned) >= 0.9 * vertex_fraction
    assert (valley ^ planned["gtv"]).sum() <= 0.01 * planned["gtv"].sum()
    assert valley_error(planned["masks"]["holes_xor"]["LATTICE_VALLEY"], planned) <= 0.01
