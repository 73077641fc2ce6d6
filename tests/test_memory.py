"""Giving freed memory back to the operating system (lattice.memory)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from lattice import memory
from lattice.memory import release_freed_memory
from lattice.volume import Volume

#: Run in a fresh interpreter: what the heap holds depends on the allocator's history (a
#: long test session has raised the mmap threshold and left free chunks of its own).
_HEAP_PROGRAM = """
import numpy as np
from pathlib import Path
from lattice.memory import release_freed_memory

def anonymous_kb():
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1])

# One large array freed raises glibc's mmap threshold to its size: the smaller arrays made
# next come from the heap, as a plan's crops do, and stay resident when freed between live
# ones.
np.ones(24 << 20, dtype=np.uint8)
arrays, pins = [], []
for _ in range(16):  # 64 MB on the heap, each array between two live ones
    arrays.append(np.ones(4 << 20, dtype=np.uint8))
    pins.append(np.ones(256 << 10, dtype=np.uint8))
del arrays
kept = anonymous_kb()
release_freed_memory()
after = anonymous_kb()
assert all(p.sum() == 256 << 10 for p in pins)  # nothing alive is touched
print(kept, after)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or memory._malloc_trim() is None,
    reason="needs glibc's malloc_trim and /proc",
)
def test_freed_heap_arrays_leave_the_resident_set():
    # glibc's defaults: a MALLOC_* variable (Dask's distributed sets MALLOC_TRIM_THRESHOLD_
    # in os.environ when imported by an earlier test) turns off the threshold's rise.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _HEAP_PROGRAM], capture_output=True, text=True, check=True, env=env
    ).stdout
    kept, after = map(int, out.split())
    assert after < kept - 48 * 1024, (kept, after)


def test_release_without_malloc_trim_does_nothing(monkeypatch):
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    assert release_freed_memory() is False


def test_planner_frees_its_rule_field_before_releasing(monkeypatch):
    # The last release is worth something only once the rule field is garbage: at that
    # call, no RuleField of the plan may be alive.
    import gc
    import weakref

    from lattice.planning import placement, rules

    fields: list[weakref.ref] = []
    alive_at_release: list[bool] = []
    made = rules.RuleField.__init__

    def init(self, *args, **kwargs):
        made(self, *args, **kwargs)
        fields.append(weakref.ref(self))

    def release() -> bool:
        gc.collect()
        alive_at_release.append(any(ref() is not None for ref in fields))
        return False

    monkeypatch.setattr(rules.RuleField, "__init__", init)
    monkeypatch.setattr(placement, "release_freed_memory", release)
    shape, voxel = (40, 36, 24), (2.0, 2.2, 3.0)
    affine = np.diag([*voxel, 1.0])
    ijk = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), axis=-1)
    xyz = ijk * voxel - np.array(shape) * voxel / 2
    mask = ((xyz / [30.0, 28.0, 26.0]) ** 2).sum(axis=-1) <= 1
    plan = placement.plan_vertices(
        Volume(mask, affine), diameter_mm=10, min_spacing_mm=20, gtv_margin_mm=3
    )
    assert plan.n_vertices > 0
    assert fields and alive_at_release[-1] is False
