"""A geometric dose proxy for ranking vertex layouts. NOT a dose calculation.

Model (documented so that numbers can be reproduced):

    D(x) = D_valley + (D_peak - D_valley) * (S * G_sigma)(x)

S is the indicator of the vertex spheres on the CT grid (voxel centres within D/2 of a
centre), G_sigma an isotropic Gaussian of standard deviation ``falloff_mm`` in mm, ``*`` the
convolution (scipy.ndimage.gaussian_filter in voxel units per axis, zero outside the
computed box). Inside a large sphere D approaches D_peak; far from every sphere it is
D_valley; the Gaussian stands in for penumbra and scatter. There is no beam, no
heterogeneity and no normalisation to a prescription: use it to compare layouts of one GTV,
never as a dose.

Reported on the GTV voxels: D10 and D90 (dose exceeded in the hottest 10 % and 90 % of the
GTV volume), their ratio (a peak-to-valley proxy), the mean over the sphere voxels inside the
GTV (mean peak), the mean over the rest of the GTV (mean valley) and their ratio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ParameterError
from ..geometry.margins import bounding_box
from ..volume import Volume

#: Gaussian tails beyond this many standard deviations are cut (scipy's ``truncate``).
TRUNCATE_SIGMAS = 4.0
LABEL = (
    "geometric dose proxy (spheres blurred by a Gaussian), not a dose calculation; "
    "for ranking layouts only"
)


@dataclass(frozen=True)
class DoseProxyParameters:
    """Peak and valley levels (Gy, or any unit) and the Gaussian fall-off (mm).

    The defaults (15 Gy peak, 3 Gy valley floor, 3 mm) are placeholders in the range of
    published single-fraction LATTICE plans, not a recommendation.
    """

    peak_gy: float = 15.0
    valley_gy: float = 3.0
    falloff_mm: float = 3.0

    def validate(self) -> None:
        """Each level in its range (:data:`lattice.planning.parameters.RANGES`), peak above
        valley."""
        from ..planning.parameters import check_range

        for name in ("peak_gy", "valley_gy", "falloff_mm"):
            check_range(
                f"dose_{name}", getattr(self, name), label=f"dose proxy {{{name}}}", parameter=name
            )
        if self.peak_gy <= self.valley_gy or self.valley_gy < 0:
            raise ParameterError(
                f"dose proxy: need peak > valley >= 0 (got peak "
                f"{self.peak_gy:g}, valley {self.valley_gy:g})",
                parameters=["peak_gy", "valley_gy"],
            )
        if self.falloff_mm < 0:
            raise ParameterError(
                f"dose proxy fall-off must be >= 0 mm, got {self.falloff_mm:g}",
                parameters=["falloff_mm"],
            )


def dose_proxy_map(
    gtv: Volume,
    centers_ras_mm: NDArray[np.float64],
    *,
    diameter_mm: float,
    params: DoseProxyParameters,
) -> Volume:
    """The proxy on the GTV's bounding box widened by the Gaussian's reach (float32)."""
    from scipy.ndimage import gaussian_filter

    from ..io.masks import sphere_label_map

    params.validate()
    reach_mm = TRUNCATE_SIGMAS * params.falloff_mm + 1.0
    box = bounding_box(gtv.array, pad_vox=np.ceil(reach_mm / gtv.voxel_size_mm).astype(int))
    crop = gtv.crop(box)
    spheres = (
        sphere_label_map(
            crop, np.asarray(centers_ras_mm).reshape(-1, 3), diameter_mm=diameter_mm
        ).array
        > 0
    )
    field = spheres.astype(np.float32)
    if params.falloff_mm > 0:
        field = gaussian_filter(
            field,
            sigma=params.falloff_mm / crop.voxel_size_mm,
            mode="constant",
            truncate=TRUNCATE_SIGMAS,
        )
    dose = params.valley_gy + (params.peak_gy - params.valley_gy) * field
    return crop.with_array(dose.astype(np.float32))


def dose_proxy_metrics(
    gtv: Volume,
    centers_ras_mm: NDArray[np.float64],
    *,
    diameter_mm: float,
    params: DoseProxyParameters,
) -> dict[str, Any]:
    """D10, D90, D10/D90, mean peak, mean valley and their ratio on the GTV (see module).

    Computed by the evaluation of a TPS dose
    (:func:`lattice.analysis.evaluate.target_metrics`, the conventions of ``lattice
    evaluate``): one implementation of the metrics, so the proxy and an evaluated dose compare.
    The peaks are the vertex spheres' voxels (inside the GTV by the margin), the valley the
    rest of the GTV.
    """
    from ..io.masks import sphere_label_map
    from .evaluate import EvaluationMasks, target_metrics

    dose = dose_proxy_map(gtv, centers_ras_mm, diameter_mm=diameter_mm, params=params)
    in_gtv = _on(dose, gtv)
    labels = sphere_label_map(
        dose, np.asarray(centers_ras_mm).reshape(-1, 3), diameter_mm=diameter_mm
    ).array
    masks = EvaluationMasks(gtv=in_gtv, vertex_labels=np.where(in_gtv, labels, 0))
    voxel_cc = float(abs(np.linalg.det(dose.affine[:3, :3]))) / 1000.0
    m = target_metrics(np.asarray(dose.array, dtype=np.float64), masks, voxel_volume_cc=voxel_cc)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {
        "model": LABEL,
        "parameters": asdict(params),
        "gtv_d10_gy": rounded(m["gtv"]["D10_gy"]),
        "gtv_d90_gy": rounded(m["gtv"]["D90_gy"]),
        "d10_over_d90": rounded(m["pvdr_d10_d90"]),
        "mean_peak_gy": rounded(m["peaks"]["mean_gy"]),
        "mean_valley_gy": rounded(m["valley"]["mean_gy"]),
        "mean_peak_over_mean_valley": rounded(m["epvdr"]),
    }


def _on(dose: Volume, gtv: Volume) -> NDArray[np.bool_]:
    """The GTV mask cut to the dose map's box (the box lies within the GTV's grid)."""
    offset = np.rint(gtv.ras_to_ijk(dose.ijk_to_ras(np.zeros((1, 3))))[0]).astype(int)
    sl = tuple(slice(o, o + n) for o, n in zip(offset, dose.shape))
    return np.asarray(gtv.array[sl], dtype=bool)
