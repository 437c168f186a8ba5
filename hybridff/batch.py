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
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hybridff.cluster import (
    NO_WORKERS_TIMEOUT_S,
    log_worker_counts,
    progress_bar,
    run_tasks,
    thread_limits,
    ticking,
    worker_name,
)
from hybridff.exceptions import (
    ForceFieldNotFoundError,
    HybridFFError,
    InvalidOptionError,
    ModelCompatibilityError,
    MoleculeInputError,
    OptionalDependencyError,
    OutputBusyError,
    UnknownNameError,
)
from hybridff.fileio import append_jsonl, atomic_write_bytes, atomic_write_text, read_jsonl
from hybridff.mm.parameters import DEFAULT_CHARGE_METHOD
from hybridff.mm.signature import DEFAULT_PAIR_ORDER

logger = logging.getLogger(__name__)

#: input suffixes read record by record
BATCH_SUFFIXES = (".sdf", ".sd", ".mol", ".smi")
#: the run's settings, the failures and the lock, in the output folder
MANIFEST = "hybridff-batch.json"
FAILURES = "failures.jsonl"
LOCK = ".hybridff-batch.lock"
#: longest output name (characters, before the suffix)
MAX_STEM = 80
#: OpenMP/BLAS threads of each task unless told otherwise (the same serially and on a cluster)
DEFAULT_THREADS = 1
#: what a molecule's task raises when the run itself cannot work (a missing package, a bad
#: force-field or model file, an unknown method): the run stops instead of failing each one
RUN_ERRORS = (OptionalDependencyError, ForceFieldNotFoundError, UnknownNameError,
              ModelCompatibilityError)
#: what a molecule's task raises for a molecule it cannot do (recorded, the run goes on);
#: RDKit raises ValueError and RuntimeError subclasses for chemistry it refuses
MOLECULE_FAILURES = (HybridFFError, ValueError, RuntimeError, ArithmeticError)


@dataclass(frozen=True)
class MoleculeRecord:
    """Record ``index`` (from 0, in file order) of an input: its ``kind`` (``"sdf"`` or
    ``"smi"``), its ``text``, where it is (for messages) and its output ``name``."""

    index: int
    name: str
    kind: str
    text: str
    where: str


