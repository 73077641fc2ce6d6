"""The SCART treatment volume: ``lattice.analysis.stv.contract_gtv`` and the ``lattice scart``
command.

Geometry is checked against analytic spheres (radius of the STV from the world positions of
its voxel centres, not from lattice's depth map), against an independent exact EDT
(``scipy.ndimage.distance_transform_edt`` on a padded array) and against a brute-force search
over every possible margin for the fraction option. The CLI is driven through a parser built
here (``lattice_cli.main.build_parser`` does not include ``scart`` until the lead wires it),
with the same error handling as ``lattice_cli.main.main``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from lattice.analysis.stv import FRACTION_TOLERANCE, StvResult, contract_gtv
from lattice.errors import (
    GridMismatchError,
    InputFileError,
    LatticeError,
    MaskError,
    OutputExistsError,
    OutputWriteError,
    ParameterError,
)
from lattice.geometry.margins import erode_mm
from lattice.volume import Volume

#: Sphere GTV: centre (RAS+ mm, off every grid's voxel centres) and radius.
CENTER_RAS_MM = np.array([-11.3, 24.6, 40.9])
RADIUS_MM = 20.0
#: (affine kind, shape, voxel size mm): CT-like anisotropic slices, and an oblique grid.
GRIDS = {
    "anisotropic": ("identity-like", (60, 56, 24), (0.8, 0.9, 2.0)),
    "oblique": ("oblique", (50, 44, 34), (1.0, 1.2, 1.5)),
}
FRACTIONS = (0.1, 0.25, 0.5, 0.75)


def world_mm(shape, affine) -> np.ndarray:
    """(I, J, K, 3) RAS+ mm of every voxel centre, from the affine alone."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def oracle_depth_mm(mask: np.ndarray, voxel_size_mm) -> np.ndarray:
    """Exact depth with scipy's EDT, the border made background by padding."""
    padded = np.pad(mask, 1)
    return ndimage.distance_transform_edt(padded, sampling=voxel_size_mm)[1:-1, 1:-1, 1:-1]


@pytest.fixture(scope="module", params=sorted(GRIDS))
def sphere(request, make_volume, ellipsoid_mask):
    """(GTV Volume, distance of every voxel centre from the sphere centre in mm)."""
    kind, shape, vox = GRIDS[request.param]
    grid = make_volume(shape, vox, kind)
    gtv = ellipsoid_mask(grid, CENTER_RAS_MM, RADIUS_MM)
    rho = np.linalg.norm(world_mm(shape, grid.affine) - CENTER_RAS_MM, axis=-1)
    return grid.with_array(gtv), rho


@pytest.fixture(scope="module")
def lobulated(make_volume, ellipsoid_mask):
    """A GTV of three overlapping ellipsoids (a lobulated sarcoma-like shape), LPS grid."""
    grid = make_volume((64, 60, 30), (0.9, 0.9, 2.5), "lps")
    c = CENTER_RAS_MM
    mask = (
        ellipsoid_mask(grid, c, (18.0, 14.0, 22.0))
        | ellipsoid_mask(grid, c + [16.0, 6.0, -8.0], (11.0, 9.0, 14.0))
        | ellipsoid_mask(grid, c + [-10.0, -13.0, 12.0], (9.0, 8.0, 12.0))
    )
    return grid.with_array(mask)


# -- margin: the analytic sphere ---------------------------------------------------------------


@pytest.mark.parametrize("margin_mm", [3.0, 6.0, 10.0, 14.5])
def test_margin_shrinks_a_sphere_to_radius_r_minus_margin(sphere, margin_mm):
    gtv, rho = sphere
    stv = contract_gtv(gtv, margin_mm=margin_mm).stv.array
    expected = RADIUS_MM - margin_mm
    # Every voxel nearer the centre than r - m is more than m from every outside voxel centre,
    # so it is kept: the inner radius is exact up to the grid sampling.
    inner = rho[gtv.array & ~stv].min()
    # The discrete surface (nearest voxel centres outside the GTV) lies up to about half a
    # voxel beyond the true sphere, so depths are overestimated by that much and the STV
    # reaches up to half the largest voxel edge beyond r - m (measured: <= 0.6 mm).
    outer = rho[stv].max()
    half_voxel = 0.5 * gtv.voxel_size_mm.max()
    assert expected - 0.1 <= inner
    assert expected <= outer <= expected + half_voxel


