"""QM labels of a series: ``hybridff label ligands.sdf ... -o labels/`` gives one label file
per molecule of an SDF or SMI file, ``labels/NAME.xyz`` (names as
:func:`hybridff.batch.read_records` gives them), every frame of every molecule one task.

A run goes in three steps:

1. In this process, each molecule's record is read, its MM built and its label file opened
   (:class:`~hybridff.labels.store.LabelStore`: one writer, what it holds, its failed frames),
   and its plan made as for one molecule (:func:`~hybridff.labels.plan.plan_labels`).
2. Each molecule that lacks frames has its conformations sampled: one task per molecule
   (:func:`sample_molecule`; the MM System travels with it).
3. Every missing frame of every molecule is one QM task (:func:`compute_series_frame`), so a
   few molecules of hundreds of frames spread over all the workers; each frame is appended
   to its molecule's file as it arrives, and each file is put in sample order at the end.

Steps 2 and 3 run in-process (the default; Dask is not imported) or on one Dask cluster
(:mod:`hybridff.cluster`). Each molecule's file is the one ``hybridff label`` of that molecule
alone writes with the same settings, serially or on any number of workers; a re-run computes
only what the files lack. A molecule that cannot be read, parameterized or sampled is
recorded in ``FOLDER/failures.jsonl`` (skipped by later runs unless ``retry_failed``); a
frame whose QM fails is recorded in ``FOLDER/NAME.xyz.failed.jsonl`` as for one molecule.
The folder keeps the level of theory and MM charges in ``hybridff-batch.json`` (a run with
others is refused) and ``.hybridff-batch.lock`` refuses a second run on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridff.batch import (
    MOLECULE_FAILURES,
    BatchFolder,
    MoleculeRecord,
    RunCounts,
    read_records,
)
from hybridff.cluster import (
    IN_PROCESS,
    NO_WORKERS_TIMEOUT_S,
    dask_client,
    log_worker_counts,
    progress_bar,
    run_tasks,
    thread_limits,
    ticking,
    worker_name,
)
from hybridff.exceptions import OutputBusyError
from hybridff.labels.distributed import lost_frame
from hybridff.labels.options import LabelOptions
from hybridff.labels.plan import LabelPlan, frame_settings, plan_labels, qm_info
from hybridff.labels.store import LabelStore
from hybridff.labels.tasks import FrameOutcome, FrameTask, compute_frame

logger = logging.getLogger(__name__)

#: the label file of molecule NAME is FOLDER/NAME.xyz
SUFFIX = ".xyz"


@dataclass(frozen=True)
class SeriesLabelJob:
    """What every label file of a series folder shares, kept in its manifest: the QM
    ``method`` with its ``options`` and the MM ``charge_method`` of the sampling."""

    method: str
    options: dict[str, Any] = field(default_factory=dict)
    charge_method: str | None = None
    command: str = field(default="label", init=False)
    suffix: str = field(default=SUFFIX, init=False)

    def settings(self) -> dict[str, Any]:
        return {"method": self.method, "options": self.options,
                "charge_method": self.charge_method}


@dataclass(frozen=True)
class SampleTask:
    """Sample ``n_frames`` conformations of molecule ``index`` (its record number) from its
    MM ``system`` and ``positions`` (nm) with ``sampler`` and its ``options``."""

    index: int
    system: Any  # openmm.System (pickled as its XML)
    positions: np.ndarray
    mol: Any  # the parameterized RDKit Mol (torsion samplers read its bonds)
    sampler: str
    n_frames: int
    temperature: float
    seed: int
    options: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None


@dataclass
class SampleOutcome:
    """The conformations of a :class:`SampleTask` (a
    :class:`~hybridff.labels.samplers.Conformations`), or why sampling failed."""

    index: int
    sampled: Any = None
    error: str | None = None
    worker: str = IN_PROCESS
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def sample_molecule(task: SampleTask) -> SampleOutcome:
    """Run one molecule's sampler (the task function of step 2)."""
    from hybridff.labels.samplers import sample_conformations

    start = time.perf_counter()
    try:
        with thread_limits(task.threads):
            sampled = sample_conformations(task.sampler, task.system, task.positions,
                                           task.n_frames, mol=task.mol,
                                           temperature=task.temperature, seed=task.seed,
                                           **task.options)
    except MOLECULE_FAILURES as exc:
        return SampleOutcome(task.index, error=f"sampling failed: {exc}", worker=worker_name(),
                             seconds=time.perf_counter() - start)
    return SampleOutcome(task.index, sampled, worker=worker_name(),
                         seconds=time.perf_counter() - start)


def _lost_sampling(task: SampleTask, exc: BaseException) -> SampleOutcome:
    return SampleOutcome(task.index, error=(
        "every Dask worker that sampled this molecule died (a crash or out of memory?): "
        f"{exc}"), worker="(killed)")


@dataclass(frozen=True)
class SeriesFrameTask:
    """Frame ``frame`` (a :class:`~hybridff.labels.tasks.FrameTask`) of molecule
    ``molecule`` (its record number)."""

    molecule: int
    frame: FrameTask


