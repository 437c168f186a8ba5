"""Moved to :mod:`hybridff.mm.templates`; this old name is that very module (kept for old imports)."""

import importlib
import sys
import warnings

warnings.warn("hybridff.templates is deprecated: import hybridff.mm.templates", DeprecationWarning,
              stacklevel=2)  # 2: the importer (the import machinery's frames are skipped)
sys.modules[__name__] = importlib.import_module("hybridff.mm.templates")
