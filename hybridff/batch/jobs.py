"""What a many-molecule run computes per molecule: a job (:class:`ParameterizeJob`,
:class:`ChargesJob`, or any :class:`Job`), and the task function :func:`compute_molecule` that
reads and prepares one record and runs the job on it, in-process or on a Dask worker."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from hybridff.batch.records import MoleculeRecord
from hybridff.cluster import thread_limits, worker_name
from hybridff.exceptions import (
    ForceFieldNotFoundError,
    HybridFFError,
    InvalidOptionError,
    ModelCompatibilityError,
    OptionalDependencyError,
    UnknownNameError,
)
from hybridff.mm.parameters import DEFAULT_CHARGE_METHOD
from hybridff.mm.signature import DEFAULT_PAIR_ORDER

#: OpenMP/BLAS threads of each task unless told otherwise (the same serially and on a cluster)
DEFAULT_THREADS = 1
#: what a molecule's task raises when the run itself cannot work (a missing package, a bad
#: force-field or model file, an unknown method): the run stops instead of failing each one
RUN_ERRORS = (OptionalDependencyError, ForceFieldNotFoundError, UnknownNameError,
              ModelCompatibilityError)
#: what a molecule's task raises for a molecule it cannot do (recorded, the run goes on);
#: RDKit raises ValueError and RuntimeError subclasses for chemistry it refuses
MOLECULE_FAILURES = (HybridFFError, ValueError, RuntimeError, ArithmeticError)


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
