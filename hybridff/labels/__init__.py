"""QM labels of sampled conformations: the samplers, the per-frame task, where it runs, and
the label file.

- :mod:`hybridff.labels.samplers`: conformations to label (MD, torsion-restrained MD, a mix,
  normal modes), each frame with its information; :mod:`hybridff.labels.torsions`: the
  rotatable torsions they turn.
- :mod:`hybridff.labels.qm`: the QM engines by name (GFN2-xTB, DFT), one interface in
  kJ/mol and nm.
- :mod:`hybridff.labels.tasks`: one frame's QM calculation as a plain, picklable task
  (:func:`~hybridff.labels.tasks.compute_frame`), the same function in-process and on Dask.
- :mod:`hybridff.labels.store`: the label file a run appends to (resume by sample index,
  failed frames recorded beside it, one writer at a time).
- :mod:`hybridff.labels.options`: the options of a labelling run (one molecule or a series).
- :mod:`hybridff.labels.distributed`: running the tasks serially or on a Dask cluster
  (local processes or a running scheduler). Dask is imported only when a cluster is asked for.
"""
