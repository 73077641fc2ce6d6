"""Per-vertex table as CSV (``vertices.csv``), one row per vertex, units in the column names."""

from __future__ import annotations

import csv
from pathlib import Path

from ..planning.plan import Plan


def write_vertices_csv(plan: Plan, path: str | Path) -> Path:
    """Write id, name, centre in RAS / LPS mm and voxel index, depth, nearest neighbour and
    the distance to each OAR (``oar_<name>_mm``) for every vertex."""
    records = plan.vertex_records()
    oar_names = list(plan.oar_distance_mm)
    header = [
        "id",
        "name",
        "x_ras_mm",
        "y_ras_mm",
        "z_ras_mm",
        "x_lps_mm",
        "y_lps_mm",
        "z_lps_mm",
        "i",
        "j",
        "k",
        "depth_mm",
        "nearest_vertex_mm",
        *[f"oar_{n}_mm" for n in oar_names],
    ]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r in records:
            writer.writerow(
                [
                    r["id"],
                    r["name"],
                    *r["center_ras_mm"],
                    *r["center_lps_mm"],
                    *[round(v, 4) for v in r["center_ijk"]],
                    r["depth_mm"],
                    r["nearest_vertex_mm"],
                    *[r["oar_distance_mm"][n] for n in oar_names],
                ]
            )
    return Path(path)
