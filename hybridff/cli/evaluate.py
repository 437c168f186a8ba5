"""Compare MM alone and the hybrid (MM + ML correction, evaluated inside OpenMM) against QM on
labelled frames: energy RMSE/MAE (kcal/mol, mean offset removed) and force RMSE
(kcal/mol/Angstrom), the ensemble's disagreement, and optionally an ML-only model. Frames
with QM dipoles: the dipole RMSE (Debye) of the fixed MM charges and of the geometry-dependent
charges q(X) (hybridff train --dipoles), with a dipole parity plot under --plots.

With --plots DIR: parity plots of QM against each method (energies and force components), and
relaxed torsion scans (MM-relaxed with the dihedral restrained; MM, hybrid, ML-only and
optionally QM energies along it), each PNG written next to a CSV of its numbers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hybridff.cli import number_in
from hybridff.cli.argtypes import output_file, output_folder, positive
from hybridff.ml import DEFAULT_PRECISION, PRECISIONS

HELP = "compare MM and hybrid against QM on labelled frames"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("molecule", help="molecule file (SDF/mol2) or SMILES")
    parser.add_argument("data", help="labelled extxyz file")
    parser.add_argument("--model", required=True, help="trained correction (.pt)")
    parser.add_argument("--ml-only", default=None, metavar="MODEL_OR_DATA",
                        help="an ML-only model (hybridff train --ml-only) to compare as well, or "
                        "a label file (.xyz): train one on it with the model's own settings")
    parser.add_argument("--dipole-model", default=None, metavar="MODEL",
                        help="geometry-dependent charges to compare on the frames' QM dipoles "
                             "(default: the one inside --model, if any)")
    parser.add_argument("--frames", default="all", choices=["all", "held-out"],
                        help="held-out: only the model's validation frames of its training file")
    parser.add_argument("--ml-precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                        help="floating point of the correction inside OpenMM, as in hybridff "
                             f"simulate (default: {DEFAULT_PRECISION})")
    parser.add_argument("--json", type=output_file, default=None, help="write the report as JSON here")
    parser.add_argument("--threads", type=positive("a thread count", integer=True), default=1,
                        help="torch threads")
    plots = parser.add_argument_group("plots")
    plots.add_argument("--plots", type=output_folder, default=None, metavar="DIR",
                       help="write parity plots and torsion scans (PNG + CSV) into DIR")
    plots.add_argument("--torsion", type=int, nargs=4, action="append", default=None,
                       metavar=("I", "J", "K", "L"),
                       help="dihedral to scan, 0-based atom indices (repeat for several); "
                       "default: one per rotatable bond between heavy atoms")
    plots.add_argument("--scan-step", type=number_in(1.0, 120.0, "a scan step", " degrees"), default=None, metavar="DEG",
                       help="scan step in degrees (default 15)")
    plots.add_argument("--scan-qm", default=None, metavar="METHOD",
                       help="QM reference on the scan geometries: xtb or dft (default: none)")


#: degrees between the points of a torsion scan unless --scan-step says otherwise
DEFAULT_SCAN_STEP = 15.0


def run(args: argparse.Namespace) -> int:
    from hybridff.threads import torch_threads

    with torch_threads(args.threads):  # torch's setting is the caller's again afterwards
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from hybridff.exceptions import UnknownNameError
    from hybridff.training.workflow import evaluate_frames

    plot_options = [name for name, value in (
        ("--torsion", args.torsion), ("--scan-step", args.scan_step), ("--scan-qm", args.scan_qm))
        if value is not None]
    if plot_options and args.plots is None:
        raise UnknownNameError(f"{'/'.join(plot_options)} only apply with --plots DIR")
    if args.plots is not None:
        # check what can be checked before the evaluation runs
        if args.torsion:
            from hybridff.io.molecule import load_molecule
            from hybridff.labels.torsions import check_torsion

            mol = load_molecule(args.molecule)
            for torsion in args.torsion:
                check_torsion(mol, torsion)
        if args.scan_qm is not None:
            from hybridff.labels.qm import get_engine

            get_engine(args.scan_qm)  # unknown name or missing QM package: fail now
    evaluated = evaluate_frames(args.molecule, args.data, args.model, args.ml_only, args.frames,
                                dipole_model_path=args.dipole_model,
                                precision=args.ml_precision)
    report = evaluated.report
    print(f"{report['n_frames']} frames ({report['frames']}) of {args.data}")
    print(f"{'':10s} {'E RMSE':>9s} {'E MAE':>9s} {'F RMSE':>9s}   (kcal/mol, kcal/mol/A)")
    for key in ("mm", "mm_refit", "hybrid", "ml_only"):
        if key in report:
            m = report[key]
            print(f"{key:10s} {m['energy_rmse_kcal_mol']:9.3f} {m['energy_mae_kcal_mol']:9.3f} "
                  f"{m['force_rmse_kcal_mol_A']:9.3f}")
    if "dipole" in report:
        for key, name in (("fixed_charges", "fixed MM charges"), ("dipole_model", "q(X) model")):
            if key in report["dipole"]:
                m = report["dipole"][key]
                print(f"dipole {name:17s} RMSE {m['dipole_rmse_debye']:.3f} D, |d| RMSE "
                      f"{m['dipole_magnitude_rmse_debye']:.3f} D ({m['n_frames']} frames)")
    ens = report["ensemble"]
    print(f"ensemble K={ens['size']}: energy std mean {ens['energy_std_mean_kcal_mol']:.3f} "
          f"max {ens['energy_std_max_kcal_mol']:.3f} kcal/mol, force std "
          f"{ens['force_std_rms_kcal_mol_A']:.3f} kcal/mol/A")
    if "fraction_above_validation_p95" in ens:
        print(f"  frames with more disagreement than 95% of the validation frames: "
              f"{100 * ens['fraction_above_validation_p95']:.0f}% (about 5% in distribution)")
    if args.plots is not None:
        from hybridff.plots import write_plots

        summary = write_plots(evaluated, args.plots, args.torsion,
                              args.scan_step or DEFAULT_SCAN_STEP, args.scan_qm,
                              data_name=Path(args.data).name)
        report["plots"] = summary
        print(f"plots in {args.plots}: parity_energy.png, parity_forces.png", end="")
        if "dipole_parity" in summary:
            print(", parity_dipoles.png", end="")
        scans = summary["torsion_scans"]["scans"]
        print("".join(f", {Path(s['files'][0]).name}" for s in scans))
        for scan in scans:
            barriers = ", ".join(f"{k} {v:.2f}" for k, v in scan["barrier_kcal_mol"].items())
            print(f"  torsion {scan['atoms']}: highest point {barriers} kcal/mol; max "
                  f"deviation from the target angles {scan['max_deviation_from_target_deg']:.2f} "
                  "deg")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    return 0
