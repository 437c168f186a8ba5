"""The label file of a run: which samples it holds, frames appended as they arrive, failures
recorded beside it.

Every frame carries its sample index (``frame`` in the extxyz comment line), so frames that
arrive out of order (from a cluster) are still known by index: a run resumes with the
samples the file lacks, and a sample the file holds is never written again. Each frame is
appended in one flushed, fsync'ed write (:func:`hybridff.io.frames.write_extxyz`); when the run
ends the file is put in sample order (one atomic rewrite), so it is the same file whether
the frames were computed serially or on any number of workers.

A frame whose QM failed is recorded in ``OUTPUT.failed.jsonl`` (one JSON object a line:
``frame``, ``reason``, ``worker``) and not retried by a later run unless asked
(``retry_failed``). One run writes a file at a time: ``.OUTPUT.lock`` beside it (a file lock,
released when the process ends, however it ends) refuses a second writer.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybridff.exceptions import DataFormatError, OutputBusyError
from hybridff.io.files import append_jsonl, read_jsonl, rewrite_jsonl
from hybridff.io.frames import LabelledFrames, read_extxyz, reorder_frames, write_extxyz
from hybridff.labels.tasks import FrameOutcome

logger = logging.getLogger(__name__)


def failed_path(output: str | os.PathLike) -> Path:
    """Where the failed frames of label file ``output`` are recorded."""
    output = Path(output)
    return output.with_name(output.name + ".failed.jsonl")


def lock_file(output: str | os.PathLike) -> Path:
    """The lock a run holds while it writes label file ``output`` (a hidden file beside it)."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


def read_failures(path: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """sample index -> record of a failed-frames file (empty when it does not exist)."""
    failures: dict[int, dict[str, Any]] = {}
    for record in read_jsonl(path, "failed-frame record"):
        try:
            failures[int(record["frame"])] = record
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{path}: a record without its frame number ({exc}): "
                                  f"{json.dumps(record)[:80]}; repair or delete it") from exc
    return failures


class LabelStore:
    """The label file ``path`` of a molecule (``numbers``, ``bonds``) and its failures.

    Use as a context manager: entering takes the file's lock (an :class:`OutputBusyError` when
    another run holds it) and reads what the file already holds; leaving puts the frames in
    sample order and releases the lock.
    """

    def __init__(self, path: str | os.PathLike, numbers: Sequence[int],
                 bonds: Sequence[tuple[int, int]] | None = None) -> None:
        self.path = Path(path)
        self.failed_path = failed_path(self.path)
        self.numbers = np.asarray(numbers, dtype=int)
        self.bonds = bonds
        self.existing: LabelledFrames | None = None
        #: sample index of each frame, in file order
        self.order: list[int] = []
        self.failures: dict[int, dict[str, Any]] = {}
        self._lock: Any = None

    def __enter__(self) -> LabelStore:
        from filelock import FileLock, Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = lock_file(self.path)
        self._lock = FileLock(str(lock_path), timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            raise OutputBusyError(
                f"{self.path}: another run is writing this file (it holds {lock_path}); wait "
                "for it to finish, or write to another file") from None
        try:
            self._load()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.sort()
        finally:
            self._lock.release()

    def _load(self) -> None:
        if self.path.exists():
            self.existing = read_extxyz(self.path, self.numbers, bonds=self.bonds)
            infos = self.existing.info or [{} for _ in range(len(self.existing))]
            self.order = [int(info.get("frame", k)) for k, info in enumerate(infos)]
            twice = sorted({k for k in self.order if self.order.count(k) > 1})
            if twice:
                logger.warning("%s holds sample(s) %s more than once; they count as done",
                               self.path, ", ".join(map(str, twice[:10])))
        self.failures = read_failures(self.failed_path)

    @property
    def done(self) -> set[int]:
        """Sample indices the file holds."""
        return set(self.order)

    def missing(self, n_samples: int, retry_failed: bool = False) -> list[int]:
        """Sample indices below ``n_samples`` still to compute: not in the file and (unless
        ``retry_failed``) not recorded as failed."""
        skip = self.done | (set() if retry_failed else set(self.failures))
        return [k for k in range(n_samples) if k not in skip]

    def existing_frames(self, indices: Sequence[int]) -> dict[int, np.ndarray]:
        """sample index -> positions (nm) of the frames the file holds among ``indices``."""
        if self.existing is None:
            return {}
        wanted = set(indices)
        return {k: self.existing.positions[i] for i, k in enumerate(self.order) if k in wanted}

    def add(self, outcome: FrameOutcome, positions: np.ndarray, info: dict[str, Any]) -> bool:
        """Append a computed frame (or record its failure); ``False`` when the file already
        holds that sample (a duplicate result is dropped, never written twice)."""
        k = outcome.index
        if k in self.done:
            logger.debug("%s: sample %d arrived again; already written", self.path, k)
            return False
        if not outcome.ok:
            record = {"frame": k, "reason": outcome.error, "worker": outcome.worker}
            append_jsonl(self.failed_path, record)
            self.failures[k] = record
            return True
        extra = {} if outcome.dipole is None else {"dipoles_e_nm": outcome.dipole[None]}
        write_extxyz(self.path, self.numbers, np.asarray(positions)[None], [outcome.energy],
                     np.asarray(outcome.forces)[None], info=[{"frame": k, **info}], append=True,
                     **extra)
        self.order.append(k)
        if k in self.failures:  # a retried failure that now worked
            del self.failures[k]
            rewrite_jsonl(self.failed_path, self.failures.values())
        return True

    def sort(self) -> None:
        """Put the file's frames in sample order (an atomic rewrite, only when needed)."""
        if self.order != sorted(self.order) and self.path.exists():
            reorder_frames(self.path, sorted(range(len(self.order)), key=self.order.__getitem__))
            self.order.sort()
