"""viewer.html: the packed data against the CT and masks (world coordinates through the
affines, brute-force block means), and the page itself in headless Chromium (DevTools
protocol on a pipe, tests/render/chromium_cdp.py): no console error, no network request,
each vertex's cross-section drawn where an independent projection of its plan.json centre
puts it, a non-blank 3-D view, toggles that change the pixels, the crosshair read-out.

The expected pixel of a world point is computed here from the CT file's own affine (nibabel),
the crop start the page records, nibabel's orientation of that affine and the documented
display convention (viewer.js: the voxel centre (ch, cv) of a view is drawn at
``(ox + (W - 0.5 - ch) * sx, oy + (H - 0.5 - cv) * sy)``, h growing to the left).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil

import nibabel as nib
import numpy as np
import pytest
from chromium_cdp import CHROMIUM, Chromium
from cli_helpers import run_redirected as run
from conftest import REPO_ROOT, rotation_about_axis

from lattice.render.viewer import VIEWER_NAME, write_viewer
from lattice.render.viewer_data import VIEWER_MAX_BYTES, pack_base, viewer_grid
from lattice.volume import Volume

SAMPLE = REPO_ROOT / "sample_data" / "STS_001"
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium (Debian package chromium) is not installed"
)
#: Fill of the selected vertex's cross-section over a black background (cyan at alpha 0.7).
SELECTED_FILL = np.array([0, 160, 179])
#: The position and radius of a drawn cross-section must be within this many voxels.
TOLERANCE_VOX = 2.0


def page_parts(html: str) -> tuple[dict, dict[str, bytes]]:
    meta = json.loads(re.search(r"id='lattice-meta'>(.*?)</script>", html).group(1))
    blobs = {
        name: gzip.decompress(base64.b64decode(text))
        for name, text in re.findall(r"data-blob='([^']+)'>([^<]*)</script>", html)
    }
    return meta, blobs


def plan(root, ct, gtv, *extra):
    out = root / "plan"
    code, _, err = run(["plan", "--ct", ct, "--gtv", gtv, "--out", out, "--no-dicom", *extra])
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def sample_plan(tmp_path_factory):
    return plan(tmp_path_factory.mktemp("viewer"), SAMPLE / "ct.nii.gz", SAMPLE / "gtv.nii.gz")


def synthetic_case(folder, affine_kind, make_volume, ellipsoid_mask, write_nifti):
    """A CT whose HU encode the world position (so a read-out can be checked), an
    ellipsoidal GTV and a spherical OAR beside it, on a flipped or oblique grid."""
    shape, voxel = (70, 64, 30), (1.5, 1.6, 3.0)
    ct = make_volume(shape, voxel, affine_kind)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    ras = ijk @ ct.affine[:3, :3].T + ct.affine[:3, 3]
    hu = np.rint(2 * ras[..., 0] + 3 * ras[..., 1] - ras[..., 2]).astype(np.int16)
    centre = np.array([-12.0, 25.0, 40.0])
    gtv = ellipsoid_mask(ct, centre, (34.0, 30.0, 28.0))
    oar = ellipsoid_mask(ct, centre + [40.0, 0, 0], 8.0)
    paths = [
        write_nifti(folder, "ct.nii.gz", ct.with_array(hu)),
        write_nifti(folder, "gtv.nii.gz", ct.with_array(gtv)),
        write_nifti(folder, "cord.nii.gz", ct.with_array(oar)),
    ]
    return paths


@pytest.fixture(scope="module", params=["lps", "oblique"])
def synthetic_plan(request, tmp_path_factory, make_volume, ellipsoid_mask, write_nifti):
    root = tmp_path_factory.mktemp(f"viewer-{request.param}")
    ct, gtv, oar = synthetic_case(root, request.param, make_volume, ellipsoid_mask, write_nifti)
    return plan(root, ct, gtv, "--oar", f"{oar}:2", "--diameter-mm", "12", "--spacing-mm", "24")


# -- the data, without a browser ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["identity-like", "lps", "oblique"])
def test_viewer_grid_keeps_every_voxel_in_place(kind, make_volume):
    rng = np.random.default_rng(3)
    ct = make_volume((9, 7, 5), (1.0, 1.5, 3.0), kind, array=rng.integers(-900, 900, (9, 7, 5)))
    if kind == "oblique":  # also permute the axes: the canonical order must undo it
        ct = Volume(np.transpose(ct.array, (2, 0, 1)), ct.affine[:, [2, 0, 1, 3]])
    grid = viewer_grid(ct, (0, 0, 0))
    canonical = grid.canonical(ct.array)
    for ijk in np.ndindex(canonical.shape):
        world = grid.affine @ [*ijk, 1.0]
        source = np.linalg.solve(ct.affine, world)[:3]
        assert np.allclose(source, np.rint(source), atol=1e-6)
        assert canonical[ijk] == ct.array[tuple(np.rint(source).astype(int))]
    # canonical: the axes point to the closest of +R, +A, +S
    directions = grid.affine[:3, :3] / np.linalg.norm(grid.affine[:3, :3], axis=0)
    assert np.all(np.diag(directions) > 0.5)


def test_large_crop_is_downsampled_by_block_means_within_budget(make_volume, ellipsoid_mask):
    rng = np.random.default_rng(0)
    shape = (60, 50, 12)
    ct = make_volume(shape, (0.8, 0.8, 3.0), "lps", array=rng.integers(-1000, 1000, shape))
    gtv = ct.with_array(ellipsoid_mask(ct, ct.ijk_to_ras([[30, 25, 6]])[0], 15.0))
    base = pack_base(ct, gtv, {}, crop_start=(0, 0, 0), max_bytes=40_000 + 1_500_000)
    f = base.grid.factor
    assert f[2] == 1 and f[0] == f[1] > 1  # the 3 mm slices are kept
    assert len(base.blobs["ct"]) <= 40_000
    decoded = np.frombuffer(gzip.decompress(base64.b64decode(base.blobs["ct"])), "<i2")
    decoded = decoded.reshape(base.grid.shape)
    # Brute force: block (a, b, c) of the canonical (flipped LPS -> RAS) array.
    canonical = ct.array[::-1, ::-1, :].astype(float)
    for a, b, c in [(0, 0, 0), (3, 2, 5), (base.grid.shape[0] - 2, 1, 11)]:
        block = canonical[a * f[0] : (a + 1) * f[0], b * f[1] : (b + 1) * f[1], c]
        assert decoded[a, b, c] == np.rint(block.mean())
        # the block's world point is the mean of its voxel centres
        ijk = np.array(
            [
                [i, j, c]
                for i in range(a * f[0], (a + 1) * f[0])
                for j in range(b * f[1], (b + 1) * f[1])
            ]
        )
        flipped = np.column_stack([shape[0] - 1 - ijk[:, 0], shape[1] - 1 - ijk[:, 1], ijk[:, 2]])
        assert np.allclose(base.grid.affine @ [a, b, c, 1.0], [*ct.ijk_to_ras(flipped).mean(0), 1])


def test_orientation_letters_follow_the_affine(make_volume):
    ct = make_volume((8, 8, 8), 1.0, "lps")
    tilt = np.eye(4)
    tilt[:3, :3] = rotation_about_axis([0, 0, 1], 30.0)
    tilted = Volume(ct.array, tilt @ ct.affine)
    from lattice.render.viewer_data import VIEWS, _view

    for volume, left, top in ((ct, "R", "A"), (tilted, "RA", "AL")):
        grid = viewer_grid(volume, (0, 0, 0))
        axial = _view(grid, *VIEWS[0])["letters"]
        assert (axial["left"], axial["top"]) == (left, top)
        assert axial["right"] == left.translate(str.maketrans("RALPSI", "LPRAIS"))


def test_plan_folder_holds_a_page_within_the_size_budget(sample_plan):
    html = (sample_plan / VIEWER_NAME).read_text(encoding="utf-8")
    assert len(html.encode()) <= VIEWER_MAX_BYTES
    assert "http://" not in html and "https://" not in html
    meta, blobs = page_parts(html)
    doc = json.loads((sample_plan / "plan.json").read_text())
    assert [v["center_ras_mm"] for v in meta["vertices"]] == [
        v["center_ras_mm"] for v in doc["vertices"]
    ]
    assert meta["grid"]["factor"] == [1, 1, 1]
    ct = nib.load(SAMPLE / "ct.nii.gz")
    hu = np.frombuffer(blobs["ct"], "<i2").reshape(meta["grid"]["shape"])
    # a voxel of the page is the CT voxel at the same world point
    ijk = np.array(meta["grid"]["shape"]) // 3
    world = np.array(meta["grid"]["affine"]) @ [*ijk, 1]
    source = np.rint(np.linalg.solve(ct.affine, world)[:3]).astype(int)
    assert hu[tuple(ijk)] == np.rint(np.asanyarray(ct.dataobj)[tuple(source)])


def test_write_viewer_never_overwrites_without_force(tmp_path):
    path = write_viewer(tmp_path / "v.html", "one")
    from lattice.errors import OutputExistsError

    with pytest.raises(OutputExistsError, match="--force"):
        write_viewer(path, "two")
    write_viewer(path, "two", force=True)
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["v.html"]


# -- the page in headless Chromium -------------------------------------------------------------


def expected_canonical_ijk(plan_dir, meta, ras):
    """The viewer-grid index of a world point, from the CT file's own affine."""
    doc = json.loads((plan_dir / "plan.json").read_text())
    affine = nib.load(doc["inputs"]["ct"]["path"]).affine
    local = np.linalg.solve(affine, [*ras, 1.0])[:3] - meta["grid"]["crop_start_ijk"]
    ornt = nib.orientations.io_orientation(affine)
    shape = meta["grid"]["shape"]
    factor = np.array(meta["grid"]["factor"])
    c = np.zeros(3)
    for axis, (out, flip) in enumerate(ornt.astype(int)):
        n = shape[out] * factor[out]  # the crop's length along that axis (factor 1 here)
        c[out] = n - 1 - local[axis] if flip < 0 else local[axis]
    voxel = np.linalg.norm(affine[:3, :3], axis=0)[ornt[:, 0].argsort()] * factor
    return (c - (factor - 1) / 2) / factor, voxel


