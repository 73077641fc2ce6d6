"""lattice: LATTICE / SFRT vertex geometry planning.

Erode a GTV by a margin in mm, place spherical high-dose vertices under every rule (diameter,
spacing, GTV margin, OAR clearance), and export them. World space is RAS+ mm throughout the
core; LPS appears only in exporters.
"""

__version__ = "0.1.0"
