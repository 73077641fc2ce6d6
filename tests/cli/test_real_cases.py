"""Plans on the real sarcoma CTs of ../shared/data (skipped when that folder is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from oracles import best_random_translation_count, check_rules

from lattice.io.nifti import load_mask
from lattice.planning.placement import plan_vertices

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BUNDLED = Path(__file__).resolve().parents[2] / "sample_data" / "STS_001" / "gtv.nii.gz"


def gtv_path(case: str) -> Path:
    path = SHARED / case / "gtv.nii.gz"
    if case == "STS_001" and not path.exists():
        path = BUNDLED  # the bundled copy keeps this check alive in a user's clone
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/data is only beside the project checkout)")
    return path


# Acceptance minima of issue 2 (D 15, S 30, margin 5, hcp); fixed-origin tools get 2-6 on
# STS_001 (docs/patterns.md, "A fixed origin wastes vertices"). Under the TPS surface model
# (issue 11) the GTV is half a voxel smaller than the voxel-centre model measured, and STS_013
# drops from 34 to 30 (the issue-2 minimum was 31); the brute-force comparison in
# tests/geometry/test_tps_surface.py is the real floor.
@pytest.mark.parametrize("case,minimum", [("STS_001", 10), ("STS_044", 17), ("STS_013", 30)])
def test_hcp_counts_on_real_sarcomas(case, minimum):
    gtv = load_mask(gtv_path(case))
    plan = plan_vertices(gtv, diameter_mm=15, min_spacing_mm=30, gtv_margin_mm=5, pattern="hcp")
    check_rules(plan, gtv.array, gtv.affine, s=30, d=15, margin=5)
    assert plan.n_vertices >= minimum


@pytest.mark.parametrize("pattern", ["sc", "bcc", "fcc", "hcp"])
def test_real_case_beats_random_translations(pattern):
    gtv = load_mask(gtv_path("STS_001"))
    plan = plan_vertices(gtv, diameter_mm=15, min_spacing_mm=30, gtv_margin_mm=5, pattern=pattern)
    check_rules(plan, gtv.array, gtv.affine, s=30, d=15, margin=5)
    best = best_random_translation_count(gtv.array, gtv.affine, pattern, s=30, d=15, margin=5)
    assert plan.n_vertices >= best


def test_snap_to_slices_on_real_case():
    gtv = load_mask(gtv_path("STS_044"))
    plan = plan_vertices(
        gtv, diameter_mm=15, min_spacing_mm=30, gtv_margin_mm=5, pattern="hcp", snap_to_slices=True
    )
    check_rules(plan, gtv.array, gtv.affine, s=30, d=15, margin=5)
    k = plan.centers_ijk[:, 2]
    assert abs(k - k.round()).max() < 1e-6


def test_coplanar_rule_holds_exactly_on_real_case():
    gtv = load_mask(gtv_path("STS_044"))
    plan = plan_vertices(
        gtv,
        diameter_mm=15,
        min_spacing_mm=30,
        gtv_margin_mm=5,
        pattern="hcp",
        coplanar_mm=20,
        coplanar_spacing_mm=80,
    )
    c = plan.centers_ras_mm
    assert plan.n_vertices >= 2
    check_rules(plan, gtv.array, gtv.affine, s=30, d=15, margin=5)
    for i in range(len(c)):
        for j in range(i + 1, len(c)):
            if abs(c[i, 2] - c[j, 2]) < 20:
                assert np.linalg.norm(c[i] - c[j]) >= 80
