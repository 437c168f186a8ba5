"""Moved to :mod:`hybridff.mm.cache`; this old name is that very module (kept for old imports)."""

import importlib
import sys
import warnings

warnings.warn("hybridff.cache is deprecated: import hybridff.mm.cache", DeprecationWarning,
              stacklevel=2)  # 2: the importer (the import machinery's frames are skipped)
sys.modules[__name__] = importlib.import_module("hybridff.mm.cache")
