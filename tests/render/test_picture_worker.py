"""The background picture worker (lattice.render.worker): the same pictures and
measurements in a worker process and in this one, and in-process work where multiprocessing
allows no children (daemonic processes such as Dask workers)."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from lattice import plan_vertices
from lattice.forking import FORK_ENV
from lattice.render.worker import MONTAGE_NAME, THREE_D_NAME, PictureWorker
from lattice.volume import Volume

pytestmark = pytest.mark.skipif(
    "fork" not in mp.get_all_start_methods(), reason="the worker process needs fork"
)


def _case() -> tuple[Volume, object]:
    shape = (40, 40, 30)
    ijk = np.indices(shape).transpose(1, 2, 3, 0) - np.array([20, 20, 15])
    gtv = (ijk**2 / np.array([14.0, 12.0, 10.0]) ** 2).sum(axis=-1) <= 1
    affine = np.diag([2.0, 2.0, 2.5, 1.0])
    ct = Volume(np.where(gtv, 40.0, -100.0).astype(np.float32), affine)
    plan = plan_vertices(Volume(gtv, affine), diameter_mm=8, min_spacing_mm=16, gtv_margin_mm=2)
    return ct, plan


def _draw(tmp_path, ct, plan):
    with PictureWorker(lambda: ct) as worker:
        worker.submit(plan, tmp_path / "overview.png", title="t", measure=True)
        names = worker.wait()
        return names, worker.lesion


def test_worker_process_and_this_process_give_the_same_result(tmp_path, monkeypatch):
    ct, plan = _case()
    assert plan.n_vertices
    results = {}
    for flag in ("1", "0"):
        monkeypatch.setenv(FORK_ENV, flag)
        out = tmp_path / flag
        out.mkdir()
        results[flag] = _draw(out, ct, plan)
        assert sorted(p.name for p in out.iterdir()) == sorted(results[flag][0])
    assert results["1"][0] == results["0"][0] == ["overview.png", THREE_D_NAME, MONTAGE_NAME]
    assert results["1"][1].to_dict() == results["0"][1].to_dict()


def _in_daemon(folder: str, queue) -> None:  # runs in a daemonic child
    ct, plan = _case()
    try:
        names, _ = _draw(__import__("pathlib").Path(folder), ct, plan)
        queue.put((names, mp.active_children() == []))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        queue.put(repr(exc))


def test_daemonic_process_draws_in_process(tmp_path, monkeypatch):
    """A daemonic process may not start children: the worker does the work itself."""
    monkeypatch.setenv(FORK_ENV, "1")
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    process = ctx.Process(target=_in_daemon, args=(str(tmp_path), queue), daemon=True)
    process.start()
    got = queue.get(timeout=120)
    process.join(timeout=60)
    assert got == (["overview.png", THREE_D_NAME, MONTAGE_NAME], True)


def test_lesion_measured_early_equals_the_measurement_with_the_job(tmp_path, monkeypatch):
    """measure_early (the worker measures while the parent plans) gives exactly what the
    job's own measurement gives, and the measurement in this process."""
    from lattice.analysis.measure import measure_lesion

    monkeypatch.setenv(FORK_ENV, "1")
    ct, plan = _case()
    with PictureWorker(lambda: ct) as worker:
        worker.measure_early(plan.gtv)
        worker.submit(plan, tmp_path / "overview.png", title="t", measure=True)
        assert worker.wait() == ["overview.png", THREE_D_NAME, MONTAGE_NAME]
        early = worker.lesion
    _, with_job = _draw(tmp_path, ct, plan)
    assert early is not None and early.to_dict() == with_job.to_dict()
    assert early.to_dict() == measure_lesion(plan.gtv).to_dict()


def _pixels(folder) -> dict[str, np.ndarray]:
    from PIL import Image

    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


@pytest.mark.parametrize("early_gtv", ["same", "other"])
def test_worker_keeping_only_the_ct_crop_draws_the_same_pictures(tmp_path, monkeypatch, early_gtv):
    """After measure_early and prepare_viewer the worker keeps only the CT's crop to the job
    box: the pictures and viewer.html are those drawn in this process from the full CT, also
    when the job's box is not the early one (the worker reads the CT again)."""
    ct, plan = _case()
    gtv = plan.gtv
    if early_gtv == "other":  # a smaller GTV: another box
        gtv = gtv.with_array(np.zeros_like(gtv.array))
        gtv.array[18:22, 18:22, 14:16] = True
    from lattice.render.viewer import plan_viewer_info

    info = plan_viewer_info(plan)
    monkeypatch.setenv(FORK_ENV, "1")
    with PictureWorker(lambda: ct) as worker:
        worker.measure_early(gtv)
        worker.prepare_viewer(gtv, {})
        (tmp_path / "fork").mkdir()
        worker.submit(plan, tmp_path / "fork" / "overview.png", title="t", viewer_info=info)
        names = worker.wait()
    monkeypatch.setenv(FORK_ENV, "0")
    with PictureWorker(lambda: ct) as worker:
        (tmp_path / "here").mkdir()
        worker.submit(plan, tmp_path / "here" / "overview.png", title="t", viewer_info=info)
        assert worker.wait() == names
    fork, here = _pixels(tmp_path / "fork"), _pixels(tmp_path / "here")
    assert sorted(fork) == sorted(here) == sorted(["overview.png", THREE_D_NAME, MONTAGE_NAME])
    for name in fork:
        np.testing.assert_array_equal(fork[name], here[name])
    viewer = [(tmp_path / d / "viewer.html").read_text() for d in ("fork", "here")]
    assert viewer[0] == viewer[1]


