"""Reading and validating small molecules.

Everything enters hybridff as an RDKit ``Mol`` with explicit hydrogens, sanitized, with
unique atom names and (where needed) a 3D conformer. Accepted inputs: RDKit molecules,
openff-toolkit ``Molecule`` objects, SMILES strings, and SDF / MOL / mol2 / SMI files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

from hybridff.elements import SUPPORTED_ELEMENTS, is_supported
from hybridff.exceptions import (
    MoleculeInputError,
    UnsupportedChemistryError,
    UnsupportedElementError,
)

MOLECULE_SUFFIXES = (".sdf", ".mol", ".mol2", ".smi")


def atom_label(mol: Chem.Mol, index: int) -> str:
    """Human-readable label of an atom for error messages: 'atom 3 (C3, C)'."""
    atom = mol.GetAtomWithIdx(index)
    name = atom.GetProp("_hybridff_name") if atom.HasProp("_hybridff_name") else None
    name_part = f"{name}, " if name else ""
    return f"atom {index} ({name_part}{atom.GetSymbol()})"


def _read_file(path: Path) -> list[Chem.Mol]:
    if not path.exists():
        raise MoleculeInputError(f"molecule file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".sdf", ".mol"):
        supplier = Chem.SDMolSupplier(str(path), removeHs=False, sanitize=True)
        mols = []
        for i, m in enumerate(supplier):
            if m is None:
                raise MoleculeInputError(
                    f"{path}: record {i + 1} could not be parsed by RDKit (broken or truncated "
                    "SDF, or a valence RDKit rejects); check the file with a viewer"
                )
            mols.append(m)
        if not mols:
            raise MoleculeInputError(f"{path}: no molecule records found")
        return mols
    if suffix == ".mol2":
        m = Chem.MolFromMol2File(str(path), removeHs=False, sanitize=True)
        if m is None:
            raise MoleculeInputError(
                f"{path}: could not be parsed as mol2 (RDKit needs SYBYL atom types and bond "
                "orders; convert to SDF if this file comes from another tool)"
            )
        return [m]
    if suffix == ".smi":
        mols = []
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            m = Chem.MolFromSmiles(fields[0])
            if m is None:
                raise MoleculeInputError(f"{path}:{lineno}: unparseable SMILES {fields[0]!r}")
            if len(fields) > 1:
                m.SetProp("_Name", fields[1])
            mols.append(m)
        if not mols:
            raise MoleculeInputError(f"{path}: no SMILES found")
        return mols
    raise MoleculeInputError(
        f"{path}: unknown molecule format {suffix!r}; use one of {', '.join(MOLECULE_SUFFIXES)}"
    )


def _from_object(obj: Any) -> list[Chem.Mol]:
    if isinstance(obj, Chem.Mol):
        return [Chem.Mol(obj)]
    if type(obj).__module__.startswith("openff."):
        return [obj.to_rdkit()]
    if isinstance(obj, Path):
        return _read_file(obj)
    if isinstance(obj, str):
        if Path(obj).suffix.lower() in MOLECULE_SUFFIXES or Path(obj).exists():
            return _read_file(Path(obj))
        m = Chem.MolFromSmiles(obj)
        if m is None:
            raise MoleculeInputError(
                f"{obj!r} is neither an existing molecule file nor a SMILES RDKit can parse"
            )
        return [m]
    raise MoleculeInputError(
        f"cannot read a molecule from {type(obj).__name__}; give an RDKit Mol, an openff "
        "Molecule, a SMILES string or an SDF/mol2/SMI path"
    )


def validate_molecule(mol: Chem.Mol) -> None:
    """Raise a clear error for unsupported elements, radicals or non-finite coordinates."""
    for atom in mol.GetAtoms():
        if not is_supported(atom.GetAtomicNum()):
            raise UnsupportedElementError(
                f"{atom_label(mol, atom.GetIdx())}: element {atom.GetSymbol()} is not supported; "
                f"hybridff covers {', '.join(SUPPORTED_ELEMENTS)}"
            )
        if atom.GetNumRadicalElectrons():
            raise UnsupportedChemistryError(
                f"{atom_label(mol, atom.GetIdx())} has {atom.GetNumRadicalElectrons()} unpaired "
                "electron(s): radicals are not supported; add the missing hydrogens or fix the "
                "formal charges of the input"
            )
    for conf in mol.GetConformers():
        pos = conf.GetPositions()
        bad = np.argwhere(~np.isfinite(pos))
        if bad.size:
            i = int(bad[0][0])
            raise MoleculeInputError(
                f"{atom_label(mol, i)} has non-finite coordinates {pos[i].tolist()}; "
                "fix the input structure"
            )


def _assign_names(mol: Chem.Mol) -> None:
    """Give every atom a unique name (PDB names where present and unique, else element+count)."""
    names = []
    for atom in mol.GetAtoms():
        info = atom.GetPDBResidueInfo()
        names.append(info.GetName().strip() if info is not None else "")
    if any(not n for n in names) or len(set(names)) != len(names):
        counts: dict[str, int] = {}
        names = []
        for atom in mol.GetAtoms():
            sym = atom.GetSymbol()
            counts[sym] = counts.get(sym, 0) + 1
            names.append(f"{sym}{counts[sym]}")
    for atom, name in zip(mol.GetAtoms(), names, strict=True):
        atom.SetProp("_hybridff_name", name)


def atom_names(mol: Chem.Mol) -> list[str]:
    """Unique atom names of a molecule prepared by :func:`load_molecule`."""
    return [a.GetProp("_hybridff_name") for a in mol.GetAtoms()]


def ensure_conformer(mol: Chem.Mol, seed: int = 0xF00D) -> Chem.Mol:
    """Add a 3D conformer (ETKDG, seeded) when the molecule has none or only a 2D one."""
    has_3d = mol.GetNumConformers() > 0 and mol.GetConformer().Is3D()
    if has_3d:
        return mol
    mol.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise MoleculeInputError(
                f"could not generate a 3D conformer for {Chem.MolToSmiles(mol)}; give 3D input"
            )
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol)
    return mol


def prepare(mol: Chem.Mol, conformer: bool = True) -> Chem.Mol:
    """Sanitize, add explicit hydrogens (with coordinates), validate, name atoms."""
    mol = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit raises several unrelated types here
        raise MoleculeInputError(f"RDKit could not sanitize the molecule: {exc}") from exc
    n_before = mol.GetNumAtoms()
    mol = Chem.AddHs(mol, addCoords=mol.GetNumConformers() > 0)
    if mol.GetNumAtoms() != n_before:
        for atom in mol.GetAtoms():  # names of the input no longer unique/complete
            if atom.GetPDBResidueInfo() is not None and atom.GetIdx() >= n_before:
                atom.SetMonomerInfo(None)
    validate_molecule(mol)
    if conformer:
        mol = ensure_conformer(mol)
        validate_molecule(mol)
    _assign_names(mol)
    if not mol.HasProp("_Name") or not mol.GetProp("_Name").strip():
        mol.SetProp("_Name", "MOL")
    return mol


def load_molecules(source: Any, conformer: bool = True) -> list[Chem.Mol]:
    """Read one or more molecules from any accepted input and prepare them."""
    if isinstance(source, (list, tuple)):
        out: list[Chem.Mol] = []
        for item in source:
            out.extend(load_molecules(item, conformer=conformer))
        return out
    return [prepare(m, conformer=conformer) for m in _from_object(source)]


def load_molecule(source: Any, conformer: bool = True) -> Chem.Mol:
    """Read exactly one molecule; error if the input holds several."""
    mols = load_molecules(source, conformer=conformer)
    if len(mols) != 1:
        raise MoleculeInputError(f"expected one molecule, found {len(mols)} in {source!r}")
    return mols[0]


def formal_charge(mol: Chem.Mol) -> int:
    """Net formal charge of a molecule (e)."""
    return int(Chem.GetFormalCharge(mol))


def canonical_smiles(mol: Chem.Mol) -> str:
    """Canonical isomeric SMILES with explicit hydrogens removed (a content key)."""
    return Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=True)

