"""The independent reference route: antechamber (GAFF2 types) -> parmchk2 -> tleap -> prmtop.

Used by the tests to compare hybridff's Systems term by term against AmberTools' own
parameterization of the same molecule with the same charges.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit
from rdkit import Chem

from hybridff.ambertools import mol2_text, run_program
from hybridff.molecule import atom_names


@dataclass
class AmberReference:
    atom_types: list[str]
    system: openmm.System
    prmtop: app.AmberPrmtopFile


def antechamber_types(mol: Chem.Mol, workdir: Path) -> list[str]:
    """GAFF2 atom types that antechamber assigns to ``mol`` (RDKit atom order)."""
    sdf = workdir / "in.sdf"
    w = Chem.SDWriter(str(sdf))
    w.SetKekulize(True)
    w.write(mol)
    w.close()
    run_program("antechamber", ["-i", "in.sdf", "-fi", "sdf", "-o", "ac.mol2", "-fo", "mol2",
                                "-at", "gaff2", "-c", "dc", "-nc", str(Chem.GetFormalCharge(mol)),
                                "-pf", "y", "-dr", "no"], cwd=workdir)
    types = []
    in_atoms = False
    for line in (workdir / "ac.mol2").read_text().splitlines():
        if line.startswith("@<TRIPOS>"):
            in_atoms = line.strip() == "@<TRIPOS>ATOM"
            continue
        if in_atoms and line.strip():
            types.append(line.split()[5])
    if len(types) != mol.GetNumAtoms():
        raise RuntimeError("antechamber changed the number of atoms")
    return types


def amber_reference(mol: Chem.Mol, charges: np.ndarray, nonbonded_method=app.NoCutoff,
                    **create_kwargs) -> AmberReference:
    """Parameterize ``mol`` with AmberTools alone, with the given charges."""
    with tempfile.TemporaryDirectory(prefix="hybridff-ref-") as tmp:
        d = Path(tmp)
        types = antechamber_types(mol, d)
        (d / "mol.mol2").write_text(mol2_text(mol, atom_names(mol), types, charges))
        run_program("parmchk2", ["-i", "mol.mol2", "-f", "mol2", "-o", "mol.frcmod", "-s", "2"],
                    cwd=d)
        (d / "leap.in").write_text(
            "source leaprc.gaff2\nloadamberparams mol.frcmod\nm = loadmol2 mol.mol2\n"
            "saveamberparm m mol.prmtop mol.inpcrd\nquit\n")
        run_program("tleap", ["-f", "leap.in"], cwd=d)
        prmtop = app.AmberPrmtopFile(str(d / "mol.prmtop"))
        system = prmtop.createSystem(nonbondedMethod=nonbonded_method, **create_kwargs)
    undo_tleap_pi(system)
    return AmberReference(types, system, prmtop)


#: tleap converts degrees to radians with PI = 3.141594 (AmberTools' own constant), which
#: shifts every angle minimum and torsion phase by 4.3e-7 relative. Undo it, so the comparison
#: measures parameter assignment rather than that constant.
TLEAP_PI = 3.141594


def undo_tleap_pi(system: openmm.System) -> None:
    """Rescale equilibrium angles and torsion phases of a tleap-made System to the exact pi."""
    scale = np.pi / TLEAP_PI
    for f in system.getForces():
        if isinstance(f, openmm.HarmonicAngleForce):
            for i in range(f.getNumAngles()):
                a, b, c, theta, k = f.getAngleParameters(i)
                f.setAngleParameters(i, a, b, c, theta * scale, k)
        elif isinstance(f, openmm.PeriodicTorsionForce):
            for i in range(f.getNumTorsions()):
                a, b, c, d, n, phase, k = f.getTorsionParameters(i)
                f.setTorsionParameters(i, a, b, c, d, n, phase * scale, k)


def group_energies(system: openmm.System, positions_nm: np.ndarray, box=None) -> dict[str, float]:
    """Energy (kJ/mol) per Force class, each class in its own group, Reference platform."""
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    names = {}
    for i, f in enumerate(system.getForces()):
        f.setForceGroup(i)
        names[i] = type(f).__name__
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    if box is not None:
        ctx.setPeriodicBoxVectors(*box)
    ctx.setPositions(positions_nm * unit.nanometer)
    out: dict[str, float] = {}
    for i, name in names.items():
        e = ctx.getState(getEnergy=True, groups={i}).getPotentialEnergy()
        out[name] = out.get(name, 0.0) + e.value_in_unit(unit.kilojoule_per_mole)
    return out
