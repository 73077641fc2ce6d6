"""Support shells and SCART rings in a plan folder (issue 14, "Shell ROIs"), read back by
readers lattice did not write.

A synthetic case on an anisotropic grid with flipped in-plane axes (NIfTI, so with the
derived CT series of ``ct_dicom/``) is planned twice: with ``--shells-mm 0,4,10,20`` and
SCART rings around the GTV and an STV (ROIs with holes, the default), and with the shells
clipped to a body mask (``--valley-contours keyhole``). The truth is computed here:

- shells: the distance from every voxel centre to the nearest sphere surface by brute force
  over plan.json's centres (world mm from the NIfTI affine);
- SCART rings: ``scipy.ndimage.distance_transform_edt`` of the outside with the voxel size
  as ``sampling`` (distance between voxel centres, as lattice documents).

``shells.nii.gz``, ``gtv_rings.nii.gz`` and ``stv_rings.nii.gz`` equal it (voxels within
1e-3 mm of a bound left out). Every ROI of ``rtstruct.dcm``, filled at the voxel centres by
pydicom plus an even-odd point-in-polygon test of this file, and by plastimatch (holes read
with ``--xor-contours``; keyhole polygons with its default OR), is within one voxel of the
truth: each voxel in one mask and not the other touches the other (26-neighbourhood), and
they differ on at most 1 % of the ring. dciodvfy reports no error.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import nibabel as nib
import numpy as np
import pydicom
import pytest
from cli_helpers import run_redirected as run
from conftest import voxel_centers_ras_mm
from dicom_oracle import read_series_geometry
from scipy import ndimage
from tps_checker import inside_even_odd

from lattice.io.planfolder import plan_schema

SHAPE, VOXEL_MM = (44, 40, 20), (1.5, 1.2, 2.5)
SHELLS, SCART = (0, 4, 10, 20), (2, 8)
FAST = ["--no-picture", "--mesh-format", "none"]
#: Voxels this close to a ring bound may fall either side (float32 EDT, decimal strings).
TIE_MM = 1e-3


def ring_truth(distance: np.ndarray, bounds, clip: np.ndarray) -> dict[int, np.ndarray]:
    """Ring k (1-based) -> voxels with bounds[k-1] < d <= bounds[k], inside ``clip``."""
    return {
        k: (distance > a) & (distance <= b) & clip
        for k, (a, b) in enumerate(zip(bounds, bounds[1:]), start=1)
    }


def ties(distance: np.ndarray, bounds) -> np.ndarray:
    return np.min(np.abs(distance[..., None] - np.asarray(bounds, float)), axis=-1) < TIE_MM


def within_one_voxel(got: np.ndarray, want: np.ndarray) -> None:
    cube = np.ones((3, 3, 3), dtype=bool)
    assert want.any()
    assert not np.any(got & ~ndimage.binary_dilation(want, cube))
    assert not np.any(want & ~ndimage.binary_dilation(got, cube))
    assert (got ^ want).sum() <= 0.01 * want.sum(), ((got ^ want).sum(), want.sum())


def rasterise_rtstruct(path: Path, ct_dicom: Path, shape, affine) -> dict[str, np.ndarray]:
    """Every ROI filled at the voxel centres of the NIfTI grid (``affine``, RAS): pydicom,
    the series geometry of dicom_oracle and an even-odd point-in-polygon test per slice."""
    geometry = read_series_geometry(ct_dicom)
    positions, normal = geometry["positions"], geometry["normal"]
    row, col = geometry["row_dir"], geometry["col_dir"]
    lps = voxel_centers_ras_mm(shape, affine).reshape(-1, 3) * [-1.0, -1.0, 1.0]
    slice_of = np.argmin(np.abs((lps @ normal)[:, None] - (positions @ normal)[None]), axis=1)
    ds = pydicom.dcmread(path)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    out = {}
    for item in ds.ROIContourSequence:
        by_slice: dict[int, list[np.ndarray]] = {}
        for c in item.ContourSequence:
            points = np.array([float(v) for v in c.ContourData]).reshape(-1, 3)
            k = int(np.argmin(np.abs(positions @ normal - points[0] @ normal)))
            assert np.abs((points - positions[k]) @ normal).max() < 1e-3  # on a slice plane
            by_slice.setdefault(k, []).append(points)
        filled = np.zeros(len(lps), dtype=bool)
        for k, polygons in by_slice.items():
            a, b = [], []
            for poly in polygons:
                xy = np.column_stack([(poly - positions[k]) @ row, (poly - positions[k]) @ col])
                a.append(xy)
                b.append(np.roll(xy, -1, axis=0))
            on = np.flatnonzero(slice_of == k)
            q = np.column_stack([(lps[on] - positions[k]) @ row, (lps[on] - positions[k]) @ col])
            filled[on] = inside_even_odd(q, np.concatenate(a), np.concatenate(b))
        out[names[int(item.ReferencedROINumber)]] = filled.reshape(shape)
    return out


def plastimatch_rois(
    plan: Path, out: Path, shape, affine, *extra: str, names=None
) -> dict[str, np.ndarray]:
    """plastimatch's masks of every ROI (or of ``names``; NIfTI, its own geometry) at our
    voxel centres."""
    cmd = ["plastimatch", "convert", "--input", str(plan / "rtstruct.dcm")]
    cmd += ["--referenced-ct", str(plan / "ct_dicom"), "--output-prefix", str(out)]
    cmd += ["--prefix-format", "nii.gz", *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return {
        p.name.removesuffix(".nii.gz"): at_voxel_centres(p, shape, affine) > 0
        for p in sorted(out.glob("*.nii.gz"))
        if names is None or p.name.removesuffix(".nii.gz") in names
    }


def at_voxel_centres(path: Path, shape, affine) -> np.ndarray:
    """A NIfTI image's values at the voxel centres of another grid with the same centres."""
    img = nib.load(path)
    world = voxel_centers_ras_mm(shape, affine).reshape(-1, 3)
    ijk = nib.affines.apply_affine(np.linalg.inv(img.affine), world)
    idx = np.rint(ijk).astype(int)
    assert np.abs(ijk - idx).max() < 1e-3  # the same voxel centres
    assert np.all((idx >= 0) & (idx < img.shape[:3]))
    return np.asarray(img.dataobj)[tuple(idx.T)].reshape(shape)


