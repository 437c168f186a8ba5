"""Conformations to label: MM molecular dynamics at elevated temperature, MD with the
rotatable torsions restrained at random angles, a mix of the two, normal-mode displacements.

Every sampler starts from a :class:`SamplingStart` (the MM System from
:func:`hybridff.mm.system.create_system`, positions in nm, the molecule, temperature, seed,
platform) and returns :class:`Conformations`: the frames, (F, N, 3) nm, with what each frame
records about how it was made (which sampler made it in a ``mixed`` run, the torsion targets
of a torsion frame). All are seeded and use OpenMM's Reference platform by default, so the
same seed gives the same frames, and the first frames do not depend on how many are asked
for (which is what lets ``hybridff label`` resume a file). :func:`sample_conformations` runs
one by name (registry :data:`SAMPLERS`).

Why torsions: MD at 500 K almost never crosses barriers of several kcal/mol, such as an
amide C-N (paracetamol's stays within 29 degrees of trans in 95 % of 240 MD frames), and a
correction trained on such frames extrapolates freely along that torsion. The ``torsion``
sampler draws target angles on the full circle for every rotatable torsion
(:func:`~hybridff.labels.torsions.rotatable_torsions`) and runs MD with the torsions
restrained there; ``mixed`` (the default of ``hybridff label``) interleaves those frames with
plain MD frames.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np
import openmm
from openmm import unit

from hybridff.exceptions import InvalidOptionError, MoleculeInputError, UnknownNameError
from hybridff.labels.torsions import Torsion, resolve_torsions, set_dihedrals
from hybridff.registry import Registry
from hybridff.units import strip_positions

logger = logging.getLogger(__name__)

#: kJ/mol/K
MOLAR_GAS_CONSTANT = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(
    unit.kilojoule_per_mole / unit.kelvin
)


@dataclass(frozen=True)
class SamplingStart:
    """What every sampler starts from: the MM ``system``, starting ``positions`` (nm), the
    RDKit molecule ``mol`` (the torsion samplers turn its rotatable torsions), the sampling
    ``temperature`` (K), the ``seed`` and the OpenMM ``platform``."""

    system: openmm.System
    positions: Any
    mol: Any = None
    temperature: float = 500.0
    seed: int = 0
    platform: str = "Reference"

    def context(self, integrator: openmm.Integrator,
                system: openmm.System | None = None) -> openmm.Context:
        """A Context of ``system`` (default: the start's) at the starting positions."""
        context = openmm.Context(system or self.system, integrator,
                                 openmm.Platform.getPlatformByName(self.platform))
        context.setPositions(strip_positions(self.positions))
        return context


@dataclass
class Conformations:
    """Frames of a sampler and how each was made.

    ``settings``: the sampler's options that decide the frames beyond seed and temperature
    (``torsion_fraction`` of ``mixed``); ``info``: per frame, the sampler that made it
    (``mixed``: ``frame_sampler``) and, for torsion frames, the torsions (``torsions``, atom
    indices I-J-K-L) and their targets (``torsion_targets_deg``), as strings for extxyz.
    """

    positions: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    info: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.info:
            self.info = [{} for _ in range(len(self.positions))]


def langevin_integrator(temperature: float, friction_per_ps: float, timestep_fs: float,
              seed: int) -> openmm.LangevinMiddleIntegrator:
    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin, friction_per_ps / unit.picosecond,
        timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(seed)
    return integrator


def context_positions_nm(context: openmm.Context) -> np.ndarray:
    return context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(
        unit.nanometer)


def _check_finite(frames: np.ndarray, what: str, lower: str) -> np.ndarray:
    if not np.isfinite(frames).all():
        raise MoleculeInputError(f"{what} sampling produced non-finite coordinates (the MD "
                                 f"blew up); lower the {lower}")
    return frames


def md_conformations(
    start: SamplingStart,
    n_frames: int,
    *,
    interval_steps: int = 200,
    equilibration_steps: int = 2000,
    timestep_fs: float = 0.5,
    friction_per_ps: float = 5.0,
    minimize: bool = True,
) -> Conformations:
    """Frames every ``interval_steps`` of Langevin MD at the start's temperature (seeded)."""
    if n_frames < 0 or interval_steps < 1:
        raise InvalidOptionError(f"n_frames must be >= 0 and interval_steps >= 1 (got {n_frames}, "
                                 f"{interval_steps})")
    seed = int(start.seed) + 1  # 0 would mean "pick one at random"
    integrator = langevin_integrator(start.temperature, friction_per_ps, timestep_fs, seed)
    context = start.context(integrator)
    if minimize:
        openmm.LocalEnergyMinimizer.minimize(context, 1.0, 500)
    context.setVelocitiesToTemperature(start.temperature * unit.kelvin, seed)
    integrator.step(equilibration_steps)
    frames = np.empty((n_frames, start.system.getNumParticles(), 3))
    for k in range(n_frames):
        integrator.step(interval_steps)
        frames[k] = context_positions_nm(context)
    return Conformations(_check_finite(frames, "MM", "temperature or the time step"))


def _forces(context: openmm.Context, x: np.ndarray) -> np.ndarray:
    context.setPositions(x)
    state = context.getState(getForces=True)
    return state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)


