"""Moved to :mod:`hybridff.mm.tables`; this old name is that very module (kept for old imports)."""

import importlib
import sys
import warnings

warnings.warn("hybridff.forcefield_tables is deprecated: import hybridff.mm.tables", DeprecationWarning,
              stacklevel=2)  # 2: the importer (the import machinery's frames are skipped)
sys.modules[__name__] = importlib.import_module("hybridff.mm.tables")