@pytest.fixture(scope="module")
def case(tmp_path_factory, make_volume, ellipsoid_mask, write_nifti):
    folder = tmp_path_factory.mktemp("support")
    ct = make_volume(SHAPE, VOXEL_MM, "lps", center_ras_mm=(0, 0, 0))
    gtv = ellipsoid_mask(ct, [1.0, -1.0, 0.0], [26.0, 21.0, 20.0])
    body = ellipsoid_mask(ct, [0.0, 0.0, 0.0], [31.0, 30.0, 40.0])
    paths = {
        "ct": write_nifti(folder, "ct.nii.gz", ct),
        "gtv": write_nifti(folder, "gtv.nii.gz", gtv, ct.affine),
        "body": write_nifti(folder, "body.nii.gz", body, ct.affine),
    }
    base = ["plan", "--ct", paths["ct"], "--gtv", paths["gtv"], "--diameter-mm", "8"]
    base += ["--spacing-mm", "16", "--gtv-margin-mm", "3", *FAST]
    plans = {"holes": folder / "holes", "body": folder / "body_plan"}
    shells = ["--shells-mm", ",".join(map(str, SHELLS))]
    code, _, err = run(
        [*base, "--out", plans["holes"], *shells, "--stv-margin-mm", "5", "--scart-ring-mm", "2,8"]
    )
    assert code == 0, err
    code, _, err = run(
        [*base, "--out", plans["body"], *shells, "--body", paths["body"], "--valley-contours",
         "keyhole"]
    )  # fmt: skip
    assert code == 0, err
    documents = {k: json.loads((p / "plan.json").read_text()) for k, p in plans.items()}
    world = voxel_centers_ras_mm(SHAPE, ct.affine)
    distance = {}
    for key, doc in documents.items():
        centers = np.array([v["center_ras_mm"] for v in doc["vertices"]], dtype=float)
        assert len(centers) >= 3
        d = np.full(SHAPE, np.inf)
        for c in centers:
            d = np.minimum(d, np.linalg.norm(world - c, axis=-1) - 4.0)
        distance[key] = d
    stv = np.asarray(nib.load(plans["holes"] / "stv.nii.gz").dataobj) > 0
    return {
        "paths": paths,
        "plans": plans,
        "documents": documents,
        "affine": ct.affine,
        "gtv": gtv,
        "body": body,
        "stv": stv,
        "distance": distance,
        "edt": {
            "gtv": ndimage.distance_transform_edt(~gtv, sampling=VOXEL_MM),
            "stv": ndimage.distance_transform_edt(~stv, sampling=VOXEL_MM),
        },
    }


