"""Moved to :mod:`hybridff.labels.qm`; this old package re-exports it (kept for old imports and
for entry points naming ``hybridff.qm.xtb:...``): its submodules ``base``, ``xtb`` and ``dft``
are the very modules of the new home."""

import warnings

from hybridff.labels.qm import ENGINES, QMEngine, QMResult, get_engine

warnings.warn("hybridff.qm is deprecated: import hybridff.labels.qm", DeprecationWarning,
              stacklevel=2)  # 2: the importer (the import machinery's frames are skipped)

__all__ = ["ENGINES", "QMEngine", "QMResult", "get_engine"]
