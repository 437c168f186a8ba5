"""Molecular dynamics of one molecule (``hybridff simulate``) and analysis of its runs.

- :mod:`hybridff.md.prepare`: molecule -> OpenMM System, vacuum or a TIP3P box; ML correction.
- :mod:`hybridff.md.options`: the settings of a run (:class:`~hybridff.md.options.MDOptions`).
- :mod:`hybridff.md.run`: minimize, equilibrate, Langevin production (:func:`~hybridff.md.run.run_md`).
- :mod:`hybridff.md.reporters`: the CSV log, the DCD trajectory, the ensemble monitor, blow-up checks.
- :mod:`hybridff.md.outputs`: the files of a run folder, the System read back.
- :mod:`hybridff.md.resume`: continuing a run from its checkpoint.
- :mod:`hybridff.md.spectrum`, :mod:`hybridff.md.harmonic`: IR spectra of runs, QM harmonic reference.
"""
