"""Partial charges as files: CSV (one row per atom), SDF (the atom property
``PartialCharge``, which RDKit writes as ``atom.dprop.PartialCharge`` and the OpenFF toolkit
reads back) and Tripos mol2 (the charge column). Each function returns the file's text."""

from __future__ import annotations

import io

import numpy as np
from rdkit import Chem

#: file formats by suffix
FORMATS = (".csv", ".sdf", ".mol2")


def charges_csv(mol: Chem.Mol, charges: np.ndarray) -> str:
    """CSV with one row per atom: index, name, element, charge (e)."""
    from hybridff.io.molecule import atom_names

    lines = ["index,name,element,charge"]
    names = atom_names(mol)
    for i, (atom, q) in enumerate(zip(mol.GetAtoms(), charges, strict=True)):
        lines.append(f"{i},{names[i]},{atom.GetSymbol()},{q:.6f}")
    return "\n".join(lines) + "\n"


def charges_sdf(mol: Chem.Mol, charges: np.ndarray, method: str) -> str:
    """SDF with the charges as the atom property ``PartialCharge`` (RDKit atom-property list)
    and the method as ``hybridff_charge_method``."""
    out = Chem.Mol(mol)
    for atom, q in zip(out.GetAtoms(), charges, strict=True):
        atom.SetDoubleProp("PartialCharge", float(q))
    Chem.CreateAtomDoublePropertyList(out, "PartialCharge")
    out.SetProp("hybridff_charge_method", method)
    text = io.StringIO()
    writer = Chem.SDWriter(text)
    writer.write(out)
    writer.close()
    return text.getvalue()


def charges_mol2(mol: Chem.Mol, charges: np.ndarray, method: str) -> str:
    """Tripos mol2 with the charges in the atom charge column (SYBYL-like atom types)."""
    from hybridff.io.molecule import atom_names

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
    return "\n".join(lines)


def charges_text(mol: Chem.Mol, charges: np.ndarray, method: str, suffix: str) -> str:
    """The charge file of format ``suffix`` (one of :data:`FORMATS`)."""
    if suffix == ".csv":
        return charges_csv(mol, charges)
    if suffix == ".sdf":
        return charges_sdf(mol, charges, method)
    if suffix == ".mol2":
        return charges_mol2(mol, charges, method)
    raise ValueError(f"unknown charge file format {suffix!r}; use one of {', '.join(FORMATS)}")


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
