"""The error catalogue of ``lattice plan``: one case per entry of the README's "Exit codes".

Every case runs ``main([...])`` in-process and checks the contract of a failed run:

* the exact exit code of the error class (:mod:`lattice.errors`);
* exactly one line on stderr, ``lattice: error: ...``, naming the problem and the fix (both
  checked by a phrase of each); stderr is captured at the file-descriptor level, so the
  forked picture worker's output would count too;
* nothing written: the output folder absent (or byte-for-byte unchanged when it existed) and
  no temporary folder (``.out.partial-*``, ``.out.ct-*``) left beside it.

The inputs are small synthetic NIfTI volumes (40 x 40 x 20 voxels) written with nibabel, and
a DICOM series derived from them. Permission entries skip as root (run them as an unprivileged
user). A GTV smaller than one vertex and a margin larger than the GTV allows are errors
(exit 2) unless ``--allow-empty`` asks for the empty plan (exit 0, one warning).
A full disk is simulated by making a write raise ``OSError(ENOSPC)`` partway.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_helpers import run, snapshot

SHAPE = (40, 40, 20)
VOXEL_MM = (1.5, 1.5, 3.0)
GTV_RADIUS_MM = 22.0
#: Options that skip what a case does not need (the picture, DICOM and meshes).
FAST = ["--no-dicom", "--mesh-format", "none", "--no-picture"]
RULES = ["--diameter-mm", "15", "--spacing-mm", "30", "--gtv-margin-mm", "5"]


def _write(folder: Path, name: str, data, affine) -> Path:
    data = np.asarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    path = folder / name
    nib.save(img, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory, make_affine, ellipsoid_mask, write_nifti):
    """The good inputs and every broken variant, in a folder of their own."""
    folder = tmp_path_factory.mktemp("inputs")
    affine = make_affine(SHAPE, VOXEL_MM, "lps")
    grid = (SHAPE, affine)
    centre = affine[:3, :3] @ ((np.array(SHAPE) - 1) / 2) + affine[:3, 3]
    gtv = ellipsoid_mask(grid, centre, GTV_RADIUS_MM)
    ct = np.where(gtv, 40, -1000).astype(np.int16)
    shifted = affine.copy()
    shifted[:3, 3] += [3.0, 0.0, 0.0]
    sheared = affine.copy()
    sheared[:3, 2] += 0.3 * sheared[:3, 0]
    ct_nan = ct.astype(np.float32)
    ct_nan[0, 0, 0] = np.nan
    ct_inf = ct.astype(np.float32)
    ct_inf[5, 5, 5] = np.inf
    soft = np.where(gtv, 0.9, 0.1).astype(np.float32)  # a probability map
    soft_nan, soft_inf = soft.copy(), soft.copy()
    soft_nan[1, 2, 3] = np.nan
    soft_inf[3, 2, 1] = -np.inf
    labels = gtv.astype(np.uint8)
    labels[:4, :4, :2] = 2
    tiny = ellipsoid_mask(grid, centre, 5.0)  # 10 mm across: less than one 15 mm vertex

    f = {
        "ct": write_nifti(folder, "ct.nii.gz", ct, affine),
        "gtv": write_nifti(folder, "gtv.nii.gz", gtv, affine),
        "oar": write_nifti(folder, "oar.nii.gz", np.roll(gtv, 30, axis=0) & ~gtv, affine),
        "missing": folder / "missing.nii.gz",
        "missing_dir": folder / "no_such_folder",
        "not_nifti": folder / "notes.nii.gz",
        "ct_2d": write_nifti(folder, "ct_2d.nii.gz", ct[:, :, 10], affine),
        "gtv_2d": write_nifti(folder, "gtv_2d.nii.gz", gtv[:, :, 10], affine),
        "ct_5d": _write(folder, "ct_5d.nii.gz", np.stack([ct] * 3, -1)[:, :, :, None, :], affine),
        "gtv_5d": _write(
            folder, "gtv_5d.nii.gz", np.stack([gtv] * 3, -1)[:, :, :, None, :], affine
        ),
        "ct_nan": write_nifti(folder, "ct_nan.nii.gz", ct_nan, affine),
        "ct_inf": write_nifti(folder, "ct_inf.nii.gz", ct_inf, affine),
        "gtv_nan": write_nifti(folder, "gtv_nan.nii.gz", soft_nan, affine),
        "gtv_inf": write_nifti(folder, "gtv_inf.nii.gz", soft_inf, affine),
        "gtv_shifted": write_nifti(folder, "gtv_shifted.nii.gz", gtv, shifted),
        "gtv_other_shape": write_nifti(folder, "gtv_other_shape.nii.gz", gtv[:-2], affine),
        "oar_shifted": write_nifti(folder, "oar_shifted.nii.gz", gtv, shifted),
        "ct_sheared": write_nifti(folder, "ct_sheared.nii.gz", ct, sheared),
        "gtv_sheared": write_nifti(folder, "gtv_sheared.nii.gz", gtv, sheared),
        "gtv_empty": write_nifti(folder, "gtv_empty.nii.gz", np.zeros(SHAPE, np.uint8), affine),
        "gtv_tiny": write_nifti(folder, "gtv_tiny.nii.gz", tiny, affine),
        "gtv_labels": write_nifti(folder, "gtv_labels.nii.gz", labels, affine),
    }
    f["not_nifti"].write_text("patient notes, not an image\n")
    for name in ("ct", "gtv"):
        blob = f[name].read_bytes()
        f[f"{name}_truncated"] = folder / f"{name}_truncated.nii.gz"
        f[f"{name}_truncated"].write_bytes(blob[: len(blob) // 2])
    f["unreadable"] = folder / "unreadable.nii.gz"
    f["unreadable"].write_bytes(f["ct"].read_bytes())
    f["unreadable"].chmod(0o000)

    # DICOM: a folder of text files, and a real CT series whose slice is not an RTSTRUCT.
    f["not_dicom_dir"] = folder / "not_dicom"
    f["not_dicom_dir"].mkdir()
    for i in range(3):
        (f["not_dicom_dir"] / f"IM{i:04d}.dcm").write_text(f"slice {i}? no, text\n")
    from lattice.io.dicom_series import derived_series, write_series
    from lattice.io.nifti import load_image

    ct_volume = load_image(f["ct"])
    series = derived_series(ct_volume, patient_name="ERRORS", patient_id="ERR001")
    f["ct_dicom"] = folder / "ct_dicom"
    write_series(series, ct_volume, f["ct_dicom"])
    f["ct_slice"] = sorted(f["ct_dicom"].iterdir())[0]
    f["ct_dicom_locked"] = folder / "ct_dicom_locked"
    shutil.copytree(f["ct_dicom"], f["ct_dicom_locked"])
    sorted(f["ct_dicom_locked"].iterdir())[3].chmod(0o000)
    return f


def plan(f, out, *extra, ct="ct", gtv="gtv", fast=True):
    """``lattice plan`` of the NIfTI inputs ``f[ct]``, ``f[gtv]``."""
    return [
        "plan",
        "--ct",
        f[ct],
        "--gtv",
        f[gtv],
        "--out",
        out,
        *RULES,
        *(FAST if fast else []),
        *extra,
    ]


def plan_dicom(f, out, *, ct_dicom="ct_dicom", rtstruct="ct_slice"):
    return [
        "plan",
        "--ct-dicom",
        f[ct_dicom],
        "--rtstruct",
        f[rtstruct],
        "--gtv-name",
        "GTV",
        "--out",
        out,
        *RULES,
        *FAST,
    ]


def assert_failed_cleanly(
    code, stderr, expected_code, phrases, parent, listing, out, out_before=None
):
    """The contract of a failed run (see the module docstring)."""
    assert code == expected_code, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lattice: error: "), stderr
    for phrase in phrases:  # the problem, and the fix
        assert phrase in lines[0], (phrase, lines[0])
    assert sorted(p.name for p in parent.iterdir()) == listing  # no .out.partial-*/.out.ct-*
    if out is None:  # checked by the caller
        return
    if out_before is None:
        assert not out.exists()
    else:
        assert snapshot(out) == out_before


# id -> (argv(files, out), exit code, phrases naming the problem and the fix)
CATALOGUE = {
    # 3: input file missing, unreadable, corrupt, not NIfTI / DICOM
    "missing CT": (lambda f, o: plan(f, o, ct="missing"), 3, ["file not found", "check the path"]),
    "missing GTV": (
        lambda f, o: plan(f, o, gtv="missing"),
        3,
        ["file not found", "check the path"],
    ),
    "missing OAR": (
        lambda f, o: plan(f, o, "--oar", f"{f['missing']}:5"),
        3,
        ["file not found", "check the path"],
    ),
    "missing DICOM folder": (
        lambda f, o: plan_dicom(f, o, ct_dicom="missing_dir"),
        3,
        ["folder not found", "check the path"],
    ),
    "missing RTSTRUCT": (
        lambda f, o: plan_dicom(f, o, rtstruct="missing"),
        3,
        ["file not found", "check the path"],
    ),
    "unreadable CT": (
        lambda f, o: plan(f, o, ct="unreadable"),
        3,
        ["permission denied", "read permission"],
    ),
    "unreadable GTV": (
        lambda f, o: plan(f, o, gtv="unreadable"),
        3,
        ["permission denied", "read permission"],
    ),
    "unreadable RTSTRUCT": (
        lambda f, o: plan_dicom(f, o, rtstruct="unreadable"),
        3,
        ["permission denied", "read permission"],
    ),
    "unreadable DICOM slice": (
        lambda f, o: plan_dicom(f, o, ct_dicom="ct_dicom_locked"),
        3,
        ["permission denied", "read permission"],
    ),
    "truncated CT": (
        lambda f, o: plan(f, o, ct="ct_truncated"),
        3,
        ["truncated or corrupt", "export the file again"],
    ),
    "truncated CT, read by the picture worker": (
        lambda f, o: plan(f, o, ct="ct_truncated", fast=False),
        3,
        ["truncated or corrupt", "export the file again"],
    ),
    "truncated GTV": (
        lambda f, o: plan(f, o, gtv="gtv_truncated"),
        3,
        ["truncated or corrupt", "export the file again"],
    ),
    "CT not NIfTI": (
        lambda f, o: plan(f, o, ct="not_nifti"),
        3,
        ["as NIfTI", "pass a .nii or .nii.gz file"],
    ),
    "GTV not NIfTI": (
        lambda f, o: plan(f, o, gtv="not_nifti"),
        3,
        ["as NIfTI", "pass a .nii or .nii.gz file"],
    ),
    "CT folder not DICOM": (
        lambda f, o: plan_dicom(f, o, ct_dicom="not_dicom_dir"),
        3,
        ["no DICOM image series", "pass the folder"],
    ),
    "RTSTRUCT is a CT slice": (
        lambda f, o: plan_dicom(f, o),
        3,
        ["not an RTSTRUCT", "pass the structure set"],
    ),
    "RTSTRUCT not DICOM": (
        lambda f, o: plan_dicom(f, o, rtstruct="not_nifti"),
        3,
        ["not a DICOM file", "pass the RTSTRUCT"],
    ),
    # 4: unusable image or mask content
    "2-D CT": (lambda f, o: plan(f, o, ct="ct_2d"), 4, ["2-D data", "3-D volume"]),
    "2-D GTV": (lambda f, o: plan(f, o, gtv="gtv_2d"), 4, ["2-D data", "3-D volume"]),
    "5-D CT": (lambda f, o: plan(f, o, ct="ct_5d"), 4, ["5-D data", "3-D volume"]),
    "5-D GTV": (lambda f, o: plan(f, o, gtv="gtv_5d"), 4, ["5-D data", "3-D volume"]),
    "NaN in the CT": (
        lambda f, o: plan(f, o, ct="ct_nan"),
        4,
        ["NaN or infinite", "fix the image"],
    ),
    "inf in the CT, read by the picture worker": (
        lambda f, o: plan(f, o, ct="ct_inf", fast=False),
        4,
        ["NaN or infinite", "fix the image"],
    ),
    "NaN in a float GTV": (
        lambda f, o: plan(f, o, gtv="gtv_nan"),
        4,
        ["NaN or infinite", "fix the mask"],
    ),
    "inf in a float GTV": (
        lambda f, o: plan(f, o, gtv="gtv_inf"),
        4,
        ["NaN or infinite", "fix the mask"],
    ),
    "empty GTV": (lambda f, o: plan(f, o, gtv="gtv_empty"), 4, ["is empty", "right file"]),
    "label map without --gtv-label": (
        lambda f, o: plan(f, o, gtv="gtv_labels"),
        4,
        ["labels 1, 2", "--gtv-label"],
    ),
    "--gtv-label not in the map": (
        lambda f, o: plan(f, o, "--gtv-label", "7", gtv="gtv_labels"),
        4,
        ["label 7 is not in", "labels present: 1, 2"],
    ),
    # 5: grids differ
    "GTV on another grid": (
        lambda f, o: plan(f, o, gtv="gtv_shifted"),
        5,
        ["different grid", "resample"],
    ),
    "GTV of another shape": (
        lambda f, o: plan(f, o, gtv="gtv_other_shape"),
        5,
        ["has shape", "resample"],
    ),
    "OAR on another grid": (
        lambda f, o: plan(f, o, "--oar", f"{f['oar_shifted']}:5"),
        5,
        ["different grid", "resample"],
    ),
    "sheared affine": (
        lambda f, o: plan(f, o, ct="ct_sheared", gtv="gtv_sheared"),
        5,
        ["sheared", "orthogonal grid"],
    ),
    "sheared affine, with the derived DICOM CT": (
        lambda f, o: plan(f, o, ct="ct_sheared", gtv="gtv_sheared", fast=False),
        5,
        ["ct_sheared.nii.gz", "sheared", "orthogonal grid"],
    ),
    # 2: bad or contradictory parameters
    "diameter 0": (
        lambda f, o: plan(f, o, "--diameter-mm", "0"),
        2,
        ["--diameter-mm", "must be a positive number"],
    ),
    "diameter -5": (
        lambda f, o: plan(f, o, "--diameter-mm", "-5"),
        2,
        ["--diameter-mm", "must be a positive number"],
    ),
    "spacing 0": (
        lambda f, o: plan(f, o, "--spacing-mm", "0"),
        2,
        ["--spacing-mm", "must be a positive number"],
    ),
    "spacing -30": (
        lambda f, o: plan(f, o, "--spacing-mm", "-30"),
        2,
        ["--spacing-mm", "must be a positive number"],
    ),
    "spacing 1e9 (not mm)": (
        lambda f, o: plan(f, o, "--spacing-mm", "1e9"),
        2,
        ["longer than any patient", "check the units"],
    ),
    "margin -1": (
        lambda f, o: plan(f, o, "--gtv-margin-mm", "-1"),
        2,
        ["--gtv-margin-mm", "must be >= 0"],
    ),
    "clearance -3": (
        lambda f, o: plan(f, o, "--oar", f"{f['oar']}:-3"),
        2,
        ["clearance for OAR 'oar'", "must be >= 0"],
    ),
    "spacing < diameter": (
        lambda f, o: plan(f, o, "--spacing-mm", "10"),
        2,
        ["would overlap", "use a spacing >= diameter"],
    ),
    "margin larger than the GTV allows": (
        lambda f, o: plan(f, o, "--gtv-margin-mm", "30"),
        2,
        ["leaves no LATTICE target", "use a margin below", "--allow-empty"],
    ),
    "GTV smaller than one vertex": (
        lambda f, o: plan(f, o, gtv="gtv_tiny"),
        2,
        ["smaller than one vertex", "use a smaller diameter", "--allow-empty"],
    ),
    "margin larger than the GTV allows, --min-vertices 1": (
        lambda f, o: plan(f, o, "--gtv-margin-mm", "30", "--min-vertices", "1"),
        2,
        ["leaves no LATTICE target", "use a margin below"],
    ),
    "GTV smaller than one vertex, --min-vertices 1": (
        lambda f, o: plan(f, o, "--min-vertices", "1", gtv="gtv_tiny"),
        2,
        ["smaller than one vertex", "use a smaller diameter"],
    ),
    "--min-vertices impossible": (
        lambda f, o: plan(f, o, "--min-vertices", "50"),
        2,
        ["are required", "lower --min-vertices"],
    ),
    # 7: output cannot be written
    "output path is a file": (lambda f, o: plan(f, o), 7, ["is a file", "pass a folder"]),
    "unwritable output folder": (
        lambda f, o: plan(f, o),
        7,
        ["permission denied", "choose another --out folder"],
    ),
}
#: Entries whose check needs an unprivileged user (root reads and writes anything).
NEEDS_NON_ROOT = {
    "unreadable CT",
    "unreadable GTV",
    "unreadable RTSTRUCT",
    "unreadable DICOM slice",
    "unwritable output folder",
}


@pytest.mark.parametrize("entry", list(CATALOGUE))
def test_catalogue_entry_fails_cleanly(entry, files, tmp_path, capfd, is_root):
    if entry in NEEDS_NON_ROOT and is_root:
        pytest.skip("running as root: permissions do not stop reading or writing")
    argv, expected, phrases = CATALOGUE[entry]
    parent = tmp_path
    if entry == "output path is a file":
        (tmp_path / "out").write_text("a file, not a folder")
    elif entry == "unwritable output folder":
        parent = tmp_path / "locked"
        parent.mkdir()
        parent.chmod(0o500)
    out = parent / "out"
    listing = sorted(p.name for p in parent.iterdir())
    try:
        code, _, stderr = run(capfd, argv(files, out))
    finally:
        parent.chmod(0o700)
    if entry == "output path is a file":
        assert out.read_text() == "a file, not a folder"
        out = None
    assert_failed_cleanly(code, stderr, expected, phrases, parent, listing, out)


def test_existing_output_without_force_exits_6(files, tmp_path, capfd):
    out = tmp_path / "out"
    code, _, stderr = run(capfd, plan(files, out))
    assert code == 0, stderr
    before = snapshot(out)
    code, _, stderr = run(capfd, plan(files, out, "--diameter-mm", "12"))
    assert_failed_cleanly(
        code,
        stderr,
        6,
        ["already holds", "pass --force"],
        tmp_path,
        ["out"],
        out,
        out_before=before,
    )


@pytest.mark.parametrize(
    "extra, gtv, phrases",
    [
        ([], "gtv_tiny", ["the GTV is smaller than one vertex", "use a smaller diameter"]),
        (["--gtv-margin-mm", "30"], "gtv", ["leaves no LATTICE target", "use a margin below"]),
    ],
    ids=["GTV smaller than one vertex", "margin larger than the GTV allows"],
)
def test_no_room_with_allow_empty_is_an_empty_plan_with_one_warning(
    files, tmp_path, capfd, extra, gtv, phrases
):
    """Exit 0: the plan (no vertex) is written, with one warning saying why and what to do."""
    out = tmp_path / "out"
    code, _, stderr = run(capfd, plan(files, out, *extra, "--allow-empty", gtv=gtv))
    assert code == 0, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lattice: warning: no room for a vertex: ")
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    assert json.loads((out / "plan.json").read_text())["summary"]["n_vertices"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# -- disk full while writing (ENOSPC raised partway through the output) ----------------------


def _enospc(path) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def test_disk_full_in_a_nifti_write_exits_7(files, tmp_path, capfd, monkeypatch):
    """The second NIfTI file fails: the first one, written, must not survive."""
    import lattice.io.nifti as nifti

    real_writer = nifti._gzip_writer
    calls = []

    def writer(path):  # the gzip stream every .nii.gz mask is written through
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"\x1f\x8b partial")
            raise _enospc(path)
        return real_writer(path)

    monkeypatch.setattr(nifti, "_gzip_writer", writer)
    out = tmp_path / "out"
    code, _, stderr = run(capfd, plan(files, out))
    assert len(calls) == 2
    assert_failed_cleanly(
        code, stderr, 7, ["No space left on device", "free space"], tmp_path, [], out
    )


@pytest.mark.parametrize("existing", [False, True], ids=["new folder", "replacing with --force"])
def test_disk_full_in_the_json_writer_exits_7(files, tmp_path, capfd, monkeypatch, existing):
    """plan.json, the last file, fails half-written (a --force run keeps the old plan)."""
    import lattice.io.plan_writer as export

    def write_json(document, path):
        Path(path).write_text(json.dumps(document)[:100])
        raise _enospc(path)

    out = tmp_path / "out"
    before = None
    if existing:
        assert run(capfd, plan(files, out))[0] == 0
        before = snapshot(out)
    monkeypatch.setattr(export, "write_json", write_json)
    code, _, stderr = run(capfd, plan(files, out, *(["--force"] if existing else [])))
    assert_failed_cleanly(
        code,
        stderr,
        7,
        ["No space left on device", "free space"],
        tmp_path,
        ["out"] if existing else [],
        out,
        out_before=before,
    )


def test_disk_full_in_the_derived_dicom_ct_exits_7(files, tmp_path, capfd, monkeypatch):
    """The picture worker writes the derived DICOM CT early, into .out.ct-*: it fails there."""
    import lattice.io.dicom_series as dicom_series

    real = dicom_series.write_series

    def write_series(series, image, folder):
        real(series, image, folder)  # the files are there ...
        raise _enospc(Path(folder) / "CT0002.dcm")  # ... but the last one did not fit

    monkeypatch.setattr(dicom_series, "write_series", write_series)
    out = tmp_path / "out"
    code, _, stderr = run(capfd, plan(files, out, fast=False))
    assert_failed_cleanly(
        code, stderr, 7, ["No space left on device", "free space"], tmp_path, [], out
    )


# -- interrupted, and a bug: the two codes no input can cause ---------------------------------


@pytest.mark.parametrize(
    "exc, expected, line",
    [
        (KeyboardInterrupt(), 130, "lattice: interrupted; no output was written"),
        (
            RuntimeError("boom"),
            1,
            "lattice: internal error: RuntimeError: boom (rerun with --debug and report it)",
        ),
    ],
    ids=["Ctrl-C", "internal error"],
)
def test_interrupt_and_internal_error_write_nothing(
    files, tmp_path, capfd, monkeypatch, exc, expected, line
):
    """Raised while planning, with the picture worker and the derived DICOM CT under way."""
    import lattice.planning.placement as placement

    def plan_vertices(*args, **kwargs):
        raise exc

    monkeypatch.setattr(placement, "plan_vertices", plan_vertices)
    out = tmp_path / "out"
    code, _, stderr = run(capfd, plan(files, out, fast=False))
    assert code == expected, stderr
    assert stderr.splitlines() == [line]
    assert list(tmp_path.iterdir()) == []


def test_disk_full_creating_the_temporary_ct_folder_exits_7(files, tmp_path, capfd, monkeypatch):
    """Even the first folder (.out.ct-*, for the derived DICOM CT) may not fit."""
    import tempfile

    real = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        if ".ct-" in kwargs.get("prefix", ""):
            raise _enospc(Path(kwargs.get("dir", ".")) / kwargs["prefix"])
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    out = tmp_path / "out"
    code, _, stderr = run(capfd, plan(files, out, fast=False))
    assert_failed_cleanly(
        code, stderr, 7, ["No space left on device", "free space"], tmp_path, [], out
    )