def truths(case, key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ROI name -> (truth mask, tie voxels) of one plan's rings."""
    clip = case["gtv"] if key == "holes" else case["body"]
    d = case["distance"][key]
    out = {}
    for k, m in ring_truth(d, SHELLS, clip).items():
        out[f"LATTICE_SH{SHELLS[k - 1]:02d}_{SHELLS[k]:02d}"] = (m, ties(d, SHELLS))
    if key == "holes":
        for around in ("gtv", "stv"):
            e = case["edt"][around]
            ring = ring_truth(e, SCART, np.ones(SHAPE, dtype=bool))[1]
            out[f"{around.upper()}_RING02_08"] = (ring, ties(e, SCART))
    return out


@pytest.mark.parametrize("key", ["holes", "body"])
def test_label_maps_equal_the_brute_force_distance(case, key):
    plan = case["plans"][key]
    shells = np.asarray(nib.load(plan / "shells.nii.gz").dataobj)
    files = {"GTV": "gtv_rings.nii.gz", "STV": "stv_rings.nii.gz"}
    for name, (want, tie) in truths(case, key).items():
        if name.startswith("LATTICE_SH"):
            got = shells == SHELLS.index(int(name[-2:]))
        else:
            got = np.asarray(nib.load(plan / files[name[:3]]).dataobj) == 1
        assert np.array_equal(got[~tie], want[~tie]), name


@pytest.mark.parametrize("key", ["holes", "body"])
def test_rois_read_back_by_pydicom_within_one_voxel(case, key):
    plan = case["plans"][key]
    masks = rasterise_rtstruct(plan / "rtstruct.dcm", plan / "ct_dicom", SHAPE, case["affine"])
    for name, (want, _) in truths(case, key).items():
        within_one_voxel(masks[name], want)


@pytest.mark.skipif(shutil.which("plastimatch") is None, reason="plastimatch is not installed")
@pytest.mark.parametrize("key,extra", [("holes", ["--xor-contours"]), ("body", [])])
def test_rois_read_back_by_plastimatch_within_one_voxel(case, key, extra, tmp_path):
    plan = case["plans"][key]
    masks = plastimatch_rois(plan, tmp_path / "pm", SHAPE, case["affine"], *extra)
    for name, (want, _) in truths(case, key).items():
        within_one_voxel(masks[name], want)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy is not installed")
@pytest.mark.parametrize("key", ["holes", "body"])
def test_dciodvfy_reports_no_error(case, key):
    path = case["plans"][key] / "rtstruct.dcm"
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    errors = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.startswith("Error")]
    assert errors == []


