"""OpenMM Systems from parameterized molecules, with hybridff's nonbonded defaults.

The System is made by OpenMM's own ``ForceField`` from the shipped XML plus each molecule's
generated XML, so it is exactly what a plain ``openmm.app.ForceField`` user gets. Defaults:
Lennard-Jones switching from 0.9 nm, cutoff 1.0 nm, long-range dispersion correction, 1-4
scaling 1/1.2 (electrostatics) and 1/2 (LJ); each Force in its own force group.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import openmm
from openmm import app, unit

from hybridff.exceptions import (
    InvalidOptionError,
    MoleculeInputError,
    NonNeutralSystemError,
    SimulationError,
)
from hybridff.mm.energies import FORCE_GROUPS
from hybridff.mm.forcefield_files import forcefield_path
from hybridff.mm.parameters import ParameterizedMolecule
from hybridff.units import length_in_nm

logger = logging.getLogger(__name__)

DEFAULT_CUTOFF_NM = 1.0
DEFAULT_SWITCH_NM = 0.9

#: Group of the ML correction (used by hybridff.ml.backend).
ML_FORCE_GROUP = 4
#: Group of any other Force (e.g. from other force fields' files).
OTHER_FORCE_GROUP = 7

NONBONDED_METHODS = {
    "NoCutoff": app.NoCutoff,
    "CutoffNonPeriodic": app.CutoffNonPeriodic,
    "CutoffPeriodic": app.CutoffPeriodic,
    "Ewald": app.Ewald,
    "PME": app.PME,
    "LJPME": app.LJPME,
}
_PERIODIC = {app.CutoffPeriodic, app.Ewald, app.PME, app.LJPME}
_EWALD = {app.Ewald, app.PME, app.LJPME}


def resolve_nonbonded_method(method: Any):
    """An ``openmm.app`` nonbonded method object from itself or its name."""
    if isinstance(method, str):
        if method not in NONBONDED_METHODS:
            raise InvalidOptionError(
                f"unknown nonbonded method {method!r}; choose one of {', '.join(NONBONDED_METHODS)}")
        return NONBONDED_METHODS[method]
    if method not in NONBONDED_METHODS.values():
        raise InvalidOptionError(f"unknown nonbonded method {method!r}; choose one of "
                                 f"{', '.join(NONBONDED_METHODS)}")
    return method


#: Name prefix of the Force that ``hybridff.ml.backend.add_ml_correction`` adds.
ML_FORCE_NAME = "hybridff ML correction"


def is_ml_force(force: openmm.Force) -> bool:
    """Whether ``force`` is hybridff's ML correction (plugin Forces read back from a System
    are plain ``Force`` objects, so the name given by ``add_ml_correction`` is checked too)."""
    return (type(force).__name__ in ("TorchForce", "PythonForce")
            or force.getName().startswith(ML_FORCE_NAME))


def set_force_groups(system: openmm.System) -> dict[str, int]:
    """Put each Force in its term's group (see ``FORCE_GROUPS``); return name -> group."""
    groups = {}
    for force in system.getForces():
        name = type(force).__name__
        group = FORCE_GROUPS.get(name, OTHER_FORCE_GROUP)
        if is_ml_force(force):
            group = ML_FORCE_GROUP
        force.setForceGroup(group)
        groups[name] = group
    return groups


def check_nonbonded_options(cutoff_nm: float, switch_nm: float | None) -> None:
    """Refuse a switching distance that is not below the cutoff (quoting both)."""
    if switch_nm is not None and not 0 < switch_nm < cutoff_nm:
        raise InvalidOptionError(
            f"switching distance {switch_nm} nm must be positive and below the cutoff "
            f"{cutoff_nm} nm")


def net_charge(system: openmm.System) -> float:
    """Total charge (e) in the System's NonbondedForce (0 if there is none)."""
    total = 0.0
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            for i in range(force.getNumParticles()):
                total += force.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
    return total


