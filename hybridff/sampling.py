"""Conformations to label: MM molecular dynamics at elevated temperature, MD with the
rotatable torsions restrained at random angles, a mix of the two, normal-mode displacements.

Every sampler uses the MM System (from :func:`hybridff.mm.system.create_system`) and returns
positions in nm, (F, N, 3). All are seeded and use OpenMM's Reference platform by default, so
the same seed gives the same frames, and the first frames do not depend on how many are asked
for (which is what lets ``hybridff label`` resume a file). :func:`sample_conformations` runs one
by name (registry :data:`SAMPLERS`) and says per frame how it was made.

Why torsions: MD at 500 K almost never crosses barriers of several kcal/mol, such as an
amide C-N (paracetamol's stays within 29 degrees of trans in 95 % of 240 MD frames), and a
correction trained on such frames extrapolates freely along that torsion. The ``torsion``
sampler draws target angles on the full circle for every rotatable torsion
(:func:`rotatable_torsions`) and runs MD with the torsions restrained there; ``mixed`` (the
default of ``hybridff label``) interleaves those frames with plain MD frames.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import openmm
from openmm import unit

from hybridff.exceptions import InvalidOptionError, MoleculeInputError, UnknownNameError
from hybridff.units import strip_positions

logger = logging.getLogger(__name__)

Torsion = tuple[int, int, int, int]

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
        raise InvalidOptionError(f"n_frames must be >= 0 and interval_steps >= 1 (got {n_frames}, "
                                 f"{interval_steps})")
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


# --------------------------------------------------------------------------- torsions

def rotatable_torsions(mol: Any) -> list[Torsion]:
    """One heavy-atom dihedral per rotatable bond of an RDKit molecule (the torsions that
    ``hybridff evaluate --plots`` scans and the ``torsion`` sampler drives).

    A bond is rotatable as in RDKit's rotatable-bond SMARTS ``[!$(*#*)&!D1]-&!@[!$(*#*)&!D1]``
    with degrees counted over heavy atoms: a single, non-ring bond between two heavy atoms
    that each have another heavy neighbour and no triple bond. For bond j-k the dihedral is
    i-j-k-l with i (l) the heaviest other heavy neighbour of j (k), the lowest index on ties.

    Deliberately broader than RDKit's *strict* definition (``NumRotatableBonds``), which drops
    amide C-N and other bonds with partial double-bond character: those are the torsions
    whose barriers MD does not cross (cis amides are real conformers, a few kcal/mol above
    trans), so they are the ones to scan and to sample. Rotors that only turn hydrogens
    (methyl, hydroxyl) are left out: MD at the sampling temperature turns them already.
    """
    from rdkit import Chem

    def heavy_others(atom: Any, other: int) -> list[Any]:
        return [n for n in atom.GetNeighbors() if n.GetAtomicNum() > 1 and n.GetIdx() != other]

    def has_triple(atom: Any) -> bool:
        return any(b.GetBondType() == Chem.BondType.TRIPLE for b in atom.GetBonds())

    out: list[Torsion] = []
    for bond in mol.GetBonds():
        j_atom, k_atom = bond.GetBeginAtom(), bond.GetEndAtom()
        if (bond.GetBondType() != Chem.BondType.SINGLE or bond.IsInRing()
                or j_atom.GetAtomicNum() == 1 or k_atom.GetAtomicNum() == 1
                or has_triple(j_atom) or has_triple(k_atom)):
            continue
        i_side = heavy_others(j_atom, k_atom.GetIdx())
        l_side = heavy_others(k_atom, j_atom.GetIdx())
        if not i_side or not l_side:
            continue
        pick = min(i_side, key=lambda a: (-a.GetAtomicNum(), a.GetIdx())).GetIdx()
        last = min(l_side, key=lambda a: (-a.GetAtomicNum(), a.GetIdx())).GetIdx()
        out.append((pick, j_atom.GetIdx(), k_atom.GetIdx(), last))
    return out


def check_torsion(mol: Any, torsion: Any) -> Torsion:
    """``torsion`` as four atom indices of ``mol`` bonded i-j, j-k, k-l, j-k not in a ring.

    Raises :class:`MoleculeInputError` saying which condition fails.
    """
    from hybridff.io.molecule import atom_label

    idx = tuple(int(a) for a in torsion)
    n = mol.GetNumAtoms()
    hint = ", ".join(" ".join(map(str, t)) for t in rotatable_torsions(mol)) or "none"
    where = f"torsion {' '.join(map(str, idx))}"
    if len(idx) != 4:
        raise MoleculeInputError(f"{where}: a torsion needs 4 atom indices, got {len(idx)}")
    bad = [a for a in idx if not 0 <= a < n]
    if bad:
        raise MoleculeInputError(
            f"{where}: atom index {bad[0]} is out of range; the molecule has {n} atoms "
            f"(0-based indices 0..{n - 1}). Rotatable torsions: {hint}")
    if len(set(idx)) != 4:
        raise MoleculeInputError(f"{where}: the four atoms must be different")
    for a, b in zip(idx[:-1], idx[1:], strict=True):
        if mol.GetBondBetweenAtoms(a, b) is None:
            raise MoleculeInputError(
                f"{where}: {atom_label(mol, a)} and {atom_label(mol, b)} are not bonded; a "
                f"torsion i j k l needs the bonds i-j, j-k and k-l. Rotatable torsions: {hint}")
    if mol.GetBondBetweenAtoms(idx[1], idx[2]).IsInRing():
        raise MoleculeInputError(
            f"{where}: the bond {atom_label(mol, idx[1])} - {atom_label(mol, idx[2])} is in a "
            f"ring and cannot be turned through 360 degrees. Rotatable torsions: {hint}")
    return idx  # type: ignore[return-value]


def dihedral_deg(positions: np.ndarray, torsion: Torsion) -> np.ndarray:
    """Dihedral angle(s) i-j-k-l in degrees, (-180, 180], of (N, 3) or (F, N, 3) positions
    (IUPAC sign, as RDKit's ``GetDihedralDeg`` and OpenMM's torsion forces)."""
    x = np.asarray(positions, dtype=np.float64)
    i, j, k, l_ = (x[..., a, :] for a in torsion)
    b0, b1, b2 = j - i, k - j, l_ - k
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    m1 = np.cross(b1 / np.linalg.norm(b1, axis=-1, keepdims=True), n1)
    return np.degrees(np.arctan2((m1 * n2).sum(-1), (n1 * n2).sum(-1)))


def angle_difference_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed smallest difference a - b between angles in degrees, in [-180, 180)."""
    return (np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0


def _moving_side(mol: Any, torsion: Torsion) -> np.ndarray:
    """Indices of the atoms on the k side of bond j-k of ``torsion`` (k included); the bond
    must not be in a ring (:func:`check_torsion`)."""
    j, k = torsion[1], torsion[2]
    seen, stack = {k}, [k]
    while stack:
        for neighbour in mol.GetAtomWithIdx(stack.pop()).GetNeighbors():
            n = neighbour.GetIdx()
            if n not in seen and n != j:
                seen.add(n)
                stack.append(n)
    return np.array(sorted(seen))


def _rotate(x: np.ndarray, atoms: np.ndarray, j: int, k: int, angle_rad: float) -> np.ndarray:
    """``x`` with ``atoms`` turned by ``angle_rad`` about the axis j -> k (right-handed)."""
    u = x[k] - x[j]
    u = u / np.linalg.norm(u)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    cross = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    rotation = c * np.eye(3) + s * cross + (1.0 - c) * np.outer(u, u)
    out = x.copy()
    out[atoms] = (x[atoms] - x[k]) @ rotation.T + x[k]
    return out


def set_dihedrals(x: np.ndarray, mol: Any, torsions: Sequence[Torsion],
                  targets_deg: Sequence[float]) -> np.ndarray:
    """Positions ``x`` (N, 3) with each torsion turned rigidly to its target (degrees): the
    atoms on the k side of bond j-k rotate about it, bond lengths and angles stay as they are.
    Torsions about different bonds of a tree do not disturb each other, so turning them one
    after the other sets every one exactly."""
    out = np.asarray(x, dtype=np.float64).copy()
    for torsion, target in zip(torsions, targets_deg, strict=True):
        delta = float(angle_difference_deg(target, dihedral_deg(out, torsion)))
        out = _rotate(out, _moving_side(mol, torsion), torsion[1], torsion[2], math.radians(delta))
    return out


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
    rng = np.random.default_rng(_seed_key(seed, _TARGET_STREAM))
    return np.stack([rng.uniform(-180.0, 180.0, size=n_torsions) for _ in range(n_frames)]
                    ) if n_frames else np.empty((0, n_torsions))


def _seed_key(seed: int, stream: int) -> list[int]:
    """SeedSequence entropy for one of the torsion sampler's streams; any integer seed."""
    if isinstance(seed, bool) or int(seed) != seed:
        raise InvalidOptionError(f"the sampling seed must be an integer, got {seed!r}")
    return [abs(int(seed)), int(seed < 0), stream]


def _resolve_torsions(mol: Any, torsions: Sequence[Any] | None) -> list[Torsion]:
    if mol is None:
        raise InvalidOptionError("the torsion sampler needs the molecule (mol=, an RDKit "
                                 "molecule) to find its rotatable torsions and the atoms each "
                                 "one turns")
    if torsions is None:
        return rotatable_torsions(mol)
    resolved = [check_torsion(mol, t) for t in torsions]
    bonds = [tuple(sorted(t[1:3])) for t in resolved]
    if len(set(bonds)) != len(bonds):
        raise MoleculeInputError(
            "two of the torsions to sample turn the same bond; give one dihedral per bond "
            f"(got {', '.join(' '.join(map(str, t)) for t in resolved)})")
    return resolved


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
    system: openmm.System,
    positions: Any,
    n_frames: int,
    temperature: float = 500.0,
    seed: int = 0,
    *,
    mol: Any = None,
    torsions: Sequence[Any] | None = None,
    restraint_k: float = TORSION_RESTRAINT_K_KJ_MOL_RAD2,
    steps_per_frame: int = 2000,
    timestep_fs: float = 0.5,
    friction_per_ps: float = 5.0,
    platform: str = "Reference",
) -> np.ndarray:
    """Frames with the rotatable torsions at random angles and the rest of the molecule thermal.

    For every frame: targets for each torsion (``torsions``, default every
    :func:`rotatable_torsions` of ``mol``) drawn uniformly on the full circle
    (:func:`torsion_targets_deg`); starting from the previous frame (the first from the
    minimized input), the torsions are turned rigidly to their targets
    (:func:`set_dihedrals`), held there by harmonic restraints (``restraint_k``, kJ/mol/rad^2,
    on the wrapped angle difference; OpenMM ``CustomTorsionForce``) while clashes are
    minimized away and ``steps_per_frame`` steps of Langevin MD at ``temperature`` K follow
    from fresh seeded velocities (1 ps by default: five friction times, so bonds, angles and
    the other torsions are thermal). The frame is the MD's last positions; the restraints
    only steer the sampling (labels are computed on the molecule alone). Seeded, and frame k
    does not depend on ``n_frames``.
    """
    if n_frames < 0 or steps_per_frame < 1:
        raise InvalidOptionError(f"n_frames must be >= 0 and steps_per_frame >= 1 "
                                 f"(got {n_frames}, {steps_per_frame})")
    if not restraint_k > 0 or not temperature > 0:
        raise InvalidOptionError(f"restraint_k and temperature must be > 0 (got {restraint_k}, "
                                 f"{temperature})")
    torsions = _resolve_torsions(mol, torsions)
    if not torsions:
        raise MoleculeInputError(
            f"{mol.GetNumAtoms()}-atom molecule: no rotatable torsion between heavy atoms "
            "(see hybridff.sampling.rotatable_torsions), nothing for the torsion sampler to "
            "turn; use the md sampler")
    targets = torsion_targets_deg(n_frames, len(torsions), seed)
    dynamics = np.random.default_rng(_seed_key(seed, _DYNAMICS_STREAM))
    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin, friction_per_ps / unit.picosecond,
        timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(int(dynamics.integers(1, 2**30)))
    restrained = _restraint(system, torsions, restraint_k)
    restraint = restrained.getForce(restrained.getNumForces() - 1)
    context = _context(restrained, integrator, platform)
    context.setPositions(strip_positions(positions))
    context.setParameter("k_torsion", 0.0)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 500)
    context.setParameter("k_torsion", float(restraint_k))
    x = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(
        unit.nanometer)
    frames = np.empty((n_frames, system.getNumParticles(), 3))
    for f in range(n_frames):
        for t, torsion in enumerate(torsions):
            restraint.setTorsionParameters(t, *torsion, [math.radians(targets[f, t])])
        restraint.updateParametersInContext(context)
        context.setPositions(set_dihedrals(x, mol, torsions, targets[f]))
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
        context.setVelocitiesToTemperature(temperature * unit.kelvin,
                                           int(dynamics.integers(1, 2**30)))
        integrator.step(steps_per_frame)
        x = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(
            unit.nanometer)
        frames[f] = x
    if not np.isfinite(frames).all():
        raise MoleculeInputError(
            "torsion sampling produced non-finite coordinates (the MD blew up); lower the "
            "temperature, the time step or restraint_k")
    return frames


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
    system: openmm.System,
    positions: Any,
    n_frames: int,
    temperature: float = 500.0,
    seed: int = 0,
    *,
    mol: Any = None,
    torsion_fraction: float = 0.5,
    torsions: Sequence[Any] | None = None,
    platform: str = "Reference",
) -> np.ndarray:
    """MD frames and torsion frames interleaved (:func:`mixed_frame_kinds`).

    The MD frames are the first frames of :func:`md_conformations` with the same seed, the
    torsion frames the first of :func:`torsion_conformations`, so thermal coverage near the
    minimum stays as in ``md`` while the torsion frames span the rotatable torsions. A
    molecule without rotatable torsions gets MD frames only.
    """
    _check_fraction(torsion_fraction)
    torsions = _resolve_torsions(mol, torsions)
    kinds = mixed_frame_kinds(n_frames, torsion_fraction if torsions else 0.0)
    n_torsion = kinds.count("torsion")
    md = md_conformations(system, positions, n_frames - n_torsion, temperature=temperature,
                          seed=seed, platform=platform)
    turned = (torsion_conformations(system, positions, n_torsion, temperature, seed, mol=mol,
                                    torsions=torsions, platform=platform)
              if n_torsion else np.empty((0, *md.shape[1:])))
    frames = np.empty((n_frames, system.getNumParticles(), 3))
    is_torsion = np.array([kind == "torsion" for kind in kinds], dtype=bool)
    frames[is_torsion], frames[~is_torsion] = turned, md
    return frames


