"""Moved to :mod:`hybridff.mm.atomtyping`; this old name is that very module (kept for old imports)."""

import importlib
import sys
import warnings

warnings.warn("hybridff.atomtyping is deprecated: import hybridff.mm.atomtyping", DeprecationWarning,
              stacklevel=2)  # 2: the importer (the import machinery's frames are skipped)
sys.modules[__name__] = importlib.import_module("hybridff.mm.atomtyping")
