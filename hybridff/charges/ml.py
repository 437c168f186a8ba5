"""The ``ml`` charge method: a graph network trained on AM1-BCC charges, total charge exact.

The model lives in :mod:`hybridff.charges.model` (features, network, prediction, the model
file, training); the shipped file is ``hybridff/resources/charge_model.pt``. See
``docs/charges.md`` for the data, the held-out accuracy and how to retrain.
"""

from __future__ import annotations

import importlib
import os
import warnings

import numpy as np
from rdkit import Chem

from hybridff.charges import register_charge_method
from hybridff.charges.model.file import load_charge_model


@register_charge_method("ml")
def ml_charges(mol: Chem.Mol, model: str | os.PathLike | None = None) -> np.ndarray:
    """Partial charges (e) predicted by the ML charge model; total = formal charge exactly."""
    return load_charge_model(model).predict(mol)


#: names that lived here before the model moved to hybridff.charges.model: name -> new module
_MOVED = {
    "DEFAULT_MODEL": "file", "MODEL_FORMAT": "file", "charge_model_sha256": "file",
    "ChargeModel": "predict", "ChargeModelApplicabilityWarning": "predict",
    "ensemble_charges": "predict",
    "MIN_ENVIRONMENT_COUNT": "features", "atom_environment": "features", "rare_atoms": "features",
}


def __getattr__(name: str):
    """Old names, still importable from here with a DeprecationWarning."""
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    where = f"hybridff.charges.model.{_MOVED[name]}"
    warnings.warn(f"hybridff.charges.ml.{name} is deprecated: import it from {where}",
                  DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(where), name)
