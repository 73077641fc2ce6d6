"""What is measured about a plan and its lesion.

- :mod:`~lattice.analysis.verify` (with ``verify_geometry``, ``verify_inputs``,
  ``verify_report``): the independent check of a written plan against every rule;
- :mod:`~lattice.analysis.measure`: lesion measurements and size rules;
- :mod:`~lattice.analysis.stv`: the SCART target volume (the contracted GTV);
- :mod:`~lattice.analysis.dose`: the geometric dose proxy.
"""
