"""Reading inputs and writing plan folders.

- :mod:`~lattice.io.nifti` (with ``nifti_header``): NIfTI images and masks, checked headers;
- :mod:`~lattice.io.dicom`, :mod:`~lattice.io.rtstruct_read`: a DICOM CT series and its
  RTSTRUCT;
- :mod:`~lattice.io.dicom_series`, :mod:`~lattice.io.rtstruct_write` (with
  ``rtstruct_contours``): the derived CT series and the RTSTRUCT written;
- :mod:`~lattice.io.meshes`, :mod:`~lattice.io.markups`, :mod:`~lattice.io.tables`,
  :mod:`~lattice.io.masks`: the other output formats;
- :mod:`~lattice.io.folder`: atomic folder writes, the output lock and path checks;
- :mod:`~lattice.io.plan_writer`: the plan folder assembled (:func:`write_plan_folder`);
- :mod:`~lattice.io.planfolder`: a written plan folder read back (plan.json, its schema).
"""
