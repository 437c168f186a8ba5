"""How much of the correction's cost in MD is cold caches: the correction alone in a Context
(the solvated ligand's particles, no MM forces, CPU platform, 1 thread), one step at a time,
timed with warm caches and right after reading 64 MB of other memory, as the MM forces of a
large System do between two evaluations. Prints the medians (ms per step) of each, in turn.

    python benchmarks/probe_correction_cache.py --model MODEL.pt [--steps 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import openmm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_hybrid  # noqa: E402

from hybridff.ml.backend import add_ml_correction  # noqa: E402
from hybridff.ml.modelfile import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="trained correction (.pt)")
    parser.add_argument("--molecule", default=str(bench_hybrid.ROOT / "examples/data/paracetamol.sdf"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    system, topology, positions, pm = bench_hybrid.build(args.molecule, 1.2,
                                                         model.metadata.get("mm_refit"))
    only = openmm.System()  # the same particles and box, the correction as its one Force
    for i in range(system.getNumParticles()):
        only.addParticle(system.getParticleMass(i))
    only.setDefaultPeriodicBoxVectors(*system.getDefaultPeriodicBoxVectors())
    add_ml_correction(only, topology, model, mm_signature=pm.signature)
    context = openmm.Context(only, openmm.VerletIntegrator(0.0001),
                             openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    context.setPositions(positions)
    other = np.random.default_rng(0).random(8_000_000)  # 64 MB, more than the caches hold

    def median_ms(cold: bool) -> float:
        times = []
        for _ in range(args.steps):
            if cold:
                other.sum()  # untimed: evicts the correction's data and code from the caches
            start = time.perf_counter()
            context.getIntegrator().step(1)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3

    median_ms(False)  # warm-up
    for _ in range(args.repeats):
        print(f"warm caches {median_ms(False):.3f} ms/step, after reading 64 MB "
              f"{median_ms(True):.3f} ms/step")


if __name__ == "__main__":
    main()
