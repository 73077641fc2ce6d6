"""The ``lattice`` command line: a thin layer over the :mod:`lattice` package."""