@pytest.mark.parametrize("margin_mm", [0.0, 4.0, 11.0])
def test_margin_stv_is_the_exact_euclidean_erosion(sphere, margin_mm):
    gtv, _ = sphere
    stv = contract_gtv(gtv, margin_mm=margin_mm).stv
    depth = oracle_depth_mm(gtv.array, gtv.voxel_size_mm)
    assert stv.array.dtype == bool
    np.testing.assert_array_equal(stv.affine, gtv.affine)
    np.testing.assert_array_equal(stv.array, depth > margin_mm)
    np.testing.assert_array_equal(
        stv.array, erode_mm(gtv.array, margin_mm, voxel_size_mm=gtv.voxel_size_mm)
    )


def test_border_of_the_array_counts_as_outside(make_volume):
    # A box GTV filling the whole array: without the border as background nothing would erode.
    vol = make_volume((20, 20, 10), (1.0, 1.0, 2.0), "oblique")
    res = contract_gtv(vol.with_array(np.ones(vol.shape, dtype=bool)), margin_mm=3.0)
    depth = oracle_depth_mm(np.ones(vol.shape, dtype=bool), vol.voxel_size_mm)
    np.testing.assert_array_equal(res.stv.array, depth > 3.0)
    assert not res.stv.array[0].any() and not res.stv.array[:, :, 0].any()
    # Margin 0 keeps everything; the voxels on the array border are STV surface, one voxel
    # step (the smallest, 1 mm) below the GTV surface.
    whole = contract_gtv(vol.with_array(np.ones(vol.shape, dtype=bool)), margin_mm=0.0)
    assert whole.stv.array.all()
    assert whole.surface_distance_min_mm == pytest.approx(1.0)


@pytest.mark.parametrize("margin_mm", [2.0, 7.5])
def test_surface_distance_equals_the_margin_within_a_voxel(sphere, margin_mm):
    gtv, _ = sphere
    res = contract_gtv(gtv, margin_mm=margin_mm)
    assert margin_mm < res.surface_distance_min_mm <= res.surface_distance_max_mm
    assert res.surface_distance_max_mm <= margin_mm + gtv.voxel_size_mm.max() + 1e-4
    # Oracle: depth of the STV voxels with a face neighbour outside the STV.
    stv = res.stv.array
    boundary = stv & ~ndimage.binary_erosion(stv, border_value=0)
    depth = oracle_depth_mm(gtv.array, gtv.voxel_size_mm)[boundary]
    assert res.surface_distance_min_mm == pytest.approx(depth.min(), abs=1e-4)
    assert res.surface_distance_max_mm == pytest.approx(depth.max(), abs=1e-4)


def test_volumes_and_centroids_of_a_sphere(sphere):
    gtv, _ = sphere
    res = contract_gtv(gtv, margin_mm=8.0)
    voxel_cc = abs(np.linalg.det(gtv.affine[:3, :3])) / 1000.0
    assert res.gtv_cc == pytest.approx(gtv.array.sum() * voxel_cc)
    assert res.stv_cc == pytest.approx(res.stv.array.sum() * voxel_cc)
    assert res.fraction == pytest.approx(res.stv_cc / res.gtv_cc)
    # A sphere's voxelisation is 4/3 pi r^3 within a few per cent at these voxel sizes.
    assert res.gtv_cc == pytest.approx(4 / 3 * math.pi * RADIUS_MM**3 / 1000, rel=0.03)
    for centroid, mask in (
        (res.centroid_gtv_ras_mm, gtv.array),
        (res.centroid_stv_ras_mm, res.stv.array),
    ):
        oracle = gtv.ijk_to_ras(np.argwhere(mask)).mean(axis=0)
        np.testing.assert_allclose(centroid, oracle, atol=1e-9)
        # Symmetric shape: the centroid is the sphere centre up to the voxelisation.
        np.testing.assert_allclose(centroid, CENTER_RAS_MM, atol=0.3)
    assert res.centroid_shift_mm < 0.3
    assert res.n_components == 1 and res.warnings == ()