def test_plan_json_records_the_rings(case):
    voxel_cc = float(np.prod(VOXEL_MM)) / 1000.0
    for key, doc in case["documents"].items():
        jsonschema.validate(doc, plan_schema())
        p = doc["parameters"]
        assert p["shells_mm"] == list(SHELLS)
        shells = np.asarray(nib.load(case["plans"][key] / "shells.nii.gz").dataobj)
        for k, record in enumerate(doc["shells"], start=1):
            assert (record["inner_mm"], record["outer_mm"]) == SHELLS[k - 1 : k + 1]
            assert record["label"] == k and record["around"] == "vertices"
            assert record["volume_cc"] == pytest.approx((shells == k).sum() * voxel_cc, abs=1e-4)
    holes, body = case["documents"]["holes"], case["documents"]["body"]
    assert holes["parameters"]["body"] is None and holes["parameters"]["scart_ring_mm"] == [2, 8]
    assert [r["name"] for r in holes["scart_rings"]] == ["GTV_RING02_08", "STV_RING02_08"]
    assert body["parameters"]["body"] == str(case["paths"]["body"].resolve())
    digest = hashlib.sha256(case["paths"]["body"].read_bytes()).hexdigest()
    assert body["inputs"]["body"] == {"path": body["parameters"]["body"], "sha256": digest}
    assert "body" not in holes["inputs"]
    assert "scart_rings" not in body and body["parameters"]["scart_ring_mm"] is None
    # A ring that reaches a face of the grid is cut there, and plan.json says so: the shells
    # clipped to the body (past the grid in y), the SCART rings (GTV and STV + 8 mm in y),
    # not the shells inside the GTV.
    for key, doc in case["documents"].items():
        edge = [w.split(" reach ")[0] for w in doc["warnings"] if "edge of the CT grid" in w]
        want = []
        for name, (mask, _) in truths(case, key).items():
            faces = [mask[0], mask[-1], mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1]]
            if any(f.any() for f in faces):
                what = "support shells" if name.startswith("LATTICE_SH") else name[:3]
                want.append(what if what == "support shells" else f"the rings around the {what}")
        assert edge == sorted(set(want), key=want.index), key
    assert "support shells" in " ".join(body["warnings"])
    report = (case["plans"]["holes"] / "report.html").read_text()
    for r in [*holes["shells"], *holes["scart_rings"]]:
        line = f"<p>{r['name']}: {r['inner_mm']}-{r['outer_mm']} mm from the "
        assert line in report and f"{r['volume_cc']:.6g} cc</p>" in report
    ds = pydicom.dcmread(case["plans"]["holes"] / "rtstruct.dcm")
    types = {
        str(r.ROIName): str(o.RTROIInterpretedType)
        for r, o in zip(ds.StructureSetROISequence, ds.RTROIObservationsSequence)
    }
    assert types["LATTICE_SH00_04"] == "AVOIDANCE" and types["GTV_RING02_08"] == "CONTROL"
    numbers = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    colors = {
        numbers[int(c.ReferencedROINumber)]: tuple(int(v) for v in c.ROIDisplayColor)
        for c in ds.ROIContourSequence
    }
    assert colors["LATTICE_SH00_04"] == (170, 255, 170)  # the README's colours
    assert colors["LATTICE_SH10_20"] == (30, 170, 60)
    assert colors["GTV_RING02_08"] == (255, 200, 60) and colors["STV_RING02_08"] == (255, 150, 220)
    described = {str(r.ROIName): str(r.ROIDescription) for r in ds.StructureSetROISequence}
    assert described["LATTICE_SH04_10"] == "4-10 mm from the vertex sphere surfaces, within the GTV"
    assert described["GTV_RING02_08"] == "2-8 mm from the GTV"
    assert all(len(n) <= 16 for n in types) and len(set(types)) == len(types)