def _masses(system: openmm.System) -> np.ndarray:
    return np.array([system.getParticleMass(i).value_in_unit(unit.dalton)
                     for i in range(system.getNumParticles())])


def normal_modes(
    system: openmm.System, positions: Any, platform: str = "Reference", step_nm: float = 1e-4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimized positions (N, 3), angular frequencies^2 (M,) and mass-weighted modes (M, 3N).

    The Hessian comes from central differences of the MM forces; the six (or five) lowest
    modes, translations and rotations, are dropped.
    """
    start = SamplingStart(system, positions, platform=platform)
    context = start.context(openmm.VerletIntegrator(0.001))
    openmm.LocalEnergyMinimizer.minimize(context, 0.01, 5000)
    x0 = context_positions_nm(context)
    n = system.getNumParticles()
    hessian = np.empty((3 * n, 3 * n))
    for a in range(3 * n):
        plus, minus = x0.copy(), x0.copy()
        plus.flat[a] += step_nm
        minus.flat[a] -= step_nm
        hessian[a] = -(_forces(context, plus) - _forces(context, minus)).ravel() / (2 * step_nm)
    hessian = 0.5 * (hessian + hessian.T)
    inv_sqrt_m = 1.0 / np.sqrt(np.repeat(_masses(system), 3))
    mw = hessian * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    omega2, vectors = np.linalg.eigh(mw)
    n_rigid = 6 if n > 2 else 5
    return x0, omega2[n_rigid:], vectors[:, n_rigid:].T


def normal_mode_conformations(start: SamplingStart, n_frames: int) -> Conformations:
    """Frames displaced along all normal modes with harmonic Boltzmann amplitudes at the
    start's temperature.

    Displacements are rectilinear, so along soft torsional modes they also stretch bonds:
    at 300 K ethanol's mean MM excess energy is about 2.5x the harmonic kT/2 per mode, at
    20 K it matches (tests/test_training.py). MD sampling has no such bias.
    """
    x0, omega2, modes = normal_modes(start.system, start.positions, start.platform)
    kt = MOLAR_GAS_CONSTANT * start.temperature
    # mass-weighted amplitude variance kT / omega^2 (omega^2 in kJ/mol/nm^2/Da); soft modes capped
    sigma = np.sqrt(kt / np.maximum(omega2, 1e2))
    rng = np.random.default_rng(start.seed)
    q = rng.normal(size=(n_frames, len(omega2))) * sigma
    displacement = (q @ modes) / np.sqrt(np.repeat(_masses(start.system), 3))
    return Conformations(x0[None] + displacement.reshape(n_frames, len(x0), 3))


# --------------------------------------------------------------------------- torsions

#: force constant of each torsion restraint while sampling, kJ/mol/rad^2: at 500 K a
#: restrained dihedral fluctuates by sqrt(kT/k) = 2.6 degrees about its target, and even an
#: amide barrier top (MM slope up to ~85 kJ/mol/rad) pulls it off by less than 3 degrees
TORSION_RESTRAINT_K_KJ_MOL_RAD2 = 2.0e3

#: SeedSequence keys of the torsion sampler's random streams (targets; MD noise and velocities)
_TARGET_STREAM, _DYNAMICS_STREAM = 0, 1


def torsion_targets_deg(n_frames: int, n_torsions: int, seed: int = 0) -> np.ndarray:
    """The target angles (F, T) in degrees, [-180, 180), that :func:`torsion_conformations`
    draws for ``seed``: independent and uniform on the circle. Frame k's targets do not depend
    on ``n_frames``."""
    rng = np.random.default_rng(seed_key(seed, _TARGET_STREAM))
    return np.stack([rng.uniform(-180.0, 180.0, size=n_torsions) for _ in range(n_frames)]
                    ) if n_frames else np.empty((0, n_torsions))


def seed_key(seed: int, stream: int) -> list[int]:
    """SeedSequence entropy for one of the torsion sampler's streams; any integer seed."""
    if isinstance(seed, bool) or int(seed) != seed:
        raise InvalidOptionError(f"the sampling seed must be an integer, got {seed!r}")
    return [abs(int(seed)), int(seed < 0), stream]


def _restraint(system: openmm.System, torsions: Sequence[Torsion], k: float) -> openmm.System:
    """A copy of ``system`` with a harmonic restraint on each torsion, in the wrapped angle
    difference (per-torsion parameter ``theta0``, radians)."""
    restrained = copy.deepcopy(system)  # the caller's System stays as it is
    force = openmm.CustomTorsionForce(
        f"0.5*k_torsion*d^2; d = min(dt, {2 * math.pi!r} - dt); dt = abs(theta - theta0)")
    force.addGlobalParameter("k_torsion", float(k))
    force.addPerTorsionParameter("theta0")
    for torsion in torsions:
        force.addTorsion(*torsion, [0.0])
    used = {system.getForce(f).getForceGroup() for f in range(system.getNumForces())}
    force.setForceGroup(max(set(range(32)) - used))
    restrained.addForce(force)
    return restrained


def torsion_conformations(
    start: SamplingStart,
    n_frames: int,
    *,
    torsions: Sequence[Any] | None = None,
    restraint_k: float = TORSION_RESTRAINT_K_KJ_MOL_RAD2,
    steps_per_frame: int = 2000,
    timestep_fs: float = 0.5,
    friction_per_ps: float = 5.0,
) -> Conformations:
    """Frames with the rotatable torsions at random angles and the rest of the molecule thermal.

    For every frame: targets for each torsion (``torsions``, default every
    :func:`~hybridff.labels.torsions.rotatable_torsions` of the start's molecule) drawn
    uniformly on the full circle (:func:`torsion_targets_deg`); starting from the previous
    frame (the first from the minimized input), the torsions are turned rigidly to their
    targets (:func:`~hybridff.labels.torsions.set_dihedrals`), held there by harmonic
    restraints (``restraint_k``, kJ/mol/rad^2, on the wrapped angle difference; OpenMM
    ``CustomTorsionForce``) while clashes are minimized away and ``steps_per_frame`` steps of
    Langevin MD at the start's temperature follow from fresh seeded velocities (1 ps by
    default: five friction times, so bonds, angles and the other torsions are thermal). The
    frame is the MD's last positions; the restraints only steer the sampling (labels are
    computed on the molecule alone). Seeded, and frame k does not depend on ``n_frames``.
    Each frame's info names the torsions and their targets.
    """
    if n_frames < 0 or steps_per_frame < 1:
        raise InvalidOptionError(f"n_frames must be >= 0 and steps_per_frame >= 1 "
                                 f"(got {n_frames}, {steps_per_frame})")
    if not restraint_k > 0 or not start.temperature > 0:
        raise InvalidOptionError(f"restraint_k and temperature must be > 0 (got {restraint_k}, "
                                 f"{start.temperature})")
    mol = start.mol
    torsions = resolve_torsions(mol, torsions)
    if not torsions:
        raise MoleculeInputError(
            f"{mol.GetNumAtoms()}-atom molecule: no rotatable torsion between heavy atoms "
            "(see hybridff.labels.torsions.rotatable_torsions), nothing for the torsion "
            "sampler to turn; use the md sampler")
    targets = torsion_targets_deg(n_frames, len(torsions), start.seed)
    dynamics = np.random.default_rng(seed_key(start.seed, _DYNAMICS_STREAM))
    integrator = langevin_integrator(start.temperature, friction_per_ps, timestep_fs,
                           int(dynamics.integers(1, 2**30)))
    restrained = _restraint(start.system, torsions, restraint_k)
    restraint = restrained.getForce(restrained.getNumForces() - 1)
    context = start.context(integrator, restrained)
    context.setParameter("k_torsion", 0.0)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 500)
    context.setParameter("k_torsion", float(restraint_k))
    x = context_positions_nm(context)
    frames = np.empty((n_frames, start.system.getNumParticles(), 3))
    for f in range(n_frames):
        for t, torsion in enumerate(torsions):
            restraint.setTorsionParameters(t, *torsion, [math.radians(targets[f, t])])
        restraint.updateParametersInContext(context)
        context.setPositions(set_dihedrals(x, mol, torsions, targets[f]))
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
        context.setVelocitiesToTemperature(start.temperature * unit.kelvin,
                                           int(dynamics.integers(1, 2**30)))
        integrator.step(steps_per_frame)
        x = frames[f] = context_positions_nm(context)
    names = " ".join("-".join(map(str, t)) for t in torsions)
    info = [{"torsions": names, "torsion_targets_deg": " ".join(f"{a:.2f}" for a in row)}
            for row in targets]
    return Conformations(_check_finite(frames, "torsion", "temperature, the time step or "
                                       "restraint_k"), info=info)