def warn_if_charged_periodic(system: openmm.System, nonbonded_method, strict: bool = False) -> None:
    """Warn (or raise, ``strict``) when an Ewald/PME System is not neutral."""
    if resolve_nonbonded_method(nonbonded_method) not in _EWALD:
        return
    q = net_charge(system)
    if abs(q) > 1e-4:
        msg = (f"the periodic system carries a net charge of {q:+.4f} e; Ewald/PME then adds a "
               "uniform neutralizing background, which biases energies. Neutralize it, e.g. "
               "Modeller.addSolvent(..., neutralize=True) or add counter-ions "
               f"({abs(round(q))} {'Cl-' if q > 0 else 'Na+'}).")
        if strict:
            raise NonNeutralSystemError(msg)
        warnings.warn(msg, stacklevel=3)


def make_forcefield(molecules: Sequence[ParameterizedMolecule], extra_files: Sequence[str] = ()
                    ) -> app.ForceField:
    """An ``openmm.app.ForceField`` with the shipped file, the molecules' XML and extra files."""
    if not molecules:
        raise InvalidOptionError("no molecules given: pass at least one")
    ffname = molecules[0].forcefield
    ff = app.ForceField(str(forcefield_path(ffname)), *extra_files)
    seen = set()
    for pm in molecules:
        if pm.forcefield != ffname:
            raise InvalidOptionError(f"molecules parameterized with different force fields: "
                             f"{ffname} and {pm.forcefield}")
        key = (pm.smiles, pm.residue_name)
        if key in seen:
            continue
        seen.add(key)
        ff.loadFile(io.StringIO(pm.to_ffxml()))
    return ff


def molecules_topology(molecules: Sequence[ParameterizedMolecule]
                       ) -> tuple[app.Topology, np.ndarray]:
    """Topology (one chain and residue per molecule) and positions (nm) of the molecules."""
    top = app.Topology()
    positions = []
    for pm in molecules:
        chain = top.addChain()
        res = top.addResidue(pm.residue_name, chain)
        atoms = [top.addAtom(name, app.Element.getByAtomicNumber(a.GetAtomicNum()), res)
                 for name, a in zip(pm.names, pm.mol.GetAtoms(), strict=True)]
        for b in pm.mol.GetBonds():
            top.addBond(atoms[b.GetBeginAtomIdx()], atoms[b.GetEndAtomIdx()])
        positions.append(pm.mol.GetConformer().GetPositions() * 0.1)
    return top, np.concatenate(positions)


def ligand_topology(molecule: Any, residue_name: str = "MOL") -> tuple[app.Topology, unit.Quantity]:
    """An OpenMM Topology (one chain, one residue) and positions of one molecule.

    ``molecule``: an SDF/mol2 path, SMILES (a conformer is generated) or RDKit Mol, read as
    :func:`hybridff.load_molecule` does; atoms keep its order and hybridff's atom names. The
    usual start of the drop-in route: ``Modeller(*ligand_topology("ligand.sdf"))``.
    """
    from hybridff.io.molecule import load_molecule
    from hybridff.units import ANGSTROM_TO_NM

    mol = load_molecule(molecule)
    top = app.Topology()
    residue = top.addResidue(residue_name, top.addChain())
    atoms = [top.addAtom(a.GetProp("_hybridff_name"), app.Element.getByAtomicNumber(a.GetAtomicNum()),
                         residue) for a in mol.GetAtoms()]
    for b in mol.GetBonds():
        top.addBond(atoms[b.GetBeginAtomIdx()], atoms[b.GetEndAtomIdx()])
    return top, mol.GetConformer().GetPositions() * ANGSTROM_TO_NM * unit.nanometer


