"""Vertex planning: parameters, rules and the searches that place vertices.

- :mod:`~lattice.planning.plan`: :class:`Plan` and :class:`PlanParameters`;
- :mod:`~lattice.planning.parameters`: the parameter ranges, number reading and OAR specs;
- :mod:`~lattice.planning.protocols`: the published protocols' parameter sets;
- :mod:`~lattice.planning.rules`: the rule field (which centres every rule allows);
- :mod:`~lattice.planning.placement`: :func:`plan_vertices` and the count and max modes;
- :mod:`~lattice.planning.search`: the lattice pose search;
- :mod:`~lattice.planning.packing` (with ``packing_candidates``, ``packing_discrete``,
  ``packing_continuous``): irregular maximal packings;
- :mod:`~lattice.planning.pairs`: conflicting pairs and the independent-set solver.
"""
