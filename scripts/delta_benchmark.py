"""Held-out accuracy of MM, the hybrid (MM + ML correction) and an ML-only model on one label file.

The label file is split by position: the last ``--test-fraction`` of the frames (a contiguous
block of the sampling trajectory, the part least correlated with the rest) is held out; the
hybrid correction and an ML-only model are trained on the remaining frames with the same
settings (their own validation split is used only for early stopping); all three are then
evaluated on the held-out block. Prints a table and the issue's goals; writes JSON.

    python scripts/delta_benchmark.py examples/data/paracetamol_b3lyp_def2svp.xyz \\
        --molecule examples/data/paracetamol.sdf --ensemble 3 -o /tmp/dft_bench
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from hybridff.io.frames import read_extxyz, write_extxyz
from hybridff.training.trainer import TrainConfig
from hybridff.training.workflow import build_mm, evaluate, train


def split_file(molecule: str, data: str, test_fraction: float, out: Path) -> tuple[Path, Path, int, int]:
    """Write train.xyz (first frames) and test.xyz (last block) into ``out``."""
    mm = build_mm(molecule)
    frames = read_extxyz(data, mm.numbers, bonds=mm.bonds)
    n = len(frames)
    n_test = max(1, int(round(n * test_fraction)))
    if n - n_test < 10:
        raise SystemExit(f"{data}: {n} frames are too few to hold out {n_test}")
    paths = []
    for name, index in (("train", np.arange(n - n_test)), ("test", np.arange(n - n_test, n))):
        part = frames.subset(index)
        path = out / f"{name}.xyz"
        write_extxyz(path, part.numbers, part.positions, part.energies, part.forces, part.info)
        paths.append(path)
    return paths[0], paths[1], n - n_test, n_test


def _timed_train(molecule: str, data: Path, output: Path, config: TrainConfig, ml_only: bool) -> float:
    t0 = time.perf_counter()
    train(molecule, data, output, config, ml_only=ml_only)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="labelled extxyz file")
    parser.add_argument("--molecule", required=True, help="molecule file in the atom order of DATA")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: hybridff train's automatic schedule (--min-steps)")
    parser.add_argument("--min-steps", type=int, default=TrainConfig.min_steps)
    parser.add_argument("--jobs", type=int, default=2,
                        help="train the hybrid and the ML-only model side by side (1: in turn)")
    parser.add_argument("--energy-weight", type=float, default=TrainConfig.energy_weight)
    parser.add_argument("--cutoff", type=float, default=TrainConfig.cutoff)
    parser.add_argument("--hidden", default=",".join(str(h) for h in TrainConfig.hidden))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True, help="work folder (models, splits, JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    train_xyz, test_xyz, n_train, n_test = split_file(args.molecule, args.data, args.test_fraction, out)
    config = TrainConfig(epochs=args.epochs, min_steps=args.min_steps, ensemble=args.ensemble,
                         seed=args.seed,
                         energy_weight=args.energy_weight, cutoff=args.cutoff,
                         hidden=tuple(int(h) for h in args.hidden.split(",")), progress=False)
    jobs = {"hybrid": False, "ml_only": True}
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), initializer=torch.set_num_threads,
                             initargs=(1,)) as pool:
        futures = {name: pool.submit(_timed_train, args.molecule, train_xyz, out / f"{name}.pt",
                                     config, ml_only) for name, ml_only in jobs.items()}
        timings = {f"train_{name}_s": future.result() for name, future in futures.items()}
    report = evaluate(args.molecule, test_xyz, out / "hybrid.pt", out / "ml_only.pt")
    report.update(n_train=n_train, n_test=n_test, source=str(args.data), settings=vars(args),
                  timings=timings)
    (out / "report.json").write_text(json.dumps(report, indent=1))

    print(f"{args.data}: trained on the first {n_train} frames, held out the last {n_test}")
    print("| model | energy RMSE (kcal/mol) | energy MAE (kcal/mol) | force RMSE (kcal/mol/Å) |")
    print("|---|---|---|---|")
    names = {"mm": "MM alone", "hybrid": f"hybrid (MM + ML, K={args.ensemble})",
             "ml_only": f"ML-only (same settings, K={args.ensemble})"}
    for key, label in names.items():
        m = report[key]
        print(f"| {label} | {m['energy_rmse_kcal_mol']:.2f} | {m['energy_mae_kcal_mol']:.2f} | "
              f"{m['force_rmse_kcal_mol_A']:.2f} |")
    mm, hy, ml = report["mm"], report["hybrid"], report["ml_only"]
    ratio = hy["force_rmse_kcal_mol_A"] / mm["force_rmse_kcal_mol_A"]
    print(f"hybrid/MM force RMSE {ratio:.3f} (goal <= 0.25); hybrid energy RMSE "
          f"{hy['energy_rmse_kcal_mol']:.3f} kcal/mol (goal < 0.5); hybrid better than ML-only: "
          f"{hy['force_rmse_kcal_mol_A'] < ml['force_rmse_kcal_mol_A'] and hy['energy_rmse_kcal_mol'] < ml['energy_rmse_kcal_mol']}")
    print(f"training: hybrid {timings['train_hybrid_s']:.0f} s, ML-only {timings['train_ml_only_s']:.0f} s")


if __name__ == "__main__":
    main()
