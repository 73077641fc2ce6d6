"""Dose proxy: the documented model against its analytic limits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from lattice.analysis.dose import DoseProxyParameters, dose_proxy_map, dose_proxy_metrics
from lattice.errors import ParameterError
from lattice.volume import Volume


def _case(make_volume, ellipsoid_mask):
    vol = make_volume((80, 80, 80), (0.8, 0.8, 0.8), "identity-like")
    centre = np.array([-12.0, 25.0, 40.0])
    gtv = Volume(ellipsoid_mask(vol, centre, 28.0), vol.affine)
    return gtv, centre


def test_sphere_centre_matches_the_gaussian_integral(make_volume, ellipsoid_mask):
    """At a sphere's centre the blurred indicator is the 3-D Gaussian's mass within r."""
    gtv, centre = _case(make_volume, ellipsoid_mask)
    r, sigma = 7.5, 3.0
    params = DoseProxyParameters(peak_gy=10.0, valley_gy=2.0, falloff_mm=sigma)
    dose = dose_proxy_map(gtv, centre[None], diameter_mm=2 * r, params=params)
    ijk = np.rint(dose.ras_to_ijk(centre[None])[0]).astype(int)
    x = r / sigma
    mass = erf(x / np.sqrt(2)) - np.sqrt(2 / np.pi) * x * np.exp(-x * x / 2)
    assert dose.array[tuple(ijk)] == pytest.approx(2.0 + 8.0 * mass, abs=0.1)
    far = dose.array[0, 0, 0]
    assert far == pytest.approx(2.0, abs=1e-3)


def test_sharp_limit_and_monotone_falloff(make_volume, ellipsoid_mask):
    gtv, centre = _case(make_volume, ellipsoid_mask)
    centres = centre + np.array([[-10.0, 0, 0], [10.0, 0, 0]])
    sharp = dose_proxy_metrics(
        gtv, centres, diameter_mm=10.0, params=DoseProxyParameters(12.0, 2.0, 0.0)
    )
    assert sharp["mean_peak_gy"] == pytest.approx(12.0)
    assert sharp["mean_valley_gy"] == pytest.approx(2.0)
    assert sharp["gtv_d90_gy"] == pytest.approx(2.0)  # spheres are < 10 % of the GTV
    ratios = [
        dose_proxy_metrics(
            gtv, centres, diameter_mm=10.0, params=DoseProxyParameters(12.0, 2.0, s)
        )["mean_peak_over_mean_valley"]
        for s in (1.0, 3.0, 6.0)
    ]
    assert ratios[0] > ratios[1] > ratios[2] > 1.0
    assert "not a dose calculation" in sharp["model"]


@pytest.mark.parametrize(
    "bad",
    [
        dict(peak_gy=2.0, valley_gy=3.0),
        dict(falloff_mm=-1.0),
        dict(peak_gy=float("nan")),
        dict(valley_gy=-1.0),
    ],
)
def test_bad_parameters(make_volume, ellipsoid_mask, bad):
    gtv, centre = _case(make_volume, ellipsoid_mask)
    with pytest.raises(ParameterError, match="dose proxy"):
        dose_proxy_metrics(gtv, centre[None], diameter_mm=10.0, params=DoseProxyParameters(**bad))


def test_proxy_metrics_are_the_evaluation_of_the_proxy_dose(make_volume, ellipsoid_mask):
    """The proxy's numbers are what `lattice evaluate` reports for the proxy dose (one
    implementation), and equal a computation by hand from the map and brute-force spheres."""
    from lattice.analysis.evaluate import EvaluationMasks, evaluate_dose

    gtv, centre = _case(make_volume, ellipsoid_mask)
    centres = centre + np.array([[-9.0, 0, 0], [9.0, 0, 0], [0, 0, 9.0]])
    params = DoseProxyParameters(15.0, 3.0, 2.5)
    got = dose_proxy_metrics(gtv, centres, diameter_mm=8.0, params=params)
    dose = dose_proxy_map(gtv, centres, diameter_mm=8.0, params=params)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in dose.shape], indexing="ij"), -1)
    points = dose.ijk_to_ras(ijk.reshape(-1, 3)).reshape(*dose.shape, 3)
    in_gtv = np.asarray(gtv.array, dtype=bool)[
        tuple(
            slice(o, o + n)
            for o, n in zip(
                np.rint(gtv.ras_to_ijk(points[0, 0, 0][None])[0]).astype(int), dose.shape
            )
        )
    ]
    nearest = np.linalg.norm(points[..., None, :] - centres, axis=-1)
    labels = np.where(nearest.min(-1) <= 4.0, nearest.argmin(-1) + 1, 0) * in_gtv
    values = np.asarray(dose.array, dtype=float)
    peak, valley = values[labels > 0], values[in_gtv & (labels == 0)]
    d10, d90 = np.percentile(values[in_gtv], 90), np.percentile(values[in_gtv], 10)
    assert got["gtv_d10_gy"] == pytest.approx(d10, abs=1e-4)
    assert got["gtv_d90_gy"] == pytest.approx(d90, abs=1e-4)
    assert got["mean_peak_gy"] == pytest.approx(peak.mean(), abs=1e-4)
    assert got["mean_valley_gy"] == pytest.approx(valley.mean(), abs=1e-4)
    evaluated = evaluate_dose(
        values,
        EvaluationMasks(gtv=in_gtv, vertex_labels=labels),
        affine_ras=dose.affine,
        vertex_centers_ras_mm=centres,
    )
    assert got["d10_over_d90"] == pytest.approx(evaluated["pvdr_d10_d90"], abs=1e-4)
    assert got["mean_peak_over_mean_valley"] == pytest.approx(evaluated["epvdr"], abs=1e-4)
    assert got["mean_peak_gy"] == pytest.approx(evaluated["peaks"]["mean_gy"], abs=1e-4)
