"""A batch's output folder: a rerun skips a job only when its inputs are the bytes it was
planned from, the folder holds one batch, and one batch writes it at a time.

The inputs are two spheres on a small CT grid (112 cc and 33 cc: a changed GTV gives another
volume and another vertex count), so each plan takes a fraction of a second.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_helpers import lock_holder

from lattice.io.folder import resolve_output_folder
from lattice_cli.main import main

FAST = ["--no-picture", "--no-dicom", "--mesh-format", "none", "--workers", "1"]
#: The CT grid: 2 mm voxels, 40^3 (80 mm across), identity orientation.
VOXEL_MM = 2.0
SHAPE = (40, 40, 40)


def _sphere(path: Path, radius_mm: float) -> Path:
    """A sphere mask of ``radius_mm`` at the grid's centre (uint8 0/1)."""
    ijk = np.indices(SHAPE).transpose(1, 2, 3, 0) + 0.5 - np.array(SHAPE) / 2
    mask = (np.linalg.norm(ijk * VOXEL_MM, axis=-1) <= radius_mm).astype(np.uint8)
    _save(mask, path)
    return path


def _save(array: np.ndarray, path: Path) -> None:
    affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)


@pytest.fixture()
def data(tmp_path):
    """rs/ct.nii.gz, rs/g.nii.gz (112 cc sphere), rs/small.nii.gz (33 cc), rs/cord.nii.gz."""
    folder = tmp_path / "rs"
    folder.mkdir()
    _save(np.full(SHAPE, 40, dtype=np.int16), folder / "ct.nii.gz")
    _sphere(folder / "g.nii.gz", 30.0)
    _sphere(folder / "small.nii.gz", 20.0)
    cord = np.zeros(SHAPE, dtype=np.uint8)
    cord[2:4, 2:4, :] = 1  # far from the GTV: it never decides the plan
    _save(cord, folder / "cord.nii.gz")
    return folder


def _manifest(path: Path, *cases: str, oar: bool = False) -> Path:
    head = "case,ct,gtv" + (",oars" if oar else "")
    lines = [
        f"{c},rs/ct.nii.gz,rs/g.nii.gz" + (",cord=rs/cord.nii.gz:5" if oar else "") for c in cases
    ]
    path.write_text("\n".join([head, *lines]) + "\n", encoding="utf-8")
    return path


def _summary(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["case"]: row for row in csv.DictReader(fh)}


def _batch(manifest: Path, out: Path, *extra: str) -> int:
    return main(["batch", str(manifest), "--out", str(out), *FAST, *extra])


# -- Bug A: an input whose content changed at the same path ---------------------------------


def test_a_changed_gtv_at_the_same_path_is_refused_not_reported_stale(data, tmp_path, capsys):
    manifest = _manifest(tmp_path / "res.csv", "A")
    out = tmp_path / "sw"
    assert _batch(manifest, out) == 0
    first = _summary(out / "summary.csv")["A"]
    assert first["status"] == "ok" and float(first["gtv_cc"]) > 100
    capsys.readouterr()

    shutil.copyfile(data / "small.nii.gz", data / "g.nii.gz")  # 33 cc, same path
    before = (out / "summary.csv").read_bytes()
    assert _batch(manifest, out) == 6
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert "GTV mask" in err and str(data / "g.nii.gz") in err and "changed" in err
    assert "job A" in err and "--force" in err
    assert "done before" not in captured.out
    assert (out / "summary.csv").read_bytes() == before  # nothing rewritten

    assert _batch(manifest, out, "--force") == 0
    again = _summary(out / "summary.csv")["A"]
    assert again["status"] == "ok" and again["resumed"] == "False"
    assert float(again["gtv_cc"]) < 40
    capsys.readouterr()
    assert _batch(manifest, out) == 0  # planned from these bytes: skipped again
    assert "1 done before, skipped" in capsys.readouterr().out


