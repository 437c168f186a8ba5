"""Moved to :mod:`hybridff.labels.samplers` (the samplers) and :mod:`hybridff.labels.torsions`
(rotatable torsions, dihedral angles); old names re-exported.

The samplers now take a :class:`~hybridff.labels.samplers.SamplingStart` and return
:class:`~hybridff.labels.samplers.Conformations` (frames with their per-frame information);
the four old names here keep their old calls, ``(system, positions, n_frames, temperature,
..., seed=, mol=, platform=, options)``, and return the positions array as before.
"""

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from hybridff.labels import samplers as _samplers
from hybridff.labels.samplers import (  # noqa: F401
    DEFAULT_SAMPLER,
    MOLAR_GAS_CONSTANT,
    SAMPLERS,
    TORSION_RESTRAINT_K_KJ_MOL_RAD2,
    Conformations,
    SamplingStart,
    mixed_frame_kinds,
    normal_modes,
    sample_conformations,
    torsion_targets_deg,
)
from hybridff.labels.torsions import (  # noqa: F401
    Torsion,
    angle_difference_deg,
    check_torsion,
    dihedral_deg,
    rotatable_torsions,
    set_dihedrals,
)

_START = ("mol", "temperature", "seed", "platform")


def _old_call(sampler: Callable[..., Any], positional: tuple[str, ...]) -> Callable[..., Any]:
    """``sampler`` called the old way: ``(system, positions, n_frames, *positional, **options)``
    in, the frames (F, N, 3) nm out."""
    def call(system: Any, positions: Any, n_frames: int, *args: Any, **options: Any) -> np.ndarray:
        options.update(zip(positional, args, strict=False))
        start = {key: options.pop(key) for key in _START if key in options}
        return sampler(SamplingStart(system, positions, **start), n_frames, **options).positions

    call.__name__ = call.__qualname__ = sampler.__name__
    call.__doc__ = f"The old call of :func:`hybridff.labels.samplers.{sampler.__name__}`."
    return call


md_conformations = _old_call(_samplers.md_conformations, (
    "temperature", "interval_steps", "equilibration_steps", "timestep_fs", "friction_per_ps",
    "seed", "platform", "minimize"))
normal_mode_conformations = _old_call(_samplers.normal_mode_conformations,
                                      ("temperature", "seed", "platform"))
torsion_conformations = _old_call(_samplers.torsion_conformations, ("temperature", "seed"))
mixed_conformations = _old_call(_samplers.mixed_conformations, ("temperature", "seed"))

warnings.warn("hybridff.sampling is deprecated: import hybridff.labels.samplers (and "
              "hybridff.labels.torsions)", DeprecationWarning, stacklevel=2)
