"""The energy terms of an MM System: one force group per term, and the energies and forces of
frames evaluated by OpenMM (used by residuals, label checks, bespoke refits and plots; it needs
nothing of hybridff, so :mod:`hybridff.mm.bespoke` computes MM terms without ``training/``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import openmm
from openmm import unit

#: Force group of each Force class: one group per energy term, so energies decompose.
FORCE_GROUPS: dict[str, int] = {
    "HarmonicBondForce": 0,
    "HarmonicAngleForce": 1,
    "PeriodicTorsionForce": 2,
    "NonbondedForce": 3,
    "CMMotionRemover": 5,
    "MonteCarloBarostat": 6,
    "CustomBondForce": 8,  # anharmonic bond terms of a bespoke refit
    "CustomAngleForce": 9,  # anharmonic angle terms of a bespoke refit
    "CustomCompoundBondForce": 10,  # stretch-bend and bond-bond terms of a bespoke refit
}


def mm_energies_forces(
    system: openmm.System, frames_nm: np.ndarray, platform: str = "Reference",
    groups: set[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MM energies (F,) kJ/mol and forces (F, N, 3) kJ/mol/nm of frames (F, N, 3) nm."""
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    kwargs: dict[str, Any] = {"getEnergy": True, "getForces": True}
    if groups is not None:
        kwargs["groups"] = set(groups)
    energies = np.empty(len(frames_nm))
    forces = np.empty(frames_nm.shape)
    for k, x in enumerate(frames_nm):
        context.setPositions(x)
        state = context.getState(**kwargs)
        energies[k] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        forces[k] = state.getForces(asNumpy=True).value_in_unit(
            unit.kilojoule_per_mole / unit.nanometer
        )
    return energies, forces
