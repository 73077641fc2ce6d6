"""Geometry on a voxel grid, in world mm.

- :mod:`~lattice.geometry.margins`: Euclidean distance transforms, erosion in mm, depth,
  the bounding box and the mask surface (marching cubes);
- :mod:`~lattice.geometry.outline`: slice outlines (marching squares, point-in-outline);
- :mod:`~lattice.geometry.surface`: the TPS surface model, a solid built from the outlines;
- :mod:`~lattice.geometry.patterns`: the lattice patterns (sc, bcc, fcc, hcp) at a spacing.
"""
