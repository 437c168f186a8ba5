"""Molecular dynamics of one small molecule, in vacuum or solvated, MM or hybrid (behind ``hybridff simulate``).

Two steps, each usable on its own:

- :func:`prepare_system`: molecule -> OpenMM System through OpenMM's own ``ForceField``
  (hybridff's XML + the template generator, plus ``amber14/tip3p.xml`` and ``Modeller`` for a
  TIP3P box with neutralizing ions and PME), then the ML correction if a model is given.
- :func:`run_md`: minimize, equilibrate, run Langevin dynamics; writes a CSV log, a DCD
  trajectory, start/final PDB, the serialized System and integrator, a checkpoint, a portable
  State XML and ``run.json`` (settings and measured speed). :func:`resume_md` continues a run
  from its folder.

Files whose half-written state would mislead (System, integrator, PDB, checkpoint, State,
``run.json``) are written atomically; ``run.json`` and a checkpoint exist from the start of
production, so a stopped run can be resumed. The CSV log and the DCD grow as the run goes;
:func:`resume_md` first cuts them back to the checkpoint it continues from.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openmm
from openmm import app, unit

from hybridff.exceptions import (
    MoleculeInputError,
    SimulationError,
    UnknownNameError,
)
from hybridff.fileio import atomic_write_bytes, atomic_write_text
from hybridff.mm.parameters import DEFAULT_CHARGE_METHOD
from hybridff.mm.system import (
    DEFAULT_CUTOFF_NM,
    FORCE_GROUPS,
    build_system,
    is_ml_force,
    ligand_topology,
    net_charge,
)
from hybridff.units import AVOGADRO, KJ_TO_KCAL

logger = logging.getLogger(__name__)

#: solvent name -> (OpenMM force-field file, Modeller water model); "none" is vacuum.
SOLVENTS: dict[str, tuple[str, str] | None] = {
    "tip3p": ("amber14/tip3p.xml", "tip3p"),
    "none": None,
}

#: Output files of a run folder, by role.
OUTPUTS: dict[str, str] = {
    "log": "log.csv",
    "trajectory": "trajectory.dcd",
    "start": "start.pdb",
    "final": "final.pdb",
    "system": "system.xml",
    "integrator": "integrator.xml",
    "checkpoint": "checkpoint.chk",
    "state": "state.xml",
    "summary": "run.json",
}

MOLAR_GAS_CONSTANT_KJ = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


# --------------------------------------------------------------------------- set-up


@dataclass
class PreparedSystem:
    """An OpenMM System ready to simulate, with what was used to build it."""

    system: openmm.System
    topology: app.Topology
    positions: unit.Quantity
    solute_atoms: list[int]
    parameterized: Any  # hybridff.mm.parameters.ParameterizedMolecule
    solvent: str
    model: Any = None  # hybridff.ml.modelfile.ModelFile
    model_path: str | None = None
    ml_force_group: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def periodic(self) -> bool:
        return self.system.usesPeriodicBoundaryConditions()


def _orthorhombic_box_nm(topology: app.Topology) -> np.ndarray | None:
    vectors = topology.getPeriodicBoxVectors()
    if vectors is None:
        return None
    box = np.array([[float(c) for c in v] for v in vectors.value_in_unit(unit.nanometer)])
    if np.abs(box - np.diag(np.diag(box))).max() > 1e-9:
        return None  # triclinic: pairs are checked without periodic images
    return np.diag(box)


def check_positions(positions: Any, topology: app.Topology, what: str) -> None:
    """Refuse positions with a NaN/inf coordinate or two atoms on top of each other.

    Raises :class:`MoleculeInputError` naming the first atom with a non-finite coordinate, or
    :class:`OverlappingAtomsError` naming the closest pair of atoms nearer than
    :data:`hybridff.molecule.MIN_ATOM_DISTANCE_ANGSTROM` (periodic images of an orthorhombic
    box included); extra particles without an element (virtual sites) are not compared.
    """
    from hybridff.molecule import check_coordinates
    from hybridff.units import NM_TO_ANGSTROM

    xyz = np.asarray(positions.value_in_unit(unit.nanometer) if unit.is_quantity(positions)
                     else positions, dtype=float)
    atoms = list(topology.atoms())
    if len(xyz) != len(atoms):
        raise MoleculeInputError(f"{what}: {len(xyz)} positions for the topology's {len(atoms)} "
                                 "atoms; give one position per atom")

    def text(i: int) -> str:
        atom = atoms[i]
        symbol = atom.element.symbol if atom.element is not None else "no element"
        return f"atom {i} ({atom.name}, {symbol}, residue {atom.residue.name} {atom.residue.id})"

    real = np.array([a.element is not None for a in atoms], dtype=bool)
    index = np.nonzero(real)[0]  # virtual sites may sit on their parent atom
    box = _orthorhombic_box_nm(topology)
    check_coordinates(
        xyz[index] * NM_TO_ANGSTROM, lambda k: text(int(index[k])), what,
        "fix the input structure",
        overlap_advice="minimization does not reliably separate them: fix the input structure",
        box_angstrom=None if box is None else box * NM_TO_ANGSTROM)


def prepare_system(
    molecule: Any,
    charge_method: str | None = None,
    solvent: str = "tip3p",
    box_nm: float = 3.0,
    ionic_strength_molar: float = 0.15,
    model: str | os.PathLike | Any = None,
    ml_backend: str = "torch",
    constraints: str | None = "HBonds",
    hydrogen_mass_amu: float | None = None,
    forcefield: str = "hybridff-gaff2.xml",
    cache: str | os.PathLike | bool | None = None,
    residue_name: str = "MOL",
    pair_order: str | None = None,
    charge_options: dict[str, Any] | None = None,
    remove_cmmotion: bool = True,
    refit: dict[str, Any] | None = None,
) -> PreparedSystem:
    """Build the System of ``molecule`` (path, SMILES, RDKit Mol) alone or in a TIP3P box.

    The one route to a molecule's MM System: ``hybridff label``, ``train``, ``evaluate`` and
    ``simulate`` all build it here (through the template generator, as a plain
    ``openmm.app.ForceField`` user would), so what is evaluated is what is simulated.

    Solvated: cubic box of edge ``box_nm``, PME, LJ switching 0.9/1.0 nm, neutralizing Na+/Cl-
    plus ``ionic_strength_molar`` of salt (Modeller). Vacuum (``solvent="none"``): NoCutoff.
    ``model``: a trained correction file (or loaded ``ModelFile``) added on the molecule; the
    MM is then built with the settings the model was trained against (charge method, its
    options, pair labelling) unless given here, and checked against them.
    ``charge_method`` / ``pair_order`` / ``charge_options`` / ``refit`` (a bespoke refit
    record): default the model's, else hybridff's defaults (GAFF2 as shipped). ``cache``: the
    template generator's parameter cache (``False`` off).
    """
    from hybridff.mm.forcefield_files import forcefield_path
    from hybridff.mm.signature import DEFAULT_PAIR_ORDER, trained_build_options
    from hybridff.mm.templates import HybridTemplateGenerator
    from hybridff.molecule import load_molecule

    if model is not None:
        from hybridff.ml.modelfile import ModelFile, load_model

        model_path = None
        if not isinstance(model, ModelFile):
            model_path = str(Path(model).resolve())
            model = load_model(model)
        trained = trained_build_options(model.metadata.get("mm"), model.metadata.get("mm_refit"))
        trained_method, trained_order = trained.pop("charge_method", None), trained.pop("pair_order")
        trained_refit = trained.pop("refit", None)
        refit = refit if refit is not None else trained_refit
        if trained_method is not None and charge_method in (None, trained_method):
            charge_method = trained_method
            if charge_options is None:
                charge_options = trained
        pair_order = pair_order or trained_order
    charge_method = charge_method or DEFAULT_CHARGE_METHOD
    pair_order = pair_order or DEFAULT_PAIR_ORDER

    if solvent not in SOLVENTS:
        raise UnknownNameError(f"unknown solvent {solvent!r}; known: {', '.join(SOLVENTS)}")
    constraint_map = {None: None, "none": None, "HBonds": app.HBonds, "AllBonds": app.AllBonds,
                      "HAngles": app.HAngles}
    if constraints not in constraint_map:
        raise UnknownNameError(f"unknown constraints {constraints!r}; known: "
                               f"{', '.join(str(k) for k in constraint_map if k)}")
    mol = load_molecule(molecule)  # missing file, unreadable record, NaN coordinates: clear errors
    generator = HybridTemplateGenerator([mol], charge_method=charge_method, forcefield=forcefield,
                                        cache=cache, pair_order=pair_order, refit=refit,
                                        **(charge_options or {}))
    pm = generator.parameterize_molecule(generator.molecules[0])
    topology, positions = ligand_topology(mol, residue_name)
    check_positions(positions, topology, "input molecule")
    files = [str(forcefield_path(forcefield))]
    spec = SOLVENTS[solvent]
    if spec is not None:
        files.append(spec[0])
    ff = app.ForceField(*files)
    ff.registerTemplateGenerator(generator.generator)
    info: dict[str, Any] = {"solute_atoms": topology.getNumAtoms(), "solute_charge": pm.net_charge,
                            "charge_method": pm.charge_method, "smiles": pm.smiles,
                            "mm_signature": pm.signature.to_dict()}
    if spec is None:
        method = "NoCutoff"
    else:
        method = "PME"
        box_nm = float(box_nm)
        if not box_nm > 2 * DEFAULT_CUTOFF_NM:
            raise SimulationError(
                f"box edge {box_nm} nm is not above twice the {DEFAULT_CUTOFF_NM} nm cutoff; "
                f"use --box {2 * DEFAULT_CUTOFF_NM + 0.5:.1f} or more")
        xyz = positions.value_in_unit(unit.nanometer)
        extent = float((xyz.max(axis=0) - xyz.min(axis=0)).max())
        if box_nm < extent + 0.4:
            raise SimulationError(
                f"box edge {box_nm} nm does not hold the molecule (extent {extent:.2f} nm) with "
                f"solvent around it; use a box of at least {extent + 2 * DEFAULT_CUTOFF_NM:.1f} nm")
        if box_nm < extent + 2 * DEFAULT_CUTOFF_NM:
            warnings.warn(
                f"box edge {box_nm} nm is below the molecule's extent ({extent:.2f} nm) plus twice "
                f"the cutoff: the molecule can interact with its periodic image; a box of "
                f"{extent + 2 * DEFAULT_CUTOFF_NM:.1f} nm avoids it", stacklevel=2)
        if ionic_strength_molar < 0:
            raise SimulationError(f"ionic strength {ionic_strength_molar} M must be >= 0")
        modeller = app.Modeller(topology, positions)
        modeller.addSolvent(ff, model=spec[1], boxSize=openmm.Vec3(box_nm, box_nm, box_nm) * unit.nanometer,
                            ionicStrength=ionic_strength_molar * unit.molar, neutralize=True)
        topology, positions = modeller.topology, modeller.positions
        counts: dict[str, int] = {}
        for res in topology.residues():
            counts[res.name] = counts.get(res.name, 0) + 1
        info.update(box_nm=box_nm, ionic_strength_molar=ionic_strength_molar,
                    waters=counts.get("HOH", 0), na=counts.get("NA", 0), cl=counts.get("CL", 0))
    hmass = None if hydrogen_mass_amu is None else hydrogen_mass_amu * unit.amu
    system = build_system(ff, topology, method, constraints=constraint_map[constraints],
                          remove_cmmotion=remove_cmmotion, hydrogen_mass=hmass)
    info["net_charge"] = round(net_charge(system), 6)
    info["constraints"] = "none" if constraint_map[constraints] is None else str(constraints)
    if spec is not None and abs(info["net_charge"]) > 1e-3:
        raise SimulationError(f"the solvated system carries {info['net_charge']:+.4f} e after "
                              "adding ions; this should not happen: report it with the input")
    solute = list(range(pm.mol.GetNumAtoms()))
    prepared = PreparedSystem(system, topology, positions, solute, pm, solvent, info=info)
    if model is not None:
        add_model(prepared, model, backend=ml_backend)
        prepared.model_path = model_path
        prepared.info["ml_model"] = model_path
    return prepared


def add_model(prepared: PreparedSystem, model: Any, backend: str = "torch") -> None:
    """Add the ML correction (a model file path or ``ModelFile``) on the solute of ``prepared``."""
    from hybridff.ml.backend import add_ml_correction
    from hybridff.ml.modelfile import ModelFile, load_model

    path = None
    if not isinstance(model, ModelFile):
        path = str(Path(model).resolve())
        model = load_model(model)
    pm = prepared.parameterized
    force = add_ml_correction(
        prepared.system, prepared.topology, model, atoms=prepared.solute_atoms, backend=backend,
        mm_signature=pm.mm_signature())
    prepared.model, prepared.model_path = model, path
    prepared.ml_force_group = force.getForceGroup()
    prepared.info.update(ml_backend=backend, ml_model=path,
                         ensemble_size=int(model.metadata.get("ensemble_size", 1)))


# --------------------------------------------------------------------------- ensemble monitor


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


# --------------------------------------------------------------------------- running


@dataclass
class MDOptions:
    """Settings of :func:`run_md` (temperatures K, times fs/ps, pressure bar)."""

    steps: int = 5000
    timestep_fs: float = 2.0
    temperature_k: float = 300.0
    friction_per_ps: float = 1.0
    pressure_bar: float | None = 1.0  # solvated only; None or 0: constant volume
    report_every: int = 500
    equilibration_steps: int = 500
    minimize_iterations: int = 1000
    checkpoint_every: int | None = None  # default: about every tenth of the run
    seed: int = 2026
    platform: str = "CPU"
    threads: int | None = None
    disagreement_every: int = 1  # in reports
    disagreement_threshold_kcal: float | None = None

    def check(self) -> None:
        """Refuse settings that cannot run (quoting the value)."""
        if self.steps < 0:
            raise SimulationError(f"steps must be >= 0, got {self.steps}")
        if not 0 < self.timestep_fs <= 5:
            raise SimulationError(f"time step {self.timestep_fs} fs is outside (0, 5] fs")
        if not 0 < self.temperature_k < math.inf:
            raise SimulationError(f"temperature {self.temperature_k} K must be positive")
        if not 0 <= self.friction_per_ps < math.inf:
            raise SimulationError(f"Langevin friction {self.friction_per_ps} /ps must be >= 0 "
                                  "(0: constant-energy dynamics; 1 /ps is usual)")
        if self.pressure_bar is not None and not 0 <= self.pressure_bar < math.inf:
            raise SimulationError(f"pressure {self.pressure_bar} bar must be >= 0 (0 or None: "
                                  "constant volume)")
        if self.report_every < 1:
            raise SimulationError(f"report interval {self.report_every} must be >= 1 step")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise SimulationError(f"checkpoint interval {self.checkpoint_every} must be >= 1 step")
        if self.equilibration_steps < 0 or self.minimize_iterations < 0:
            raise SimulationError("equilibration steps and minimization iterations must be >= 0")

    def first_report(self) -> int:
        """Step of a new run's first log row and trajectory frame: ``report_every``, or the
        run's last step when the run is shorter (so a short run still writes its end)."""
        if 0 < self.steps < self.report_every:
            return self.steps
        return self.report_every


