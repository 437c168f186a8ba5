"""One frame's QM label as a task: plain data in, plain data out, the same function wherever
it runs (in-process or on a Dask worker).

A :class:`FrameTask` carries what the QM engine needs (atomic numbers, positions in nm, total
charge), the engine (a registry name of :mod:`hybridff.labels.qm` with its options, or an engine
object) and the thread count. :func:`compute_frame` returns a :class:`FrameOutcome`: energy
and forces, or the reason the QM failed (an SCF that did not converge, a program error),
so one bad frame never stops a run. Engines made from a name are built once per process and
reused (pyscf's warm start then carries from frame to frame within a worker); a process keeps
the :data:`ENGINE_CACHE_SIZE` most recently used ones.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridff.cluster import IN_PROCESS, thread_limits, worker_name
from hybridff.exceptions import HybridFFError
from hybridff.labels.qm import QMEngine, get_engine


@dataclass(frozen=True)
class FrameTask:
    """Label frame ``index`` (its sample index in the run) with ``engine``.

    ``engine``: a method name of :data:`hybridff.labels.qm.ENGINES` (built with ``options`` once per
    process) or a :class:`~hybridff.labels.qm.QMEngine` object (sent with the task; pickled by
    reference to its class, so the class must be importable where the task runs).
    ``threads``: OpenMP/BLAS threads of the QM calculation (``None``: leave as they are).
    """

    index: int
    numbers: np.ndarray
    positions: np.ndarray
    charge: int
    engine: str | QMEngine
    options: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None


@dataclass
class FrameOutcome:
    """What :func:`compute_frame` gives back: energy (kJ/mol), forces (N, 3; kJ/mol/nm) and the
    dipole (3,; e*nm) when the engine gives one, or ``error`` (why the QM failed);
    ``worker``: where it ran; ``seconds``: its QM time."""

    index: int
    energy: float | None = None
    forces: np.ndarray | None = None
    error: str | None = None
    worker: str = IN_PROCESS
    seconds: float = 0.0
    dipole: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


#: how many engines built from a name a process keeps (least recently used dropped first): a
#: run uses one, a long-lived worker that serves runs of other methods does not grow
ENGINE_CACHE_SIZE = 4


@dataclass(frozen=True)
class _EngineSpec:
    """A QM method name with its options; two specs are the same engine when the name and the
    options (sorted, as written by ``repr``) are."""

    name: str
    key: str
    options: dict[str, Any] = field(compare=False, hash=False)


@functools.lru_cache(maxsize=ENGINE_CACHE_SIZE)
def _built_engine(spec: _EngineSpec) -> QMEngine:
    return get_engine(spec.name, **spec.options)


def engine_for(task: FrameTask) -> QMEngine:
    """The task's engine: its object, or the one this process built for its name and options."""
    if isinstance(task.engine, QMEngine):
        return task.engine
    options = dict(task.options)
    return _built_engine(_EngineSpec(task.engine, repr(sorted(options.items())), options))


#: what a QM calculation raises for a frame it cannot do (recorded, the run goes on); any
#: other exception is a bug or a broken installation and stops the run
QM_FAILURES = (HybridFFError, np.linalg.LinAlgError, FloatingPointError)


def compute_frame(task: FrameTask) -> FrameOutcome:
    """QM energy and forces of one frame, or the reason it failed (the task function)."""
    worker = worker_name()
    engine = engine_for(task)  # imports the QM program first, so its thread pools are seen
    start = time.perf_counter()
    try:
        with thread_limits(task.threads):
            result = engine.compute(task.numbers, task.positions, charge=task.charge)
    except QM_FAILURES as exc:
        return FrameOutcome(task.index, error=f"{type(exc).__name__}: {exc}", worker=worker,
                            seconds=time.perf_counter() - start)
    seconds = time.perf_counter() - start
    forces = np.asarray(result.forces, dtype=np.float64)
    if not np.isfinite(result.energy) or not np.isfinite(forces).all():
        return FrameOutcome(task.index, error=f"{engine.name} gave a non-finite energy or "
                            "forces", worker=worker, seconds=seconds)
    dipole = getattr(result, "dipole", None)
    return FrameOutcome(task.index, float(result.energy), forces, worker=worker,
                        seconds=seconds,
                        dipole=None if dipole is None else np.asarray(dipole, dtype=np.float64))
