"""The ``lattice`` command line: a thin layer over the :mod:`lattice` package.

A ``lattice`` process asks numpy not to request transparent huge pages for its arrays
(``NUMPY_MADVISE_HUGEPAGE=0``, unless the environment already says otherwise; it must be set
before numpy is imported, hence here). Under the kernel setting most distributions ship
(``transparent_hugepage/defrag = madvise``) each such request may stall a page fault on
memory compaction, and partly used huge pages add to the resident memory; a plan's large
arrays are written once and read a few times, so huge pages buy little. Measured on the
benchmark case (2026-12-03, 10 pairs each): ``lattice plan`` with every output 0.92x the wall
time and 591 MB instead of 630 MB peak (largest process); the minimal outputs 0.92x and
481 MB instead of 523 MB. A process that uses the library without importing ``lattice_cli``
keeps numpy's own choice; one that imports it (before numpy) sets the variable for itself and
its children.
"""

import os

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
