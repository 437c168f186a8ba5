"""Many molecules, one task each: the parameters or charges of every molecule of an SDF or
SMI file, one output file per molecule in a folder, serially or on a Dask cluster.

- :func:`read_records` splits the input into records (an SDF record, a SMILES line) without
  parsing them, and names each one's output (:func:`output_stems`): the record's title (SDF)
  or name (SMI), made safe as a file name and unique in the run, else ``mol<record>``.
- A job says what to compute per molecule: :class:`ParameterizeJob` (an OpenMM ForceField
  XML, ``<name>.xml``) or :class:`ChargesJob` (``<name>.sdf`` with the ``PartialCharge`` atom
  property, or ``.csv`` / ``.mol2``). Each file is what the single-molecule command writes
  for that molecule (parameterize: with the template named ``<name>``).
- :func:`compute_molecule` is the task function: it reads and prepares the record, runs the
  job, and returns the file's text or the reason the molecule failed (a bad record, an
  element the force field lacks, a charge program that failed), so one bad molecule never
  stops the run. It runs in-process (the default; Dask is not imported) or on Dask workers
  (:mod:`hybridff.cluster`).
- :class:`BatchFolder` is the output folder: each file is written atomically as its result
  arrives; a molecule whose file exists and is complete is skipped by a later run (resume);
  a failed molecule is recorded in ``failures.jsonl`` (record, name, source, reason, worker)
  and skipped by later runs unless ``retry_failed``; ``hybridff-batch.json`` holds the run's
  settings, and a run with other settings is refused; ``.hybridff-batch.lock`` refuses a
  second writer.

The outputs depend only on the input records and the job's settings (each task runs with the
same OpenMP/BLAS thread count), so a run gives the same files serially or on any number of
workers.

The modules: :mod:`~hybridff.batch.records` (the input's records and output names),
:mod:`~hybridff.batch.jobs` (the jobs and the task function), :mod:`~hybridff.batch.folder`
(the output folder), :mod:`~hybridff.batch.run` (the run loop and its summary); every name
imports from :mod:`hybridff.batch`.
"""

from hybridff.batch.folder import FAILURES, LOCK, MANIFEST, BatchFolder
from hybridff.batch.jobs import (
    DEFAULT_THREADS,
    MOLECULE_FAILURES,
    RUN_ERRORS,
    ChargesJob,
    Job,
    MoleculeOutcome,
    MoleculeTask,
    ParameterizeJob,
    _lost,
    _ThreadWarnings,
    compute_molecule,
)
from hybridff.batch.records import (
    BATCH_SUFFIXES,
    MAX_STEM,
    MoleculeRecord,
    _safe_stem,
    output_stems,
    read_records,
)
from hybridff.batch.run import BatchSummary, RunCounts, run_batch

__all__ = [
    "BATCH_SUFFIXES", "DEFAULT_THREADS", "FAILURES", "LOCK", "MANIFEST", "MAX_STEM",
    "MOLECULE_FAILURES", "RUN_ERRORS", "BatchFolder", "BatchSummary", "ChargesJob", "Job",
    "MoleculeOutcome", "MoleculeRecord", "MoleculeTask", "ParameterizeJob", "RunCounts",
    "_ThreadWarnings", "_lost", "_safe_stem", "compute_molecule", "output_stems",
    "read_records", "run_batch",
]
