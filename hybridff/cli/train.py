"""Train the ML correction on QM-minus-MM residuals of labelled frames (energies with their
mean removed, and forces), with a validation split, early stopping and an optional ensemble;
writes one TorchScript model file with its metadata. A series: an SDF/SMI file of several
molecules, the folder 'hybridff label ... -o FOLDER/' wrote and -o MODELS/ train one model
MODELS/NAME.pt per molecule, one task each (--workers/--scheduler: on Dask)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hybridff.cli.argtypes import int_list, non_negative, number_in, positive
from hybridff.cli.batch import add_batch_arguments, is_batch, output_target

HELP = "train the ML correction on QM-minus-MM residuals"

#: descriptor cutoffs (nm) that make sense for a local correction: a few bonds to a few
#: solvation shells; values outside are refused (5, "Angstrom meant", is the usual slip)
CUTOFF_RANGE_NM = (0.2, 1.2)


def _cutoff_hint(value: float) -> str | None:
    low, high = CUTOFF_RANGE_NM
    if low <= value / 10 <= high:
        return f"the cutoff is in nm: {value:g} Angstrom is --cutoff {value / 10:g}"
    return "the cutoff is in nm (default 0.5)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("molecule", help="molecule file (SDF/mol2) or SMILES, atom order of "
                        "DATA; with -o FOLDER/ an SDF or SMI file of a series")
    parser.add_argument("data", help="labelled extxyz file (hybridff label); with -o FOLDER/ "
                        "the folder of label files NAME.xyz (hybridff label ... -o FOLDER/)")
    parser.add_argument("-o", "--output", type=output_target, required=True,
                        help="model file to write (.pt); a path ending in / is a folder: one "
                        "model FOLDER/NAME.pt per molecule, see docs/scale-out.md")
    parser.add_argument("--val-fraction", type=number_in(0.0, 0.9, "a validation fraction"),
                        default=0.1, help="share of the frames held out for early stopping")
    parser.add_argument("--epochs", type=positive("an epoch count", integer=True), default=None,
                        help="training epochs per member (default: enough for --min-steps "
                        "optimizer steps, at least 200)")
    parser.add_argument("--min-steps", type=positive("a step count", integer=True), default=6000,
                        help="optimizer steps per member when --epochs is not given")
    parser.add_argument("--patience", type=positive("a patience", integer=True), default=None,
                        help="early-stopping patience, epochs (default: a fifth of the epochs)")
    parser.add_argument("--batch-size", type=positive("a batch size", integer=True), default=16)
    parser.add_argument("--lr", type=number_in(0, 1, "a learning rate", low_open=True), default=2e-3,
                        help="learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ensemble", type=positive("an ensemble size", integer=True), default=1,
                        help="number of ensemble members K")
    parser.add_argument("--cutoff", type=number_in(*CUTOFF_RANGE_NM, "a descriptor cutoff", " nm",
                                                   hint=_cutoff_hint),
                        default=0.5, help="descriptor cutoff, nm (0.2 to 1.2; default 0.5)")
    parser.add_argument("--hidden", type=int_list("hidden layer widths", "64,64"), default="32,32",
                        help="hidden layer widths, comma separated")
    parser.add_argument("--architecture", choices=("symmetry", "painn"), default="symmetry",
                        help="the correction's network: per-element MLPs over symmetry functions "
                        "(symmetry, default) or equivariant message passing (painn; slower to "
                        "train and to run; docs/ml-correction.md compares them)")
    parser.add_argument("--features", type=positive("a feature width", integer=True), default=32,
                        help="painn: feature width (default 32)")
    parser.add_argument("--interactions", type=positive("a block count", integer=True),
                        default=3, help="painn: message-passing blocks (default 3)")
    parser.add_argument("--energy-weight", type=non_negative("a loss weight"), default=0.03,
                        help="weight of the energy term of the loss (each term is normalised by "
                        "the variance of its targets; forces weigh 1)")
    parser.add_argument("--force-weight", type=non_negative("a loss weight"), default=1.0,
                        help="weight of the force term of the loss")
    parser.add_argument("--charges", default=None,
                        help="MM charge method (default: the project default, ml)")
    parser.add_argument("--ml-only", action="store_true",
                        help="fit QM itself instead of QM - MM (a baseline for evaluate)")
    parser.add_argument("--no-refit", action="store_true",
                        help="train on QM - GAFF2 as shipped, without first refitting the "
                             "molecule's bonded terms (bespoke MM) to the training frames")
    parser.add_argument("--threads", type=positive("a thread count", integer=True), default=1,
                        help="torch threads")
    parser.add_argument("--no-progress", action="store_true")
    add_batch_arguments(parser.add_argument_group("a series (-o FOLDER/)"), progress=False)
    dipoles = parser.add_argument_group("geometry-dependent charges (dipole model)")
    dipoles.add_argument("--dipoles", action="store_true",
                         help="also train charges q(X) on the frames' QM dipoles and store "
                              "them in the model file (hybridff evaluate, hybridff spectrum)")
    dipoles.add_argument("--dipoles-only", action="store_true",
                         help="train only the dipole model, written to OUTPUT on its own")
    dipoles.add_argument("--dipole-charge-weight", type=non_negative("a loss weight"),
                         default=None, metavar="W",
                         help="weight of the pull toward the fixed MM charges (default 0.01)")
    dipoles.add_argument("--dipole-steps", type=positive("a step count", integer=True),
                         default=None, help="optimizer steps of the dipole model (default 3000)")


def config_from_args(args: argparse.Namespace):  # -> TrainConfig (imported lazily: torch)
    """The trainer's options from parsed ``hybridff train`` arguments."""
    from hybridff.exceptions import InvalidOptionError
    from hybridff.training.trainer import TrainConfig

    hidden = tuple(args.hidden)
    if args.energy_weight == 0 and args.force_weight == 0:
        raise InvalidOptionError("--energy-weight and --force-weight are both 0: nothing to fit; "
                                 "give at least one a positive weight")
    return TrainConfig(epochs=args.epochs, min_steps=args.min_steps,
                       batch_size=args.batch_size, learning_rate=args.lr,
                       val_fraction=args.val_fraction, patience=args.patience, seed=args.seed,
                       ensemble=args.ensemble, hidden=hidden, cutoff=args.cutoff,
                       energy_weight=args.energy_weight, force_weight=args.force_weight,
                       architecture=args.architecture, features=args.features,
                       interactions=args.interactions, progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    from hybridff.threads import torch_threads

    with torch_threads(args.threads):  # torch's setting is the caller's again afterwards
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from hybridff.training.workflow import train
    from hybridff.units import KJ_PER_MOL_NM_TO_KCAL_PER_MOL_ANGSTROM as FORCE_TO_KCAL_A

    config = config_from_args(args)
    dipole_config = dipole_config_from_args(args)
    if is_batch(args):
        return run_series(args, config, dipole_config)
    if Path(args.data).is_dir():
        from hybridff.exceptions import InvalidOptionError

        raise InvalidOptionError(f"{args.data} is a folder: to train one model per molecule "
                                 "of a series on its label files, give -o a folder, e.g. "
                                 "-o models/")
    if args.dipoles_only:
        from hybridff.training.dipoles import train_dipoles_from_files

        meta = train_dipoles_from_files(args.molecule, args.data, args.output, dipole_config,
                                        charge_method=args.charges)
        print(f"{args.output}: dipole model (charges q(X)), {meta['n_frames']} frames")
        print_dipole_metrics(meta["metrics"])
        return 0
    meta = train(args.molecule, args.data, args.output, config, charge_method=args.charges,
                 ml_only=args.ml_only, refit=not args.no_refit, dipoles=dipole_config)
    what = ("QM (ML-only)" if args.ml_only else "QM - bespoke MM residual" if meta.get("mm_refit")
            else "QM - MM residual")
    print(f"{args.output}: {meta['kind']} model, target {what}, {meta['n_frames']} frames, "
          f"K={meta['ensemble_size']}")
    if meta.get("mm_refit"):
        m = meta["mm_refit"]["metrics"]
        print(f"  bespoke MM (bonded terms refitted on the training frames): MM force RMSE on "
              f"the validation frames {m['validation_force_rmse_gaff2_kcal_mol_A']:.3f} (GAFF2) "
              f"-> {m['validation_force_rmse_refit_kcal_mol_A']:.3f} kcal/mol/A"
              if "validation_force_rmse_refit_kcal_mol_A" in m else
              f"  bespoke MM (bonded terms refitted on the training frames): bonded-target force "
              f"RMSE {m['force_rmse_gaff2'] * FORCE_TO_KCAL_A:.3f} -> "
              f"{m['force_rmse_refit'] * FORCE_TO_KCAL_A:.3f} kcal/mol/A (training frames)")
    for split in ("train", "validation"):
        m = meta["metrics"].get(split)
        if not m:
            continue
        b, a = m["before"], m["after"]
        print(f"  {split:10s} energy RMSE {b['energy_rmse_kcal_mol']:.3f} -> "
              f"{a['energy_rmse_kcal_mol']:.3f} kcal/mol, force RMSE "
              f"{b['force_rmse_kcal_mol_A']:.3f} -> {a['force_rmse_kcal_mol_A']:.3f} kcal/mol/A "
              f"({a['n_frames']} frames; 'before' = without the model)")
    if "dipole_model" in meta:
        print("  dipole model (charges q(X)) stored in the model file")
        print_dipole_metrics(meta["dipole_model"]["metrics"])
    return 0


def run_series(args: argparse.Namespace, config, dipole_config) -> int:
    """``hybridff train MOLECULES LABELS/ -o MODELS/``: one model per molecule."""
    from hybridff.training.series import series_report, train_series

    summary = train_series(args.molecule, args.data, args.output, config=config,
                           charge_method=args.charges, ml_only=args.ml_only,
                           refit=not args.no_refit,
                           dipoles=dipole_config,
                           dipoles_only=args.dipoles_only, threads=args.threads,
                           workers=args.workers, scheduler=args.scheduler,
                           retry_failed=args.retry_failed, progress=not args.no_progress)
    for line in series_report(args.molecule, args.output):
        print(line)
    print(summary.line())
    return 0 if summary.complete else 1


def dipole_config_from_args(args: argparse.Namespace):  # -> DipoleConfig | None
    """The dipole model's options, or None without --dipoles / --dipoles-only."""
    from hybridff.exceptions import UnknownNameError

    given = [name for name, value in (("--dipole-charge-weight", args.dipole_charge_weight),
                                      ("--dipole-steps", args.dipole_steps)) if value is not None]
    if not (args.dipoles or args.dipoles_only):
        if given:
            raise UnknownNameError(f"{'/'.join(given)} only apply with --dipoles or "
                                   "--dipoles-only")
        return None
    from hybridff.training.dipoles import DipoleConfig

    config = DipoleConfig(val_fraction=args.val_fraction, seed=args.seed, cutoff=args.cutoff,
                          progress=not args.no_progress)
    if args.dipole_charge_weight is not None:
        config.charge_weight = args.dipole_charge_weight
    if args.dipole_steps is not None:
        config.steps = args.dipole_steps
    return config


def print_dipole_metrics(metrics: dict) -> None:
    """One line per split: dipole RMSE of the fixed charges and of q(X)."""
    for split in ("train", "validation"):
        m = metrics.get(split)
        if m:
            print(f"  {split:10s} dipole RMSE {m['fixed_charges']['dipole_rmse_debye']:.3f} D "
                  f"(fixed charges) -> {m['model']['dipole_rmse_debye']:.3f} D "
                  f"({m['model']['n_frames']} frames)")
