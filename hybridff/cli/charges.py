"""Compute partial charges of a molecule and write them as CSV, SDF or mol2.

Methods: ml (graph network trained on AM1-BCC, total charge exact), am1bcc (AmberTools
antechamber/sqm), gasteiger (RDKit), file (charges carried by the input). Without -o the
charges are printed as a table. With -o FOLDER/ each molecule of an SDF or SMI file gets its
own FOLDER/NAME.sdf (charges as the atom property PartialCharge; --format csv or mol2 instead),
written as it completes; failed molecules are listed in FOLDER/failures.jsonl and the run
goes on; a re-run skips the files already there; --workers N / --scheduler ADDRESS run one
task per molecule on Dask (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from rdkit import Chem

from hybridff.charges.output import charges_csv, charges_mol2, charges_sdf
from hybridff.cli.argtypes import positive, registered
from hybridff.cli.batch import (
    add_batch_arguments,
    is_batch,
    output_target,
    resolved,
    run_batch_command,
)
from hybridff.exceptions import InvalidOptionError, MoleculeInputError
from hybridff.io.files import atomic_write_text

HELP = "compute partial charges (ml, am1bcc, gasteiger, file)"
#: the built-in charge methods, named in --help; ``--method`` takes any name of
#: :data:`hybridff.charges.CHARGE_METHODS`, those other packages add included
METHODS = ("ml", "am1bcc", "gasteiger", "file")
#: the registry ``--method`` (and the other commands' ``--charges``) is checked against
CHARGE_REGISTRY = "hybridff.charges:CHARGE_METHODS"
OUTPUT_SUFFIXES = (".csv", ".sdf", ".mol2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hybridff charges``."""
    parser.add_argument("molecule", help="molecule file (SDF, MOL, mol2, SMI) or a SMILES string")
    parser.add_argument("--method", type=registered(CHARGE_REGISTRY), default="ml", metavar="METHOD",
                        help=f"charge method: {', '.join(METHODS)} or one a plugin adds "
                        "(default: ml)")
    parser.add_argument("-o", "--output", type=output_target, default=None,
                        help="output file: .csv (atom index, name, element, charge), .sdf or "
                        ".mol2; or a folder (ending in /) for one file per molecule")
    parser.add_argument("--format", choices=("sdf", "csv", "mol2"), default=None,
                        help="with -o FOLDER/: the format of each molecule's file (default: sdf)")
    parser.add_argument("--model", default=None, help="ml: a charge model file other than the shipped one")
    parser.add_argument("--timeout", type=positive("a timeout", " s"), default=None,
                        help="am1bcc: seconds before giving up")
    add_batch_arguments(parser)


def _options(args: argparse.Namespace) -> dict:
    opts: dict = {}
    if args.model is not None:
        if args.method != "ml":
            raise MoleculeInputError("--model applies to --method ml only")
        opts["model"] = args.model
    if args.timeout is not None:
        if args.method != "am1bcc":
            raise MoleculeInputError("--timeout applies to --method am1bcc only")
        opts["timeout"] = args.timeout
    return opts


def write_csv(path: Path | None, mol: Chem.Mol, charges: np.ndarray) -> None:
    """CSV with one row per atom (to stdout when ``path`` is None)."""
    text = charges_csv(mol, charges)
    if path is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(path, text)


def write_sdf(path: Path, mol: Chem.Mol, charges: np.ndarray, method: str) -> None:
    """SDF with the charges as the atom property ``PartialCharge``."""
    atomic_write_text(path, charges_sdf(mol, charges, method))


def write_mol2(path: Path, mol: Chem.Mol, charges: np.ndarray, method: str) -> None:
    """Tripos mol2 with the charges in the atom charge column."""
    atomic_write_text(path, charges_mol2(mol, charges, method))


def run(args: argparse.Namespace) -> int:
    """Compute and write the charges."""
    from hybridff.charges import assign_charges
    from hybridff.io.molecule import load_molecule

    if is_batch(args):
        from hybridff.batch import ChargesJob

        opts = _options(args)
        if "model" in opts:
            opts["model"] = resolved(opts["model"])
        return run_batch_command(args, args.molecule, ChargesJob(
            args.method, f".{args.format or 'sdf'}", opts))
    if args.format is not None:
        raise InvalidOptionError("--format applies to -o FOLDER/ (one file per molecule); the "
                                 "format of a single output file follows its suffix")
    if args.output is not None and args.output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise MoleculeInputError(
            f"output {str(args.output)!r}: unknown format; use one of {', '.join(OUTPUT_SUFFIXES)}"
        )
    opts = _options(args)
    mol = load_molecule(args.molecule)
    t0 = time.perf_counter()
    charges = assign_charges(mol, args.method, **opts)
    seconds = time.perf_counter() - t0
    suffix = args.output.suffix.lower() if args.output is not None else None
    if suffix is None or suffix == ".csv":
        write_csv(args.output, mol, charges)
    elif suffix == ".sdf":
        write_sdf(args.output, mol, charges, args.method)
    else:
        write_mol2(args.output, mol, charges, args.method)
    print(f"{args.method} charges of {mol.GetNumAtoms()} atoms in {seconds:.3f} s, total "
          f"{charges.sum():+.6f} e" + (f"; wrote {args.output}" if args.output else ""),
          file=sys.stderr)
    return 0