@pytest.mark.parametrize(
    "extra,code,words",
    [
        (["--shells-mm", "0,15,5"], 2, "--shells-mm '0,15,5': bounds must increase"),
        (["--shells-mm=-5,5"], 2, "cannot be negative"),
        (["--shells-mm", "0,x"], 2, "'x' is not a number"),
        (["--shells-mm", "0,5,5"], 2, "a bound repeats"),
        (["--shells-mm", "0,100,150"], 2, "longer than 16 characters"),
        (["--scart-ring-mm", "2,12"], 2, "give the STV with --stv-margin-mm or --stv-fraction"),
        (["--body", "BODY"], 2, "--body clips the rings of --shells-mm or --scart-ring-mm"),
        (["--shells-mm", "0,5", "--body", "OTHER"], 5, "body mask"),
    ],
)
def test_bad_ring_options_fail_on_one_line_and_write_nothing(case, tmp_path, extra, code, words):
    paths = case["paths"]
    if "OTHER" in extra:  # a body mask on another grid
        img = nib.load(paths["body"])
        other = tmp_path / "other.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-2], img.affine), other)
        extra = [str(other) if e == "OTHER" else e for e in extra]
    out = tmp_path / "plan"
    argv = ["plan", "--ct", paths["ct"], "--gtv", paths["gtv"], "--diameter-mm", "8"]
    got, _, err = run([*argv, "--spacing-mm", "16", "--out", out, *FAST, *extra])
    assert got == code, err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir())


def test_body_roi_of_the_source_rtstruct_with_dicom_input(case, tmp_path):
    """With DICOM input ``--body`` names an ROI of --rtstruct: here the GTV ring of the first
    plan, so the shells run outside the GTV, only within that ring."""
    source = case["plans"]["holes"]
    out = tmp_path / "dicom_plan"
    argv = ["plan", "--ct-dicom", source / "ct_dicom", "--rtstruct", source / "rtstruct.dcm"]
    argv += ["--gtv-name", "GTV", "--diameter-mm", "8", "--spacing-mm", "16"]
    argv += ["--gtv-margin-mm", "3", "--shells-mm", "0,4,10,20", "--body", "GTV_RING02_08"]
    code, _, err = run([*argv, "--out", out, *FAST])
    assert code == 0, err
    doc = json.loads((out / "plan.json").read_text())
    assert doc["parameters"]["body"] == "ROI GTV_RING02_08"
    assert doc["inputs"]["body"] == {"roi": "GTV_RING02_08"}
    body = truths(case, "holes")["GTV_RING02_08"][0]
    centers = np.array([v["center_ras_mm"] for v in doc["vertices"]], dtype=float)
    world = voxel_centers_ras_mm(SHAPE, case["affine"])
    d = np.min([np.linalg.norm(world - c, axis=-1) - 4.0 for c in centers], axis=0)
    got = at_voxel_centres(out / "shells.nii.gz", SHAPE, case["affine"])
    tie = ties(d, SHELLS)
    rings = ring_truth(d, SHELLS, body)
    # Ring 0-4 mm stays within 1 mm of the GTV (margin 3 mm): empty, said so, no ROI.
    assert not rings[1].any() and not (got == 1).any()
    assert "LATTICE_SH00_04 is empty (no ROI written)" in doc["warnings"]
    assert doc["shells"][0]["volume_cc"] == 0
    names = [str(r.ROIName) for r in pydicom.dcmread(out / "rtstruct.dcm").StructureSetROISequence]
    assert "LATTICE_SH00_04" not in names and "LATTICE_SH04_10" in names
    for k in (2, 3):
        within_one_voxel(got == k, rings[k])  # the ROI as rasterised: within a voxel
        assert not np.any((got == k) & case["gtv"])
    assert np.array_equal((got > 0)[~tie & ~body], np.zeros(SHAPE, bool)[~tie & ~body])