def create_system(molecules: ParameterizedMolecule | Sequence[ParameterizedMolecule],
                  nonbonded_method: Any = "NoCutoff", cutoff: Any = DEFAULT_CUTOFF_NM,
                  switch_distance: Any = DEFAULT_SWITCH_NM, box_vectors: Any = None,
                  constraints: Any = None, dispersion_correction: bool = True,
                  ewald_error_tolerance: float = 5e-4, remove_cmmotion: bool = False,
                  ) -> tuple[openmm.System, app.Topology, unit.Quantity]:
    """Build the MM System of one or more parameterized molecules.

    Returns ``(system, topology, positions)``. Lengths are OpenMM quantities or plain nm.
    ``switch_distance=None`` turns the LJ switching function off. Periodic methods need
    ``box_vectors`` (3 vectors, nm). Each Force gets its own group (``FORCE_GROUPS``).
    """
    mols = [molecules] if isinstance(molecules, ParameterizedMolecule) else list(molecules)
    method = resolve_nonbonded_method(nonbonded_method)
    top, pos = molecules_topology(mols)
    if method in _PERIODIC:
        if box_vectors is None:
            raise MoleculeInputError(
                f"nonbonded method {nonbonded_method} is periodic: give box_vectors")
        top.setPeriodicBoxVectors(box_vectors)
    ff = make_forcefield(mols)
    return (
        build_system(ff, top, method, cutoff, switch_distance, constraints,
                     dispersion_correction, ewald_error_tolerance, remove_cmmotion),
        top,
        pos * unit.nanometer,
    )


def build_system(forcefield: app.ForceField, topology: app.Topology, nonbonded_method: Any = "PME",
                 cutoff: Any = DEFAULT_CUTOFF_NM, switch_distance: Any = DEFAULT_SWITCH_NM,
                 constraints: Any = None, dispersion_correction: bool = True,
                 ewald_error_tolerance: float = 5e-4, remove_cmmotion: bool = True,
                 rigid_water: bool = True, hydrogen_mass: Any = None) -> openmm.System:
    """``forcefield.createSystem`` with hybridff's defaults, checks and force groups."""
    method = resolve_nonbonded_method(nonbonded_method)
    cutoff_nm = length_in_nm(cutoff)
    switch_nm = None if switch_distance is None else length_in_nm(switch_distance)
    kwargs: dict[str, Any] = dict(nonbondedMethod=method, constraints=constraints,
                                  rigidWater=rigid_water, removeCMMotion=remove_cmmotion)
    if hydrogen_mass is not None:
        kwargs["hydrogenMass"] = hydrogen_mass
    if method is not app.NoCutoff:
        check_nonbonded_options(cutoff_nm, switch_nm)
        kwargs["nonbondedCutoff"] = cutoff_nm * unit.nanometer
        if switch_nm is not None:
            kwargs["switchDistance"] = switch_nm * unit.nanometer
        if method in _EWALD:
            kwargs["ewaldErrorTolerance"] = ewald_error_tolerance
    system = forcefield.createSystem(topology, **kwargs)
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            force.setUseDispersionCorrection(bool(dispersion_correction) and method is not app.NoCutoff)
            if method is not app.NoCutoff and switch_nm is not None and not force.getUseSwitchingFunction():
                raise SimulationError("the switching function was requested but OpenMM did not set it "
                                      "on the NonbondedForce; report it with the OpenMM version")
    set_force_groups(system)
    warn_if_charged_periodic(system, method)
    return system


def energy_components(system: openmm.System, positions: Any, platform: str = "Reference",
                      box_vectors: Any = None) -> dict[str, float]:
    """Potential energy (kJ/mol) of each Force class (by its force group) and the total."""
    integrator = openmm.VerletIntegrator(0.001)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    if box_vectors is not None:
        ctx.setPeriodicBoxVectors(*box_vectors)
    ctx.setPositions(positions)
    out = {}
    for force in system.getForces():
        g = force.getForceGroup()
        e = ctx.getState(getEnergy=True, groups={g}).getPotentialEnergy()
        out[type(force).__name__] = e.value_in_unit(unit.kilojoule_per_mole)
    out["total"] = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(
        unit.kilojoule_per_mole)
    del ctx
    return out
