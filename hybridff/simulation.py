"""Moved to :mod:`hybridff.md` (prepare, run, reporters, outputs, resume); old names re-exported.

The split module's names, private ones included (``_Production`` is
:class:`hybridff.md.reporters.Production`), are the same objects as in their new homes.
"""

import warnings

from hybridff.md.options import MDOptions  # noqa: F401
from hybridff.md.outputs import (  # noqa: F401
    OUTPUTS,
    check_run_folder,
    load_system_xml,
    read_run,
    run_files,
)
from hybridff.md.outputs import write_pdb as _write_pdb  # noqa: F401
from hybridff.md.outputs import write_restart_files as _write_restart_files  # noqa: F401
from hybridff.md.prepare import (  # noqa: F401
    SOLVENTS,
    PreparedSystem,
    add_model,
    check_positions,
    prepare_system,
)
from hybridff.md.reporters import (  # noqa: F401
    BLOWUP_ADVICE,
    BLOWUP_ENERGY_KJ_MOL,
    MOLAR_GAS_CONSTANT_KJ,
    EnsembleMonitor,
    degrees_of_freedom,
    trained_disagreement_kcal,
)
from hybridff.md.reporters import Production as _Production  # noqa: F401
from hybridff.md.reporters import Trajectory as _Trajectory  # noqa: F401
from hybridff.md.reporters import blew_up as _blew_up  # noqa: F401
from hybridff.md.reporters import check_energy as _check_energy  # noqa: F401
from hybridff.md.reporters import guarded as _guarded  # noqa: F401
from hybridff.md.resume import resume_md  # noqa: F401
from hybridff.md.resume import trim_dcd as _trim_dcd  # noqa: F401
from hybridff.md.resume import trim_log as _trim_log  # noqa: F401
from hybridff.md.run import get_platform, run_md  # noqa: F401
from hybridff.md.run import make_simulation as _make_simulation  # noqa: F401
from hybridff.md.run import set_torch_threads as _set_torch_threads  # noqa: F401

warnings.warn("hybridff.simulation is deprecated: import hybridff.md (prepare, run, reporters, "
              "outputs, resume, options)", DeprecationWarning, stacklevel=2)
