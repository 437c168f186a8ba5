"""Running molecular dynamics: minimize, equilibrate, Langevin production (:func:`run_md`).

Writes a CSV log, a DCD trajectory, start/final PDB, the serialized System and integrator, a
checkpoint, a portable State XML and ``run.json`` (settings and measured speed); ``run.json``
and a checkpoint exist from the start of production, so a stopped run can be resumed
(:mod:`hybridff.md.resume`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import openmm
from openmm import app, unit

from hybridff.exceptions import SimulationError, UnknownNameError
from hybridff.io.files import atomic_write_text
from hybridff.md.options import MDOptions
from hybridff.md.outputs import OUTPUTS, check_run_folder, write_pdb, write_restart_files
from hybridff.md.prepare import PreparedSystem, check_positions
from hybridff.md.reporters import EnsembleMonitor, Production, Trajectory, check_energy, guarded
from hybridff.mm.system import FORCE_GROUPS, is_ml_force

logger = logging.getLogger(__name__)


def get_platform(name: str, threads: int | None = None) -> tuple[openmm.Platform, dict[str, str]]:
    """The OpenMM platform called ``name`` and its properties; unknown names list those present."""
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if name not in names:
        raise UnknownNameError(f"OpenMM platform {name!r} is not available here; available: "
                               f"{', '.join(names)}")
    properties: dict[str, str] = {}
    if name == "CPU" and threads:
        properties["Threads"] = str(int(threads))
    if name in ("CUDA", "OpenCL", "HIP"):
        properties["Precision"] = "mixed"
    return openmm.Platform.getPlatformByName(name), properties


def set_torch_threads(system: openmm.System, threads: int | None) -> None:
    """Limit torch's threads where a TorchForce runs (deliberately, when a Context is made)."""
    if threads and any(is_ml_force(f) for f in system.getForces()):
        import torch

        torch.set_num_threads(int(threads))


def mts_groups(system: openmm.System, ml_group: int | None, mts: int) -> list[tuple[int, int]]:
    """``MTSLangevinIntegrator``'s (force group, evaluations per step) pairs: the ML
    correction's group once, every other group of the System's Forces ``mts`` times."""
    if ml_group is None:
        raise SimulationError(f"multiple time stepping (mts {mts}) puts the ML correction in the "
                              "outer step, but this System has none: add a model (--model), or "
                              "leave mts at 1")
    groups = sorted({f.getForceGroup() for f in system.getForces()} - {int(ml_group)})
    if int(ml_group) not in {f.getForceGroup() for f in system.getForces()}:
        raise SimulationError(f"no Force of the System is in the ML correction's force group "
                              f"{ml_group}; build the System with add_ml_correction")
    if any(is_ml_force(f) and f.getForceGroup() != int(ml_group) for f in system.getForces()):
        raise SimulationError("the System holds an ML correction outside force group "
                              f"{ml_group}: it would be evaluated in the inner (MM) steps")
    return [(int(ml_group), 1)] + [(g, int(mts)) for g in groups]


def share_mm_group(system: openmm.System, ml_group: int) -> int:
    """Put every Force of ``system`` but the ML correction (group ``ml_group``) into one force
    group, the lowest of theirs, and return it: ``MTSLangevinIntegrator`` evaluates each of
    its groups in a call of its own, so the MM then costs one call per inner step instead of
    one per term (per-term energies of this System are no longer apart)."""
    mm = [f for f in system.getForces() if f.getForceGroup() != int(ml_group)]
    if not mm:
        raise SimulationError("the System has no MM Forces beside the ML correction")
    group = min(f.getForceGroup() for f in mm)
    for force in mm:
        force.setForceGroup(group)
    return group


def make_integrator(system: openmm.System, options: MDOptions, ml_group: int | None = None
                    ) -> openmm.Integrator:
    """``LangevinMiddleIntegrator`` (``options.mts`` 1), or ``MTSLangevinIntegrator`` with the
    ML correction's force group ``ml_group`` in the outer step (every ``timestep_fs``) and the
    MM forces in ``mts`` inner steps."""
    temperature = options.temperature_k * unit.kelvin
    friction = options.friction_per_ps / unit.picosecond
    step = options.timestep_fs * unit.femtosecond
    if options.mts == 1:
        integrator = openmm.LangevinMiddleIntegrator(temperature, friction, step)
    else:
        integrator = openmm.MTSLangevinIntegrator(temperature, friction, step,
                                                  mts_groups(system, ml_group, options.mts))
    integrator.setRandomNumberSeed(int(options.seed))
    return integrator


def make_simulation(topology: app.Topology, system: openmm.System, options: MDOptions,
                    ml_group: int | None = None) -> app.Simulation:
    integrator = make_integrator(system, options, ml_group)
    platform, properties = get_platform(options.platform, options.threads)
    set_torch_threads(system, options.threads)
    return app.Simulation(topology, system, integrator, platform, properties)


