"""The ML charge model: a graph network trained on AM1-BCC charges, total charge exact.

- :mod:`~hybridff.charges.model.features`: the molecule as a graph of arrays; atom environments.
- :mod:`~hybridff.charges.model.network`: message passing -> (chi, J) per atom -> QEq charges.
- :mod:`~hybridff.charges.model.predict`: a loaded model's charges for one molecule, or a batch.
- :mod:`~hybridff.charges.model.file`: the model file: read, checked, loaded, written.
- :mod:`~hybridff.charges.model.split`: label records and their scaffold split.
- :mod:`~hybridff.charges.model.metrics`: held-out metrics (numbers only).
- :mod:`~hybridff.charges.model.train`: the training run, ``python -m hybridff.charges.model.train``.
- :mod:`~hybridff.charges.model.variants`, :mod:`~hybridff.charges.model.coverage`,
  :mod:`~hybridff.charges.model.labelling`: the molecules labelled with AM1-BCC, and the
  labelling run (``scripts/make_charge_labels.py``).

The ``ml`` charge method (:mod:`hybridff.charges.ml`) is the registered front of this package.
Importing the package needs no PyTorch; the network and prediction import it when used.
"""

from __future__ import annotations

from types import ModuleType

from hybridff.exceptions import OptionalDependencyError

#: The command that trains a charge model (named in error messages and the docs).
TRAIN_COMMAND = "python -m hybridff.charges.model.train"


def require_torch() -> ModuleType:
    """The ``torch`` module, or an install hint when PyTorch is missing."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is in the ml extra
        raise OptionalDependencyError(
            "the 'ml' charge method needs PyTorch: pip install 'hybridff[ml]'"
        ) from exc
    return torch