def test_result_does_not_depend_on_array_storage_order(sphere):
    """Flipping and permuting the array with the matching affine changes nothing physical."""
    gtv, _ = sphere
    perm = np.eye(4)[[2, 0, 1, 3]]  # new index (k, i, j) -> old (i, j, k)
    flip = np.diag([1.0, -1.0, 1.0, 1.0])
    flip[1, 3] = gtv.shape[1] - 1
    new_to_old = flip @ perm.T  # new index -> old index
    array = np.flip(gtv.array, axis=1).transpose(2, 0, 1)
    moved = Volume(array, gtv.affine @ new_to_old)
    a = contract_gtv(gtv, fraction=0.3)
    b = contract_gtv(moved, fraction=0.3)
    assert a.margin_mm == pytest.approx(b.margin_mm, abs=1e-4)
    assert a.stv_cc == pytest.approx(b.stv_cc)
    np.testing.assert_allclose(a.centroid_stv_ras_mm, b.centroid_stv_ras_mm, atol=1e-9)
    np.testing.assert_array_equal(np.flip(a.stv.array, axis=1).transpose(2, 0, 1), b.stv.array)


# -- fraction ----------------------------------------------------------------------------------


def brute_force_best_count(gtv: Volume, fraction: float) -> tuple[int, np.ndarray]:
    """Voxel count of the STV closest to fraction x GTV over every possible margin."""
    depth = oracle_depth_mm(gtv.array, gtv.voxel_size_mm)
    levels = np.unique(depth[gtv.array])[:-1]  # the deepest level would keep nothing
    counts = np.array([(depth > m).sum() for m in levels])
    return int(counts[np.argmin(np.abs(counts - fraction * gtv.array.sum()))]), levels


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_fraction_of_a_sphere_is_met_within_tolerance(sphere, fraction):
    gtv, _ = sphere
    res = contract_gtv(gtv, fraction=fraction)
    assert res.method == "fraction" and res.fraction_requested == fraction
    assert abs(res.fraction / fraction - 1) <= FRACTION_TOLERANCE
    assert res.warnings == ()
    best, _ = brute_force_best_count(gtv, fraction)
    assert res.stv.array.sum() == best  # no margin comes closer
    # The reported margin reproduces the STV.
    again = contract_gtv(gtv, margin_mm=res.margin_mm)
    np.testing.assert_array_equal(again.stv.array, res.stv.array)


def test_fraction_margin_of_a_sphere_is_analytic(sphere):
    """STV = f x GTV for a ball means radius r f^(1/3), i.e. margin r (1 - f^(1/3))."""
    gtv, _ = sphere
    for fraction in FRACTIONS:
        res = contract_gtv(gtv, fraction=fraction)
        expected = RADIUS_MM * (1 - fraction ** (1 / 3))
        # Depths overestimate the distance to the true surface by up to half a voxel (see
        # test_margin_shrinks_a_sphere_to_radius_r_minus_margin).
        assert abs(res.margin_mm - expected) <= 0.5 * gtv.voxel_size_mm.max() + 0.1


@pytest.mark.parametrize("fraction", (0.1, 0.3, 0.5, 0.7))
def test_fraction_of_a_lobulated_gtv_is_met_within_tolerance(lobulated, fraction):
    res = contract_gtv(lobulated, fraction=fraction)
    assert abs(res.fraction / fraction - 1) <= FRACTION_TOLERANCE
    best, _ = brute_force_best_count(lobulated, fraction)
    assert res.stv.array.sum() == best
    assert not (res.stv.array & ~lobulated.array).any()


def test_smaller_fractions_are_deeper_cores(lobulated):
    """Contraction keeps the core: each smaller STV lies inside the larger ones."""
    results = [contract_gtv(lobulated, fraction=f) for f in (0.7, 0.5, 0.3, 0.1)]
    for big, small in zip(results, results[1:]):
        assert small.margin_mm > big.margin_mm
        assert not (small.stv.array & ~big.stv.array).any()


