"""Synthetic phantoms: deterministic, on one grid, with the geometry their docstrings promise."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from lattice.errors import ParameterError
from lattice.phantoms import (
    CORD_GAP_MM,
    PHANTOM_GTV_CC,
    make_benchmark_case,
    make_phantom,
    write_phantom,
)

#: The benchmark anatomy on a coarse grid with the default field of view (500 x 500 x 300 mm):
#: same physical case, 1/64 of the voxels, so the test never builds the full-size CT.
COARSE_BENCHMARK = {"shape": (128, 128, 75), "voxel_size_mm": (3.92, 3.92, 4.0)}


@pytest.fixture(scope="module")
def phantom():
    return make_phantom()


def _volume_cc(mask_volume) -> float:
    return float(mask_volume.array.sum()) * mask_volume.voxel_volume_cc


def test_same_seed_gives_identical_arrays(phantom):
    again = make_phantom()
    assert np.array_equal(phantom.ct.array, again.ct.array)
    assert np.array_equal(phantom.gtv.array, again.gtv.array)
    for name, oar in phantom.oars.items():
        assert np.array_equal(oar.array, again.oars[name].array)


def test_seed_changes_only_the_ct_noise(phantom):
    other = make_phantom(seed=1)
    assert not np.array_equal(phantom.ct.array, other.ct.array)
    assert np.array_equal(phantom.gtv.array, other.gtv.array)
    assert np.abs(phantom.ct.array.astype(int) - other.ct.array).max() <= 100


def test_masks_are_bool_on_the_ct_grid(phantom):
    assert phantom.ct.array.dtype == np.int16
    assert set(phantom.oars) == {"cord", "bowel"}
    for name, vol in {"gtv": phantom.gtv, **phantom.oars}.items():
        assert vol.array.dtype == bool
        vol.check_same_grid(phantom.ct, name="CT", other_name=name)


def test_affine_is_lps_like_with_an_offset(phantom):
    assert nib.aff2axcodes(phantom.ct.affine) == ("L", "P", "S")
    assert np.allclose(phantom.ct.voxel_size_mm, (1.0, 1.0, 2.5))
    assert np.linalg.norm(phantom.ct.affine[:3, 3]) > 100.0


def test_gtv_volume_matches_its_target(phantom):
    # Voxelisation of a ~260 cc smooth shape on 1 x 1 x 2.5 mm voxels is good to well under 1 %.
    assert _volume_cc(phantom.gtv) == pytest.approx(PHANTOM_GTV_CC, rel=0.01)
    assert ndimage.label(phantom.gtv.array)[1] == 1


def test_gtv_and_oars_lie_in_the_body_and_away_from_the_border(phantom):
    body = phantom.ct.array > -500
    for vol in (phantom.gtv, *phantom.oars.values()):
        assert body[vol.array].all()
    gtv = phantom.gtv.array
    assert not (gtv[0].any() or gtv[-1].any() or gtv[:, 0].any() or gtv[:, -1].any())
    assert not (gtv[:, :, 0].any() or gtv[:, :, -1].any())


def test_oars_are_disjoint_from_gtv_cord_near_and_bowel_touching(phantom):
    gtv = phantom.gtv.array
    dist_mm = ndimage.distance_transform_edt(~gtv, sampling=phantom.gtv.voxel_size_mm)
    for oar in phantom.oars.values():
        assert oar.array.any()
        assert not (oar.array & gtv).any()
    # Voxel centre to voxel centre; the analytic gap is CORD_GAP_MM, the grid adds < 1 voxel.
    cord_gap = dist_mm[phantom.oars["cord"].array].min()
    assert CORD_GAP_MM - 1.0 <= cord_gap <= CORD_GAP_MM + 2.5
    assert 5.0 <= cord_gap <= 15.0
    assert dist_mm[phantom.oars["bowel"].array].min() <= 1.0 + 1e-9


def test_write_phantom_round_trips_with_both_affines(phantom, tmp_path):
    paths = write_phantom(phantom, tmp_path / "case")
    assert set(paths) == {"ct", "gtv", "cord", "bowel"}
    for name, path in paths.items():
        img = nib.load(path)
        assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
        assert np.allclose(img.get_sform(), phantom.ct.affine, atol=1e-4)
        assert np.allclose(img.get_qform(), phantom.ct.affine, atol=1e-4)
        data = np.asanyarray(img.dataobj)
        source = phantom.ct if name == "ct" else {"gtv": phantom.gtv, **phantom.oars}[name]
        assert data.dtype == (np.int16 if name == "ct" else np.uint8)
        assert np.array_equal(data, source.array)


def test_benchmark_gtv_is_about_1400_cc_on_a_coarse_grid():
    case = make_benchmark_case(**COARSE_BENCHMARK)
    assert _volume_cc(case.gtv) == pytest.approx(1400.0, rel=0.10)
    for oar in case.oars.values():
        assert oar.array.any() and not (oar.array & case.gtv.array).any()


def test_too_small_field_of_view_is_refused():
    with pytest.raises(ParameterError, match="field of view"):
        make_phantom(shape=(60, 60, 20))
