"""The plan folder: what lattice/io/planfolder.py finds in it and refuses, and how the library
writes it (write_plan_folder: whole or not at all).

One small plan is written once; each test works on its own copy of the folder and breaks one
thing (a missing file, a file that is not JSON, an input that is gone, a mask moved to
another grid) and checks the reader's one clear error, or the writer's all-or-nothing rule.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from lattice.errors import GridMismatchError, InputFileError, OutputExistsError
from lattice.io.plan_writer import write_plan_folder
from lattice.io.planfolder import load_plan_volumes, read_plan_document
from lattice.planning.placement import plan_vertices
from lattice.planning.rules import Oar
from lattice.volume import Volume

SHAPE = (40, 36, 20)


@pytest.fixture(scope="module")
def source(make_affine, ellipsoid_mask, write_nifti, tmp_path_factory):
    """A written plan folder ``out`` beside its inputs, in one folder."""
    folder = tmp_path_factory.mktemp("planfolder")
    affine = make_affine(SHAPE, (1.2, 1.0, 2.5), "lps")
    centre = affine[:3, :3] @ ((np.array(SHAPE) - 1) / 2) + affine[:3, 3]
    gtv = ellipsoid_mask((SHAPE, affine), centre, (17.0, 15.0, 20.0))
    cord = ellipsoid_mask((SHAPE, affine), centre + [0.0, -19.0, 0.0], 3.0)
    ct = np.where(gtv, 40, -1000).astype(np.int16)
    paths = {
        name: write_nifti(folder, f"{name}.nii.gz", array, affine)
        for name, array in [("ct", ct), ("gtv", gtv), ("cord", cord)]
    }

    def record(name):
        path = paths[name]
        return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    inputs = {
        "ct": record("ct"),
        "gtv": {**record("gtv"), "label": None},
        "oars": [{"name": "cord", **record("cord"), "clearance_mm": 3.0}],
    }
    plan = plan_vertices(
        Volume(gtv, affine),
        diameter_mm=10,
        min_spacing_mm=15,
        gtv_margin_mm=3,
        oars=[Oar("cord", Volume(cord, affine), 3.0)],
    )
    assert plan.n_vertices >= 2
    written = write_plan_folder(
        plan, folder / "out", inputs=inputs, picture=False, mesh_format=None, markups=False
    )
    return {
        "root": folder,
        "plan": plan,
        "inputs": inputs,
        "written": written,
        "affine": affine,
        "ct": ct,
    }


@pytest.fixture
def copy(source, tmp_path):
    """A private copy of the inputs and the plan folder, plan.json pointing at the copies."""
    root = tmp_path / "case"
    shutil.copytree(source["root"], root)
    doc_path = root / "out" / "plan.json"
    text = doc_path.read_text().replace(str(source["root"]), str(root))
    doc_path.write_text(text)
    return root


def edit_plan(folder, change):
    path = folder / "plan.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


# -- the writer ------------------------------------------------------------------------------


def test_the_folder_holds_what_the_writer_returned(source):
    out = source["root"] / "out"
    written = source["written"]
    assert all(p.parent == out and p.is_file() for p in written.values())
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written.values())
    assert {"plan.json", "lattice_target.nii.gz"} <= {p.name for p in out.iterdir()}
    # Nothing of the staging is left beside the folder.
    assert not [p for p in source["root"].iterdir() if p.name.startswith(".")]


def test_an_existing_plan_is_kept_without_force(source, copy):
    out = copy / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(OutputExistsError, match="plan.json"):
        write_plan_folder(
            source["plan"],
            out,
            inputs=source["inputs"],
            picture=False,
            mesh_format=None,
            markups=False,
        )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_force_replaces_the_folder_whole(source, copy):
    out = copy / "out"
    (out / "plan.json").write_text('{"stale": true}')
    (out / "notes.txt").write_text("mine")  # not an output: left alone
    write_plan_folder(
        source["plan"],
        out,
        inputs=source["inputs"],
        picture=False,
        mesh_format=None,
        markups=False,
        force=True,
    )
    assert read_plan_document(out)["summary"]["n_vertices"] == source["plan"].n_vertices
    assert (out / "notes.txt").read_text() == "mine"
    assert not [p for p in copy.iterdir() if p.name.startswith(".")]


def test_a_failing_document_leaves_nothing_written(source, tmp_path):
    out = tmp_path / "new"

    def broken():
        raise RuntimeError("document failed")

    with pytest.raises(RuntimeError, match="document failed"):
        write_plan_folder(
            source["plan"],
            out,
            inputs=source["inputs"],
            picture=False,
            mesh_format=None,
            markups=False,
            document=broken,
        )
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


# -- reading plan.json -----------------------------------------------------------------------


def test_the_folder_and_its_plan_json_read_alike(copy):
    out = copy / "out"
    assert read_plan_document(out) == read_plan_document(out / "plan.json")
    assert read_plan_document(str(out)) == json.loads((out / "plan.json").read_text())


@pytest.mark.parametrize("where", ["missing folder", "empty folder"])
def test_a_folder_without_plan_json_is_refused(tmp_path, where):
    folder = tmp_path / "nothing"
    if where == "empty folder":
        folder.mkdir()
    with pytest.raises(InputFileError, match="no plan.json in"):
        read_plan_document(folder)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b""])
def test_plan_json_that_is_not_json_is_refused(copy, content):
    (copy / "out" / "plan.json").write_bytes(content)
    with pytest.raises(InputFileError, match="cannot read .* as JSON"):
        read_plan_document(copy / "out")


def test_a_non_finite_number_is_refused_by_its_path(copy):
    path = copy / "out" / "plan.json"
    path.write_text(path.read_text().replace('"gtv_margin_mm": 3.0', '"gtv_margin_mm": NaN', 1))
    with pytest.raises(InputFileError, match=r"\$\.parameters\.gtv_margin_mm is NaN"):
        read_plan_document(copy / "out")


@pytest.mark.parametrize("document", [[], "plan", {"vertices": []}])
def test_json_that_is_no_plan_is_refused(copy, document):
    (copy / "out" / "plan.json").write_text(json.dumps(document))
    with pytest.raises(InputFileError, match="is not a plan document"):
        read_plan_document(copy / "out")


# -- reading the volumes ---------------------------------------------------------------------


def test_the_volumes_are_found_from_the_recorded_inputs(source, copy):
    vols = load_plan_volumes(copy / "out")
    np.testing.assert_array_equal(vols.ct.array, source["ct"])
    np.testing.assert_allclose(vols.ct.affine, source["affine"], atol=1e-5)
    assert set(vols.oars) == {"cord"}
    assert vols.stv is None
    np.testing.assert_array_equal(vols.centers_ras_mm, source["plan"].centers_ras_mm)


def test_an_stv_in_the_folder_is_loaded(source, copy):
    target = nib.load(copy / "out" / "lattice_target.nii.gz")
    stv = np.zeros(SHAPE, np.uint8)
    stv[15:25, 14:22, 8:12] = 1
    nib.save(nib.Nifti1Image(stv, target.affine, target.header), copy / "out" / "stv.nii.gz")
    vols = load_plan_volumes(copy / "out")
    assert vols.stv is not None
    np.testing.assert_array_equal(np.asarray(vols.stv.array, bool), stv.astype(bool))


@pytest.mark.parametrize(
    "name, what",
    [
        ("ct.nii.gz", "CT"),
        ("gtv.nii.gz", "GTV mask"),
        ("cord.nii.gz", "OAR mask"),
        ("out/lattice_target.nii.gz", "LATTICE target"),
    ],
)
def test_a_missing_input_is_refused_by_name(copy, name, what):
    (copy / name).unlink()
    with pytest.raises(InputFileError, match=f"{what}.*is gone") as info:
        load_plan_volumes(copy / "out")
    assert "restore it" in str(info.value)


def test_a_plan_whose_grid_was_changed_is_refused(copy):
    def move(doc):
        doc["grid"]["affine"][0][3] += 2.0

    edit_plan(copy / "out", move)
    with pytest.raises(InputFileError, match="not on the grid plan.json records"):
        load_plan_volumes(copy / "out")


def test_a_mask_on_another_grid_is_refused(copy, source):
    moved = source["affine"].copy()
    moved[:3, 3] += [5.0, 0.0, 0.0]
    cord = nib.load(copy / "cord.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(cord.dataobj), moved), copy / "cord.nii.gz")
    with pytest.raises(GridMismatchError, match="cord"):
        load_plan_volumes(copy / "out")
