"""What a production run writes as it goes: the CSV log, the DCD trajectory, the ensemble monitor.

:class:`Production` runs the loop in chunks up to the next report and writes a CSV row and a
DCD frame (:class:`Trajectory`) at each; blow-ups (non-finite or huge energies, NaN
coordinates) become :class:`~hybridff.exceptions.SimulationError` with advice.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import openmm
from openmm import app, unit

from hybridff.exceptions import SimulationError
from hybridff.md.outputs import OUTPUTS, write_restart_files
from hybridff.units import AVOGADRO, KJ_TO_KCAL

if TYPE_CHECKING:
    from hybridff.md.options import MDOptions

logger = logging.getLogger(__name__)


MOLAR_GAS_CONSTANT_KJ = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


def trained_disagreement_kcal(metadata: dict[str, Any]) -> float | None:
    """Largest ensemble energy spread (kcal/mol) seen on the training data, if the model says.

    Read from ``metadata["disagreement"]["energy_std_max_kcal_mol"]`` (or the same key under
    ``metadata["metrics"]["disagreement"]``); ``None`` when the model file does not carry it.
    """
    for holder in (metadata, metadata.get("metrics") or {}):
        value = (holder.get("disagreement") or {}).get("energy_std_max_kcal_mol")
        if value is not None:
            return float(value)
    return None


class EnsembleMonitor:
    """Spread (standard deviation, kcal/mol) of the ensemble members' energies on the ML atoms."""

    def __init__(self, model: Any, topology: app.Topology, atoms: list[int],
                 threshold_kcal: float | None = None) -> None:
        import torch

        self.torch = torch
        self.module = model.module
        self.atoms = np.asarray(atoms)
        elements = model.elements
        numbers = [a.element.atomic_number for a in topology.atoms()]
        self.species = torch.tensor([elements.index(numbers[i]) for i in atoms], dtype=torch.long)
        self.threshold = threshold_kcal if threshold_kcal is not None else trained_disagreement_kcal(
            model.metadata)
        self.warned = False

    def __call__(self, state: openmm.State, periodic: bool) -> float:
        torch = self.torch
        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)[self.atoms]
        box = None
        if periodic:
            box = torch.tensor(np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(
                unit.nanometer)), dtype=torch.float64)
        with torch.no_grad():
            members = self.module.member_energies(torch.tensor(pos, dtype=torch.float64),
                                                  self.species, box)
        return float(members.reshape(members.shape[0], -1).sum(1).std()) * KJ_TO_KCAL


#: |potential energy| above this (kJ/mol) is a blow-up even when still finite
BLOWUP_ENERGY_KJ_MOL = 1e9

BLOWUP_ADVICE = ("use a smaller time step (--timestep-fs 1), more minimization, or check the "
                 "input structure for overlapping atoms; with an ML correction, also check that "
                 "it was trained on conformations like these (hybridff evaluate, more frames, "
                 "--sampler mixed) or run MM alone to compare")


def blew_up(stage: str, step: int | None, what: str) -> SimulationError:
    where = f" at step {step}" if step is not None else ""
    return SimulationError(f"{what} {stage}{where}: the system blew up; {BLOWUP_ADVICE}")


def check_energy(simulation: app.Simulation, stage: str, step: int | None = None) -> float:
    energy = simulation.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(
        unit.kilojoule_per_mole)
    if not math.isfinite(energy) or abs(energy) > BLOWUP_ENERGY_KJ_MOL:
        raise blew_up(stage, step, f"the potential energy became {energy:.6g} kJ/mol")
    return energy


def guarded(action: Any, stage: str, simulation: app.Simulation) -> None:
    """Run ``action()``; OpenMM's NaN-coordinate exception becomes a SimulationError."""
    try:
        action()
    except openmm.OpenMMException as exc:
        if "nan" not in str(exc).lower():
            raise
        raise blew_up(stage, simulation.currentStep, f"OpenMM stopped ({exc})") from exc


