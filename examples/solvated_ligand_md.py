"""Solvate a ligand in TIP3P with neutralizing ions, minimize, and run NPT MD with PME.

Plain OpenMM plus hybridff's template generator (drop-in use)::

    python examples/solvated_ligand_md.py examples/data/paracetamol.sdf --steps 5000 -o run/

Writes run/solvated.pdb, run/trajectory.dcd and run/log.csv (time, energies, temperature,
density, speed, with a progress indicator on stdout). CPU platform by default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import openmm
from openmm import app, unit

from hybridff import HybridTemplateGenerator
from hybridff.io.molecule import load_molecule


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ligand", help="ligand SDF/mol2 (3D, with or without hydrogens)")
    ap.add_argument("-o", "--output", type=Path, default=Path("run"))
    ap.add_argument("--charges", default="ml", help="charge method (ml, am1bcc, gasteiger, file)")
    ap.add_argument("--padding", type=float, default=1.0,
                    help="solvent between the ligand and each box face, nm")
    ap.add_argument("--ionic-strength", type=float, default=0.15, help="molar")
    ap.add_argument("--steps", type=int, default=5000, help="MD steps of 2 fs")
    ap.add_argument("--report-every", type=int, default=500)
    ap.add_argument("--platform", default="CPU")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)

    ligand = load_molecule(args.ligand)
    generator = HybridTemplateGenerator([ligand], charge_method=args.charges)
    forcefield = app.ForceField("amber14/tip3p.xml", "hybridff-gaff2.xml")
    forcefield.registerTemplateGenerator(generator.generator)

    topology = app.Topology()
    residue = topology.addResidue("LIG", topology.addChain())
    atoms = [topology.addAtom(a.GetProp("_hybridff_name"),
                              app.Element.getByAtomicNumber(a.GetAtomicNum()), residue)
             for a in ligand.GetAtoms()]
    for b in ligand.GetBonds():
        topology.addBond(atoms[b.GetBeginAtomIdx()], atoms[b.GetEndAtomIdx()])
    positions = ligand.GetConformer().GetPositions() * 0.1 * unit.nanometer

    modeller = app.Modeller(topology, positions)
    # cubic box: ligand extent + padding on both sides, never below 2 x cutoff + margin
    xyz = positions.value_in_unit(unit.nanometer)
    edge = max(float((xyz.max(axis=0) - xyz.min(axis=0)).max()) + 2 * args.padding, 2.6)
    modeller.addSolvent(forcefield, model="tip3p", boxSize=openmm.Vec3(edge, edge, edge) * unit.nanometer,
                        ionicStrength=args.ionic_strength * unit.molar, neutralize=True)
    print(f"solvated system: {modeller.topology.getNumAtoms()} atoms, "
          f"{modeller.topology.getNumResidues()} residues")
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                     nonbondedCutoff=1.0 * unit.nanometer,
                                     switchDistance=0.9 * unit.nanometer,
                                     constraints=app.HBonds)
    system.addForce(openmm.MonteCarloBarostat(1.0 * unit.bar, 300 * unit.kelvin))
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1.0 / unit.picosecond,
                                                 2.0 * unit.femtosecond)
    integrator.setRandomNumberSeed(args.seed)
    simulation = app.Simulation(modeller.topology, system, integrator,
                                openmm.Platform.getPlatformByName(args.platform))
    simulation.context.setPositions(modeller.positions)
    print("minimizing ...")
    simulation.minimizeEnergy(maxIterations=500)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, args.seed)
    with open(args.output / "solvated.pdb", "w") as fh:
        state = simulation.context.getState(getPositions=True, enforcePeriodicBox=True)
        app.PDBFile.writeFile(simulation.topology, state.getPositions(), fh)
    simulation.reporters.append(app.DCDReporter(str(args.output / "trajectory.dcd"), args.report_every))
    simulation.reporters.append(app.StateDataReporter(
        str(args.output / "log.csv"), args.report_every, step=True, time=True,
        potentialEnergy=True, kineticEnergy=True, temperature=True, density=True, speed=True))
    simulation.reporters.append(app.StateDataReporter(
        sys.stdout, args.report_every, step=True, temperature=True, density=True, progress=True,
        remainingTime=True, speed=True, totalSteps=args.steps, separator="  "))
    simulation.step(args.steps)
    print(f"done: {args.output / 'trajectory.dcd'}, {args.output / 'log.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
