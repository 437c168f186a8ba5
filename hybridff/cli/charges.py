"""Compute partial charges of a molecule and write them as CSV, SDF or mol2.

Methods: ml (graph network trained on AM1-BCC, total charge exact), am1bcc (AmberTools
antechamber/sqm), gasteiger (RDKit), file (charges carried by the input). Without -o the
charges are printed as a table.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from rdkit import Chem

from hybridff.cli.argtypes import output_file, positive
from hybridff.exceptions import MoleculeInputError
from hybridff.fileio import atomic_write_text

HELP = "compute partial charges (ml, am1bcc, gasteiger, file)"
METHODS = ("ml", "am1bcc", "gasteiger", "file")
OUTPUT_SUFFIXES = (".csv", ".sdf", ".mol2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hybridff charges``."""
    parser.add_argument("molecule", help="molecule file (SDF, MOL, mol2, SMI) or a SMILES string")
    parser.add_argument("--method", choices=METHODS, default="ml", help="charge method (default: ml)")
    parser.add_argument("-o", "--output", type=output_file, default=None,
                        help="output file: .csv (atom index, name, element, charge), .sdf or .mol2")
    parser.add_argument("--model", default=None, help="ml: a charge model file other than the shipped one")
    parser.add_argument("--timeout", type=positive("a timeout", " s"), default=None,
                        help="am1bcc: seconds before giving up")


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
    from hybridff.molecule import atom_names

    lines = ["index,name,element,charge"]
    names = atom_names(mol)
    for i, (atom, q) in enumerate(zip(mol.GetAtoms(), charges, strict=True)):
        lines.append(f"{i},{names[i]},{atom.GetSymbol()},{q:.6f}")
    text = "\n".join(lines) + "\n"
    if path is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(path, text)


def write_sdf(path: Path, mol: Chem.Mol, charges: np.ndarray, method: str) -> None:
    """SDF with the charges as the atom property ``PartialCharge`` (RDKit atom-property list)."""
    out = Chem.Mol(mol)
    for atom, q in zip(out.GetAtoms(), charges, strict=True):
        atom.SetDoubleProp("PartialCharge", float(q))
    Chem.CreateAtomDoublePropertyList(out, "PartialCharge")
    out.SetProp("hybridff_charge_method", method)
    text = io.StringIO()
    writer = Chem.SDWriter(text)
    writer.write(out)
    writer.close()
    atomic_write_text(path, text.getvalue())


def write_mol2(path: Path, mol: Chem.Mol, charges: np.ndarray, method: str) -> None:
    """Tripos mol2 with the charges in the atom charge column (SYBYL-like atom types)."""
    from hybridff.molecule import atom_names

    names = atom_names(mol)
    pos = mol.GetConformer().GetPositions()
    bonds = list(mol.GetBonds())
    lines = ["@<TRIPOS>MOLECULE", mol.GetProp("_Name") if mol.HasProp("_Name") else "MOL",
             f"{mol.GetNumAtoms()} {len(bonds)} 1 0 0", "SMALL", "USER_CHARGES",
             f"charges: hybridff {method}", "", "@<TRIPOS>ATOM"]
    for i, atom in enumerate(mol.GetAtoms()):
        x, y, z = pos[i]
        lines.append(f"{i + 1:7d} {names[i]:<8s}{x:10.4f}{y:10.4f}{z:10.4f} {_sybyl(atom):<6s}"
                     f"   1 MOL {charges[i]:12.6f}")
    lines.append("@<TRIPOS>BOND")
    for k, b in enumerate(bonds, start=1):
        order = ("ar" if b.GetIsAromatic() else
                 {Chem.BondType.DOUBLE: "2", Chem.BondType.TRIPLE: "3"}.get(b.GetBondType(), "1"))
        lines.append(f"{k:6d}{b.GetBeginAtomIdx() + 1:6d}{b.GetEndAtomIdx() + 1:6d} {order}")
    lines += ["@<TRIPOS>SUBSTRUCTURE", "     1 MOL         1 GROUP             0 ****  ****    0", ""]
    atomic_write_text(path, "\n".join(lines))


def _sybyl(atom: Chem.Atom) -> str:
    sym = atom.GetSymbol()
    if sym in ("C", "N", "O", "S", "P"):
        if atom.GetIsAromatic() and sym in ("C", "N"):
            return f"{sym}.ar"
        hyb = atom.GetHybridization()
        suffix = {Chem.HybridizationType.SP: "1", Chem.HybridizationType.SP2: "2",
                  Chem.HybridizationType.SP3: "3"}.get(hyb, "3")
        if sym == "N" and atom.GetFormalCharge() == 1 and hyb == Chem.HybridizationType.SP3:
            return "N.4"
        if sym == "P":
            return "P.3"
        return f"{sym}.{suffix}"
    return sym


def run(args: argparse.Namespace) -> int:
    """Compute and write the charges."""
    from hybridff.charges import assign_charges
    from hybridff.molecule import load_molecule

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