def mixed_frame_kinds(n_frames: int, torsion_fraction: float = 0.5) -> list[str]:
    """Which sampler makes frame k of a ``mixed`` run: ``"torsion"`` for a fraction
    ``torsion_fraction`` of the frames, spread evenly (frame k is a torsion frame when
    floor((k + 1) f) > floor(k f)), ``"md"`` for the rest; at 0.5: md, torsion, md, ...
    Frame k's kind does not depend on ``n_frames``, and every prefix holds the fraction to
    within one frame."""
    f = _check_fraction(torsion_fraction)
    return ["torsion" if math.floor((k + 1) * f) > math.floor(k * f) else "md"
            for k in range(n_frames)]


def _check_fraction(torsion_fraction: Any) -> Fraction:
    try:
        value = float(torsion_fraction)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise InvalidOptionError(f"torsion_fraction must be a number from 0 to 1 (the share of "
                                 f"torsion frames), got {torsion_fraction!r}")
    # exact rational arithmetic: the same kinds on every machine
    return Fraction(value).limit_denominator(10**6)


def mixed_conformations(
    start: SamplingStart,
    n_frames: int,
    *,
    torsion_fraction: float = 0.5,
    torsions: Sequence[Any] | None = None,
) -> Conformations:
    """MD frames and torsion frames interleaved (:func:`mixed_frame_kinds`).

    The MD frames are the first frames of :func:`md_conformations` with the same seed, the
    torsion frames the first of :func:`torsion_conformations`, so thermal coverage near the
    minimum stays as in ``md`` while the torsion frames span the rotatable torsions. A
    molecule without rotatable torsions gets MD frames only. Each frame's info says which
    sampler made it (``frame_sampler``); the settings hold ``torsion_fraction``.
    """
    _check_fraction(torsion_fraction)
    torsions = resolve_torsions(start.mol, torsions)
    kinds = mixed_frame_kinds(n_frames, torsion_fraction if torsions else 0.0)
    n_torsion = kinds.count("torsion")
    parts = {"md": md_conformations(start, n_frames - n_torsion)}
    if n_torsion:
        parts["torsion"] = torsion_conformations(start, n_torsion, torsions=torsions)
    frames = np.empty((n_frames, start.system.getNumParticles(), 3))
    info = []
    taken = dict.fromkeys(parts, 0)
    for k, kind in enumerate(kinds):
        frames[k] = parts[kind].positions[taken[kind]]
        info.append({"frame_sampler": kind, **parts[kind].info[taken[kind]]})
        taken[kind] += 1
    return Conformations(frames, {"torsion_fraction": float(torsion_fraction)}, info)


