"""Moved to :mod:`hybridff.labels.qm.base`; this old name is that very module (kept for old imports)."""

import importlib
import sys
import warnings

warnings.warn("hybridff.qm.base is deprecated: import hybridff.labels.qm.base", DeprecationWarning,
              stacklevel=2)  # 2: the importer (the import machinery's frames are skipped)
sys.modules[__name__] = importlib.import_module("hybridff.labels.qm.base")