def test_a_changed_or_deleted_oar_is_named_and_equal_bytes_rewritten_are_still_done(
    data, tmp_path, capsys
):
    manifest = _manifest(tmp_path / "m.csv", "A", oar=True)
    out = tmp_path / "sw"
    assert _batch(manifest, out) == 0
    # The same bytes written again (a new mtime): the plan still holds, the job is skipped.
    (data / "g.nii.gz").write_bytes((data / "g.nii.gz").read_bytes())
    capsys.readouterr()
    assert _batch(manifest, out) == 0
    assert "1 done before, skipped" in capsys.readouterr().out

    cord = (data / "cord.nii.gz").read_bytes()
    _save(
        np.zeros(SHAPE, dtype=np.uint8) + np.eye(40, dtype=np.uint8)[:, :, None],
        data / "cord.nii.gz",
    )
    assert _batch(manifest, out) == 6
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "OAR 'cord'" in err and "changed" in err

    (data / "cord.nii.gz").unlink()
    assert _batch(manifest, out) == 6
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "OAR 'cord'" in err and "is gone" in err
    assert "put it back" in err

    (data / "cord.nii.gz").write_bytes(cord)  # put back: the plan holds again
    assert _batch(manifest, out) == 0
    assert "1 done before, skipped" in capsys.readouterr().out


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_a_gtv_link_pointed_at_another_file_is_a_change(data, tmp_path, capsys):
    (data / "g.nii.gz").rename(data / "big.nii.gz")
    (data / "g.nii.gz").symlink_to("big.nii.gz")  # plan.json records the link's target
    manifest = _manifest(tmp_path / "m.csv", "A")
    out = tmp_path / "sw"
    assert _batch(manifest, out) == 0
    (data / "g.nii.gz").unlink()
    (data / "g.nii.gz").symlink_to("small.nii.gz")  # big.nii.gz itself is unchanged
    capsys.readouterr()
    assert _batch(manifest, out) == 6
    err = capsys.readouterr().err.strip()
    assert "GTV mask" in err and str(data / "g.nii.gz") in err and "changed" in err


# -- Bug B: another manifest's batch in the same folder -------------------------------------


def test_a_second_manifest_into_a_batch_folder_is_refused_and_keeps_its_rows(
    data, tmp_path, capsys
):
    out = tmp_path / "sw"
    assert _batch(_manifest(tmp_path / "m1.csv", "B"), out) == 0
    before = (out / "summary.csv").read_bytes()
    capsys.readouterr()

    for extra in ((), ("--force",)):  # --force plans this batch again; it drops no other
        assert _batch(_manifest(tmp_path / "m2.csv", "C"), out, *extra) == 6
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert "another manifest" in err and "job B" in err and "another --out" in err
        assert (out / "summary.csv").read_bytes() == before
        assert not (out / "C").exists() and not (out / "runs" / "C.json").exists()

    # A manifest that holds both goes on from B and plans C.
    assert _batch(_manifest(tmp_path / "m12.csv", "B", "C"), out) == 0
    assert "1 done before, skipped" in capsys.readouterr().out
    rows = _summary(out / "summary.csv")
    assert sorted(rows) == ["B", "C"] and all(r["status"] == "ok" for r in rows.values())


def test_a_narrower_grid_into_the_same_folder_is_refused(data, tmp_path, capsys):
    manifest = _manifest(tmp_path / "m.csv", "A")
    out = tmp_path / "sw"
    assert _batch(manifest, out, "--grid", "spacing_mm=25,35") == 0
    capsys.readouterr()
    assert _batch(manifest, out, "--grid", "spacing_mm=25") == 6
    err = capsys.readouterr().err.strip()
    assert "job A--spacing_mm-35" in err and len(err.splitlines()) == 1
    assert len(_summary_rows(out / "summary.csv")) == 2


def _summary_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.skipif(os.name != "posix", reason="flock locks are POSIX only")
def test_a_batch_into_a_folder_another_batch_is_writing_stops_at_once(data, tmp_path, capsys):
    out = tmp_path / "sw"
    holder = lock_holder(out, "lattice batch")
    try:
        assert _batch(_manifest(tmp_path / "m2.csv", "C"), out) == 6
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "another run is writing" in err and f"PID {holder.pid}" in err
        assert not (out / "C").exists() and not (out / "summary.csv").exists()
    finally:
        holder.communicate("")
    assert _batch(_manifest(tmp_path / "m2.csv", "C"), out) == 0  # free again
    assert sorted(_summary(out / "summary.csv")) == ["C"]
    assert not (resolve_output_folder(out).parent / ".sw.lock").exists()
