"""Compare MM alone and the hybrid (MM + ML correction, evaluated inside OpenMM) against QM on
labelled frames: energy RMSE/MAE (kcal/mol, mean offset removed) and force RMSE
(kcal/mol/Angstrom), the ensemble's disagreement, and optionally an ML-only model."""

from __future__ import annotations

import argparse
import json

HELP = "compare MM and hybrid against QM on labelled frames"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("molecule", help="molecule file (SDF/mol2) or SMILES")
    parser.add_argument("data", help="labelled extxyz file")
    parser.add_argument("--model", required=True, help="trained correction (.pt)")
    parser.add_argument("--ml-only", default=None, metavar="MODEL_OR_DATA",
                        help="an ML-only model (hybridff train --ml-only) to compare as well, or "
                        "a label file (.xyz): train one on it with the model's own settings")
    parser.add_argument("--frames", default="all", choices=["all", "held-out"],
                        help="held-out: only the model's validation frames of its training file")
    parser.add_argument("--json", default=None, help="write the report as JSON here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")


def run(args: argparse.Namespace) -> int:
    import torch

    from hybridff.training.workflow import evaluate

    torch.set_num_threads(args.threads)
    report = evaluate(args.molecule, args.data, args.model, args.ml_only, args.frames)
    print(f"{report['n_frames']} frames ({report['frames']}) of {args.data}")
    print(f"{'':10s} {'E RMSE':>9s} {'E MAE':>9s} {'F RMSE':>9s}   (kcal/mol, kcal/mol/A)")
    for key in ("mm", "hybrid", "ml_only"):
        if key in report:
            m = report[key]
            print(f"{key:10s} {m['energy_rmse_kcal_mol']:9.3f} {m['energy_mae_kcal_mol']:9.3f} "
                  f"{m['force_rmse_kcal_mol_A']:9.3f}")
    ens = report["ensemble"]
    print(f"ensemble K={ens['size']}: energy std mean {ens['energy_std_mean_kcal_mol']:.3f} "
          f"max {ens['energy_std_max_kcal_mol']:.3f} kcal/mol, force std "
          f"{ens['force_std_rms_kcal_mol_A']:.3f} kcal/mol/A")
    if "fraction_above_validation_p95" in ens:
        print(f"  frames with more disagreement than 95% of the validation frames: "
              f"{100 * ens['fraction_above_validation_p95']:.0f}% (about 5% in distribution)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    return 0
