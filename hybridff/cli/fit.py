"""Refit one molecule's bonded terms to its QM frames: the bespoke MM, as a drop-in XML.

Bonds, angles and proper torsions are refitted (with bounded cubic and quartic bond and angle
terms), per group of symmetry-equivalent terms, regularized toward GAFF2; charges,
Lennard-Jones and impropers stay. Writes the molecule's ForceField XML (load it after
hybridff-gaff2.xml; it runs at MM speed, no openmm-torch needed) and, with --record, the refit
record that ``hybridff.parameterize(..., refit=...)`` takes. ``hybridff train`` does this
step itself before training the correction."""

from __future__ import annotations

import argparse
import json

from hybridff.cli import number_in
from hybridff.cli.argtypes import output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("molecule", help="molecule file (SDF/mol2) or SMILES, atom order of DATA")
    parser.add_argument("data", help="labelled extxyz file (hybridff label)")
    parser.add_argument("-o", "--output", type=output_file, required=True,
                        help="ForceField XML of the bespoke MM to write")
    parser.add_argument("--record", type=output_file, default=None,
                        help="also write the refit record (JSON) here")
    parser.add_argument("--charges", default=None,
                        help="MM charge method (default: the project default, ml)")
    parser.add_argument("--regularization", type=number_in(0.0, 1e6, "a regularization"),
                        default=None, help="pull toward GAFF2 (dimensionless; default 1e-3)")
    parser.add_argument("--harmonic", action="store_true",
                        help="harmonic bonds and angles only (no cubic and quartic terms)")


def run(args: argparse.Namespace) -> int:
    from hybridff.io.files import atomic_write_text
    from hybridff.io.frames import read_extxyz
    from hybridff.mm.bespoke import fit_bespoke
    from hybridff.mm.refit import RefitOptions
    from hybridff.training.label_units import check_label_units
    from hybridff.training.residuals import build_mm
    from hybridff.units import KJ_PER_MOL_NM_TO_KCAL_PER_MOL_ANGSTROM as FORCE_TO_KCAL_A

    options = RefitOptions(anharmonic=not args.harmonic)
    if args.regularization is not None:
        options.regularization = args.regularization
    mm = build_mm(args.molecule, charge_method=args.charges)
    frames = read_extxyz(args.data, mm.numbers, bonds=mm.bonds)
    check_label_units(mm.system, frames, str(args.data))
    record = fit_bespoke(mm, frames.positions, frames.energies, frames.forces, options)
    bespoke = build_mm(args.molecule, charge_method=args.charges, refit=record)
    atomic_write_text(args.output, bespoke.parameterized.to_ffxml())
    if args.record is not None:
        atomic_write_text(args.record, json.dumps(record, indent=1) + "\n")
    m = record["metrics"]
    print(f"{args.output}: bespoke MM of {bespoke.parameterized.smiles} from {len(frames)} frames "
          f"(refit {bespoke.signature.refit[:12]}); bonded-target force RMSE "
          f"{m['force_rmse_gaff2'] * FORCE_TO_KCAL_A:.3f} (GAFF2) -> "
          f"{m['force_rmse_refit'] * FORCE_TO_KCAL_A:.3f} kcal/mol/A on these frames")
    return 0
