"""Run molecular dynamics of one molecule: in a TIP3P box with PME and neutralizing ions
(default) or in vacuum, MM alone or with a trained ML correction (--model). Minimizes,
equilibrates, then runs Langevin dynamics with a progress bar. Writes to the output folder:
log.csv (time, energies, temperature, density, speed ns/day, ensemble disagreement),
trajectory.dcd, start.pdb, final.pdb, system.xml (XmlSerializer), integrator.xml,
checkpoint.chk, state.xml and run.json. A folder that holds a run is refused unless --resume
(continue it, with its own settings) or --overwrite (replace it) is given."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

from hybridff.cli.argtypes import non_negative, number_in, output_folder, positive, registered
from hybridff.cli.charges import CHARGE_REGISTRY, METHODS
from hybridff.exceptions import InvalidOptionError, MoleculeInputError
from hybridff.md.options import MAX_MTS
from hybridff.ml import DEFAULT_PRECISION, PRECISIONS, RECORDED_BEFORE_PRECISION
from hybridff.mm.parameters import DEFAULT_CHARGE_METHOD

logger = logging.getLogger(__name__)


#: defaults of the options that set up a run; None in the parser, so that --resume can tell
#: which were given (a resumed run keeps its own settings and refuses others)
DEFAULTS: dict[str, Any] = {
    "ml_backend": "torch", "solvent": "tip3p", "box": 3.0, "ionic_strength": 0.15,
    "platform": "CPU", "timestep_fs": 2.0, "temperature": 300.0, "pressure": 1.0,
    "friction": 1.0, "equilibration_ps": 10.0, "minimize_iterations": 1000, "report_ps": 10.0,
    "seed": 2026, "constraints": "hbonds", "mts": 1, "ml_precision": DEFAULT_PRECISION,
}

#: the built-in ML backends, named in --help; ``--ml-backend`` takes any name of
#: :data:`hybridff.ml.backend.BACKENDS` (imported only when the option is given), plugins included
ML_BACKEND_NAMES = ("torch", "python")

#: --constraints names to prepare_system's
CONSTRAINTS = {"hbonds": "HBonds", "none": None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hybridff.md.prepare import SOLVENTS

    parser.add_argument("molecule", type=Path, nargs="?",
                        help="SDF/MOL/mol2 file (one molecule, 3D or not) or a SMILES string")
    parser.add_argument("-o", "--output", type=output_folder, required=True, help="output folder")
    parser.add_argument("--model", type=Path, help="trained ML correction (hybridff train); MM alone without it")
    parser.add_argument("--ml-backend", type=registered("hybridff.ml.backend:BACKENDS"), metavar="NAME",
                        help=f"how the correction runs in OpenMM: {', '.join(ML_BACKEND_NAMES)} "
                             "or one a plugin adds (default: torch = openmm-torch)")
    parser.add_argument("--ml-precision", choices=PRECISIONS,
                        help="floating point of the correction's network: single (float32, like "
                             "OpenMM's CPU forces; 1.3-2x faster) or double (default: single; "
                             "on --resume the run's own)")
    parser.add_argument("--charges", default=None, type=registered(CHARGE_REGISTRY), metavar="METHOD",
                        help=f"charge method: {', '.join(METHODS)} or one a plugin adds (default: "
                             f"the one the --model was trained with, else {DEFAULT_CHARGE_METHOD})")
    parser.add_argument("--solvent", choices=list(SOLVENTS),
                        help="tip3p: cubic water box, PME, ions; none: vacuum, no cutoff (default: tip3p)")
    parser.add_argument("--box", type=positive("a box edge", " nm"),
                        help="cubic box edge, nm (default 3.0)")
    parser.add_argument("--ionic-strength", type=non_negative("an ionic strength", " M"),
                        help="NaCl molar, on top of the neutralizing ions (default 0.15)")
    parser.add_argument("--platform",
                        help="OpenMM platform: CPU, CUDA, OpenCL, Reference (default: CPU; on "
                             "--resume the run's own)")
    parser.add_argument("--threads", type=positive("a thread count", integer=True),
                        help="CPU threads (OpenMM CPU platform and torch)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--ns", type=non_negative("a length", " ns"),
                        help="production length in ns (default 1)")
    length.add_argument("--steps", type=non_negative("a step count", integer=True),
                        help="production length in steps")
    parser.add_argument("--timestep-fs", type=number_in(0, 5, "a time step", " fs", low_open=True),
                        help="time step, fs (default 2, with H bonds constrained; 1 or less "
                             "with --constraints none)")
    parser.add_argument("--mts", type=number_in(1, MAX_MTS, "an MTS factor", integer=True),
                        metavar="K",
                        help="multiple time stepping: the ML correction is evaluated every K "
                             "MM time steps (OpenMM's MTSLangevinIntegrator, the correction "
                             "in the outer step of K x --timestep-fs); needs --model; "
                             f"1 to {MAX_MTS} (default 1: one Langevin step for all forces)")
    parser.add_argument("--constraints", choices=list(CONSTRAINTS),
                        help="hbonds: bonds to hydrogen rigid (default); none: every bond "
                             "free, e.g. for IR spectra (hybridff spectrum), with a time step "
                             "of 1 fs or less")
    parser.add_argument("--temperature", type=positive("a temperature", " K"), help="K (default 300)")
    parser.add_argument("--pressure", type=non_negative("a pressure", " bar"),
                        help="bar, Monte Carlo barostat in solvent; 0 for constant volume (default 1)")
    parser.add_argument("--friction", type=non_negative("a Langevin friction", " /ps"),
                        help="Langevin friction, 1/ps (default 1)")
    parser.add_argument("--equilibration-ps", type=non_negative("an equilibration time", " ps"),
                        help="equilibration after minimization, not logged (default 10 ps)")
    parser.add_argument("--minimize-iterations", type=non_negative("an iteration count", integer=True),
                        help="(default 1000; 0 skips)")
    parser.add_argument("--report-ps", type=positive("a report interval", " ps"),
                        help="interval of log rows and DCD frames, ps (default 10); a shorter "
                             "run reports its last step")
    parser.add_argument("--seed", type=int, help="velocities, thermostat, barostat (default 2026)")
    parser.add_argument("--disagreement-threshold", type=positive("a disagreement threshold", " kcal/mol"),
                        help="kcal/mol; warn when the ensemble spread exceeds it (default: the "
                             "trained range stored in the model file, if any)")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the run in the output folder from its checkpoint for "
                               "--steps/--ns more, with its own settings (MOLECULE not needed)")
    existing.add_argument("--overwrite", action="store_true",
                          help="replace a run already in the output folder (without it, such a "
                               "folder is refused)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _steps(args: argparse.Namespace, timestep_fs: float, mts: int = 1) -> int:
    """Integrator steps of the run: ``--ns`` over the step (``timestep_fs``, the outer step
    with --mts), or ``--steps`` MM time steps (``mts`` per integrator step)."""
    if args.steps is not None:
        if int(args.steps) % mts:
            raise InvalidOptionError(
                f"--steps {args.steps} is not a multiple of --mts {mts}: --steps counts MM time "
                f"steps and each step of the run is {mts} of them; use --steps "
                f"{int(args.steps) // mts * mts or mts} or --ns")
        return int(args.steps) // mts
    ns = 1.0 if args.ns is None else float(args.ns)
    return int(round(ns * 1e6 / timestep_fs))


def _report_every(report_ps: float, timestep_fs: float) -> int:
    return max(1, int(round(report_ps / (timestep_fs / 1000.0))))


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _resume_conflicts(args: argparse.Namespace, summary: dict[str, Any]) -> list[str]:
    """The options given with --resume that differ from the run's own settings."""
    opts, system = summary["options"], summary.get("system") or {}
    dt, mts = float(opts["timestep_fs"]), int(opts.get("mts", 1))
    ran: dict[str, Any] = {
        "ml_backend": system.get("ml_backend") if summary.get("ml_model") else None,
        "ml_precision": (system.get("ml_precision", RECORDED_BEFORE_PRECISION)
                         if summary.get("ml_model") else None),
        "charges": system.get("charge_method"),
        "solvent": summary.get("solvent"),
        "box": system.get("box_nm"),
        "ionic_strength": system.get("ionic_strength_molar"),
        "timestep_fs": dt / mts,
        "mts": mts,
        "temperature": opts.get("temperature_k"),
        "pressure": opts.get("pressure_bar") or 0.0,
        "friction": opts.get("friction_per_ps"),
        "minimize_iterations": opts.get("minimize_iterations"),
        "seed": opts.get("seed"),
        # runs made before the option was recorded were all made with H bonds rigid
        "constraints": {"HBonds": "hbonds", "none": "none"}.get(
            system.get("constraints", "HBonds"), system.get("constraints")),
    }
    conflicts = []
    for dest, have in ran.items():
        given = getattr(args, dest)
        if given is None:
            continue
        same = (have is not None and math.isclose(float(given), float(have), rel_tol=1e-9)
                if isinstance(given, (int, float)) else given == have)
        if not same:
            conflicts.append(f"--{dest.replace('_', '-')} {_show(given)} (the run's: "
                             f"{_show(have) if have is not None else 'none'})")
    steps_of = {"equilibration_ps": ("equilibration_steps", lambda ps: int(round(ps / (dt / 1000.0)))),
                "report_ps": ("report_every", lambda ps: _report_every(ps, dt))}
    for dest, (key, to_steps) in steps_of.items():
        given = getattr(args, dest)
        if given is not None and to_steps(given) != opts.get(key):
            have = opts.get(key, 0) * dt / 1000.0
            conflicts.append(f"--{dest.replace('_', '-')} {_show(given)} (the run's: {have:g})")
    if args.model is not None and str(args.model.resolve()) != summary.get("ml_model"):
        conflicts.append(f"--model {args.model} (the run's: {summary.get('ml_model') or 'none'})")
    if args.molecule is not None:
        from hybridff.io.molecule import canonical_smiles, load_molecule

        smiles = canonical_smiles(load_molecule(str(args.molecule)))
        if smiles != summary.get("molecule"):
            conflicts.append(f"molecule {args.molecule} ({smiles}; the run's: {summary.get('molecule')})")
    return conflicts