def drawn_disc(image, x, y):
    """Extent (left, right, top, bottom) of the vertex-coloured run through pixel (x, y)."""

    def vertexish(px):
        r, g, b = (int(v) for v in px)
        return g > 80 and b > 80 and (r < 60 or min(r, g, b) > 200)

    def run_to(dx, dy):
        k = 0
        while vertexish(image[y + dy * (k + 1), x + dx * (k + 1)]):
            k += 1
        return k

    return x - run_to(-1, 0), x + run_to(1, 0), y - run_to(0, -1), y + run_to(0, 1)


def check_vertex_drawn(browser, plan_dir, vertex):
    meta = browser.evaluate("JSON.parse(document.getElementById('lattice-meta').textContent)")
    centre = next(v for v in meta["vertices"] if v["id"] == vertex)["center_ras_mm"]
    c, voxel = expected_canonical_ijk(plan_dir, meta, centre)
    browser.evaluate(
        f"location.hash = 'vertex={vertex}&overlay.ct=0&overlay.gtv=0&overlay.target=0"
        "&overlay.oar0=0&crosshair=0&labels=0'"
    )
    browser.wait_for(f"latticeViewer.state().selected === {vertex}")
    image = browser.screenshot()
    radius = meta["diameter_mm"] / 2
    for name in ("axial", "coronal", "sagittal"):
        lay = browser.evaluate(f"latticeViewer.viewLayout('{name}')")
        h, v, n = lay["h"], lay["v"], lay["normal"]
        assert lay["layer"] == round(c[n])
        d = abs(c[n] - round(c[n])) * voxel[n]
        r_px = np.sqrt(radius**2 - d**2) * lay["sx"] / voxel[h]
        x = lay["left"] + lay["ox"] + (lay["W"] - 0.5 - c[h]) * lay["sx"]
        y = lay["top"] + lay["oy"] + (lay["H"] - 0.5 - c[v]) * lay["sy"]
        xi, yi = int(round(x)), int(round(y))
        assert np.abs(image[yi, xi].astype(int) - SELECTED_FILL).max() <= 30, (name, image[yi, xi])
        left, right, top, bottom = drawn_disc(image, xi, yi)
        tol = TOLERANCE_VOX * lay["sx"]
        assert abs((left + right) / 2 - x) <= tol and abs((top + bottom) / 2 - y) <= tol, name
        assert abs((right - left) / 2 - r_px) <= tol and abs((bottom - top) / 2 - r_px) <= tol