def run_md(prepared: PreparedSystem, output_dir: str | os.PathLike, options: MDOptions | None = None,
           progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Minimize, equilibrate and run ``options.steps`` of Langevin MD; write the run folder.

    A folder that holds another run is refused unless ``overwrite`` (its run files are then
    removed when this run starts writing). Log rows and trajectory frames are written every
    ``options.report_every`` steps; a run shorter than that writes them at its last step.
    Returns the summary also written to ``run.json`` (settings, atom counts, ns/day).
    """
    options = options or MDOptions()
    options.check()
    if options.mts > 1:
        mts_groups(prepared.system, prepared.ml_force_group, options.mts)  # before any work
        share_mm_group(prepared.system, prepared.ml_force_group)
    out = Path(output_dir)
    earlier = check_run_folder(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    system = prepared.system
    if prepared.periodic and options.pressure_bar:
        barostat = openmm.MonteCarloBarostat(options.pressure_bar * unit.bar,
                                             options.temperature_k * unit.kelvin)
        barostat.setRandomNumberSeed(int(options.seed))
        barostat.setForceGroup(FORCE_GROUPS["MonteCarloBarostat"] if options.mts == 1 else
                               min(f.getForceGroup() for f in system.getForces()
                                   if not is_ml_force(f)))
        system.addForce(barostat)
    check_positions(prepared.positions, prepared.topology, "starting positions")
    sim = make_simulation(prepared.topology, system, options, prepared.ml_force_group)
    if prepared.periodic:
        sim.context.setPeriodicBoxVectors(*prepared.topology.getPeriodicBoxVectors())
    sim.context.setPositions(prepared.positions)
    e_start = check_energy(sim, "at the starting structure")
    t0 = time.perf_counter()
    if options.minimize_iterations:
        guarded(lambda: sim.minimizeEnergy(maxIterations=options.minimize_iterations),
                 "during minimization", sim)
    e_min = check_energy(sim, "after minimization")
    minimize_s = time.perf_counter() - t0
    sim.context.setVelocitiesToTemperature(options.temperature_k * unit.kelvin, int(options.seed))
    t0 = time.perf_counter()
    for start in range(0, options.equilibration_steps, max(1, options.report_every)):
        n = min(options.report_every, options.equilibration_steps - start)
        guarded(lambda n=n: sim.step(n), "during equilibration", sim)
        check_energy(sim, "during equilibration", sim.currentStep)
    equilibrate_s = time.perf_counter() - t0
    sim.currentStep = 0
    sim.context.setTime(0.0)
    for path in earlier:  # --overwrite: the earlier run's files go when this one starts writing
        path.unlink(missing_ok=True)
    start_state = sim.context.getState(getPositions=True, enforcePeriodicBox=prepared.periodic)
    write_pdb(out / OUTPUTS["start"], sim.topology, start_state)
    atomic_write_text(out / OUTPUTS["system"], openmm.XmlSerializer.serialize(system))
    atomic_write_text(out / OUTPUTS["integrator"], openmm.XmlSerializer.serialize(sim.integrator))
    monitor = None
    if prepared.model is not None and int(prepared.model.metadata.get("ensemble_size", 1)) > 1:
        monitor = EnsembleMonitor(prepared.model, prepared.topology, prepared.solute_atoms,
                                  options.disagreement_threshold_kcal)
        if monitor.threshold is None:
            logger.info("the model file carries no trained range of the ensemble disagreement; "
                        "logging it without a warning threshold (--disagreement-threshold sets one)")
    summary = {
        "molecule": prepared.info.get("smiles"),
        "solvent": prepared.solvent,
        "atoms": prepared.topology.getNumAtoms(),
        "platform": sim.context.getPlatform().getName(),
        "options": asdict(options),
        "system": prepared.info,
        "energy_start_kJ_mol": e_start,
        "energy_minimized_kJ_mol": e_min,
        "minimize_s": round(minimize_s, 3),
        "equilibrate_s": round(equilibrate_s, 3),
        "production": None,
        "status": "running",
        "ml_force_group": prepared.ml_force_group,
        "integrator": type(sim.integrator).__name__,
        "mts_groups": (mts_groups(system, prepared.ml_force_group, options.mts)
                       if options.mts > 1 else None),
        "ml_model": prepared.model_path,
        "outputs": {k: v for k, v in OUTPUTS.items()},
    }
    # a run stopped before its end can be resumed: run.json and a step-0 checkpoint of this
    # run are there from the start (and no final structure of an earlier run in this folder)
    (out / OUTPUTS["final"]).unlink(missing_ok=True)
    first_report = options.first_report()
    summary["first_report_step"] = first_report
    if first_report != options.report_every:
        logger.info("the run (%d steps) is shorter than the report interval (%d steps): its log "
                    "row and trajectory frame are at its last step, and a resumed run reports "
                    "every %d steps from there", options.steps, options.report_every,
                    options.report_every)
    write_restart_files(out, sim)
    atomic_write_text(out / OUTPUTS["summary"], json.dumps(summary, indent=1, default=str) + "\n")
    trajectory = Trajectory(out / OUTPUTS["trajectory"], sim.topology, options.timestep_fs,
                             first_report, options.report_every, prepared.periodic, append=False)
    production = Production(sim, out, options, prepared.periodic, prepared.ml_force_group, monitor,
                             append=False, progress=progress, trajectory=trajectory)
    summary["production"] = production.run(options.steps)
    summary["status"] = "finished"
    write_pdb(out / OUTPUTS["final"], sim.topology,
               sim.context.getState(getPositions=True, enforcePeriodicBox=prepared.periodic))
    write_restart_files(out, sim)
    if monitor is not None:
        summary["ensemble_disagreement_kcal_mol"] = {
            "max": max(production.disagreement, default=None),
            "mean": float(np.mean(production.disagreement)) if production.disagreement else None,
            "trained_max": monitor.threshold,
            "exceeded": monitor.warned,
        }
    atomic_write_text(out / OUTPUTS["summary"], json.dumps(summary, indent=1, default=str) + "\n")
    return summary
