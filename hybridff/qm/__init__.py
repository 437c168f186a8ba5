"""Quantum-chemistry engines that label conformations with energies and forces.

Engines are registered by name (``xtb``: tblite GFN2-xTB; ``dft``: pyscf Kohn-Sham DFT) and
imported lazily, so hybridff works without them until a label is asked for. Every engine
takes atomic numbers and positions in nm and returns the energy in kJ/mol and forces in
kJ/mol/nm: Hartree and Bohr are converted at the driver with :mod:`hybridff.units`.
"""

from __future__ import annotations

import importlib
from typing import Any

from hybridff.exceptions import UnknownNameError
from hybridff.qm.base import QMEngine, QMResult

#: name -> "module:class"
ENGINES: dict[str, str] = {
    "xtb": "hybridff.qm.xtb:XTBEngine",
    "dft": "hybridff.qm.dft:DFTEngine",
}


def get_engine(name: str, **options: Any) -> QMEngine:
    """An engine instance by registry name; unknown names list the known ones."""
    try:
        target = ENGINES[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown QM method {name!r}; known methods: {', '.join(sorted(ENGINES))}"
        ) from None
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**options)


__all__ = ["ENGINES", "QMEngine", "QMResult", "get_engine"]
