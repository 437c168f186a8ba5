"""Speed of the hybrid (MM + TorchForce correction) relative to MM alone, measured in one run.

A ligand is solvated in TIP3P (PME, 1.0 nm cutoff), and the same System is timed on the
OpenMM CPU platform without and with the ML correction on the ligand, its network in single
(float32, what simulate runs) and double precision, with torch's thread pool at 1 thread and at
torch's default. A model trained on a bespoke MM (its refit record in the
model file) runs on that bespoke MM, which is timed too (``bespoke_mm_ns_day``: the drop-in
XML's anharmonic, Morse and cross terms). Prints ns/day and the ratios to GAFF2's MM (JSON with
--json). The correction's cost does not depend on its weights: a trained model file can be
given with --model, otherwise a freshly initialised model of the default architecture is used.

With --protein the System is protein-ligand: the villin headpiece in water shipped with
OpenMM (``openmm/app/data/test.pdb``, amber14-all + TIP3P) with the ligand placed in the water
as far from the protein as the box allows and the waters it overlaps removed (PME). MM and
hybrid are timed in turn on the same Contexts ``--repeats`` times; the medians are printed.

    python benchmarks/bench_hybrid.py [--molecule examples/data/paracetamol.sdf] [--steps 2000]
    python benchmarks/bench_hybrid.py --protein [--steps 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import openmm
import torch
from openmm import app, unit

from hybridff.ml import PRECISIONS

ROOT = Path(__file__).resolve().parents[1]
#: the villin headpiece (HP36 N68H) in a 4.9 x 4.6 x 3.9 nm TIP3P box, shipped with OpenMM
VILLIN_PDB = Path(app.__file__).resolve().parent / "data" / "test.pdb"
#: force-field files of the protein and its water (amber14, as OpenMM ships them)
PROTEIN_FILES = ("amber14-all.xml", "amber14/tip3p.xml")


def build(molecule: str, padding_nm: float, refit: dict | None = None
          ) -> tuple[openmm.System, app.Topology, object, object]:
    """The solvated MM System of ``molecule`` (hybridff GAFF2-class + TIP3P, PME; with
    ``refit``, the bespoke MM of that refit record)."""
    from hybridff.mm.parameters import parameterize
    from hybridff.mm.system import build_system, make_forcefield, molecules_topology

    pm = parameterize(molecule, refit=refit)
    ff = make_forcefield([pm], extra_files=("amber14/tip3p.xml",))
    top, pos = molecules_topology([pm])
    modeller = app.Modeller(top, pos * unit.nanometer)
    modeller.addSolvent(ff, model="tip3p", padding=padding_nm * unit.nanometer)
    system = build_system(ff, modeller.topology, "PME", constraints=app.HBonds)
    return system, modeller.topology, modeller.positions, pm


def farthest_point_nm(points_nm: np.ndarray, box_nm: np.ndarray, spacing_nm: float = 0.1
                      ) -> tuple[np.ndarray, float]:
    """The point of the orthorhombic box farthest from ``points_nm`` (periodic images counted)
    on a grid of ``spacing_nm``, and that distance (nm)."""
    from scipy.spatial import cKDTree

    axes = [np.arange(0.0, edge, spacing_nm) for edge in box_nm]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    nearest, _ = cKDTree(np.mod(points_nm, box_nm), boxsize=box_nm).query(grid)
    best = int(np.argmax(nearest))
    return grid[best], float(nearest[best])


def is_amino_acid(residue: app.Residue) -> bool:
    """Whether ``residue`` is an amino acid (has the backbone N, CA and C)."""
    return {"N", "CA", "C"} <= {a.name for a in residue.atoms()}


def build_protein_ligand(molecule: str, refit: dict | None = None, clearance_nm: float = 0.25,
                         pdb: str | Path = VILLIN_PDB
                         ) -> tuple[openmm.System, app.Topology, object, object, dict]:
    """The protein-ligand MM System: the protein in water of ``pdb`` (amber14-all + TIP3P)
    with ``molecule`` (hybridff GAFF2-class; with ``refit``, its bespoke MM) centred at the
    point of the box farthest from the protein, minus the waters with an atom within
    ``clearance_nm`` of a ligand atom; PME, H-bond constraints. Also returns a summary (atoms,
    residues, waters removed, ligand-protein distance)."""
    from hybridff.mm.parameters import parameterize
    from hybridff.mm.system import build_system, make_forcefield, molecules_topology

    pm = parameterize(molecule, refit=refit)
    ff = make_forcefield([pm], extra_files=PROTEIN_FILES)
    structure = app.PDBFile(str(pdb))
    box_nm = np.array([structure.topology.getPeriodicBoxVectors()[i][i].value_in_unit(unit.nanometer)
                       for i in range(3)])
    xyz = np.array(structure.positions.value_in_unit(unit.nanometer))
    protein = [a.index for r in structure.topology.residues() if is_amino_acid(r) for a in r.atoms()]
    centre, room = farthest_point_nm(xyz[protein], box_nm)
    lig_top, lig_xyz = molecules_topology([pm])
    lig_xyz = lig_xyz - lig_xyz.mean(axis=0) + centre
    waters = [r for r in structure.topology.residues() if r.name == "HOH"]
    overlapping = []
    for residue in waters:
        d = xyz[[a.index for a in residue.atoms()]][:, None, :] - lig_xyz[None, :, :]
        d -= box_nm * np.round(d / box_nm)
        if np.sqrt((d * d).sum(-1)).min() < clearance_nm:
            overlapping.append(residue)
    modeller = app.Modeller(structure.topology, structure.positions)
    modeller.delete(overlapping)
    modeller.add(lig_top, lig_xyz * unit.nanometer)
    system = build_system(ff, modeller.topology, "PME", constraints=app.HBonds)
    d = xyz[protein][:, None, :] - lig_xyz[None, :, :]
    d -= box_nm * np.round(d / box_nm)
    info = {"atoms": system.getNumParticles(),
            "protein_residues": sum(1 for r in modeller.topology.residues() if is_amino_acid(r)),
            "waters_removed": len(overlapping),
            "ligand_protein_min_distance_nm": round(float(np.sqrt((d * d).sum(-1)).min()), 3),
            "box_nm": [round(float(x), 3) for x in box_nm]}
    return system, modeller.topology, modeller.positions, pm, info


def default_model(topology: app.Topology):
    """A model file object of the default architecture covering the ligand's elements."""
    from hybridff.ml.backend import select_ml_atoms
    from hybridff.ml.descriptors import DescriptorSpec
    from hybridff.ml.model import EnsembleModel
    from hybridff.ml.modelfile import ModelFile, build_metadata

    atoms = list(topology.atoms())
    elements = tuple(sorted({atoms[i].element.atomic_number for i in select_ml_atoms(topology)}))
    model = EnsembleModel(DescriptorSpec(elements=elements))
    return ModelFile(torch.jit.script(model), build_metadata(model, DescriptorSpec(elements=elements)))


