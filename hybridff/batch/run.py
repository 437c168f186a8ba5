"""The run loop of a many-molecule run (:func:`run_batch`) and how it went
(:class:`BatchSummary`)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hybridff.batch.folder import FAILURES, BatchFolder
from hybridff.batch.jobs import (
    DEFAULT_THREADS,
    Job,
    MoleculeOutcome,
    MoleculeTask,
    _lost,
    compute_molecule,
)
from hybridff.batch.records import read_records
from hybridff.cluster import (
    NO_WORKERS_TIMEOUT_S,
    log_worker_counts,
    progress_bar,
    run_tasks,
    ticking,
)

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class RunCounts:
    """The counts every run over the molecules of a file keeps (:class:`BatchSummary`,
    :class:`hybridff.labels.series.SeriesLabelSummary`)."""

    #: molecules whose output was complete at the start
    already_done: int = 0
    skipped_failed: int = 0
    failed: int = 0
    seconds: float = 0.0
    first_failure: str | None = None
    per_worker: dict[str, int] = field(default_factory=dict)


@dataclass
class BatchSummary(RunCounts):
    """How a many-molecule run went (counts of input molecules)."""

    command: str
    folder: str
    total: int
    written: int = 0
    #: molecules whose input (``job.task_data``) is not there yet, and what to do about it
    lacking: list[str] = field(default_factory=list)
    lacking_hint: str = ""

    @property
    def complete(self) -> bool:
        """Every molecule of the input has its file."""
        return self.already_done + self.written == self.total

    def line(self) -> str:
        """One line for the user."""
        text = (f"{self.command}: {self.written} molecule(s) written to {self.folder} in "
                f"{self.seconds:.1f} s; {self.already_done + self.written} of {self.total} "
                "done")
        if self.already_done:
            text += f" ({self.already_done} by an earlier run)"
        if self.failed:
            text += f"; {self.failed} failed (reasons in {Path(self.folder) / FAILURES})"
        if self.lacking:
            names = ", ".join(self.lacking[:5]) + (", ..." if len(self.lacking) > 5 else "")
            text += f"; {len(self.lacking)} lack their input ({names}){self.lacking_hint}"
        if self.skipped_failed:
            text += (f"; {self.skipped_failed} skipped that failed before (--retry-failed "
                     "retries them)")
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_batch(source: str | os.PathLike, folder: str | os.PathLike, job: Job, *,
              workers: int | None = None, scheduler: str | None = None, client: Any = None,
              threads: int | None = DEFAULT_THREADS, retry_failed: bool = False,
              progress: bool = True,
              no_workers_timeout: float = NO_WORKERS_TIMEOUT_S) -> BatchSummary:
    """Run ``job`` on every molecule of ``source`` (SDF/SMI file or a SMILES) into ``folder``,
    one task per molecule: in-process unless ``workers`` (a local Dask cluster of that many
    processes), ``scheduler`` (a running scheduler's address) or ``client`` (a
    ``distributed.Client``) is given. Files already complete are kept; molecules that failed
    before are skipped unless ``retry_failed``."""
    job.check()
    records = read_records(source)
    start = time.perf_counter()
    distributed = any(x is not None for x in (workers, scheduler, client))
    summary = BatchSummary(job.command, str(folder), len(records))
    task_data = getattr(job, "task_data", None)  # what the job needs beside the record
    summary.lacking_hint = getattr(job, "lacking_hint", "")
    with BatchFolder(folder, job) as out:
        tasks = []
        for record in records:
            if out.done(record):
                summary.already_done += 1
            elif record.name in out.failures and not retry_failed:
                summary.skipped_failed += 1
            elif task_data is None:
                tasks.append(MoleculeTask(record, job, threads))
            elif (data := task_data(record)) is None:
                summary.lacking.append(record.name)
            else:
                tasks.append(MoleculeTask(record, job, threads, data))
        todo = [task.record for task in tasks]
        by_index = {r.index: r for r in todo}
        bar = progress_bar(len(records), len(records) - len(todo), job.command, "mol",
                           progress and bool(todo))
        seen: list[MoleculeOutcome] = []
        try:
            for outcome in ticking(run_tasks(compute_molecule, tasks, what="molecule",
                                             ident=lambda t: t.record.index, lost=_lost,
                                             scheduler=scheduler, workers=workers,
                                             client=client,
                                             no_workers_timeout=no_workers_timeout), bar):
                record = by_index[outcome.index]
                out.add(outcome, record)
                if outcome.ok:
                    summary.written += 1
                else:
                    summary.failed += 1
                    summary.first_failure = summary.first_failure or outcome.error
                    logger.info("%s failed: %s", record.name, outcome.error)
                if distributed:  # seen in a worker's log only: repeat them here
                    for message in outcome.warnings:
                        logger.warning("%s: %s", record.name, message)
                outcome.text = None  # written: keep only what the counts need
                seen.append(outcome)
        finally:
            if distributed:
                summary.per_worker = dict(log_worker_counts(seen, "molecules"))
            summary.seconds = time.perf_counter() - start
    return summary
