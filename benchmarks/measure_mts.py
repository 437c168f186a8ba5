"""Multiple time stepping (``simulate --mts K``) against single-step dynamics, in one run.

Three measurements on a molecule with its trained correction (``--model``; its bespoke MM when
the model records one), OpenMM CPU platform, H bonds rigid, torch on one thread:

1. speed: ns/day in a TIP3P box (PME), single step (LangevinMiddle) at the MM step against
   MTS with the correction every K MM steps, timed in turn (medians of --repeats);
2. energy conservation in vacuum without friction: drift (kJ/mol/ps, slope of a line fit)
   and spread (standard deviation) of the total energy, MTS (friction 0: velocity-Verlet
   RESPA) against plain Verlet at the same outer step and at the MM step;
3. observables in vacuum, Langevin 300 K, 1/ps: mean potential energy, mean ML energy and
   temperature with block standard errors, single step at the MM step against MTS.

It needs a trained model, so ``hybridff bench`` (which runs the ``bench_*.py`` scripts) does
not run it.

    python benchmarks/measure_mts.py --model model.pt [--molecule examples/data/paracetamol.sdf]
        [--mts 2] [--mm-step-fs 2] [--nve-ps 10] [--sample-ps 20] [--steps 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import openmm
import torch
from openmm import unit

ROOT = Path(__file__).resolve().parents[1]
KJ = unit.kilojoule_per_mole


def context_for(prepared, integrator: openmm.Integrator, seed: int = 1) -> openmm.Context:
    """A minimized Context of ``prepared`` with velocities at 300 K."""
    context = openmm.Context(prepared.system, integrator, openmm.Platform.getPlatformByName("CPU"))
    if prepared.periodic:
        context.setPeriodicBoxVectors(*prepared.topology.getPeriodicBoxVectors())
    context.setPositions(prepared.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 500)
    context.setVelocitiesToTemperature(300 * unit.kelvin, seed)
    return context


def verlet_or_mts(prepared, outer_fs: float, mts: int) -> openmm.Integrator:
    """Plain Verlet at ``outer_fs`` (``mts`` 1), else friction-free MTSLangevinIntegrator."""
    from hybridff.md.run import mts_groups

    if mts == 1:
        return openmm.VerletIntegrator(outer_fs * unit.femtosecond)
    return openmm.MTSLangevinIntegrator(300 * unit.kelvin, 0.0 / unit.picosecond,
                                        outer_fs * unit.femtosecond,
                                        mts_groups(prepared.system, prepared.ml_force_group, mts))


def nve(prepared, outer_fs: float, mts: int, ps: float) -> dict[str, float]:
    """Total energy drift (kJ/mol/ps) and spread over ``ps`` of constant-energy dynamics."""
    integrator = verlet_or_mts(prepared, outer_fs, mts)
    context = context_for(prepared, integrator)
    every = max(1, int(round(10.0 / outer_fs)))  # a sample every 10 fs
    times, totals = [], []
    for k in range(int(round(ps * 1000 / (every * outer_fs)))):
        try:
            integrator.step(every)
            state = context.getState(getEnergy=True)
        except openmm.OpenMMException:  # NaN coordinates: the step is too long
            return {"blew_up_at_ps": (k + 1) * every * outer_fs / 1000, "finite": False}
        times.append((k + 1) * every * outer_fs / 1000)
        totals.append((state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(KJ))
    totals_a = np.array(totals)
    return {"drift_kJ_mol_ps": float(np.polyfit(times, totals_a, 1)[0]),
            "std_kJ_mol": float(totals_a.std()), "max_minus_min_kJ_mol": float(np.ptp(totals_a)),
            "finite": bool(np.isfinite(totals_a).all())}


def observables(prepared, options, ps: float, blocks: int = 20) -> dict[str, float]:
    """Means and block standard errors of the potential energy, the ML energy and the
    temperature over ``ps`` of Langevin dynamics (after 2 ps of equilibration)."""
    from hybridff.md.reporters import MOLAR_GAS_CONSTANT_KJ, degrees_of_freedom
    from hybridff.md.run import make_integrator

    integrator = make_integrator(prepared.system, options, prepared.ml_force_group)
    context = context_for(prepared, integrator, seed=options.seed)
    per_sample = max(1, int(round(20.0 / options.timestep_fs)))  # a sample every 20 fs
    integrator.step(int(round(2000 / options.timestep_fs)))
    dof = degrees_of_freedom(prepared.system)
    rows = []
    for _ in range(int(round(ps * 1000 / (per_sample * options.timestep_fs)))):
        integrator.step(per_sample)
        state = context.getState(getEnergy=True)
        ml = context.getState(getEnergy=True, groups={prepared.ml_force_group})
        rows.append((state.getPotentialEnergy().value_in_unit(KJ),
                     ml.getPotentialEnergy().value_in_unit(KJ),
                     2 * state.getKineticEnergy().value_in_unit(KJ) / (dof * MOLAR_GAS_CONSTANT_KJ)))
    data = np.array(rows)
    n = len(data) // blocks * blocks
    means = data[:n].reshape(blocks, -1, 3).mean(axis=1)
    result = {}
    for j, name in enumerate(("potential_kJ_mol", "ml_energy_kJ_mol", "temperature_K")):
        result[name] = float(data[:, j].mean())
        result[name + "_stderr"] = float(means[:, j].std(ddof=1) / np.sqrt(blocks))
    return result


def speed(prepared, options_list, steps: int, repeats: int) -> list[float]:
    """ns/day of each options' integrator on the same System, timed in turn; medians."""
    from hybridff.md.run import make_integrator

    contexts = []
    for options in options_list:
        integrator = make_integrator(prepared.system, options, prepared.ml_force_group)
        context = context_for(prepared, integrator)
        integrator.step(20)
        contexts.append((context, integrator, options))
    timings: list[list[float]] = [[] for _ in contexts]
    for _ in range(repeats):
        for k, (context, integrator, options) in enumerate(contexts):
            n = max(1, steps // options.mts)  # the same simulated time for each
            start = time.perf_counter()
            integrator.step(n)
            context.getState(getEnergy=True)
            elapsed = time.perf_counter() - start
            timings[k].append(n * options.timestep_fs * 1e-6 / elapsed * 86400.0)
    return [statistics.median(t) for t in timings]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="trained model file (.pt)")
    parser.add_argument("--molecule", default=str(ROOT / "examples/data/paracetamol.sdf"))
    parser.add_argument("--mts", type=int, default=2, help="MM steps per correction step (K)")
    parser.add_argument("--mm-step-fs", type=float, default=2.0, help="MM time step, fs")
    parser.add_argument("--box", type=float, default=3.0, help="water box edge for the speed, nm")
    parser.add_argument("--steps", type=int, default=500, help="MM steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nve-ps", type=float, default=10.0)
    parser.add_argument("--sample-ps", type=float, default=20.0)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: speed,nve,observables")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.mts < 2:
        parser.error(f"--mts {args.mts}: give 2 or more (1 is the single-step reference)")

    from hybridff.md.options import MDOptions
    from hybridff.md.prepare import prepare_system

    torch.set_num_threads(1)
    skip = set(filter(None, args.skip.split(",")))
    dt, k = args.mm_step_fs, args.mts
    results: dict = {"molecule": args.molecule, "model": args.model, "mts": k, "mm_step_fs": dt}
    if "speed" not in skip:
        solvated = prepare_system(args.molecule, solvent="tip3p", box_nm=args.box, model=args.model)
        single, mts = speed(solvated, [MDOptions(timestep_fs=dt), MDOptions(timestep_fs=k * dt, mts=k)],
                            args.steps, args.repeats)
        results["speed"] = {"atoms": solvated.topology.getNumAtoms(), "single_step_ns_day": single,
                            f"mts{k}_ns_day": mts, "ratio_mts_single": mts / single}
    vacuum = prepare_system(args.molecule, solvent="none", model=args.model)
    if "nve" not in skip:
        results["nve"] = {
            f"verlet_{dt:g}fs": nve(vacuum, dt, 1, args.nve_ps),
            f"verlet_{k * dt:g}fs": nve(vacuum, k * dt, 1, args.nve_ps),
            f"mts{k}_outer_{k * dt:g}fs_mm_{dt:g}fs": nve(vacuum, k * dt, k, args.nve_ps),
        }
    if "observables" not in skip:
        results["observables"] = {
            f"single_{dt:g}fs": observables(vacuum, MDOptions(timestep_fs=dt, seed=11), args.sample_ps),
            f"mts{k}_outer_{k * dt:g}fs": observables(
                vacuum, MDOptions(timestep_fs=k * dt, mts=k, seed=11), args.sample_ps),
        }
    print(json.dumps(results, indent=1))
    if "speed" in results:
        print(f"speed-up MTS/single (same run, {results['speed']['atoms']} atoms): "
              f"{results['speed']['ratio_mts_single']:.2f} ({results['speed']['single_step_ns_day']:.1f} "
              f"-> {results['speed'][f'mts{k}_ns_day']:.1f} ns/day)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
