"""Quantum-chemistry engines that label conformations with energies and forces.

Engines are registered by name (``xtb``: tblite GFN2-xTB; ``dft``: pyscf Kohn-Sham DFT) and
imported lazily, so hybridff works without them until a label is asked for. Every engine
takes atomic numbers and positions in nm and returns the energy in kJ/mol and forces in
kJ/mol/nm: Hartree and Bohr are converted at the driver with :mod:`hybridff.units`.
"""

from __future__ import annotations

from typing import Any

from hybridff.labels.qm.base import QMEngine, QMResult
from hybridff.registry import Registry

#: name -> engine class (built-in ones imported on first use); other packages add theirs
#: through the ``hybridff.qm_engines`` entry-point group
ENGINES: Registry[type[QMEngine]] = Registry("QM method", "hybridff.qm_engines", {
    "xtb": "hybridff.labels.qm.xtb:XTBEngine",
    "dft": "hybridff.labels.qm.dft:DFTEngine",
})


def get_engine(name: str, **options: Any) -> QMEngine:
    """An engine instance by registry name; unknown names list the known ones."""
    return ENGINES[name](**options)


__all__ = ["ENGINES", "QMEngine", "QMResult", "get_engine"]