@dataclass
class SeriesFrameOutcome:
    """The :class:`~hybridff.labels.tasks.FrameOutcome` of a frame of molecule ``molecule``."""

    molecule: int
    frame: FrameOutcome


def compute_series_frame(task: SeriesFrameTask) -> SeriesFrameOutcome:
    """QM energy and forces of one frame of one molecule (the task function of step 3)."""
    return SeriesFrameOutcome(task.molecule, compute_frame(task.frame))


def _lost_series_frame(task: SeriesFrameTask, exc: BaseException) -> SeriesFrameOutcome:
    return SeriesFrameOutcome(task.molecule, lost_frame(task.frame, exc))


@dataclass
class _Molecule:
    """A molecule with frames to compute (this process's side)."""

    record: MoleculeRecord
    mm: Any  # hybridff.training.residuals.MMSetup
    store: LabelStore
    plan: LabelPlan
    charge: int
    sampled: Any = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class SeriesLabelSummary(RunCounts):
    """How a series labelling run went (counts of input molecules and of frames;
    ``already_done``: molecules whose file already held every wanted frame, or failed frame,
    at the start)."""

    folder: str
    total: int
    n_frames: int
    frames_added: int = 0
    frames_failed: int = 0

    @property
    def complete(self) -> bool:
        """Every molecule has its label file (frames whose QM failed aside)."""
        return self.failed == 0 and self.skipped_failed == 0

    def line(self) -> str:
        """One line for the user."""
        from hybridff.batch import FAILURES

        text = (f"label: {self.frames_added} frames added to {self.folder} in "
                f"{self.seconds:.1f} s; {self.total - self.failed - self.skipped_failed} of "
                f"{self.total} molecules labelled ({self.n_frames} frames wanted each)")
        if self.already_done:
            text += f", {self.already_done} complete before this run"
        if self.frames_failed:
            text += (f"; {self.frames_failed} frames failed (reasons in "
                     f"{Path(self.folder) / ('NAME' + SUFFIX + '.failed.jsonl')})")
        if self.failed:
            text += f"; {self.failed} molecules failed (reasons in {Path(self.folder) / FAILURES})"
        if self.skipped_failed:
            text += (f"; {self.skipped_failed} skipped that failed before (--retry-failed "
                     "retries them)")
        return text


