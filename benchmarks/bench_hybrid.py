"""Speed of the hybrid (MM + TorchForce correction) relative to MM alone, measured in one run.

A ligand is solvated in TIP3P (PME, 1.0 nm cutoff), and the same System is timed on the
OpenMM CPU platform without and with the ML correction on the ligand, with torch's thread
pool at 1 thread and at torch's default. A model trained on a bespoke MM (its refit record in the
model file) runs on that bespoke MM, which is timed too (``bespoke_mm_ns_day``: the drop-in
XML's anharmonic, Morse and cross terms). Prints ns/day and the ratios to GAFF2's MM (JSON with
--json). The correction's cost does not depend on its weights: a trained model file can be
given with --model, otherwise a freshly initialised model of the default architecture is used.

    python benchmarks/bench_hybrid.py [--molecule examples/data/paracetamol.sdf] [--steps 2000]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import openmm
import torch
from openmm import app, unit

ROOT = Path(__file__).resolve().parents[1]


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


def ns_per_day(system: openmm.System, positions, steps: int, dt_fs: float = 2.0) -> float:
    """ns/day of Langevin MD on the CPU platform (after a short warm-up)."""
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond,
                                                 dt_fs * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    integrator.step(50)
    context.getState(getEnergy=True)
    start = time.perf_counter()
    integrator.step(steps)
    context.getState(getEnergy=True)
    elapsed = time.perf_counter() - start
    return steps * dt_fs * 1e-6 / elapsed * 86400.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default=str(ROOT / "examples/data/paracetamol.sdf"))
    parser.add_argument("--model", default=None, help="trained model file (.pt)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--padding", type=float, default=1.0, help="solvent padding, nm")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from hybridff.ml.backend import add_ml_correction, select_ml_atoms
    from hybridff.ml.modelfile import load_model
    from hybridff.ml.region import model_molecule

    system, topology, positions, pm = build(args.molecule, args.padding)
    model = load_model(args.model) if args.model else default_model(topology)
    refit = model.metadata.get("mm_refit")
    bespoke, _, _, bespoke_pm = build(args.molecule, args.padding, refit) if refit else (
        None, None, None, None)
    hybrid = copy.deepcopy(bespoke or system)
    add_ml_correction(hybrid, topology, model,
                      mm_signature=(bespoke_pm or pm).signature if args.model else None)
    default_threads = torch.get_num_threads()
    results = {
        "atoms": system.getNumParticles(),
        "ml_atoms": len(select_ml_atoms(topology, None, model_molecule(model))),
        "steps": args.steps,
        "openmm_cpu_threads": openmm.Platform.getPlatformByName("CPU").getPropertyDefaultValue(
            "Threads"),
    }
    results["mm_ns_day"] = ns_per_day(system, positions, args.steps)
    if bespoke is not None:
        results["bespoke_mm_ns_day"] = ns_per_day(bespoke, positions, args.steps)
        results["ratio_bespoke_mm"] = results["bespoke_mm_ns_day"] / results["mm_ns_day"]
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        results[f"hybrid_ns_day_torch_threads_{threads}"] = ns_per_day(hybrid, positions, args.steps)
        results[f"ratio_hybrid_mm_torch_threads_{threads}"] = (
            results[f"hybrid_ns_day_torch_threads_{threads}"] / results["mm_ns_day"])
    torch.set_num_threads(default_threads)
    for key, value in results.items():
        print(f"{key:36s} {value:.3f}" if isinstance(value, float) else f"{key:36s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
