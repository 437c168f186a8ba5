"""Corrections for a series: ``hybridff train ligands.sdf labels/ -o models/`` trains one model
per molecule of an SDF or SMI file on its label file ``labels/NAME.xyz`` (names as
:func:`hybridff.batch.read_records` gives them, the ones ``hybridff label ... -o labels/``
wrote) and writes ``models/NAME.pt``.

It is a many-molecule run of :mod:`hybridff.batch` with :class:`TrainJob`: one task per
molecule, in-process one after the other (the default) or on a Dask cluster; each molecule is
trained by :func:`hybridff.training.workflow.train` (or, ``dipoles_only``, the dipole model
alone) with the same settings as ``hybridff train`` of that molecule, in its own temporary
folder, with ``threads`` torch/OpenMP threads. The label file travels with the task and the
model file comes back (no shared file system needed); each is written atomically. A model
file that is complete is skipped by a later run; a molecule whose training fails is
recorded in ``models/failures.jsonl``; a molecule without a label file yet is counted in the
summary (not as a failure) so that a later run, once it is labelled, trains it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hybridff.batch import DEFAULT_THREADS, BatchSummary, MoleculeRecord, read_records, run_batch
from hybridff.cluster import NO_WORKERS_TIMEOUT_S
from hybridff.exceptions import MoleculeInputError

logger = logging.getLogger(__name__)

#: the label file of molecule NAME in the labels folder
LABEL_SUFFIX = ".xyz"


def _config_settings(config: Any) -> dict[str, Any] | None:
    """A config dataclass as the manifest keeps it (its progress switch left out)."""
    if config is None:
        return None
    settings = asdict(config)
    settings.pop("progress", None)
    return settings


@dataclass(frozen=True)
class TrainJob:
    """Train a model per molecule from ``labels/NAME.xyz``: a correction with ``config`` (a
    :class:`~hybridff.training.trainer.TrainConfig`), the MM ``charge_method``, ``ml_only``,
    ``refit`` and ``dipoles`` (a :class:`~hybridff.training.dipoles.DipoleConfig`, else no
    dipole model) as :func:`hybridff.training.workflow.train` takes them; with
    ``dipoles_only`` a dipole model file alone. ``threads``: torch threads of each task."""

    labels: str
    config: Any = None
    charge_method: str | None = None
    ml_only: bool = False
    refit: bool = True
    dipoles: Any = None
    dipoles_only: bool = False
    threads: int = DEFAULT_THREADS
    command: str = field(default="train", init=False)
    suffix: str = field(default=".pt", init=False)

    def settings(self) -> dict[str, Any]:
        return {"config": _config_settings(self.config), "charge_method": self.charge_method,
                "ml_only": self.ml_only, "refit": self.refit,
                "dipoles": _config_settings(self.dipoles), "dipoles_only": self.dipoles_only}

    @property
    def lacking_hint(self) -> str:
        return (f": no {Path(self.labels) / ('NAME' + LABEL_SUFFIX)} yet; label them "
                f"(hybridff label MOLECULES ... -o {Path(self.labels)}/) and run again")

    def check(self) -> None:
        if not Path(self.labels).is_dir():
            raise MoleculeInputError(
                f"{self.labels} is not a folder of label files; give the folder that "
                "'hybridff label MOLECULES ... -o FOLDER/' wrote (NAME.xyz per molecule)")
        if self.dipoles_only and self.dipoles is None:
            raise MoleculeInputError("dipoles_only needs the dipole model's settings (dipoles)")

    def label_file(self, name: str) -> Path:
        """The label file of molecule ``name``."""
        return Path(self.labels) / f"{name}{LABEL_SUFFIX}"

    def task_data(self, record: MoleculeRecord) -> tuple[str, bytes] | None:
        """(file name, content) of the record's label file; ``None`` when it has none yet."""
        path = self.label_file(record.name)
        if not path.is_file():
            return None
        return path.name, path.read_bytes()

    def run(self, mol: Any, name: str, data: tuple[str, bytes]) -> tuple[bytes, dict[str, Any]]:
        """Train one molecule's model on its label file ``data``; (model file, numbers)."""
        from hybridff.threads import torch_threads

        with torch_threads(self.threads), \
                tempfile.TemporaryDirectory(prefix="hybridff-train-") as tmp:
            labels = Path(tmp) / data[0]  # the same name: the model records it
            labels.write_bytes(data[1])
            output = Path(tmp) / f"{name}{self.suffix}"
            meta = self._train(mol, labels, output)
            return output.read_bytes(), {"n_frames": meta.get("n_frames")}

    def _train(self, mol: Any, labels: Path, output: Path) -> dict[str, Any]:
        if self.dipoles_only:
            from hybridff.training.dipoles import train_dipoles_from_files

            return train_dipoles_from_files(mol, labels, output,
                                            replace(self.dipoles, progress=False),
                                            charge_method=self.charge_method)
        from hybridff.training.trainer import TrainConfig
        from hybridff.training.workflow import train

        config = replace(self.config or TrainConfig(), progress=False)
        dipoles = None if self.dipoles is None else replace(self.dipoles, progress=False)
        return train(mol, labels, output, config, charge_method=self.charge_method,
                     ml_only=self.ml_only, refit=self.refit, dipoles=dipoles)

    def complete(self, text: str) -> bool:  # the model file is binary: see complete_file
        return False

    def complete_file(self, path: Path) -> bool:
        """Whether ``path`` is a complete model file (an intact archive with its metadata);
        a model trained on an earlier version of its label file counts as complete, with a
        warning."""
        metadata = model_metadata(path)
        if metadata is None:
            return False
        labels = self.label_file(path.stem)
        trained_on = metadata.get("training_set_sha256")
        if trained_on and labels.is_file():
            from hybridff.io.frames import file_sha256

            if file_sha256(labels) != trained_on:
                logger.warning("%s was trained on an earlier %s (its frames changed since); "
                               "delete the model to train it on the current labels", path,
                               labels)
        return True