@pytest.mark.slow
def test_fraction_on_the_real_sarcoma_sts_001(shared_data):
    from lattice.io.nifti import load_mask

    path = shared_data / "STS_001" / "gtv.nii.gz"
    if not path.exists():
        pytest.skip("STS_001 not present")
    gtv = load_mask(path)
    case = json.loads((shared_data / "STS_001" / "case.json").read_text())
    margins = []
    for fraction in (0.1, 0.3, 0.5):
        res = contract_gtv(gtv, fraction=fraction)
        assert abs(res.fraction / fraction - 1) <= FRACTION_TOLERANCE
        assert res.gtv_cc == pytest.approx(case["gtv_cc"], abs=0.01)
        assert res.warnings == ()
        margins.append(res.margin_mm)
    assert margins[0] > margins[1] > margins[2] > 0
    np.testing.assert_allclose(res.centroid_gtv_ras_mm, case["gtv_centroid_ras_mm"], atol=0.06)


# -- refusals ----------------------------------------------------------------------------------


def test_a_margin_that_leaves_nothing_names_the_maximal_depth(sphere):
    gtv, _ = sphere
    max_depth = oracle_depth_mm(gtv.array, gtv.voxel_size_mm).max()
    for margin_mm in (max_depth, max_depth + 0.01, 100.0):
        with pytest.raises(ParameterError, match="leaves nothing") as info:
            contract_gtv(gtv, margin_mm=margin_mm)
        assert isinstance(info.value, ValueError) and info.value.exit_code == 2
        assert f"{max_depth:.3f} mm" in str(info.value)
    # Just below the maximal depth the deepest voxels remain.
    res = contract_gtv(gtv, margin_mm=max_depth - 0.01)
    assert res.stv.array.sum() >= 1
    assert res.gtv_max_depth_mm == pytest.approx(max_depth, abs=1e-4)


def test_a_gtv_too_thin_to_contract_by_fraction_is_refused(make_volume):
    vol = make_volume((8, 8, 8), (1.0, 1.0, 1.0))
    one = np.zeros(vol.shape, dtype=bool)
    one[4, 4, 4] = True
    with pytest.raises(ParameterError, match=r"1\.000 mm"):
        contract_gtv(vol.with_array(one), fraction=0.5)


@pytest.mark.parametrize(
    "margin_mm, fraction",
    [
        (None, None),
        (5.0, 0.3),
        (-1.0, None),
        (math.nan, None),
        (math.inf, None),
        ("5 mm", None),
        (True, None),
        (None, 0.0),
        (None, 1.0),
        (None, -0.2),
        (None, 1.5),
        (None, math.nan),
    ],
)
def test_nonsense_parameters_are_refused(sphere, margin_mm, fraction):
    gtv, _ = sphere
    with pytest.raises(ParameterError) as info:
        contract_gtv(gtv, margin_mm=margin_mm, fraction=fraction)
    assert isinstance(info.value, ValueError) and info.value.exit_code == 2


def test_an_empty_gtv_is_refused(make_volume):
    vol = make_volume((8, 8, 8), (1.0, 1.0, 1.0))
    with pytest.raises(MaskError):
        contract_gtv(vol.with_array(np.zeros(vol.shape, dtype=bool)), margin_mm=1.0)


def test_integer_masks_are_accepted(sphere):
    gtv, _ = sphere
    a = contract_gtv(gtv, margin_mm=5.0)
    b = contract_gtv(gtv.with_array(gtv.array.astype(np.uint8) * 3), margin_mm=5.0)
    np.testing.assert_array_equal(a.stv.array, b.stv.array)


def test_a_split_core_is_counted_and_reported(make_volume, ellipsoid_mask):
    """Two balls joined by a thin neck: a margin wider than the neck leaves two pieces."""
    vol = make_volume((70, 30, 30), (1.0, 1.0, 1.0))
    c = np.array(CENTER_RAS_MM)
    mask = (
        ellipsoid_mask(vol, c - [18, 0, 0], 12.0)
        | ellipsoid_mask(vol, c + [18, 0, 0], 12.0)
        | ellipsoid_mask(vol, c, (20.0, 3.0, 3.0))
    )
    res = contract_gtv(vol.with_array(mask), margin_mm=5.0)
    assert res.n_components == 2
    assert any("2 separate pieces" in w for w in res.warnings)