def canvas_pixels(browser, image, name):
    lay = browser.evaluate(f"latticeViewer.viewLayout('{name}')")
    top, left = int(round(lay["top"])), int(round(lay["left"]))
    return image[top : top + 420, left : left + 480].astype(int)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium (Debian package chromium) is not installed")
    with Chromium() as b:
        yield b


def open_page(browser, plan_dir):
    url = (plan_dir / VIEWER_NAME).as_uri()
    browser.open("about:blank", ready="location.href === 'about:blank'")  # a fresh page
    browser.events.clear()
    browser.open(url, ready="document.body && document.body.dataset.ready === '1'")
    return url


@needs_chromium
def test_page_loads_without_errors_or_network_requests(browser, sample_plan):
    url = open_page(browser, sample_plan)
    assert browser.problems() == []
    assert browser.evaluate("document.body.dataset.errors || ''") == ""
    assert browser.requests() == [url]


@needs_chromium
def test_every_vertex_cross_section_is_drawn_at_its_projected_position(browser, sample_plan):
    open_page(browser, sample_plan)
    n = len(json.loads((sample_plan / "plan.json").read_text())["vertices"])
    for vertex in (1, n // 2 + 1, n):
        check_vertex_drawn(browser, sample_plan, vertex)
    assert browser.problems() == []


@needs_chromium
def test_flipped_and_oblique_grids_are_drawn_in_place(browser, synthetic_plan):
    open_page(browser, synthetic_plan)
    check_vertex_drawn(browser, synthetic_plan, 1)
    # the read-out goes through the affine: the HU of this CT encode the world position
    doc = json.loads((synthetic_plan / "plan.json").read_text())
    x, y, z = doc["vertices"][0]["center_ras_mm"]
    text = browser.evaluate("document.getElementById('readout').textContent")
    ras = [float(t) for t in text.splitlines()[0].split()[2:]]
    lps = [float(t) for t in text.splitlines()[1].split()[2:]]
    assert np.allclose(ras, [x, y, z], atol=0.051) and np.allclose(lps, [-x, -y, z], atol=0.051)
    hu = int(text.splitlines()[2].split()[1])
    meta = browser.evaluate("JSON.parse(document.getElementById('lattice-meta').textContent)")
    point = browser.evaluate("latticeViewer.state().point")
    voxel_world = np.array(meta["grid"]["affine"]) @ [*np.rint(point), 1.0]
    assert abs(hu - (2 * voxel_world[0] + 3 * voxel_world[1] - voxel_world[2])) <= 1.0
    assert browser.problems() == []


@needs_chromium
def test_three_d_view_is_drawn_and_toggles_change_pixels(browser, sample_plan):
    open_page(browser, sample_plan)
    browser.evaluate("location.hash = 'vertex=1'")
    browser.wait_for("latticeViewer.state().selected === 1")
    shown = browser.screenshot()
    three_d = canvas_pixels(browser, shown, "3d")
    assert len(np.unique(three_d.reshape(-1, 3), axis=0)) > 50  # not a blank canvas
    axial_with_gtv = canvas_pixels(browser, shown, "axial")
    browser.evaluate("location.hash = 'vertex=1&overlay.gtv=0&overlay.vertices=0'")
    browser.wait_for("latticeViewer.state().visible.gtv === false")
    hidden = browser.screenshot()
    changed = np.any(canvas_pixels(browser, hidden, "axial") != axial_with_gtv, axis=-1)
    assert changed.sum() > 100
    was = axial_with_gtv[changed]
    assert np.mean((was[:, 0] > 150) & (was[:, 1] < 120) | (was[:, 2] > 150)) > 0.5  # red or cyan
    assert np.any(canvas_pixels(browser, hidden, "3d") != three_d)
    assert browser.problems() == []


@needs_chromium
def test_sts_013_page_fits_and_draws_its_vertices(browser, shared_data, tmp_path):
    case = shared_data / "STS_013"
    if not case.is_dir():
        pytest.skip("../shared/data/STS_013 is absent")
    out = plan(tmp_path, case / "image.nii.gz", case / "gtv.nii.gz")
    assert (out / VIEWER_NAME).stat().st_size <= VIEWER_MAX_BYTES
    open_page(browser, out)
    assert browser.problems() == []
    n = len(json.loads((out / "plan.json").read_text())["vertices"])
    for vertex in (1, n):
        check_vertex_drawn(browser, out, vertex)
    shutil.copy(out / VIEWER_NAME, tmp_path / "kept.html")  # for a look, while tmp_path lasts


def test_support_shells_are_overlays_outermost_first(make_volume, ellipsoid_mask):
    from lattice.render.style import SHELL_COLORS
    from lattice.render.viewer_data import viewer_payload

    ct = make_volume((20, 18, 10), (1.0, 1.2, 2.5), "lps")
    centre = ct.ijk_to_ras([[10, 9, 5]])[0]
    gtv = ct.with_array(ellipsoid_mask(ct, centre, 8.0))
    distance = np.linalg.norm(
        np.stack(np.meshgrid(*[np.arange(n) for n in ct.shape], indexing="ij"), -1) - [10, 9, 5],
        axis=-1,
    )
    labels = (np.digitize(distance, [2.0, 4.0]) + 1).astype(np.uint8)  # 1, 2, 3 within 6 voxels
    labels[distance >= 6.0] = 0
    base = pack_base(ct, gtv, {}, crop_start=(0, 0, 0))
    info = {"diameter_mm": 5.0, "vertices": [], "cold_spheres": []}
    meta, blobs = viewer_payload(
        base, target=None, stv=None, info=info, shells=ct.with_array(labels)
    )
    keys = [s["key"] for s in meta["structures"]]
    assert keys[:4] == ["shell3", "shell2", "shell1", "gtv"]
    assert [s["color"] for s in meta["structures"][:3]] == list(SHELL_COLORS[2::-1])
    for k in (1, 2, 3):
        bits = gzip.decompress(base64.b64decode(blobs[f"mask.shell{k}"]))
        inside = np.unpackbits(np.frombuffer(bits, np.uint8), bitorder="little")
        inside = inside[: labels.size].reshape(base.grid.shape).astype(bool)
        assert np.array_equal(inside, (labels == k)[::-1, ::-1, :])  # LPS storage -> RAS order
