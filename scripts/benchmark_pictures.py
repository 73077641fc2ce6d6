"""Time the three pictures of a plan (overview, montage, 3-D) in-process, old tree against new.

Each timed run is a fresh ``python`` process of the tree it measures (``--python``, e.g. the
venv python of another checkout, imports that checkout's ``lattice``). It loads the benchmark
case's CT, GTV and OARs, the LATTICE target and vertex centres of a plan folder, crops them as
the picture worker does (:func:`lattice.render.worker.job_box`), draws every picture once
untimed (fonts, caches) and then ``--repeats`` times, and prints the median CPU time
(``time.process_time``: this process only) and wall time of each picture. The trees are run
alternately, ``--rounds`` times, and the medians of the per-round ratios are printed.

Usage::

    python scripts/benchmark_pictures.py --plan /tmp/ref/hcp \
        --python /work/main/.venv/bin/python --python .venv/bin/python [--rounds 3]

``--python PYTHON@TREE`` runs PYTHON with TREE first on ``PYTHONPATH`` (a copy of a checkout
at some commit, say). ``--child`` (internal) is one timed run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASE = Path("/tmp/benchcase/case-v1-seed0")
PICTURES = ("overview", "montage", "3d")


def _child(plan_dir: Path, out_dir: Path, repeats: int) -> dict[str, dict[str, float]]:
    import numpy as np

    from lattice.io.nifti import load_image as load_volume
    from lattice.render import render_3d, render_overview, render_vertex_montage
    from lattice.render.worker import job_box

    ct, gtv = load_volume(CASE / "ct.nii.gz"), load_volume(CASE / "gtv.nii.gz")
    gtv = gtv.with_array(np.asarray(gtv.array) != 0)
    box = job_box(gtv)

    def cut(path: Path):
        v = load_volume(path).crop(box)
        return v.with_array(np.asarray(v.array) != 0)

    oars = {name: cut(CASE / f"{name}.nii.gz") for name in ("cord", "bowel")}
    target = cut(plan_dir / "lattice_target.nii.gz")
    gtv_c, ct_c = gtv.crop(box), ct.crop(box)
    document = json.loads((plan_dir / "plan.json").read_text())
    centers = np.array([v["center_ras_mm"] for v in document["vertices"]])
    diameter = float(document["parameters"]["diameter_mm"])
    common = dict(
        gtv=gtv_c, centers_ras_mm=centers, diameter_mm=diameter, oars=oars, title="benchmark"
    )
    slices = dict(common, ct=ct_c, lattice_target=target)
    draw = {
        "overview": lambda: render_overview(out_dir / "overview.png", **slices),
        "montage": lambda: render_vertex_montage(out_dir / "vertices.png", **slices),
        "3d": lambda: render_3d(out_dir / "overview3d.png", **common),
    }
    times: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": []} for k in PICTURES}
    for k in PICTURES:
        draw[k]()  # untimed: fonts, caches
    for _ in range(repeats):
        for k in PICTURES:
            c0, w0 = time.process_time(), time.perf_counter()
            draw[k]()
            times[k]["cpu"].append(time.process_time() - c0)
            times[k]["wall"].append(time.perf_counter() - w0)
    return {k: {m: statistics.median(v) for m, v in t.items()} for k, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=Path, default=Path("/tmp/ref/hcp"))
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        help="PYTHON or PYTHON@TREE (TREE put first on PYTHONPATH: a snapshot of a checkout)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_child(args.plan, args.child, args.repeats)))
        return
    pythons = args.python or [sys.executable]
    runs: list[list[dict[str, dict[str, float]]]] = [[] for _ in pythons]
    for r in range(args.rounds):
        order = list(range(len(pythons)))
        if r % 2:
            order.reverse()
        for i in order:
            python, _, tree = pythons[i].partition("@")
            env = dict(os.environ, PYTHONPATH=tree) if tree else None
            with tempfile.TemporaryDirectory() as out:
                cmd = [python, __file__, "--plan", str(args.plan), "--child", out]
                cmd += ["--repeats", str(args.repeats)]
                result = subprocess.run(
                    cmd, capture_output=True, text=True, check=True, cwd="/tmp", env=env
                )
            runs[i].append(json.loads(result.stdout.strip().splitlines()[-1]))
    for i, python in enumerate(pythons):
        print(python)
        for k in (*PICTURES, "total"):
            cpu = [_total(run, "cpu") if k == "total" else run[k]["cpu"] for run in runs[i]]
            wall = [_total(run, "wall") if k == "total" else run[k]["wall"] for run in runs[i]]
            cpu_s, wall_s = statistics.median(cpu), statistics.median(wall)
            line = f"  {k:9s} cpu {cpu_s:6.3f} s  wall {wall_s:6.3f} s"
            if i > 0:
                base_cpu = [
                    _total(run, "cpu") if k == "total" else run[k]["cpu"] for run in runs[0]
                ]
                ratios = [a / b for a, b in zip(cpu, base_cpu)]
                line += f"  cpu ratio to the first {statistics.median(ratios):5.2f}"
            print(line)


def _total(run: dict[str, dict[str, float]], measure: str) -> float:
    return sum(run[k][measure] for k in PICTURES)


if __name__ == "__main__":
    main()