def md_context(system: openmm.System, positions, dt_fs: float = 2.0) -> openmm.Context:
    """A Langevin (300 K, 1/ps) Context on the CPU platform, minimized and warmed up 50 steps."""
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond,
                                                 dt_fs * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    integrator.step(50)
    context.getState(getEnergy=True)
    return context


def time_steps(context: openmm.Context, steps: int) -> float:
    """ns/day of ``steps`` steps of the Context's integrator."""
    integrator = context.getIntegrator()
    start = time.perf_counter()
    integrator.step(steps)
    context.getState(getEnergy=True)
    elapsed = time.perf_counter() - start
    return steps * integrator.getStepSize().value_in_unit(unit.nanosecond) / elapsed * 86400.0


def ns_per_day(system: openmm.System, positions, steps: int, dt_fs: float = 2.0) -> float:
    """ns/day of Langevin MD on the CPU platform (after a short warm-up)."""
    return time_steps(md_context(system, positions, dt_fs), steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default=str(ROOT / "examples/data/paracetamol.sdf"))
    parser.add_argument("--model", default=None, help="trained model file (.pt)")
    parser.add_argument("--protein", action="store_true",
                        help="protein-ligand System: the ligand in the water of OpenMM's villin "
                             "box (test.pdb, amber14-all + TIP3P) instead of a ligand-only box")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per repeat (default 2000; 300 with --protein)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timings of each System, taken in turn; medians printed "
                             "(default 1; 3 with --protein)")
    parser.add_argument("--padding", type=float, default=1.0, help="solvent padding, nm")
    parser.add_argument("--precisions", default="single,double",
                        help="the correction's floating point(s) to time, comma-separated "
                             "(default: single,double; simulate runs single)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    steps = args.steps or (300 if args.protein else 2000)
    repeats = args.repeats or (3 if args.protein else 1)
    if steps < 1 or repeats < 1:
        parser.error(f"--steps ({steps}) and --repeats ({repeats}) must be at least 1")
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not precisions or any(p not in PRECISIONS for p in precisions):
        parser.error(f"--precisions: single and/or double, not {args.precisions!r}")

    from hybridff.ml.backend import add_ml_correction, select_ml_atoms
    from hybridff.ml.modelfile import load_model
    from hybridff.ml.region import model_molecule

    def make(refit: dict | None = None) -> tuple:
        if args.protein:
            return build_protein_ligand(args.molecule, refit)
        return (*build(args.molecule, args.padding, refit), None)

    system, topology, positions, pm, info = make()
    model = load_model(args.model) if args.model else default_model(topology)
    refit = model.metadata.get("mm_refit")
    bespoke, _, _, bespoke_pm, _ = make(refit) if refit else (None, None, None, None, None)
    hybrids = {}
    for precision in precisions:
        hybrids[precision] = copy.deepcopy(bespoke or system)
        add_ml_correction(hybrids[precision], topology, model, precision=precision, first=True,
                          mm_signature=(bespoke_pm or pm).signature if args.model else None)
    default_threads = torch.get_num_threads()
    results = {
        "system": "protein-ligand (villin in TIP3P + ligand)" if args.protein else "ligand in TIP3P",
        "atoms": system.getNumParticles(),
        "ml_atoms": len(select_ml_atoms(topology, None, model_molecule(model))),
        "steps": steps,
        "repeats": repeats,
        "openmm_cpu_threads": openmm.Platform.getPlatformByName("CPU").getPropertyDefaultValue(
            "Threads"),
    }
    if info:
        results.update({f"protein_ligand_{k}": v for k, v in info.items() if k != "atoms"})
    contexts = {"mm": md_context(system, positions)}
    if bespoke is not None:
        contexts["bespoke_mm"] = md_context(bespoke, positions)
    for precision, hybrid in hybrids.items():
        contexts[f"hybrid_{precision}"] = md_context(hybrid, positions)
    timings: dict[str, list[float]] = {}
    for _ in range(repeats):  # in turn, so a change of the machine's load hits all alike
        for name, context in contexts.items():
            has_correction = name.startswith("hybrid")
            for threads in (sorted({1, default_threads}) if has_correction else [None]):
                key = name if threads is None else f"{name}_torch_threads_{threads}"
                if threads is not None:
                    torch.set_num_threads(threads)
                timings.setdefault(key, []).append(time_steps(context, steps))
    torch.set_num_threads(default_threads)
    speed = {key: statistics.median(values) for key, values in timings.items()}
    results["mm_ns_day"] = speed["mm"]
    if bespoke is not None:
        results["bespoke_mm_ns_day"] = speed["bespoke_mm"]
        results["ratio_bespoke_mm"] = speed["bespoke_mm"] / speed["mm"]
    for precision in precisions:
        for threads in sorted({1, default_threads}):
            key = f"hybrid_{precision}_torch_threads_{threads}"
            results[f"{key}_ns_day"] = speed[key]
            results[f"ratio_{key}_to_mm"] = speed[key] / speed["mm"]
    if repeats > 1:
        results["ns_day_each_repeat"] = {k: [round(v, 3) for v in vs] for k, vs in timings.items()}
    for key, value in results.items():
        print(f"{key:36s} {value:.3f}" if isinstance(value, float) else f"{key:36s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
