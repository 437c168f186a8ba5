"""Parameterizing many NCI molecules, one output file each: in-process, and on a local Dask
cluster of 1 and of 2 worker processes.

Not a test: run ``python benchmarks/bench_batch.py [--n 1000] [--charges gasteiger]`` (or
through ``hybridff bench --only batch``). Molecules: the seeded pick of RDKit's NCI
``first_5K.smi`` that ``bench_parameterize.py`` uses (H C N O F P S Cl Br I, one fragment,
neutral, 5-40 heavy atoms), written to a SMI file. One run times, on the same file,
``hybridff.batch.run_batch`` with a :class:`~hybridff.batch.ParameterizeJob` (what
``hybridff parameterize ligands.smi -o out/ [--workers N]`` does):

1. in-process (the default without ``--workers``; Dask not used);
2. a local cluster of 1 worker process, then of 2 (one thread each). The cluster start and
   each worker's first molecule (imports, force-field tables) are not timed.

Each run writes into a fresh folder; the benchmark checks that the three folders hold the
same files, byte for byte. The ratio of the 2- and 1-worker throughputs is the speed-up;
speed-up / 2 the parallel efficiency. ``--quick``: 12 molecules.
"""

from __future__ import annotations

import argparse
import filecmp
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_parameterize import pick_molecules  # noqa: E402


def _warm(charges: str) -> str:
    """Run on every worker before timing: imports, tables, the first parmchk2."""
    from hybridff.mm.parameters import parameterize

    parameterize("CCO", charges)
    return "warm"


def timed_run(smi: Path, folder: Path, job: Any, workers: int | None) -> tuple[float, Any]:
    """(seconds, summary) of one batch run; a cluster is started and warmed untimed."""
    from hybridff.batch import run_batch
    from hybridff.cluster import dask_client

    if workers is None:
        _warm(job.charge_method)
        t0 = time.perf_counter()
        summary = run_batch(smi, folder, job, progress=False)
        return time.perf_counter() - t0, summary
    with dask_client(workers=workers) as client:
        client.wait_for_workers(workers)
        client.run(_warm, job.charge_method)
        t0 = time.perf_counter()
        summary = run_batch(smi, folder, job, client=client, progress=False)
        seconds = time.perf_counter() - t0
    return seconds, summary


def same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.xml"))
    if names != sorted(p.name for p in b.glob("*.xml")):
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return not mismatch and not errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="molecules (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--charges", default="gasteiger", help="charge method (default "
                        "gasteiger)")
    parser.add_argument("--quick", action="store_true", help="12 molecules")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = 12
    logging.basicConfig(level=logging.WARNING)
    import dask
    import distributed

    import hybridff
    from hybridff.batch import ParameterizeJob

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()} {platform.processor() or ''} {cores} usable cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start")
    print(f"python {platform.python_version()}  hybridff {hybridff.__version__}  dask "
          f"{dask.__version__}  distributed {distributed.__version__}")
    picked = pick_molecules(args.n, args.seed)[:args.n]
    job = ParameterizeJob(args.charges)
    print(f"{len(picked)} NCI molecules (seed {args.seed}), parameterize with {args.charges} "
          "charges, one ForceField XML each\n")
    with tempfile.TemporaryDirectory(prefix="hybridff-bench-batch-") as tmp:
        smi = Path(tmp) / "nci.smi"
        smi.write_text("".join(f"{smiles} nci{name}\n" for name, smiles in picked))
        rates, folders = {}, {}
        for label, workers in (("in-process", None), ("1 worker", 1), ("2 workers", 2)):
            folders[label] = Path(tmp) / label.replace(" ", "-")
            seconds, summary = timed_run(smi, folders[label], job, workers)
            rates[label] = summary.written / seconds
            print(f"{label:>10s}: {summary.written} written, {summary.failed} failed in "
                  f"{seconds:.1f} s: {rates[label]:.2f} molecules/s "
                  f"({1e3 / rates[label]:.0f} ms/molecule)"
                  + (f", per worker {sorted(summary.per_worker.values(), reverse=True)}"
                     if summary.per_worker else ""))
        same = all(same_files(folders["in-process"], folders[k]) for k in ("1 worker",
                                                                           "2 workers"))
        print(f"\nsame files in-process, on 1 and on 2 workers: {'yes' if same else 'NO'}")
    speedup = rates["2 workers"] / rates["1 worker"]
    print(f"speed-up 2 workers / 1 worker (throughput ratio, same run): {speedup:.2f}x; "
          f"parallel efficiency {speedup / 2:.2f}")
    print(f"ratio 1 worker / in-process throughput (Dask's cost per molecule): "
          f"{rates['1 worker'] / rates['in-process']:.2f}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other "
          f"processes on the {cores} cores lower the speed-up)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
