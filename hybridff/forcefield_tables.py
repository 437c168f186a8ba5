"""Moved to :mod:`hybridff.mm.tables`; this old name is that very module (kept for old imports)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("hybridff.mm.tables")