def model_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The metadata of a model file (a correction's or a dipole model's), read from the
    archive without loading the model; ``None`` when the file is not an intact model file."""
    from hybridff.ml.dipole import METADATA_NAME as DIPOLE_METADATA
    from hybridff.ml.modelfile import METADATA_NAME

    try:
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:
                return None
            for name in archive.namelist():
                if name.endswith((f"extra/{METADATA_NAME}", f"extra/{DIPOLE_METADATA}")):
                    return json.loads(archive.read(name))
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return None
    return None


def train_series(source: str | os.PathLike, labels: str | os.PathLike,
                 folder: str | os.PathLike, job: TrainJob | None = None, *,
                 workers: int | None = None, scheduler: str | None = None, client: Any = None,
                 retry_failed: bool = False, progress: bool = True,
                 no_workers_timeout: float = NO_WORKERS_TIMEOUT_S,
                 **settings: Any) -> BatchSummary:
    """Train a model per molecule of ``source`` on ``labels/NAME.xyz`` into
    ``folder/NAME.pt`` (see the module doc): with ``job``, or a :class:`TrainJob` of
    ``settings``. Runs as :func:`hybridff.batch.run_batch` does."""
    if job is None:
        job = TrainJob(str(Path(labels).resolve()), **settings)
    return run_batch(source, folder, job, workers=workers, scheduler=scheduler, client=client,
                     threads=job.threads, retry_failed=retry_failed, progress=progress,
                     no_workers_timeout=no_workers_timeout)


def series_report(source: str | os.PathLike, folder: str | os.PathLike) -> list[str]:
    """One line per molecule of ``source`` with a model in ``folder``: its frames and its
    validation errors (from the model's metadata)."""
    lines = []
    for record in read_records(source):
        path = Path(folder) / f"{record.name}.pt"
        meta = model_metadata(path) if path.is_file() else None
        if meta is None:
            continue
        text = f"  {record.name}: {meta.get('n_frames')} frames"
        split = meta.get("metrics", {}).get("validation") or meta.get("metrics", {}).get("train")
        if split and "before" in split:
            b, a = split["before"], split["after"]
            which = "validation" if meta["metrics"].get("validation") else "train"
            text += (f", {which} force RMSE {b['force_rmse_kcal_mol_A']:.3f} -> "
                     f"{a['force_rmse_kcal_mol_A']:.3f} kcal/mol/A")
        elif split and "model" in split:
            text += (f", {'validation' if meta['metrics'].get('validation') else 'train'} "
                     f"dipole RMSE {split['model']['dipole_rmse_debye']:.3f} D")
        lines.append(text)
    return lines