def test_to_dict_is_json_ready_with_units_in_names(sphere):
    gtv, _ = sphere
    res = contract_gtv(gtv, fraction=0.3)
    assert isinstance(res, StvResult)
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert doc["method"] == "fraction" and doc["fraction_requested"] == 0.3
    assert doc["margin_mm"] == res.margin_mm  # full precision: reproduces the STV
    for key in (
        "gtv_cc",
        "stv_cc",
        "stv_fraction_of_gtv",
        "gtv_max_depth_mm",
        "centroid_stv_ras_mm",
        "centroid_gtv_ras_mm",
        "centroid_shift_mm",
        "surface_distance_min_mm",
        "surface_distance_max_mm",
        "n_components",
        "warnings",
    ):
        assert key in doc, key
    assert len(doc["centroid_stv_ras_mm"]) == 3


# -- the command line --------------------------------------------------------------------------


def run_scart(argv) -> tuple[int, str, str]:
    """Parse with a parser holding only ``scart`` and run it as ``lattice_cli.main.main``
    would: (exit code, stdout, stderr)."""
    from lattice_cli import scart

    parser = argparse.ArgumentParser(prog="lattice")
    parser.add_argument("--debug", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    scart.register(sub)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = parser.parse_args([str(a) for a in argv])
            code = int(args.func(args))
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code)
        except LatticeError as exc:
            print(f"lattice: error: {exc}", file=err)
            code = exc.exit_code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def cli_case(tmp_path_factory, make_affine, ellipsoid_mask, write_nifti):
    """A CT (LPS-stored, anisotropic) with a sphere GTV, a label map and a shifted GTV."""
    folder = tmp_path_factory.mktemp("scart_case")
    shape, vox = (48, 48, 20), (1.0, 1.0, 2.5)
    affine = make_affine(shape, vox, "lps")
    gtv = ellipsoid_mask((shape, affine), CENTER_RAS_MM, 18.0)
    labels = gtv.astype(np.uint8) * 2
    labels[:3, :3, :2] = 5
    shifted = affine.copy()
    shifted[:3, 3] += [1.5, 0.0, 0.0]
    return {
        "affine": affine,
        "gtv_array": gtv,
        "ct": write_nifti(folder, "ct.nii.gz", np.where(gtv, 40, -1000).astype(np.int16), affine),
        "gtv": write_nifti(folder, "gtv.nii.gz", gtv, affine),
        "labels": write_nifti(folder, "labels.nii.gz", labels, affine),
        "gtv_shifted": write_nifti(folder, "gtv_shifted.nii.gz", gtv, shifted),
    }