def _safe_stem(title: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", title.strip())
    return stem.strip("._")[:MAX_STEM].rstrip("._")


def output_stems(titles: list[str]) -> list[str]:
    """The output name of each record: its title with characters other than letters, digits
    and ``._+-`` replaced by ``_`` (at most :data:`MAX_STEM` characters), ``mol<k>`` (k from 1)
    when nothing is left; a name taken by an earlier record (ignoring case) gets ``-<k>``."""
    taken: set[str] = set()
    stems = []
    for k, title in enumerate(titles, start=1):
        stem = _safe_stem(title) or f"mol{k}"
        if stem.casefold() in taken:
            base, n = f"{stem}-{k}", 1
            stem = base
            while stem.casefold() in taken:
                n += 1
                stem = f"{base}-{n}"
        taken.add(stem.casefold())
        stems.append(stem)
    return stems


def read_records(source: str | os.PathLike) -> list[MoleculeRecord]:
    """The records of an SDF/MOL or SMI file (a SMILES string: one record), unparsed.

    SDF records end at ``$$$$`` lines; a SMI line holds a SMILES and optionally a name (blank
    lines and ``#`` comments skipped)."""
    from hybridff.io.molecule import _names_a_file

    text_source = str(source)
    if not isinstance(source, Path) and not _names_a_file(text_source):
        return [MoleculeRecord(0, "mol1", "smi", text_source.strip(), "the SMILES")]
    path = Path(source)
    suffix = path.suffix.lower()
    if not path.exists():
        raise MoleculeInputError(f"molecule file {str(path)!r} does not exist")
    if path.is_dir():
        raise MoleculeInputError(f"{path} is a folder, not a molecule file; give an SDF or SMI "
                                 "file")
    if suffix not in BATCH_SUFFIXES:
        raise MoleculeInputError(
            f"{path}: one output per molecule reads {', '.join(BATCH_SUFFIXES)} files, not "
            f"{suffix or 'a file without suffix'}; convert it to SDF (e.g. obabel in.mol2 "
            "-O in.sdf)")
    try:
        lines = path.read_text(errors="replace").splitlines(keepends=True)
    except OSError as exc:
        raise MoleculeInputError(f"{path}: cannot read the file ({exc.strerror}); check its "
                                 "permissions") from None
    raw: list[tuple[str, str, str]] = []  # (title, text, where)
    if suffix == ".smi":
        for lineno, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            raw.append((fields[1] if len(fields) > 1 else "", line.strip(), f"{path}:{lineno}"))
        kind = "smi"
    else:
        start = 0
        for lineno, line in enumerate(lines, start=1):
            if line.strip() == "$$$$" or lineno == len(lines):
                block = lines[start:lineno]
                if any(x.strip() for x in block):
                    raw.append((block[0].strip(), "".join(block),
                                f"{path}, record {len(raw) + 1} (line {start + 1})"))
                start = lineno
        kind = "sdf"
    if not raw:
        raise MoleculeInputError(f"{path}: no molecule records found (empty, or not an "
                                 f"{'SMI' if kind == 'smi' else 'SDF'} file)")
    stems = output_stems([title for title, _, _ in raw])
    return [MoleculeRecord(k, stems[k], kind, text, where)
            for k, (_, text, where) in enumerate(raw)]


class Job(Protocol):
    """What to compute for each molecule, and the file it gives.

    Optional: ``task_data(record)``, what a molecule's task needs beside its record, read
    where the run starts and sent with the task (then ``run(mol, name, data)``; ``None``: the
    molecule lacks its input and is counted, not failed, with ``lacking_hint`` in the
    summary); ``complete_file(path)``, the check of a binary output in place of
    ``complete(text)``; ``run`` may return ``bytes``."""

    command: str
    suffix: str

    def settings(self) -> dict[str, Any]: ...
    def check(self) -> None: ...
    def run(self, mol: Any, name: str) -> tuple[str, dict[str, Any]]: ...
    def complete(self, text: str) -> bool: ...


@dataclass(frozen=True)
class ParameterizeJob:
    """An OpenMM ForceField XML per molecule (:func:`hybridff.parameterize`), its residue
    template named ``residue_name`` or else the output name, so several files load together."""

    charge_method: str = DEFAULT_CHARGE_METHOD
    forcefield: str = "hybridff-gaff2.xml"
    pair_order: str = DEFAULT_PAIR_ORDER
    residue_name: str | None = None
    command: str = field(default="parameterize", init=False)
    suffix: str = field(default=".xml", init=False)

    def settings(self) -> dict[str, Any]:
        return {"charge_method": self.charge_method, "forcefield": self.forcefield,
                "pair_order": self.pair_order, "residue_name": self.residue_name}

    def check(self) -> None:
        from hybridff.charges import get_charge_method
        from hybridff.mm.tables import load_tables

        load_tables(self.forcefield)
        get_charge_method(self.charge_method)

    def run(self, mol: Any, name: str) -> tuple[str, dict[str, Any]]:
        from hybridff.mm.parameters import parameterize

        pm = parameterize(mol, self.charge_method, self.forcefield,
                          residue_name=self.residue_name or name, pair_order=self.pair_order)
        filled = sum(1 for t in pm.filled_terms if t.kind != "improper")
        return pm.to_ffxml() + "\n", {"atoms": mol.GetNumAtoms(),
                                      "net_charge": int(pm.net_charge), "filled": filled}

    def complete(self, text: str) -> bool:
        from xml.etree import ElementTree as ET

        try:
            return ET.fromstring(text).tag == "ForceField"
        except ET.ParseError:
            return False


@dataclass(frozen=True)
class ChargesJob:
    """Partial charges per molecule (:func:`hybridff.charges.assign_charges` with
    ``options``), written as ``suffix`` (:data:`hybridff.charges.output.FORMATS`)."""

    method: str = "ml"
    suffix: str = ".sdf"
    options: dict[str, Any] = field(default_factory=dict)
    command: str = field(default="charges", init=False)

    def settings(self) -> dict[str, Any]:
        return {"method": self.method, "format": self.suffix, "options": self.options}

    def check(self) -> None:
        from hybridff.charges import get_charge_method
        from hybridff.charges.output import FORMATS

        if self.suffix not in FORMATS:
            raise InvalidOptionError(f"unknown charge file format {self.suffix!r}; use one of "
                                     f"{', '.join(FORMATS)}")
        get_charge_method(self.method)

    def run(self, mol: Any, name: str) -> tuple[str, dict[str, Any]]:
        from hybridff.charges import assign_charges
        from hybridff.charges.output import charges_text

        q = assign_charges(mol, self.method, **self.options)
        return charges_text(mol, q, self.method, self.suffix), {
            "atoms": mol.GetNumAtoms(), "total": float(np.sum(q))}

    def complete(self, text: str) -> bool:
        if self.suffix == ".sdf":
            return text.rstrip().endswith("$$$$")
        if self.suffix == ".mol2":
            return "@<TRIPOS>SUBSTRUCTURE" in text
        return text.startswith("index,name,element,charge\n") and text.endswith("\n") \
            and text.count("\n") > 1


@dataclass(frozen=True)
class MoleculeTask:
    """Run ``job`` on one record with ``threads`` OpenMP/BLAS threads; ``data``: what the job
    needs beside the record (its ``task_data``, e.g. the molecule's label file), sent with
    the task."""

    record: MoleculeRecord
    job: Any
    threads: int | None = DEFAULT_THREADS
    data: Any = None


@dataclass
class MoleculeOutcome:
    """What :func:`compute_molecule` gives back: the output file's ``text`` and a few numbers
    (``info``), or ``error``; the warnings the molecule raised; where and how long it ran."""

    index: int
    name: str
    text: str | bytes | None = None
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    worker: str = "in-process"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class _ThreadWarnings(logging.Handler):
    """Collects the WARNING messages hybridff logs in one thread."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


def compute_molecule(task: MoleculeTask) -> MoleculeOutcome:
    """Read, prepare and process one record (the task function; see the module doc)."""
    from hybridff.io.molecule import load_record

    record = task.record
    start = time.perf_counter()
    catch = _ThreadWarnings()
    package_logger = logging.getLogger("hybridff")
    package_logger.addHandler(catch)
    try:
        with thread_limits(task.threads):
            mol = load_record(record.text, record.kind, record.where)
            extra = () if task.data is None else (task.data,)
            text, info = task.job.run(mol, record.name, *extra)
    except RUN_ERRORS:
        raise
    except MOLECULE_FAILURES as exc:
        message = str(exc).strip() or type(exc).__name__
        if not message.startswith(record.where):
            message = f"{record.where}: {message}"
        return MoleculeOutcome(record.index, record.name, error=message,
                               warnings=catch.messages, worker=worker_name(),
                               seconds=time.perf_counter() - start)
    finally:
        package_logger.removeHandler(catch)
    return MoleculeOutcome(record.index, record.name, text, info, warnings=catch.messages,
                           worker=worker_name(), seconds=time.perf_counter() - start)


def _lost(task: MoleculeTask, exc: BaseException) -> MoleculeOutcome:
    return MoleculeOutcome(task.record.index, task.record.name, error=(
        f"{task.record.where}: every Dask worker that processed this molecule died (a crash "
        f"or out of memory?): {exc}"), worker="(killed)")


class BatchFolder:
    """The output folder of a many-molecule run (see the module doc). Use as a context
    manager: entering takes the folder's lock (an :class:`OutputBusyError` when another run
    holds it), checks and writes the manifest, and reads the failures."""

    def __init__(self, folder: str | os.PathLike, job: Job) -> None:
        self.folder = Path(folder)
        self.job = job
        self.failures_path = self.folder / FAILURES
        self.failures: dict[str, dict[str, Any]] = {}
        self._lock: Any = None

    def __enter__(self) -> BatchFolder:
        from filelock import FileLock, Timeout

        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.folder / LOCK), timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            raise OutputBusyError(
                f"{self.folder}: another run is writing to this folder (it holds "
                f"{self.folder / LOCK}); wait for it to finish, or write to another folder"
            ) from None
        try:
            self._manifest()
            self.failures = {str(r.get("name")): r for r in
                             read_jsonl(self.failures_path, "failed-molecule record")}
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()

    def _manifest(self) -> None:
        from hybridff import __version__

        path = self.folder / MANIFEST
        settings = json.loads(json.dumps(self.job.settings()))  # as JSON gives it back
        if path.exists():
            try:
                held = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise InvalidOptionError(f"{path}: not a hybridff batch manifest ({exc}); "
                                         "delete it or write to another folder") from exc
            if held.get("command") != self.job.command:
                raise InvalidOptionError(
                    f"{self.folder} holds the outputs of hybridff {held.get('command')}; write "
                    f"the {self.job.command} outputs to another folder")
            differ = [f"{k} {held['settings'].get(k)!r} (this run: {v!r})"
                      for k, v in settings.items() if held.get("settings", {}).get(k) != v]
            if differ:
                raise InvalidOptionError(
                    f"{self.folder} holds outputs made with other settings: "
                    f"{'; '.join(differ)}; use the same settings to continue that run, or "
                    "write to another folder")
            if held.get("hybridff_version") != __version__:
                logger.warning("%s was started with hybridff %s; this is %s: the files "
                               "written now may differ from the earlier ones", self.folder,
                               held.get("hybridff_version"), __version__)
            return
        atomic_write_text(path, json.dumps({"command": self.job.command, "settings": settings,
                                            "hybridff_version": __version__}, indent=1) + "\n")

    def path(self, record: MoleculeRecord) -> Path:
        """The output file of ``record``."""
        return self.folder / f"{record.name}{self.job.suffix}"

    def done(self, record: MoleculeRecord) -> bool:
        """Whether the output of ``record`` exists and is complete."""
        path = self.path(record)
        if not path.is_file():
            return False
        complete_file = getattr(self.job, "complete_file", None)  # a binary output's check
        if complete_file is not None:
            if complete_file(path):
                return True
            logger.warning("%s is incomplete or unreadable; computing it again", path)
            return False
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        if self.job.complete(text):
            return True
        logger.warning("%s is incomplete or unreadable; computing it again", path)
        return False

    def add(self, outcome: MoleculeOutcome, record: MoleculeRecord) -> None:
        """Write a molecule's file (atomically), or record its failure."""
        if not outcome.ok:
            self.fail(record, str(outcome.error), outcome.worker)
            return
        if isinstance(outcome.text, bytes):
            atomic_write_bytes(self.path(record), outcome.text)
        else:
            atomic_write_text(self.path(record), outcome.text or "")
        self.clear_failure(record.name)

    def fail(self, record: MoleculeRecord, reason: str, worker: str) -> None:
        """Record that ``record`` failed (in ``failures.jsonl``)."""
        entry = {"record": record.index + 1, "name": record.name, "source": record.where,
                 "reason": reason, "worker": worker}
        append_jsonl(self.failures_path, entry)
        self.failures[record.name] = entry

    def clear_failure(self, name: str) -> None:
        """Forget the failure of molecule ``name``, if any (a retried molecule that worked)."""
        if name in self.failures:
            del self.failures[name]
            text = "".join(json.dumps(r) + "\n" for r in self.failures.values())
            if text:
                atomic_write_text(self.failures_path, text)
            else:
                self.failures_path.unlink(missing_ok=True)


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