def _raise_open_file_limit(needed: int) -> None:
    """Let this process hold ``needed`` more open files (a label file's lock each), up to the
    hard limit (best effort: not every system has the limit)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def label_series(source: str | os.PathLike, folder: str | os.PathLike, n_frames: int,
                 method: str = "xtb", *args: Any, options: LabelOptions | None = None,
                 **kwargs: Any) -> SeriesLabelSummary:
    """Make ``folder/NAME.xyz`` hold ``n_frames`` labelled frames for every molecule of
    ``source`` (an SDF/SMI file or a SMILES); the arguments (``options``, a
    :class:`~hybridff.labels.options.LabelOptions`, or its fields as keywords, the QM engine's
    options among them) mean what they mean for :func:`hybridff.training.workflow.label` of
    one molecule, and the run is the one the module doc describes."""
    from hybridff.labels.qm import get_engine
    from hybridff.labels.samplers import check_sampler

    opts, engine_options = LabelOptions.from_call(args, options, kwargs)
    check_sampler(opts.sampler)
    engine = get_engine(method, **engine_options)  # a missing QM package fails here
    records = read_records(source)
    start = time.perf_counter()
    summary = SeriesLabelSummary(str(folder), len(records), n_frames)
    job = SeriesLabelJob(method, dict(engine_options), opts.charge_method)
    with BatchFolder(folder, job) as out, contextlib.ExitStack() as stores:
        _raise_open_file_limit(len(records))
        todo = []
        for record in records:
            if record.name in out.failures and not opts.retry_failed:
                summary.skipped_failed += 1
                continue
            molecule = _open(record, out, stores, job, n_frames, opts, summary)
            if molecule is not None:
                todo.append(molecule)
        if todo:
            with (contextlib.nullcontext(opts.client)
                  if opts.client is not None or not opts.distributed
                  else dask_client(opts.scheduler, opts.workers)) as cluster:
                runs = {"client": cluster, "no_workers_timeout":
                        opts.no_workers_timeout or NO_WORKERS_TIMEOUT_S}
                todo = _sample(todo, out, opts, runs, summary)
                _label(todo, engine, method, engine_options, opts, runs, summary)
    summary.seconds = time.perf_counter() - start
    return summary


def _open(record: MoleculeRecord, out: BatchFolder, stores: contextlib.ExitStack,
          job: SeriesLabelJob, n_frames: int, opts: LabelOptions,
          summary: SeriesLabelSummary) -> _Molecule | None:
    """Read a record, build its MM, open its label file and plan it (step 1); ``None`` when
    it has nothing to compute or failed (recorded)."""
    from hybridff.io.molecule import formal_charge, load_record
    from hybridff.training.residuals import build_mm

    try:
        mol = load_record(record.text, record.kind, record.where)
        mm = build_mm(mol, charge_method=job.charge_method)
        store = LabelStore(out.path(record), mm.numbers, bonds=mm.bonds)
        with contextlib.ExitStack() as held:
            held.enter_context(store)
            plan = plan_labels(store, n_frames, opts.sampler, opts.sampler_options,
                               opts.retry_failed)
            if plan.missing:
                stores.push(held.pop_all())  # keep the file's lock for the run
    except OutputBusyError:
        raise  # another run writes this file: not the molecule's fault
    except MOLECULE_FAILURES as exc:
        _molecule_failed(out, record, str(exc), IN_PROCESS, summary)
        return None
    if not plan.missing:
        summary.already_done += 1
        out.clear_failure(record.name)
        return None
    return _Molecule(record, mm, store, plan, formal_charge(mm.parameterized.mol))


def _molecule_failed(out: BatchFolder, record: MoleculeRecord, reason: str, worker: str,
                     summary: SeriesLabelSummary) -> None:
    reason = reason.strip() or "failed"
    if not reason.startswith(record.where):
        reason = f"{record.where}: {reason}"
    out.fail(record, reason, worker)
    summary.failed += 1
    summary.first_failure = summary.first_failure or reason
    logger.warning("%s failed: %s", record.name, reason)


def _sample(todo: list[_Molecule], out: BatchFolder, opts: LabelOptions, runs: dict[str, Any],
            summary: SeriesLabelSummary) -> list[_Molecule]:
    """Sample every molecule's conformations, one task each (step 2); the molecules that
    sampled."""
    by_index = {m.record.index: m for m in todo}
    tasks = [SampleTask(m.record.index, m.mm.system, m.mm.positions, m.mm.parameterized.mol,
                        m.plan.sampler, m.plan.n_frames, opts.temperature, opts.seed,
                        m.plan.options, opts.threads) for m in todo]
    bar = progress_bar(len(tasks), 0, "sampling", "mol", opts.progress)
    for outcome in ticking(run_tasks(sample_molecule, tasks, what="sampling",
                                     ident=lambda t: t.index, lost=_lost_sampling, **runs),
                           bar):
        molecule = by_index[outcome.index]
        if outcome.ok:
            molecule.sampled = outcome.sampled
            molecule.settings = frame_settings(molecule.store, molecule.plan, opts.seed,
                                               opts.temperature, outcome.sampled)
        else:
            _molecule_failed(out, molecule.record, str(outcome.error), outcome.worker,
                             summary)
    sampled = [m for m in todo if m.sampled is not None]
    for molecule in sampled:
        out.clear_failure(molecule.record.name)
    return sampled


def _label(todo: list[_Molecule], engine: Any, method: str, engine_options: dict[str, Any],
           opts: LabelOptions, runs: dict[str, Any], summary: SeriesLabelSummary) -> None:
    """Compute every missing frame of every molecule, one task each, and append each to its
    molecule's file as it arrives (step 3)."""
    by_index = {m.record.index: m for m in todo}
    # serially the engine object is reused; on a cluster each worker builds its own
    distributed = opts.distributed
    spec, options = (method, engine_options) if distributed else (engine, {})
    tasks = [SeriesFrameTask(m.record.index, FrameTask(
        k, m.mm.numbers, m.sampled.positions[k], m.charge, spec, options, opts.threads))
        for m in todo for k in m.plan.missing]
    level = qm_info(engine)
    total = sum(m.plan.n_frames for m in todo)
    bar = progress_bar(total, total - len(tasks), f"{engine.name} labels", "frame",
                       opts.progress)
    seen: list[FrameOutcome] = []  # where each frame ran and whether it failed, for the counts
    failed: dict[int, list[FrameOutcome]] = {}
    try:
        for outcome in ticking(run_tasks(compute_series_frame, tasks, what="frame",
                                         ident=lambda t: f"{t.molecule}-{t.frame.index}",
                                         lost=_lost_series_frame, **runs), bar):
            molecule, frame = by_index[outcome.molecule], outcome.frame
            info = {**molecule.settings, **molecule.sampled.info[frame.index], **level}
            if molecule.store.add(frame, molecule.sampled.positions[frame.index], info):
                if frame.ok:
                    summary.frames_added += 1
                else:
                    summary.frames_failed += 1
                    failed.setdefault(outcome.molecule, []).append(frame)
            seen.append(FrameOutcome(frame.index, error=frame.error, worker=frame.worker))
    finally:
        if distributed:
            summary.per_worker = dict(log_worker_counts(seen, "frames"))
    for index, frames in failed.items():
        molecule = by_index[index]
        logger.warning("%s: %d of %d frames failed (recorded in %s; the run went on), e.g. "
                       "frame %d: %s", molecule.record.name, len(frames),
                       len(molecule.plan.missing), molecule.store.failed_path,
                       frames[0].index, frames[0].error)