# --------------------------------------------------------------------------- registry

#: name -> sampler(start: SamplingStart, n_frames, **options) -> Conformations; other
#: packages add theirs through the ``hybridff.samplers`` entry-point group
SAMPLERS: Registry[Callable[..., Conformations]] = Registry("sampler", "hybridff.samplers", {
    "md": md_conformations,
    "normal-modes": normal_mode_conformations,
    "torsion": torsion_conformations,
    "mixed": mixed_conformations,
    "conformers": "hybridff.labels.displaced:conformer_conformations",
})
#: what ``hybridff label`` uses for a new file
DEFAULT_SAMPLER = "mixed"


def check_sampler(name: str | None) -> None:
    """Raise an :class:`UnknownNameError` listing the samplers unless ``name`` is one of
    :data:`SAMPLERS` (or ``None``: the file's own or the default)."""
    if name is not None:
        SAMPLERS[name]  # an unknown name raises, listing the known ones


def sampler_options(sampler: str) -> list[str]:
    """The options ``sampler`` takes beyond the start and the frame count (``platform``,
    the start's, last)."""
    check_sampler(sampler)
    parameters = list(inspect.signature(SAMPLERS[sampler]).parameters)
    return [p for p in parameters if p not in ("start", "n_frames")] + ["platform"]


def sample_conformations(
    sampler: str,
    system: openmm.System,
    positions: Any,
    n_frames: int,
    mol: Any = None,
    temperature: float = 500.0,
    seed: int = 0,
    **options: Any,
) -> Conformations:
    """Run the sampler named ``sampler`` (:data:`SAMPLERS`); an unknown name, or an option
    that sampler does not take, is an :class:`UnknownNameError` listing what exists."""
    known = sampler_options(sampler)
    for key in options:
        if key not in known:
            raise UnknownNameError(
                f"the {sampler} sampler takes no option {key!r}; its options: "
                f"{', '.join(known) or 'none'}"
                + ("; torsion_fraction applies to the mixed sampler" if key ==
                   "torsion_fraction" else ""))
    start = SamplingStart(system, positions, mol, temperature, seed)
    if "platform" in options:
        start = replace(start, platform=options.pop("platform"))
    return SAMPLERS[sampler](start, n_frames, **options)
