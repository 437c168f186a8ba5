"""Run molecular dynamics of one molecule: in a TIP3P box with PME and neutralizing ions
(default) or in vacuum, MM alone or with a trained ML correction (--model). Minimizes,
equilibrates, then runs Langevin dynamics with a progress bar. Writes to the output folder:
log.csv (time, energies, temperature, density, speed ns/day, ensemble disagreement),
trajectory.dcd, start.pdb, final.pdb, system.xml (XmlSerializer), integrator.xml,
checkpoint.chk, state.xml and run.json. --resume continues a run from its folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hybridff.exceptions import MoleculeInputError
from hybridff.parameters import DEFAULT_CHARGE_METHOD

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hybridff.charges import available_charge_methods
    from hybridff.simulation import SOLVENTS

    parser.add_argument("molecule", type=Path, nargs="?",
                        help="SDF/MOL/mol2 file (one molecule, 3D or not) or a SMILES string")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--model", type=Path, help="trained ML correction (hybridff train); MM alone without it")
    parser.add_argument("--ml-backend", default="torch", choices=["torch", "python"],
                        help="how the correction runs in OpenMM (default: torch = openmm-torch)")
    parser.add_argument("--charges", default=None, choices=available_charge_methods(),
                        help="charge method (default: the one the --model was trained with, "
                             f"else {DEFAULT_CHARGE_METHOD})")
    parser.add_argument("--solvent", default="tip3p", choices=list(SOLVENTS),
                        help="tip3p: cubic water box, PME, ions; none: vacuum, no cutoff (default: tip3p)")
    parser.add_argument("--box", type=float, default=3.0, help="cubic box edge, nm (default 3.0)")
    parser.add_argument("--ionic-strength", type=float, default=0.15,
                        help="NaCl molar, on top of the neutralizing ions (default 0.15)")
    parser.add_argument("--platform", default="CPU", help="OpenMM platform: CPU, CUDA, OpenCL, Reference")
    parser.add_argument("--threads", type=int, help="CPU threads (OpenMM CPU platform and torch)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--ns", type=float, help="production length in ns (default 1)")
    length.add_argument("--steps", type=int, help="production length in steps")
    parser.add_argument("--timestep-fs", type=float, default=2.0, help="time step, fs (default 2; H bonds constrained)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    parser.add_argument("--pressure", type=float, default=1.0,
                        help="bar, Monte Carlo barostat in solvent; 0 for constant volume (default 1)")
    parser.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps (default 1)")
    parser.add_argument("--equilibration-ps", type=float, default=10.0,
                        help="equilibration after minimization, not logged (default 10 ps)")
    parser.add_argument("--minimize-iterations", type=int, default=1000, help="(default 1000; 0 skips)")
    parser.add_argument("--report-ps", type=float, default=10.0,
                        help="interval of log rows and DCD frames, ps (default 10)")
    parser.add_argument("--seed", type=int, default=2026, help="velocities, thermostat, barostat")
    parser.add_argument("--disagreement-threshold", type=float,
                        help="kcal/mol; warn when the ensemble spread exceeds it (default: the "
                             "trained range stored in the model file, if any)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the output folder from its checkpoint for "
                             "--steps/--ns more (MOLECULE not needed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _steps(args: argparse.Namespace) -> int:
    if args.steps is not None:
        return int(args.steps)
    ns = 1.0 if args.ns is None else float(args.ns)
    return int(round(ns * 1e6 / args.timestep_fs))


def run(args: argparse.Namespace) -> int:
    from hybridff.simulation import MDOptions, prepare_system, resume_md, run_md

    steps = _steps(args)
    if args.resume:
        summary = resume_md(args.output, steps, platform=args.platform, threads=args.threads,
                            progress=not args.no_progress)
        speed = summary["resumed"][-1]
        print(f"resumed {args.output}: {speed['steps']} more steps (now at step "
              f"{summary['total_steps']}), {speed['ns_per_day']:.2f} ns/day")
        return 0
    if args.molecule is None:
        raise MoleculeInputError("give the molecule to simulate (SDF/mol2 file or SMILES), or "
                                 "--resume to continue the run in the output folder")
    molecule = str(args.molecule)
    prepared = prepare_system(molecule, charge_method=args.charges, solvent=args.solvent,
                              box_nm=args.box, ionic_strength_molar=args.ionic_strength,
                              model=args.model, ml_backend=args.ml_backend)
    info = prepared.info
    where = ("vacuum (NoCutoff)" if args.solvent == "none" else
             f"{args.box} nm TIP3P box, PME: {info['waters']} waters, {info['na']} Na+, "
             f"{info['cl']} Cl-")
    print(f"{molecule}: {info['solute_atoms']} atoms, charge {info['solute_charge']:+d}, "
          f"charges {info['charge_method']}; {where}; {prepared.topology.getNumAtoms()} atoms in all"
          + (f"; ML correction {args.model} ({args.ml_backend})" if args.model else ""))
    dt_ps = args.timestep_fs / 1000.0
    options = MDOptions(
        steps=steps, timestep_fs=args.timestep_fs, temperature_k=args.temperature,
        friction_per_ps=args.friction, pressure_bar=args.pressure or None,
        report_every=max(1, int(round(args.report_ps / dt_ps))),
        equilibration_steps=int(round(args.equilibration_ps / dt_ps)),
        minimize_iterations=args.minimize_iterations, seed=args.seed, platform=args.platform,
        threads=args.threads, disagreement_threshold_kcal=args.disagreement_threshold)
    summary = run_md(prepared, args.output, options, progress=not args.no_progress)
    prod = summary["production"]
    speed = f"{prod['ns_per_day']:.2f} ns/day" if prod["ns_per_day"] else "no production steps"
    print(f"done: {steps} steps ({steps * dt_ps / 1000:.4g} ns) on {summary['platform']}, {speed}; "
          f"outputs in {args.output}/")
    dis = summary.get("ensemble_disagreement_kcal_mol")
    if dis and dis["max"] is not None:
        print(f"ensemble disagreement: mean {dis['mean']:.3f}, max {dis['max']:.3f} kcal/mol "
              f"(trained max: {dis['trained_max'] if dis['trained_max'] is not None else 'not in model file'})")
    return 0
