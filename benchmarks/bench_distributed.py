"""QM labelling on a local Dask cluster: throughput with 1 and 2 worker processes, and the
scheduler's overhead per task.

Not a test: run ``python benchmarks/bench_distributed.py [--method dft] [--frames 8]`` (or
through ``hybridff bench --only distributed``). One run measures, on the same frames:

1. labelling throughput (frames/s) on a local cluster of 1 worker process, then of 2 (one
   thread each, ``--threads`` OpenMP/BLAS threads per task); each cluster first computes one
   warm-up frame per worker (imports, basis set setup), not timed. The ratio of the two
   throughputs is the speed-up; speed-up / 2 the parallel efficiency.
2. the overhead of a task: ``--tasks`` tasks whose engine returns at once, in-process and on a
   1-worker cluster (same task function, same loop that writes nothing); the difference per
   task is what Dask adds (submit, schedule, run on a worker, gather the result).

Frames: ``--frames`` MD frames (500 K, seed 0, GAFF2 with Gasteiger charges) of
``--molecule`` (default ethanol). ``--quick``: 4 frames of B3LYP/STO-3G, 100 overhead tasks.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from hybridff.labels.qm import QMEngine


class InstantEngine(QMEngine):
    """A QM engine that returns zero energy and gradient at once (for the overhead); defined
    in ``__main__``, so Dask sends it to the workers by value."""

    name = "instant"

    def raw(self, numbers: Any, positions_bohr: Any, charge: int = 0,
            multiplicity: int = 1) -> tuple[float, np.ndarray]:
        return 0.0, np.zeros((len(numbers), 3))


def make_tasks(args: argparse.Namespace) -> tuple[list[Any], int]:
    from hybridff.io.molecule import formal_charge
    from hybridff.labels.samplers import sample_conformations
    from hybridff.labels.tasks import FrameTask
    from hybridff.training.residuals import build_mm

    mm = build_mm(args.molecule, charge_method="gasteiger")
    n = args.frames + 2  # two warm-up frames, one per worker at most
    sampled = sample_conformations("md", mm.system, mm.positions, n, mol=mm.parameterized.mol,
                                   temperature=500.0, seed=0)
    charge = formal_charge(mm.parameterized.mol)
    options = {"basis": args.basis} if args.method == "dft" else {}
    tasks = [FrameTask(k, mm.numbers, sampled.positions[k], charge, args.method, options,
                       args.threads) for k in range(n)]
    return tasks, len(mm.numbers)


def throughput(tasks: list[Any], workers: int) -> tuple[float, float, dict[str, int], float]:
    """(frames/s, cluster start s, frames per worker, warm-up s) on a local cluster."""
    from hybridff.labels.distributed import dask_client, run_tasks

    t0 = time.perf_counter()
    with dask_client(workers=workers) as client:
        client.wait_for_workers(workers)
        started = time.perf_counter() - t0
        t0 = time.perf_counter()
        # one warm-up task per worker, pinned to it
        warm = [client.submit(_warm, tasks[k], workers=[w], pure=False)
                for k, w in enumerate(sorted(client.nthreads()))]
        client.gather(warm)
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        per_worker: dict[str, int] = {}
        outcomes = list(run_tasks(tasks[2:], client=client))
        seconds = time.perf_counter() - t0
    for o in outcomes:
        if not o.ok:
            raise SystemExit(f"frame {o.index} failed: {o.error}")
        per_worker[o.worker] = per_worker.get(o.worker, 0) + 1
    return len(outcomes) / seconds, started, per_worker, warm_s


def _warm(task: Any) -> Any:
    from hybridff.labels.tasks import compute_frame

    return compute_frame(task)


def overhead(tasks: list[Any], n: int) -> tuple[float, float]:
    """Seconds per instant task: in-process and on a 1-worker cluster."""
    from dataclasses import replace

    from hybridff.labels.distributed import dask_client, run_tasks

    instant = [replace(tasks[0], index=k, engine=InstantEngine(), threads=None)
               for k in range(n)]
    t0 = time.perf_counter()
    assert len(list(run_tasks(instant))) == n
    serial = (time.perf_counter() - t0) / n
    with dask_client(workers=1) as client:
        client.wait_for_workers(1)
        list(run_tasks(instant[:5], client=client))  # warm-up: pickling, imports
        t0 = time.perf_counter()
        assert len(list(run_tasks(instant, client=client))) == n
        dask = (time.perf_counter() - t0) / n
    return serial, dask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="dft", choices=["dft", "xtb"])
    parser.add_argument("--basis", default="def2-svp", help="dft basis (default def2-svp)")
    parser.add_argument("--molecule", default="CCO", help="SMILES or file (default ethanol)")
    parser.add_argument("--frames", type=int, default=8, help="timed frames per cluster")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP/BLAS threads per task")
    parser.add_argument("--tasks", type=int, default=500, help="instant tasks for the overhead")
    parser.add_argument("--quick", action="store_true",
                        help="4 frames of B3LYP/STO-3G, 100 overhead tasks")
    args = parser.parse_args(argv)
    if args.quick:
        args.method, args.basis, args.frames, args.tasks = "dft", "sto-3g", 4, 100
    logging.basicConfig(level=logging.WARNING)
    import dask
    import distributed

    import hybridff

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    print(f"machine: {platform.machine()} {platform.processor() or ''} {cores} usable cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start")
    print(f"python {platform.python_version()}  hybridff {hybridff.__version__}  dask "
          f"{dask.__version__}  distributed {distributed.__version__}")
    tasks, n_atoms = make_tasks(args)
    level = f"B3LYP/{args.basis}" if args.method == "dft" else "GFN2-xTB"
    print(f"{args.molecule} ({n_atoms} atoms), {level}, {args.frames} timed frames per cluster, "
          f"{args.threads} thread(s) per task\n")
    rows = []
    for workers in (1, 2):
        rate, started, per_worker, warm = throughput(tasks, workers)
        rows.append(rate)
        print(f"{workers} worker(s): {rate:.4f} frames/s ({1 / rate:.2f} s/frame), cluster start "
              f"{started:.1f} s, warm-up {warm:.1f} s, frames per worker "
              f"{sorted(per_worker.values(), reverse=True)}")
    speedup = rows[1] / rows[0]
    print(f"\nspeed-up 2 workers / 1 worker (throughput ratio, same run): {speedup:.2f}x; "
          f"parallel efficiency {speedup / 2:.2f}")
    serial, on_dask = overhead(tasks, args.tasks)
    print(f"\noverhead per task ({args.tasks} instant tasks): in-process {1e3 * serial:.2f} ms, "
          f"1-worker Dask cluster {1e3 * on_dask:.2f} ms; Dask adds "
          f"{1e3 * (on_dask - serial):.2f} ms per task")
    per_frame = 1 / rows[0]
    print(f"ratio of Dask's per-task overhead to one {level} frame here: "
          f"{(on_dask - serial) / per_frame:.2e}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other "
          f"processes on the {cores} cores lower the speed-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