def scart_args(case, out, *extra, gtv=None):
    return ["scart", "--ct", case["ct"], "--gtv", gtv or case["gtv"], "--out", out, *extra]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_cli_writes_the_stv_on_the_ct_grid_and_scart_json(cli_case, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = run_scart(scart_args(cli_case, out, "--stv-margin-mm", 6))
    assert code == 0, stderr
    assert stderr == ""
    assert sorted(p.name for p in out.iterdir()) == ["scart.json", "stv.nii.gz"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left
    assert len(stdout.strip().splitlines()) == 1 and "STV" in stdout and str(out) in stdout

    img = nib.load(out / "stv.nii.gz")
    ct = nib.load(cli_case["ct"])
    assert img.shape == ct.shape
    np.testing.assert_allclose(img.affine, ct.affine, atol=1e-6)
    assert int(img.header["sform_code"]) == int(img.header["qform_code"]) == 1
    gtv = cli_case["gtv_array"]
    zooms = np.array(ct.header.get_zooms()[:3], dtype=float)
    expected = oracle_depth_mm(gtv, zooms) > 6.0
    np.testing.assert_array_equal(np.asarray(img.dataobj) != 0, expected)

    doc = json.loads((out / "scart.json").read_text())
    assert {"lattice_version", "inputs", "parameters", "summary"} <= set(doc)
    for name in ("ct", "gtv"):
        assert doc["inputs"][name]["sha256"] == sha256(cli_case[name])
        assert Path(doc["inputs"][name]["path"]) == Path(cli_case[name]).resolve()
    assert doc["parameters"]["stv_margin_mm"] == 6.0 and doc["parameters"]["stv_fraction"] is None
    s = doc["summary"]
    assert s["method"] == "margin" and s["margin_mm"] == 6.0
    voxel_cc = float(np.prod(zooms)) / 1000
    assert s["stv_cc"] == pytest.approx(expected.sum() * voxel_cc, abs=1e-3)
    assert s["gtv_cc"] == pytest.approx(gtv.sum() * voxel_cc, abs=1e-3)
    assert 6.0 < s["surface_distance_min_mm"] <= s["surface_distance_max_mm"] <= 6.0 + 2.5


def test_cli_fraction_and_label_map(cli_case, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = run_scart(
        scart_args(cli_case, out, "--stv-fraction", 0.3, "--gtv-label", 2, gtv=cli_case["labels"])
    )
    assert code == 0, stderr
    doc = json.loads((out / "scart.json").read_text())
    assert doc["summary"]["method"] == "fraction"
    assert abs(doc["summary"]["stv_fraction_of_gtv"] / 0.3 - 1) <= FRACTION_TOLERANCE
    assert doc["inputs"]["gtv"]["label"] == 2 and doc["parameters"]["stv_fraction"] == 0.3


def test_cli_refuses_to_overwrite_without_force(cli_case, tmp_path):
    out = tmp_path / "out"
    assert run_scart(scart_args(cli_case, out, "--stv-margin-mm", 4))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, stderr = run_scart(scart_args(cli_case, out, "--stv-margin-mm", 8))
    assert code == OutputExistsError.exit_code == 6
    assert "--force" in stderr and "scart.json" in stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _, stderr = run_scart(scart_args(cli_case, out, "--stv-margin-mm", 8, "--force"))
    assert code == 0, stderr
    assert json.loads((out / "scart.json").read_text())["summary"]["margin_mm"] == 8.0
    assert sorted(p.name for p in out.iterdir()) == ["scart.json", "stv.nii.gz"]


def test_cli_leaves_other_files_in_the_folder_alone(cli_case, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "plan.json").write_text("{}\n")
    code, _, stderr = run_scart(scart_args(cli_case, out, "--stv-fraction", 0.5))
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["plan.json", "scart.json", "stv.nii.gz"]
    assert (out / "plan.json").read_text() == "{}\n"


@pytest.mark.parametrize(
    "extra, gtv_key, error",
    [
        (("--stv-margin-mm", 50), "gtv", ParameterError),
        (("--stv-fraction", 1.2), "gtv", ParameterError),
        (("--stv-margin-mm", -2), "gtv", ParameterError),
        (("--stv-margin-mm", 5), "gtv_shifted", GridMismatchError),
        (("--stv-margin-mm", 5), "missing", InputFileError),
        (("--stv-margin-mm", 5), "labels", MaskError),  # two labels, none chosen
    ],
)
def test_cli_errors_write_nothing(cli_case, tmp_path, extra, gtv_key, error):
    out = tmp_path / "sub" / "out"
    gtv = cli_case.get(gtv_key, tmp_path / "missing.nii.gz")
    code, stdout, stderr = run_scart(scart_args(cli_case, out, *extra, gtv=gtv))
    assert code == error.exit_code != 0
    assert stderr.startswith("lattice: error: ") and len(stderr.strip().splitlines()) == 1
    assert stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_cli_error_leaves_an_existing_stv_untouched(cli_case, tmp_path):
    out = tmp_path / "out"
    assert run_scart(scart_args(cli_case, out, "--stv-margin-mm", 4))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, stderr = run_scart(scart_args(cli_case, out, "--stv-margin-mm", 99, "--force"))
    assert code == 2 and "maximal depth" in stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("extra", [(), ("--stv-margin-mm", 5, "--stv-fraction", 0.3)])
def test_cli_needs_exactly_one_of_margin_and_fraction(cli_case, tmp_path, extra):
    code, _, stderr = run_scart(scart_args(cli_case, tmp_path / "out", *extra))
    assert code == 2 and "stv" in stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_cli_failure_while_writing_leaves_nothing(cli_case, tmp_path, monkeypatch, failure):
    import lattice.io.nifti

    def broken_save(volume, path):
        Path(path).write_bytes(b"half a file")
        raise failure

    monkeypatch.setattr(lattice.io.nifti, "save_volume", broken_save)
    out = tmp_path / "out"
    if isinstance(failure, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            run_scart(scart_args(cli_case, out, "--stv-margin-mm", 5))
    else:
        code, _, stderr = run_scart(scart_args(cli_case, out, "--stv-margin-mm", 5))
        assert code == OutputWriteError.exit_code == 7 and "nothing was written" in stderr
    assert list(tmp_path.iterdir()) == []
