"""The charge-model file: read and checked, loaded (once per file version), written.

A file is ``torch.save`` of a plain dict (no pickled classes; read with ``weights_only``):
``format`` (:data:`MODEL_FORMAT`), ``state_dict`` (float32 weights) and ``metadata``
(elements, feature spec, hyperparameters, and what the training run recorded).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from hybridff.charges.model import TRAIN_COMMAND, require_torch
from hybridff.charges.model.features import FEATURE_VERSION
from hybridff.charges.model.predict import ChargeModel
from hybridff.elements import SUPPORTED_ELEMENTS
from hybridff.exceptions import ModelCompatibilityError

#: The model file shipped with hybridff.
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "resources" / "charge_model.pt"
#: The single-point AM1-BCC labels the shipped model was pre-trained on (and its split); it
#: was then fine-tuned on standard-recipe labels (scripts/finetune_charge_model.py).
DEFAULT_LABELS = Path(__file__).resolve().parents[2] / "resources" / "am1bcc_labels.jsonl.gz"
#: ``format`` field every charge-model file carries.
MODEL_FORMAT = "hybridff-charge-model"
_REQUIRED_KEYS = ("format", "state_dict", "metadata")
_REQUIRED_METADATA = ("elements", "feature_spec", "hyperparameters")


def read_model_file(path: str | os.PathLike) -> dict:
    """The dict in a charge-model file, checked: keys, format, metadata, feature version and
    elements; a file that is not one raises :class:`ModelCompatibilityError` saying why."""
    torch = require_torch()
    path = Path(path)
    if not path.exists():
        raise ModelCompatibilityError(f"charge model file {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-model files
        raise ModelCompatibilityError(
            f"{path} is not a hybridff charge model (torch.load failed: "
            f"{str(exc).splitlines()[0][:200]}); it needs a file written by {TRAIN_COMMAND}"
        ) from exc
    if not isinstance(data, dict) or any(k not in data for k in _REQUIRED_KEYS):
        has = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ModelCompatibilityError(
            f"{path} is not a hybridff charge model: it has {has}, a charge model needs the keys "
            f"{', '.join(_REQUIRED_KEYS)} (written by {TRAIN_COMMAND})"
        )
    if data["format"] != MODEL_FORMAT:
        raise ModelCompatibilityError(
            f"{path} has format {data['format']!r}; the ml charge method needs {MODEL_FORMAT!r}"
        )
    meta = data["metadata"]
    missing = [k for k in _REQUIRED_METADATA if k not in meta]
    if missing:
        raise ModelCompatibilityError(f"{path}: metadata lacks {', '.join(missing)}")
    spec_version = meta["feature_spec"].get("version")
    if spec_version != FEATURE_VERSION:
        raise ModelCompatibilityError(
            f"{path} uses feature version {spec_version}; this hybridff reads version "
            f"{FEATURE_VERSION}: retrain with {TRAIN_COMMAND} or upgrade hybridff"
        )
    unknown = [e for e in meta["elements"] if e not in SUPPORTED_ELEMENTS]
    if unknown:
        raise ModelCompatibilityError(
            f"{path} is a model for elements {', '.join(meta['elements'])}; hybridff supports "
            f"{', '.join(SUPPORTED_ELEMENTS)} (the file has {', '.join(unknown)} besides)"
        )
    return data


def network_from_file(data: dict, path: str | os.PathLike = "the model file") -> Any:
    """The float32 network (eval mode) holding the weights of a :func:`read_model_file` dict."""
    from hybridff.charges.model.network import network_for

    meta = data["metadata"]
    hp = meta["hyperparameters"]
    net = network_for(list(meta["elements"]), hp)
    try:
        net.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise ModelCompatibilityError(
            f"{path}: weights do not fit the network its metadata describes (elements "
            f"{meta['elements']}, hidden {hp['hidden']}, layers {hp['layers']}, members "
            f"{hp.get('members', 1)}): {exc}"
        ) from exc
    return net.eval()


def write_model_file(path: str | os.PathLike, net: Any, metadata: dict) -> Path:
    """Write a charge-model file (float32 weights of ``net`` and ``metadata``) atomically."""
    torch = require_torch()
    path = Path(path)
    state = {k: v.to(torch.float32).clone() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": MODEL_FORMAT, "state_dict": state, "metadata": metadata}, tmp)
    tmp.replace(path)
    return path


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> ChargeModel:  # noqa: ARG001 - part of the key
    torch = require_torch()
    data = read_model_file(path)
    net = network_from_file(data, path).to(torch.float64)
    return ChargeModel(Path(path), net, data["metadata"])


def load_charge_model(path: str | os.PathLike | None = None) -> ChargeModel:
    """The charge model in ``path`` (default: the shipped one), loaded once per file version."""
    return _load_cached(*_model_file_key(path))


def _model_file_key(path: str | os.PathLike | None) -> tuple[str, int]:
    """(resolved path, mtime in ns; 0 if missing) of a charge model file: the cache key of
    what is read from it, so a rewritten file is read again."""
    p = Path(path) if path is not None else DEFAULT_MODEL
    return str(p.resolve()), p.stat().st_mtime_ns if p.exists() else 0


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, mtime_ns: int) -> str:  # noqa: ARG001 - part of the key
    from hybridff.io.frames import file_sha256

    return file_sha256(path)


def charge_model_sha256(path: str | os.PathLike | None = None) -> str:
    """SHA256 of the charge model file (default: the shipped one); identifies the charges a
    correction model was trained with."""
    return _sha256_cached(*_model_file_key(path))
