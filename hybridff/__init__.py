"""hybridff: a GAFF2-class classical force field with a learned ML correction, for OpenMM.

Public API (imported lazily so ``import hybridff`` stays light):

- :func:`parameterize` -> :class:`~hybridff.mm.parameters.ParameterizedMolecule`
- :func:`create_system` -> ``openmm.System`` for one or more small molecules
- :func:`ligand_topology` -> OpenMM ``Topology`` and positions of one molecule (file or SMILES)
- :class:`HybridTemplateGenerator` for ``openmm.app.ForceField.registerTemplateGenerator``
- :func:`add_ml_correction` adds a trained correction to an existing System
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "parameterize": "hybridff.mm.parameters",
    "ParameterizedMolecule": "hybridff.mm.parameters",
    "create_system": "hybridff.mm.system",
    "ligand_topology": "hybridff.mm.system",
    "HybridTemplateGenerator": "hybridff.mm.templates",
    "assign_charges": "hybridff.charges",
    "load_molecule": "hybridff.io.molecule",
    "add_ml_correction": "hybridff.ml.backend",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hybridff' has no attribute {name!r}")