def degrees_of_freedom(system: openmm.System) -> int:
    """Degrees of freedom: 3 per massive particle, minus constraints, minus 3 for a CM remover."""
    massive = [system.getParticleMass(i).value_in_unit(unit.dalton) > 0
               for i in range(system.getNumParticles())]
    dof = 3 * sum(massive)
    for k in range(system.getNumConstraints()):
        i, j, _ = system.getConstraintParameters(k)
        if massive[i] or massive[j]:
            dof -= 1
    if any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces()):
        dof -= 3
    return dof


class Trajectory:
    """The run's DCD trajectory: frames at steps ``first``, ``first + interval``, ... (both in
    the DCD header); ``first`` is the run's first report (see :meth:`MDOptions.first_report`).
    The file is opened at its first frame, so a run stopped before any frame leaves none."""

    def __init__(self, path: Path, topology: app.Topology, timestep_fs: float, first: int,
                 interval: int, periodic: bool, append: bool) -> None:
        self.path, self.topology, self.timestep_fs = path, topology, timestep_fs
        self.first, self.interval, self.periodic, self.append = first, interval, periodic, append
        self._handle: Any = None
        self._dcd: Any = None

    def due(self, step: int) -> bool:
        """Whether ``step`` gets a frame."""
        return step >= self.first and (step - self.first) % self.interval == 0

    def next_due(self, step: int) -> int:
        """The first step after ``step`` that gets a frame."""
        if step < self.first:
            return self.first
        return self.first + ((step - self.first) // self.interval + 1) * self.interval

    def write(self, simulation: app.Simulation) -> None:
        """Append the simulation's current positions (and box) as a frame."""
        state = simulation.context.getState(getPositions=True, enforcePeriodicBox=self.periodic)
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        if not np.isfinite(positions).all():
            raise blew_up("during production", simulation.currentStep,
                           "the positions became non-finite")
        if self._dcd is None:
            self._handle = open(self.path, "r+b" if self.append else "wb")
            self._dcd = app.DCDFile(self._handle, self.topology, self.timestep_fs * unit.femtosecond,
                                    self.first, self.interval, self.append)
        self._dcd.writeModel(positions, periodicBoxVectors=state.getPeriodicBoxVectors())
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle, self._dcd = None, None


class Production:
    """The production loop: chunks up to the next report (``report_every`` steps apart, and
    the run's last step), CSV rows, DCD frames, progress, checkpoints."""

    def __init__(self, simulation: app.Simulation, out: Path, options: MDOptions, periodic: bool,
                 ml_group: int | None, monitor: EnsembleMonitor | None, append: bool,
                 progress: bool, trajectory: Trajectory) -> None:
        self.sim, self.out, self.opt = simulation, out, options
        self.periodic, self.ml_group, self.monitor = periodic, ml_group, monitor
        self.trajectory = trajectory
        self.append, self.progress = append, progress
        self.mass = sum(simulation.system.getParticleMass(i).value_in_unit(unit.dalton)
                        for i in range(simulation.system.getNumParticles()))
        self.dof = degrees_of_freedom(simulation.system)
        self.disagreement: list[float] = []

    def columns(self) -> list[str]:
        cols = ["step", "time_ps", "potential_kJ_mol", "kinetic_kJ_mol", "total_kJ_mol",
                "temperature_K"]
        if self.periodic:
            cols += ["volume_nm3", "density_g_mL"]
        if self.ml_group is not None:
            cols.append("ml_energy_kJ_mol")
        if self.monitor is not None:
            cols.append("ensemble_std_kcal_mol")
        return cols + ["speed_ns_day"]

    def row(self, n_reports: int, speed: float) -> list[Any]:
        state = self.sim.context.getState(getEnergy=True, getPositions=self.monitor is not None)
        pot = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        kin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        if not math.isfinite(pot) or abs(pot) > BLOWUP_ENERGY_KJ_MOL:
            check_energy(self.sim, "during production", self.sim.currentStep)
        temp = 2 * kin / (self.dof * MOLAR_GAS_CONSTANT_KJ) if self.dof > 0 else 0.0
        values: list[Any] = [self.sim.currentStep, f"{state.getTime().value_in_unit(unit.picosecond):.4f}",
                             f"{pot:.4f}", f"{kin:.4f}", f"{pot + kin:.4f}", f"{temp:.2f}"]
        if self.periodic:
            volume = state.getPeriodicBoxVolume().value_in_unit(unit.nanometer**3)
            density = self.mass / volume * 1e21 / AVOGADRO  # Da/nm^3 -> g/mL
            values += [f"{volume:.4f}", f"{density:.4f}"]
        if self.ml_group is not None:
            e_ml = self.sim.context.getState(getEnergy=True, groups={self.ml_group}).getPotentialEnergy()
            values.append(f"{e_ml.value_in_unit(unit.kilojoule_per_mole):.4f}")
        if self.monitor is not None:
            if n_reports % max(1, self.opt.disagreement_every) == 0:
                std = self.monitor(state, self.periodic)
                self.disagreement.append(std)
                values.append(f"{std:.4f}")
                limit = self.monitor.threshold
                if limit is not None and std > limit and not self.monitor.warned:
                    self.monitor.warned = True
                    logger.warning(
                        "step %d: ensemble disagreement %.3f kcal/mol exceeds the trained range "
                        "(%.3f kcal/mol): the ML correction is extrapolating; treat this part of "
                        "the trajectory with care, or add such frames to the training set",
                        self.sim.currentStep, std, limit)
            else:
                values.append("")
        return values + [f"{speed:.3f}"]

    def run(self, steps: int) -> dict[str, Any]:
        """Run ``steps`` steps; return elapsed wall time, ns/day and the final step."""
        from tqdm.auto import tqdm

        log_path = self.out / OUTPUTS["log"]
        new_log = not (self.append and log_path.exists())
        dt_ps = self.opt.timestep_fs / 1000.0
        every_ckpt = self.opt.checkpoint_every or max(self.opt.report_every, steps // 10)
        done, elapsed, since_ckpt, n_reports = 0, 0.0, 0, 0
        with open(log_path, "w" if new_log else "a", newline="") as fh, \
                tqdm(total=steps, unit="step", desc="MD", disable=not self.progress,
                     mininterval=1.0) as bar:
            writer = csv.writer(fh)
            if new_log:
                writer.writerow(self.columns())
            try:
                while done < steps:
                    # to the next report (frame and row), or to the run's end
                    n = min(self.trajectory.next_due(self.sim.currentStep) - self.sim.currentStep,
                            steps - done)
                    t0 = time.perf_counter()
                    guarded(lambda n=n: self.sim.step(n), "during production", self.sim)
                    self.sim.context.getState(getEnergy=False)  # wait for the device
                    chunk = time.perf_counter() - t0
                    elapsed += chunk
                    done += n
                    since_ckpt += n
                    n_reports += 1
                    if self.trajectory.due(self.sim.currentStep):
                        self.trajectory.write(self.sim)
                    speed = n * dt_ps * 1e-3 * 86400.0 / chunk if chunk > 0 else float("inf")
                    row = self.row(n_reports, speed)
                    writer.writerow(row)
                    fh.flush()
                    bar.update(n)
                    bar.set_postfix_str(f"T={row[5]} K, {speed:.1f} ns/day", refresh=False)
                    if since_ckpt >= every_ckpt and done < steps:
                        write_restart_files(self.out, self.sim)
                        since_ckpt = 0
            finally:
                self.trajectory.close()
        ns_day = steps * dt_ps * 1e-3 * 86400.0 / elapsed if elapsed > 0 else None
        return {"steps": steps, "wall_s": round(elapsed, 3), "ns_per_day": ns_day}
