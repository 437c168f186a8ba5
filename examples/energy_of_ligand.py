"""Load hybridff's force field and a generated ligand XML with plain OpenMM; print energies.

    python examples/energy_of_ligand.py paracetamol.xml examples/data/paracetamol.sdf
"""

from __future__ import annotations

import sys

import openmm
from openmm import app, unit
from rdkit import Chem


def main(xml: str, sdf: str) -> None:
    mol = Chem.MolFromMolFile(sdf, removeHs=False)
    top = app.Topology()
    res = top.addResidue("MOL", top.addChain())
    atoms = []
    counts: dict[str, int] = {}
    for a in mol.GetAtoms():  # the same default names hybridff gives (element + count)
        counts[a.GetSymbol()] = counts.get(a.GetSymbol(), 0) + 1
        atoms.append(top.addAtom(f"{a.GetSymbol()}{counts[a.GetSymbol()]}",
                                 app.Element.getBySymbol(a.GetSymbol()), res))
    for b in mol.GetBonds():
        top.addBond(atoms[b.GetBeginAtomIdx()], atoms[b.GetEndAtomIdx()])
    forcefield = app.ForceField("hybridff-gaff2.xml", xml)  # found through OpenMM's entry point
    system = forcefield.createSystem(top, nonbondedMethod=app.NoCutoff)
    for i, force in enumerate(system.getForces()):
        force.setForceGroup(i)
    context = openmm.Context(system, openmm.VerletIntegrator(1.0 * unit.femtosecond),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(mol.GetConformer().GetPositions() * 0.1 * unit.nanometer)
    print(f"{'term':24s} {'energy (kJ/mol)':>16s}")
    for i, force in enumerate(system.getForces()):
        e = context.getState(getEnergy=True, groups={i}).getPotentialEnergy()
        print(f"{type(force).__name__:24s} {e.value_in_unit(unit.kilojoule_per_mole):16.4f}")
    total = context.getState(getEnergy=True).getPotentialEnergy()
    print(f"{'total':24s} {total.value_in_unit(unit.kilojoule_per_mole):16.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