def run_files(output_dir: str | os.PathLike) -> list[Path]:
    """The files of a hybridff run (:data:`OUTPUTS`) present in ``output_dir``."""
    out = Path(output_dir)
    return [out / name for name in OUTPUTS.values() if (out / name).exists()]


def check_run_folder(output_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Refuse to start a run in a folder that holds another run unless ``overwrite``.

    Returns the earlier run's files (which :func:`run_md` removes, with ``overwrite``, when the
    new run starts writing). A folder without run files (new, empty, other files) is fine.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise SimulationError(f"output {out} is a file, not a folder; give a folder for the run")
    found = run_files(out)
    if found and not overwrite:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise SimulationError(
            f"output folder {out} already holds a run ({names}); continue it with --resume, "
            "replace it with --overwrite, or choose another output folder")
    return found


def read_run(output_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``run.json`` summary of a run folder, checking the files a resume needs are there."""
    out = Path(output_dir)
    needed = [OUTPUTS[k] for k in ("summary", "system", "integrator", "checkpoint", "start")]
    missing = [n for n in needed if not (out / n).is_file()]
    if missing:
        raise SimulationError(f"cannot resume from {out}: missing {', '.join(missing)}; it must "
                              "be the -o folder of a finished or checkpointed hybridff simulate run")
    try:
        summary = json.loads((out / OUTPUTS["summary"]).read_text())
        summary["options"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SimulationError(f"{out / OUTPUTS['summary']}: not a readable run summary ({exc}); "
                              "the run cannot be resumed: start it again with --overwrite") from exc
    return summary


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


def _write_pdb(path: Path, topology: app.Topology, state: openmm.State) -> None:
    buffer = io.StringIO()
    app.PDBFile.writeFile(topology, state.getPositions(), buffer)
    atomic_write_text(path, buffer.getvalue())


def _write_restart_files(out: Path, simulation: app.Simulation) -> None:
    atomic_write_bytes(out / OUTPUTS["checkpoint"], simulation.context.createCheckpoint())
    state = simulation.context.getState(getPositions=True, getVelocities=True, getParameters=True,
                                        getEnergy=True)
    atomic_write_text(out / OUTPUTS["state"], openmm.XmlSerializer.serialize(state))


#: |potential energy| above this (kJ/mol) is a blow-up even when still finite
BLOWUP_ENERGY_KJ_MOL = 1e9

BLOWUP_ADVICE = ("use a smaller time step (--timestep-fs 1), more minimization, or check the "
                 "input structure for overlapping atoms; with an ML correction, also check that "
                 "it was trained on conformations like these (hybridff evaluate, more frames, "
                 "--sampler mixed) or run MM alone to compare")


def _blew_up(stage: str, step: int | None, what: str) -> SimulationError:
    where = f" at step {step}" if step is not None else ""
    return SimulationError(f"{what} {stage}{where}: the system blew up; {BLOWUP_ADVICE}")


def _check_energy(simulation: app.Simulation, stage: str, step: int | None = None) -> float:
    energy = simulation.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(
        unit.kilojoule_per_mole)
    if not math.isfinite(energy) or abs(energy) > BLOWUP_ENERGY_KJ_MOL:
        raise _blew_up(stage, step, f"the potential energy became {energy:.6g} kJ/mol")
    return energy


def _guarded(action: Any, stage: str, simulation: app.Simulation) -> None:
    """Run ``action()``; OpenMM's NaN-coordinate exception becomes a SimulationError."""
    try:
        action()
    except openmm.OpenMMException as exc:
        if "nan" not in str(exc).lower():
            raise
        raise _blew_up(stage, simulation.currentStep, f"OpenMM stopped ({exc})") from exc


def _set_torch_threads(system: openmm.System, threads: int | None) -> None:
    """Limit torch's threads where a TorchForce runs (deliberately, when a Context is made)."""
    if threads and any(is_ml_force(f) for f in system.getForces()):
        import torch

        torch.set_num_threads(int(threads))


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


class _Trajectory:
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
            raise _blew_up("during production", simulation.currentStep,
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


class _Production:
    """The production loop: chunks up to the next report (``report_every`` steps apart, and
    the run's last step), CSV rows, DCD frames, progress, checkpoints."""

    def __init__(self, simulation: app.Simulation, out: Path, options: MDOptions, periodic: bool,
                 ml_group: int | None, monitor: EnsembleMonitor | None, append: bool,
                 progress: bool, trajectory: _Trajectory) -> None:
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
            _check_energy(self.sim, "during production", self.sim.currentStep)
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
                    _guarded(lambda n=n: self.sim.step(n), "during production", self.sim)
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
                        _write_restart_files(self.out, self.sim)
                        since_ckpt = 0
            finally:
                self.trajectory.close()
        ns_day = steps * dt_ps * 1e-3 * 86400.0 / elapsed if elapsed > 0 else None
        return {"steps": steps, "wall_s": round(elapsed, 3), "ns_per_day": ns_day}


def _make_simulation(topology: app.Topology, system: openmm.System, options: MDOptions
                     ) -> app.Simulation:
    integrator = openmm.LangevinMiddleIntegrator(options.temperature_k * unit.kelvin,
                                                 options.friction_per_ps / unit.picosecond,
                                                 options.timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(int(options.seed))
    platform, properties = get_platform(options.platform, options.threads)
    _set_torch_threads(system, options.threads)
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
    out = Path(output_dir)
    earlier = check_run_folder(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    system = prepared.system
    if prepared.periodic and options.pressure_bar:
        barostat = openmm.MonteCarloBarostat(options.pressure_bar * unit.bar,
                                             options.temperature_k * unit.kelvin)
        barostat.setRandomNumberSeed(int(options.seed))
        barostat.setForceGroup(FORCE_GROUPS["MonteCarloBarostat"])
        system.addForce(barostat)
    check_positions(prepared.positions, prepared.topology, "starting positions")
    sim = _make_simulation(prepared.topology, system, options)
    if prepared.periodic:
        sim.context.setPeriodicBoxVectors(*prepared.topology.getPeriodicBoxVectors())
    sim.context.setPositions(prepared.positions)
    e_start = _check_energy(sim, "at the starting structure")
    t0 = time.perf_counter()
    if options.minimize_iterations:
        _guarded(lambda: sim.minimizeEnergy(maxIterations=options.minimize_iterations),
                 "during minimization", sim)
    e_min = _check_energy(sim, "after minimization")
    minimize_s = time.perf_counter() - t0
    sim.context.setVelocitiesToTemperature(options.temperature_k * unit.kelvin, int(options.seed))
    t0 = time.perf_counter()
    for start in range(0, options.equilibration_steps, max(1, options.report_every)):
        n = min(options.report_every, options.equilibration_steps - start)
        _guarded(lambda n=n: sim.step(n), "during equilibration", sim)
        _check_energy(sim, "during equilibration", sim.currentStep)
    equilibrate_s = time.perf_counter() - t0
    sim.currentStep = 0
    sim.context.setTime(0.0)
    for path in earlier:  # --overwrite: the earlier run's files go when this one starts writing
        path.unlink(missing_ok=True)
    start_state = sim.context.getState(getPositions=True, enforcePeriodicBox=prepared.periodic)
    _write_pdb(out / OUTPUTS["start"], sim.topology, start_state)
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
    _write_restart_files(out, sim)
    atomic_write_text(out / OUTPUTS["summary"], json.dumps(summary, indent=1, default=str) + "\n")
    trajectory = _Trajectory(out / OUTPUTS["trajectory"], sim.topology, options.timestep_fs,
                             first_report, options.report_every, prepared.periodic, append=False)
    production = _Production(sim, out, options, prepared.periodic, prepared.ml_force_group, monitor,
                             append=False, progress=progress, trajectory=trajectory)
    summary["production"] = production.run(options.steps)
    summary["status"] = "finished"
    _write_pdb(out / OUTPUTS["final"], sim.topology,
               sim.context.getState(getPositions=True, enforcePeriodicBox=prepared.periodic))
    _write_restart_files(out, sim)
    if monitor is not None:
        summary["ensemble_disagreement_kcal_mol"] = {
            "max": max(production.disagreement, default=None),
            "mean": float(np.mean(production.disagreement)) if production.disagreement else None,
            "trained_max": monitor.threshold,
            "exceeded": monitor.warned,
        }
    atomic_write_text(out / OUTPUTS["summary"], json.dumps(summary, indent=1, default=str) + "\n")
    return summary


def load_system_xml(path: str | os.PathLike, model: Any = None, topology: app.Topology | None = None,
                    atoms: list[int] | None = None, backend: str = "torch") -> openmm.System:
    """Deserialize a System XML written by :func:`run_md`.

    A TorchForce in the file is not handed to OpenMM's deserializer: with openmm-torch 1.10 on
    OpenMM 8.6.1 (the verified stack) ``TorchForceProxy::deserialize`` crashes the process
    (segmentation fault in ``SerializationNode::getStringProperty``). It is removed from the
    XML and, when ``model`` (file or ``ModelFile``), the ``topology`` and the ML ``atoms`` are
    given, added again
    with :func:`hybridff.ml.backend.add_ml_correction` in the same force group, with the same
    ``lambda`` default; without a model that is an error saying so.
    """
    from xml.etree import ElementTree as ET

    path = Path(path)
    if not path.is_file():
        raise SimulationError(f"System file {str(path)!r} does not exist")
    text = path.read_text()
    removed: list[ET.Element] = []
    if 'type="TorchForce"' in text:
        root = ET.fromstring(text)
        forces = root.find("Forces")
        for element in list(forces if forces is not None else []):
            if element.get("type") == "TorchForce":
                forces.remove(element)
                removed.append(element)
        if model is None or atoms is None or topology is None:
            raise SimulationError(
                f"{path} holds an ML correction (TorchForce), which this openmm-torch cannot "
                "read back (its deserializer crashes); pass the model file and the ML atoms "
                "(load_system_xml(path, model=..., topology=..., atoms=...)) to re-create it, or resume with "
                "hybridff simulate --resume, which does that from run.json")
        text = ET.tostring(root, encoding="unicode")
    try:
        system = openmm.XmlSerializer.deserialize(text)
    except Exception as exc:  # OpenMM raises a bare Exception for malformed XML
        raise SimulationError(f"{path}: not a readable OpenMM System XML ({exc}); run the "
                              "simulation again to rewrite it") from exc
    for element in removed:
        from hybridff.ml.backend import add_ml_correction
        from hybridff.ml.modelfile import ModelFile, load_model

        loaded = model if isinstance(model, ModelFile) else load_model(model)
        params = element.find("GlobalParameters")
        names = {p.get("name"): float(p.get("default")) for p in (params if params is not None else [])}
        name, value = next(iter(names.items())) if names else ("lambda_ml", 1.0)
        add_ml_correction(system, topology, loaded, atoms=list(atoms), backend=backend,
                          lambda_ml=value, parameter_name=name,
                          force_group=int(element.get("forceGroup", "0")))
    return system


def _trim_log(path: Path, step: int) -> int:
    """Drop the CSV log's rows after ``step`` and a cut-off last line; return how many."""
    if not path.is_file():
        return 0
    text = path.read_text()
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    if not lines:
        return 0
    n_columns = len(next(csv.reader([lines[0]])))
    keep, dropped = [lines[0]], 0
    for k, line in enumerate(lines[1:], start=1):
        fields = next(csv.reader([line]), [])
        cut = k == len(lines) - 1 and not text.endswith("\n")
        try:
            ok = not cut and len(fields) == n_columns and int(fields[0]) <= step
        except ValueError:
            ok = False
        if ok:
            keep.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "\n".join(keep) + "\n")
    return dropped


def _trim_dcd(path: Path, step: int) -> tuple[int, tuple[int, int] | None]:
    """Cut the DCD trajectory back to its frames up to ``step`` (and whole frames only).

    OpenMM's ``DCDFile`` appends after the frame count in the header, so frames written after
    the checkpoint, or a frame cut off by a stop, would otherwise stay in the middle of the
    file. Returns how many frames (whole or partial) were removed, and the (first step,
    interval) of the frames kept; ``None`` and no file when no frame is kept (an empty file
    of a run stopped before its first frame, or of hybridff 0.x's short runs, included), so
    the resumed run starts the file anew.
    """
    import struct

    if not path.is_file():
        return 0, None
    size = path.stat().st_size
    if size == 0:
        path.unlink()
        return 0, None
    with open(path, "r+b") as handle:
        head = handle.read(104)
        if len(head) < 104 or head[4:8] != b"CORD" or struct.unpack("<i", head[:4])[0] != 84:
            raise SimulationError(
                f"{path}: not a DCD trajectory OpenMM can append to (bad header); move it away "
                "to have the resumed run start a new one")
        n_frames, first, interval = struct.unpack("<3i", head[8:20])
        box = struct.unpack("<i", head[48:52])[0]
        comments = struct.unpack("<i", head[92:96])[0]
        handle.seek(104 + comments)
        n_atoms = struct.unpack("<i", handle.read(4))[0]
        header = 104 + comments + 8
        frame = (56 if box else 0) + 3 * (8 + 4 * n_atoms)
        whole = max(0, (size - header) // frame)
        wanted = (step - first) // interval + 1 if interval > 0 and step >= first else 0
        keep = max(0, min(n_frames, whole, wanted))
        dropped = max(n_frames, whole + (1 if size > header + whole * frame else 0)) - keep
        if keep > 0 and keep == n_frames == whole and size == header + keep * frame:
            return 0, (first, interval)
        if keep > 0:
            handle.truncate(header + keep * frame)
            handle.seek(8)
            handle.write(struct.pack("<i", keep))
            handle.seek(20)
            handle.write(struct.pack("<i", first + max(keep - 1, 0) * interval))
            handle.flush()
            os.fsync(handle.fileno())
    if keep == 0:
        path.unlink()
        return dropped, None
    return dropped, (first, interval)


def resume_md(output_dir: str | os.PathLike, steps: int, platform: str | None = None,
              threads: int | None = None, progress: bool = True,
              disagreement_threshold_kcal: float | None = None) -> dict[str, Any]:
    """Continue the run in ``output_dir`` from its checkpoint for ``steps`` more steps.

    The run keeps its own settings (time step, temperature, report interval, ...); only the
    platform, the thread count and the ensemble-disagreement warning threshold can change.

    Appends to the CSV log and the DCD, then rewrites the final PDB, checkpoint, State and
    ``run.json``. A run stopped between checkpoints (killed, crashed) resumes too: log rows
    and trajectory frames written after its last checkpoint, or cut off, are dropped first
    (with a warning), so the files continue without gaps or repeats. The checkpoint is
    platform specific: resume on the platform that wrote it.
    """
    out = Path(output_dir)
    summary = read_run(out)
    opt_dict = dict(summary["options"])
    opt_dict["steps"] = int(steps)
    if platform is not None:
        opt_dict["platform"] = platform
    if threads is not None:
        opt_dict["threads"] = threads
    if disagreement_threshold_kcal is not None:
        opt_dict["disagreement_threshold_kcal"] = disagreement_threshold_kcal
    options = MDOptions(**opt_dict)
    options.check()
    model_path = summary.get("ml_model")
    solute = list(range(int(summary["system"]["solute_atoms"])))
    topology = app.PDBFile(str(out / OUTPUTS["start"])).topology
    system = load_system_xml(out / OUTPUTS["system"], model=model_path, topology=topology,
                             atoms=solute, backend=summary["system"].get("ml_backend", "torch"))
    integrator = openmm.XmlSerializer.deserialize((out / OUTPUTS["integrator"]).read_text())
    plat, properties = get_platform(options.platform, options.threads)
    _set_torch_threads(system, options.threads)
    sim = app.Simulation(topology, system, integrator, plat, properties)
    try:
        sim.loadCheckpoint(str(out / OUTPUTS["checkpoint"]))
    except Exception as exc:  # OpenMM: bare Exception for a foreign/corrupt checkpoint
        raise SimulationError(
            f"{out / OUTPUTS['checkpoint']}: cannot be loaded on platform {options.platform} "
            f"({exc}); resume with the platform that wrote it ({summary.get('platform')}), or "
            f"restart from {OUTPUTS['state']} with XmlSerializer") from exc
    periodic = system.usesPeriodicBoundaryConditions()
    dropped_rows = _trim_log(out / OUTPUTS["log"], sim.currentStep)
    dropped_frames, grid = _trim_dcd(out / OUTPUTS["trajectory"], sim.currentStep)
    first = int(summary.get("first_report_step") or options.report_every)
    if grid is not None and grid != (first, options.report_every):
        raise SimulationError(
            f"{out / OUTPUTS['trajectory']}: its frames start at step {grid[0]}, every {grid[1]} "
            f"steps, but the run reports from step {first} every {options.report_every}: it is "
            "not this run's trajectory; move it away to have the resumed run start a new one")
    if dropped_rows or dropped_frames:
        logger.warning(
            "%s: the run stopped after its last checkpoint (step %d); dropped %d log row(s) and "
            "%d trajectory frame(s) written after it (or cut off by the stop): they are written "
            "again as the run continues", out, sim.currentStep, dropped_rows, dropped_frames)
    monitor = None
    if model_path and (summary.get("system", {}).get("ensemble_size") or 1) > 1 and Path(model_path).is_file():
        from hybridff.ml.modelfile import load_model

        monitor = EnsembleMonitor(load_model(model_path), topology, solute,
                                  options.disagreement_threshold_kcal)
    trajectory = _Trajectory(out / OUTPUTS["trajectory"], topology, options.timestep_fs, first,
                             options.report_every, periodic, append=grid is not None)
    first_step = sim.currentStep
    production = _Production(sim, out, options, periodic, summary.get("ml_force_group"), monitor,
                             append=True, progress=progress, trajectory=trajectory)
    speed = production.run(options.steps)
    _write_pdb(out / OUTPUTS["final"], topology, sim.context.getState(getPositions=True,
                                                                      enforcePeriodicBox=periodic))
    _write_restart_files(out, sim)
    summary.setdefault("resumed", []).append({"from_step": first_step, **speed})
    summary["total_steps"] = sim.currentStep
    summary["status"] = "finished"
    atomic_write_text(out / OUTPUTS["summary"], json.dumps(summary, indent=1, default=str) + "\n")
    return summary
