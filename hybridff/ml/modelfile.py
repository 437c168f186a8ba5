"""One trained-model file: the TorchScript ensemble with its metadata JSON embedded.

The metadata travels inside the TorchScript archive (``_extra_files``), so a model can never
be separated from the description of what it was trained against: elements, cutoff,
descriptor spec, the MM force field (name, content hash, charge method), the SHA256 of the
training set, metrics, ensemble size and the hybridff version. Writes are atomic (temporary
file in the same folder, then ``os.replace``); reads verify the archive's checksums first.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridff.exceptions import DataFormatError
from hybridff.io.files import atomic_write_bytes

METADATA_NAME = "hybridff_metadata.json"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "elements", "cutoff_nm", "descriptor", "ensemble_size")


@dataclass
class ModelFile:
    """A loaded model: the scripted :class:`~hybridff.ml.model.EnsembleModel` and its metadata."""

    module: Any  # torch.jit.ScriptModule
    metadata: dict[str, Any]

    @property
    def elements(self) -> list[int]:
        """Atomic numbers the model covers, in species-index order."""
        return [int(z) for z in self.metadata["elements"]]


def build_metadata(model: Any, spec: Any, **extra: Any) -> dict[str, Any]:
    """Standard metadata of a model (``extra`` adds MM force field, hashes, metrics, ...)."""
    from hybridff import __version__

    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "hybridff_version": __version__,
        "elements": list(spec.elements),
        "cutoff_nm": float(spec.cutoff),
        "descriptor": spec.to_dict(),
        "ensemble_size": len(model.members),
        "energy_unit": "kJ/mol",
        "length_unit": "nm",
    }
    meta.update(extra)
    return meta


def save_model(path: str | os.PathLike, model: Any, metadata: dict[str, Any],
               extra_files: dict[str, bytes] | None = None) -> Path:
    """Script ``model`` (if needed) and write it with ``metadata`` atomically to ``path``.

    ``extra_files``: more archive members by name (a dipole model,
    :data:`hybridff.ml.dipole.EMBEDDED_NAME`).

    The archive is built in memory and written with :func:`hybridff.io.files.atomic_write_bytes`
    (temporary file, fsync, rename): an interrupted save leaves the previous file, if any,
    untouched and no partial file behind.
    """
    import torch

    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise DataFormatError(f"model metadata lacks {missing}; build it with build_metadata()")
    scripted = model if isinstance(model, torch.jit.ScriptModule) else torch.jit.script(model)
    path = Path(path)
    buffer = io.BytesIO()
    extra: dict[str, Any] = {**(extra_files or {}),
                             METADATA_NAME: json.dumps(metadata, indent=1, sort_keys=True)}
    torch.jit.save(scripted, buffer, _extra_files=extra)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def check_archive(path: Path) -> None:
    """Refuse a file that is not a complete zip archive or whose members fail their CRC check.

    torch.jit.load checks neither: a flipped byte in the weights loads silently as other
    numbers, so the archive's own checksums are verified first.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(
            f"{path}: not a readable TorchScript model file: truncated, or not a model at all "
            f"(not a valid zip archive: {exc}); copy the file again or retrain "
            "(hybridff train)") from exc
    if bad is not None:
        raise DataFormatError(
            f"{path}: not a readable TorchScript model file: corrupted (archive member {bad!r} "
            "fails its CRC check: its bytes changed after the file was written); copy the file "
            "again or retrain (hybridff train)")


def load_model(path: str | os.PathLike) -> ModelFile:
    """Read a model file; a missing, truncated or foreign file gives a :class:`DataFormatError`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"model file {str(path)!r} does not exist")
    check_archive(path)
    extra = {METADATA_NAME: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError/ValueError for broken archives
        raise DataFormatError(
            f"{path}: not a readable TorchScript model file (corrupted, truncated or another "
            f"format): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
            "retrain or copy the file again"
        ) from exc
    raw = extra[METADATA_NAME]
    if not raw:
        raise DataFormatError(
            f"{path}: a TorchScript file without hybridff metadata; save models with "
            "hybridff.ml.modelfile.save_model"
        )
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: model metadata is not valid JSON ({exc}); the file was "
                              "not written by hybridff.ml.modelfile.save_model: retrain") from exc
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise DataFormatError(f"{path}: model metadata lacks {missing}; the file was not written "
                              "by hybridff.ml.modelfile.save_model: retrain")
    if int(metadata["format_version"]) > FORMAT_VERSION:
        raise DataFormatError(
            f"{path}: model format {metadata['format_version']} is newer than this hybridff "
            f"reads ({FORMAT_VERSION}); upgrade hybridff"
        )
    return ModelFile(module=module, metadata=metadata)
