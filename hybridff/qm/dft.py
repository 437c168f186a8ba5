"""Moved to :mod:`hybridff.labels.qm.dft`; this old name is that very module (kept for old imports)."""

import importlib
import sys
import warnings

warnings.warn("hybridff.qm.dft is deprecated: import hybridff.labels.qm.dft", DeprecationWarning,
              stacklevel=2)  # 2: the importer (the import machinery's frames are skipped)
sys.modules[__name__] = importlib.import_module("hybridff.labels.qm.dft")