def _plan_pictures(folder, ct, plan, *, fork_3d: bool) -> None:
    from lattice.render.pictures import draw_plan_pictures

    folder.mkdir()
    draw_plan_pictures(
        folder / "overview.png",
        ct=ct,
        gtv=plan.gtv,
        lattice_target=plan.lattice_target,
        centers_ras_mm=plan.centers_ras_mm,
        diameter_mm=plan.parameters.diameter_mm,
        oars={},
        stv=None,
        cold=None,
        title="t",
        fork_3d=fork_3d,
    )


def test_3d_picture_drawn_in_a_forked_child_is_the_same(tmp_path):
    """fork_3d (the worker's): the same three pictures as drawn one after the other."""
    ct, plan = _case()
    _plan_pictures(tmp_path / "child", ct, plan, fork_3d=True)
    _plan_pictures(tmp_path / "here", ct, plan, fork_3d=False)
    child, here = _pixels(tmp_path / "child"), _pixels(tmp_path / "here")
    assert sorted(child) == sorted(here) == sorted(["overview.png", THREE_D_NAME, MONTAGE_NAME])
    for name in child:
        np.testing.assert_array_equal(child[name], here[name])


def test_error_of_the_forked_3d_picture_is_raised(tmp_path, monkeypatch):
    """The child's error comes back to the caller as it was raised, after the other
    pictures are drawn."""
    import lattice.render
    from lattice.errors import OutputWriteError

    def fails(path, **_):
        raise OutputWriteError(f"cannot write the 3-D picture '{path}': disk full")

    monkeypatch.setattr(lattice.render, "render_3d", fails)
    ct, plan = _case()
    with pytest.raises(OutputWriteError, match="disk full"):
        _plan_pictures(tmp_path / "child", ct, plan, fork_3d=True)
    assert sorted(_pixels(tmp_path / "child")) == sorted(["overview.png", MONTAGE_NAME])


@pytest.mark.parametrize("kind", ["lps", "oblique"])
@pytest.mark.parametrize("where", ["inside", "at the grid edge"])
def test_gtv_contours_traced_early_are_those_of_the_whole_mask(
    make_volume, ellipsoid_mask, monkeypatch, kind, where
):
    """trace_gtv_early (the worker traces the GTV's RTSTRUCT contours from the job crop
    while the parent plans): exactly mask_contours of the whole mask (the oracle), also for
    a GTV cut by the grid's edge; in-process nothing is traced early (None)."""
    from lattice.io.dicom import ImageSeries
    from lattice.io.rtstruct_contours import mask_contours

    vol = make_volume((40, 36, 24), (0.9, 1.2, 2.5), kind, center_ras_mm=(5.0, 0.0, 0.0))
    gtv = Volume(ellipsoid_mask(vol, (5.0, 0.0, 0.0), (12.0, 9.0, 15.0)), vol.affine)
    if where == "at the grid edge":
        gtv.array[:, :, :3] = gtv.array[:, :, 8:11]  # the lowest slices hold voxels
        gtv.array[:2] = gtv.array[10:12]
    oracle = mask_contours(gtv)
    assert oracle
    monkeypatch.setenv(FORK_ENV, "1")
    with PictureWorker(lambda: vol) as worker:
        assert worker.trace_gtv_early(gtv, ImageSeries(grid=gtv.grid, slices=(), header=None))
        got = worker.gtv_contours()
    assert got is not None and len(got) == len(oracle)
    for (k, points), (k0, points0) in zip(got, oracle):
        assert k == k0
        np.testing.assert_array_equal(points, points0)
    monkeypatch.setenv(FORK_ENV, "0")
    with PictureWorker(lambda: vol) as worker:
        assert not worker.trace_gtv_early(gtv, ImageSeries(grid=gtv.grid, slices=(), header=None))
        assert worker.gtv_contours() is None