def _resume(args: argparse.Namespace) -> int:
    from hybridff.md.outputs import read_run
    from hybridff.md.resume import resume_md

    summary = read_run(args.output)
    conflicts = _resume_conflicts(args, summary)
    if conflicts:
        raise InvalidOptionError(
            f"--resume continues {args.output} with the settings it was started with; "
            f"{'; '.join(conflicts)} cannot change on resume (its System, integrator and "
            "trajectory were made with its own): leave them out, or start a new run with "
            "--overwrite or another -o")
    steps = _steps(args, float(summary["options"]["timestep_fs"]),
                   int(summary["options"].get("mts", 1)))
    summary = resume_md(args.output, steps, platform=args.platform, threads=args.threads,
                        progress=not args.no_progress,
                        disagreement_threshold_kcal=args.disagreement_threshold)
    speed = summary["resumed"][-1]
    rate = f"{speed['ns_per_day']:.2f} ns/day" if speed["ns_per_day"] else "no steps run"
    print(f"resumed {args.output}: {speed['steps']} more steps (now at step "
          f"{summary['total_steps']}), {rate}")
    return 0


def run(args: argparse.Namespace) -> int:
    from hybridff.md.options import MDOptions
    from hybridff.md.outputs import check_run_folder
    from hybridff.md.prepare import prepare_system
    from hybridff.md.run import run_md

    if args.resume:
        return _resume(args)
    if args.molecule is None:
        raise MoleculeInputError("give the molecule to simulate (SDF/mol2 file or SMILES), or "
                                 "--resume to continue the run in the output folder")
    check_run_folder(args.output, overwrite=args.overwrite)  # before any work
    for dest, value in DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    if args.mts > 1 and args.model is None:
        raise InvalidOptionError(f"--mts {args.mts} evaluates the ML correction every {args.mts} "
                                 "MM steps, but no --model is given: add one, or leave --mts out")
    step_fs = args.timestep_fs * args.mts  # one integrator step; the MM's is --timestep-fs
    steps = _steps(args, step_fs, args.mts)
    if args.constraints == "none" and args.timestep_fs > 1.0:
        logger.warning("--constraints none with a %g fs time step: bonds to hydrogen vibrate "
                       "with a period of about 9 fs and need a step of 1 fs or less "
                       "(--timestep-fs 0.5 for IR spectra)", args.timestep_fs)
    molecule = str(args.molecule)
    prepared = prepare_system(molecule, charge_method=args.charges, solvent=args.solvent,
                              box_nm=args.box, ionic_strength_molar=args.ionic_strength,
                              model=args.model, ml_backend=args.ml_backend,
                              ml_precision=args.ml_precision, constraints=CONSTRAINTS[args.constraints])
    info = prepared.info
    where = ("vacuum (NoCutoff)" if args.solvent == "none" else
             f"{args.box} nm TIP3P box, PME: {info['waters']} waters, {info['na']} Na+, "
             f"{info['cl']} Cl-")
    print(f"{molecule}: {info['solute_atoms']} atoms, charge {info['solute_charge']:+d}, "
          f"charges {info['charge_method']}; {where}; {prepared.topology.getNumAtoms()} atoms in all"
          + (f"; ML correction {args.model} ({args.ml_backend}, {args.ml_precision})" if args.model else ""))
    dt_ps = step_fs / 1000.0
    options = MDOptions(
        steps=steps, timestep_fs=step_fs, mts=args.mts, temperature_k=args.temperature,
        friction_per_ps=args.friction, pressure_bar=args.pressure or None,
        report_every=_report_every(args.report_ps, step_fs),
        equilibration_steps=int(round(args.equilibration_ps / dt_ps)),
        minimize_iterations=args.minimize_iterations, seed=args.seed, platform=args.platform,
        threads=args.threads, disagreement_threshold_kcal=args.disagreement_threshold)
    summary = run_md(prepared, args.output, options, progress=not args.no_progress,
                     overwrite=args.overwrite)
    prod = summary["production"]
    speed = f"{prod['ns_per_day']:.2f} ns/day" if prod["ns_per_day"] else "no production steps"
    mts = (f" of {step_fs:g} fs, the correction once and the MM {args.mts} times each"
           if args.mts > 1 else "")
    print(f"done: {steps} steps{mts} ({steps * dt_ps / 1000:.4g} ns) on {summary['platform']}, {speed}; "
          f"outputs in {args.output}/")
    dis = summary.get("ensemble_disagreement_kcal_mol")
    if dis and dis["max"] is not None:
        print(f"ensemble disagreement: mean {dis['mean']:.3f}, max {dis['max']:.3f} kcal/mol "
              f"(trained max: {dis['trained_max'] if dis['trained_max'] is not None else 'not in model file'})")
    return 0
