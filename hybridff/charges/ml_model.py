"""Moved to :mod:`hybridff.charges.model.features` (featurization) and
:mod:`hybridff.charges.model.network` (the network); this old name re-exports both (kept for
old imports)."""

import warnings

from hybridff.charges.model.features import *  # noqa: F403
from hybridff.charges.model.features import (  # noqa: F401 - private names old code used
    _one_hot,
    _relabel,
    _resonance_averages,
    _terminal_pools,
)
from hybridff.charges.model.network import *  # noqa: F403

warnings.warn("hybridff.charges.ml_model is deprecated: import hybridff.charges.model.features "
              "or hybridff.charges.model.network", DeprecationWarning,
              stacklevel=2)  # 2: the importer (the import machinery's frames are skipped)