def test_body_roi_not_in_the_rtstruct_is_a_mask_error(case, tmp_path):
    source = case["plans"]["holes"]
    out = tmp_path / "dicom_plan"
    argv = ["plan", "--ct-dicom", source / "ct_dicom", "--rtstruct", source / "rtstruct.dcm"]
    argv += ["--gtv-name", "GTV", "--diameter-mm", "8", "--spacing-mm", "16"]
    code, _, err = run([*argv, "--shells-mm", "0,5", "--body", "BODY", "--out", out, *FAST])
    assert code == 4, err
    assert "BODY" in err and "GTV_RING02_08" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_shells_on_sts013_match_brute_force_and_plastimatch(shared_data, tmp_path):
    """The real case of the issue (STS_013, hcp, D 15, S 30 mm): shells.nii.gz equals the
    brute-force distance on every GTV voxel, and plastimatch's read-back of each shell ROI is
    within one voxel of it."""
    case = shared_data / "STS_013"
    out = tmp_path / "plan"
    argv = ["plan", "--ct", case / "image.nii.gz", "--gtv", case / "gtv.nii.gz"]
    argv += ["--shells-mm", "0,5,15,35", "--valley-contours", "keyhole", *FAST]
    code, _, err = run([*argv, "--out", out])
    assert code == 0, err
    doc = json.loads((out / "plan.json").read_text())
    img = nib.load(case / "gtv.nii.gz")
    gtv = np.asarray(img.dataobj) > 0
    centers = np.array([v["center_ras_mm"] for v in doc["vertices"]], dtype=float)
    assert len(centers) >= 30
    ijk = np.argwhere(gtv)
    world = nib.affines.apply_affine(img.affine, ijk)
    d = np.full(len(ijk), np.inf)
    for c in centers:
        d = np.minimum(d, np.linalg.norm(world - c, axis=1) - 7.5)
    bounds = (0, 5, 15, 35)
    want = np.zeros(gtv.shape, dtype=np.uint8)
    for k, (a, b) in enumerate(zip(bounds, bounds[1:]), start=1):
        want[tuple(ijk[(d > a) & (d <= b)].T)] = k
    got = np.asarray(nib.load(out / "shells.nii.gz").dataobj)
    tie = np.zeros(gtv.shape, dtype=bool)
    tie[tuple(ijk.T)] = np.min(np.abs(d[:, None] - np.array(bounds, float)), axis=1) < TIE_MM
    assert np.array_equal(got[~tie], want[~tie])
    if shutil.which("plastimatch") is None:
        return
    # Compared on the GTV's box (grown by a voxel): the shells lie inside the GTV.
    lo, hi = ijk.min(axis=0) - 1, ijk.max(axis=0) + 2
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    box_affine = img.affine.copy()
    box_affine[:3, 3] = nib.affines.apply_affine(img.affine, lo)
    names = [r["name"] for r in doc["shells"]]
    masks = plastimatch_rois(out, tmp_path / "pm", hi - lo, box_affine, names=names)
    for k, record in enumerate(doc["shells"], start=1):
        assert record["volume_cc"] > 50  # every shell holds real volume on this GTV
        within_one_voxel(masks[record["name"]], want[box] == k)


def test_manifest_body_column_is_read_from_the_manifest_folder(tmp_path):
    from lattice.manifest import read_manifest

    (tmp_path / "m.csv").write_text(
        'case,ct,gtv,shells_mm,body\nP1,ct.nii.gz,gtv.nii.gz,"0,5,15",masks/body.nii.gz\n'
    )
    (case,) = read_manifest(tmp_path / "m.csv")
    assert case.parameters == {
        "shells_mm": "0,5,15",
        "body": str(tmp_path / "masks" / "body.nii.gz"),
    }


def test_lattice_show_redraws_the_shells(case, tmp_path):
    from PIL import Image

    from lattice.render.style import SHELL_COLORS

    code, _, err = run(["show", case["plans"]["holes"], "--out", tmp_path])
    assert code == 0, err
    pixels = np.asarray(Image.open(tmp_path / "overview.png").convert("RGB"), dtype=np.int16)
    for color in SHELL_COLORS[:2]:  # the outer edges of shells 1 and 2
        rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
        assert np.count_nonzero(np.all(np.abs(pixels - rgb) <= 12, axis=-1)) > 100, color
