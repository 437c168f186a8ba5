"""Conformations to label: MM molecular dynamics at elevated temperature, normal-mode displacements.

Both use the MM System (from :func:`hybridff.system.create_system`) and return positions in
nm, (F, N, 3). Both are seeded and use OpenMM's Reference platform by default, so the same
seed gives the same frames (which is what lets ``hybridff label`` resume a file).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import openmm
from openmm import unit

from hybridff.exceptions import MoleculeInputError
from hybridff.units import strip_positions

#: kJ/mol/K
MOLAR_GAS_CONSTANT = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(
    unit.kilojoule_per_mole / unit.kelvin
)


def _context(system: openmm.System, integrator: openmm.Integrator, platform: str) -> openmm.Context:
    return openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))


def md_conformations(
    system: openmm.System,
    positions: Any,
    n_frames: int,
    temperature: float = 500.0,
    interval_steps: int = 200,
    equilibration_steps: int = 2000,
    timestep_fs: float = 0.5,
    friction_per_ps: float = 5.0,
    seed: int = 0,
    platform: str = "Reference",
    minimize: bool = True,
) -> np.ndarray:
    """Frames every ``interval_steps`` of Langevin MD at ``temperature`` K (seeded)."""
    if n_frames < 0 or interval_steps < 1:
        raise ValueError("n_frames must be >= 0 and interval_steps >= 1")
    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin, friction_per_ps / unit.picosecond,
        timestep_fs * unit.femtosecond,
    )
    integrator.setRandomNumberSeed(int(seed) + 1)  # 0 would mean "pick one at random"
    context = _context(system, integrator, platform)
    context.setPositions(strip_positions(positions))
    if minimize:
        openmm.LocalEnergyMinimizer.minimize(context, 1.0, 500)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, int(seed) + 1)
    integrator.step(equilibration_steps)
    frames = np.empty((n_frames, system.getNumParticles(), 3))
    for k in range(n_frames):
        integrator.step(interval_steps)
        state = context.getState(getPositions=True)
        frames[k] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    if not np.isfinite(frames).all():
        raise MoleculeInputError(
            "MM sampling produced non-finite coordinates (the MD blew up); lower the "
            "temperature or the time step"
        )
    return frames


def _forces(context: openmm.Context, x: np.ndarray) -> np.ndarray:
    context.setPositions(x)
    state = context.getState(getForces=True)
    return state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)


def normal_modes(
    system: openmm.System, positions: Any, platform: str = "Reference", step_nm: float = 1e-4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimized positions (N, 3), angular frequencies^2 (M,) and mass-weighted modes (M, 3N).

    The Hessian comes from central differences of the MM forces; the six (or five) lowest
    modes, translations and rotations, are dropped.
    """
    context = _context(system, openmm.VerletIntegrator(0.001), platform)
    context.setPositions(strip_positions(positions))
    openmm.LocalEnergyMinimizer.minimize(context, 0.01, 5000)
    x0 = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(
        unit.nanometer
    )
    n = system.getNumParticles()
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(n)])
    hessian = np.empty((3 * n, 3 * n))
    for a in range(3 * n):
        plus, minus = x0.copy(), x0.copy()
        plus.flat[a] += step_nm
        minus.flat[a] -= step_nm
        hessian[a] = -(_forces(context, plus) - _forces(context, minus)).ravel() / (2 * step_nm)
    hessian = 0.5 * (hessian + hessian.T)
    inv_sqrt_m = 1.0 / np.sqrt(np.repeat(masses, 3))
    mw = hessian * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    omega2, vectors = np.linalg.eigh(mw)
    n_rigid = 6 if n > 2 else 5
    return x0, omega2[n_rigid:], vectors[:, n_rigid:].T


def normal_mode_conformations(
    system: openmm.System,
    positions: Any,
    n_frames: int,
    temperature: float = 500.0,
    seed: int = 0,
    platform: str = "Reference",
) -> np.ndarray:
    """Frames displaced along all normal modes with harmonic Boltzmann amplitudes at ``temperature``.

    Displacements are rectilinear, so along soft torsional modes they also stretch bonds:
    at 300 K ethanol's mean MM excess energy is about 2.5x the harmonic kT/2 per mode, at
    20 K it matches (tests/test_training.py). MD sampling has no such bias.
    """
    x0, omega2, modes = normal_modes(system, positions, platform)
    masses = np.array(
        [system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(len(x0))]
    )
    kt = MOLAR_GAS_CONSTANT * temperature
    # mass-weighted amplitude variance kT / omega^2 (omega^2 in kJ/mol/nm^2/Da); soft modes capped
    sigma = np.sqrt(kt / np.maximum(omega2, 1e2))
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n_frames, len(omega2))) * sigma
    displacement = (q @ modes) / np.sqrt(np.repeat(masses, 3))
    return x0[None] + displacement.reshape(n_frames, len(x0), 3)


#: name -> sampler(system, positions, n_frames, temperature=..., seed=...)
SAMPLERS = {"md": md_conformations, "normal-modes": normal_mode_conformations}