# --------------------------------------------------------------------------- registry

#: name -> sampler(system, positions, n_frames, temperature=..., seed=..., [mol=..., options])
SAMPLERS: dict[str, Callable[..., np.ndarray]] = {
    "md": md_conformations,
    "normal-modes": normal_mode_conformations,
    "torsion": torsion_conformations,
    "mixed": mixed_conformations,
}
#: what ``hybridff label`` uses for a new file
DEFAULT_SAMPLER = "mixed"


@dataclass
class Conformations:
    """Frames of :func:`sample_conformations` and how each was made.

    ``settings``: the sampler's options that decide the frames beyond seed and temperature
    (``torsion_fraction`` of ``mixed``); ``info``: per frame, the sampler that made it
    (``mixed``: ``frame_sampler``) and, for torsion frames, the torsions (``torsions``, atom
    indices I-J-K-L) and their targets (``torsion_targets_deg``), as strings for extxyz.
    """

    positions: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    info: list[dict[str, Any]] = field(default_factory=list)


def _options_of(function: Callable[..., Any]) -> list[str]:
    skip = {"system", "positions", "n_frames", "temperature", "seed", "mol"}
    return [p for p in inspect.signature(function).parameters if p not in skip]


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
    if sampler not in SAMPLERS:
        raise UnknownNameError(f"unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
    function = SAMPLERS[sampler]
    known = _options_of(function)
    for key in options:
        if key not in known:
            raise UnknownNameError(
                f"the {sampler} sampler takes no option {key!r}; its options: "
                f"{', '.join(known) or 'none'}"
                + ("; torsion_fraction applies to the mixed sampler" if key ==
                   "torsion_fraction" else ""))
    takes_mol = "mol" in inspect.signature(function).parameters
    if takes_mol:
        options["torsions"] = _resolve_torsions(mol, options.get("torsions"))
        options["mol"] = mol
    frames = function(system, positions, n_frames, temperature=temperature, seed=seed, **options)
    result = Conformations(frames, info=[{} for _ in range(n_frames)])
    if not takes_mol:
        return result
    torsions = options["torsions"]
    if sampler == "mixed":
        fraction = float(options.get("torsion_fraction", 0.5))
        result.settings["torsion_fraction"] = fraction
        kinds = mixed_frame_kinds(n_frames, fraction if torsions else 0.0)
    else:
        kinds = ["torsion"] * n_frames
    targets = torsion_targets_deg(kinds.count("torsion"), len(torsions), seed)
    names = " ".join("-".join(map(str, t)) for t in torsions)
    n_turned = 0
    for info, kind in zip(result.info, kinds, strict=True):
        if sampler == "mixed":
            info["frame_sampler"] = kind
        if kind == "torsion":
            info["torsions"] = names
            info["torsion_targets_deg"] = " ".join(f"{a:.2f}" for a in targets[n_turned])
            n_turned += 1
    return result
