"""The output folder of a many-molecule run: one file per molecule written atomically, the
run's settings in its manifest, failed molecules recorded, one writer at a time."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hybridff.batch.jobs import Job, MoleculeOutcome
from hybridff.batch.records import MoleculeRecord
from hybridff.exceptions import InvalidOptionError, OutputBusyError
from hybridff.io.files import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_text,
    read_jsonl,
    rewrite_jsonl,
)

logger = logging.getLogger(__name__)

#: the run's settings, the failures and the lock, in the output folder
MANIFEST = "hybridff-batch.json"
FAILURES = "failures.jsonl"
LOCK = ".hybridff-batch.lock"


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
            rewrite_jsonl(self.failures_path, self.failures.values())
