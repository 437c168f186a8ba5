"""Reading and validating small molecules.

Everything enters hybridff as an RDKit ``Mol`` with explicit hydrogens, sanitized, with
unique atom names and (where needed) a 3D conformer. Accepted inputs: RDKit molecules,
openff-toolkit ``Molecule`` objects, SMILES strings, and SDF / MOL / mol2 / SMI files.
Files are read by :mod:`hybridff.io.formats`, molecules checked by :mod:`hybridff.io.validation`;
this module's names (theirs included) are what ``hybridff.molecule`` held.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from rdkit import Chem
from rdkit.Chem import AllChem

from hybridff.exceptions import (
    MoleculeInputError,
)
from hybridff.io.formats import (  # noqa: F401  (hybridff.molecule's names, kept)
    _GAFF_FIRST_LETTER_ELEMENTS,
    _GAFF_TWO_LETTER_ELEMENTS,
    _RDKIT_NOISE,
    MOL2_BOND_TYPES,
    MOLECULE_SUFFIXES,
    SDF_ADVICE,
    _check_mol2_record,
    _is_gaff_typed,
    _mol2_rows,
    _rdkit_errors,
    _read_file,
    _read_gaff_mol2_record,
    _read_mol2,
    _read_sdf,
    _valence_advice,
    gaff_element,
    rdkit_refused,
)
from hybridff.io.validation import (  # noqa: F401  (hybridff.molecule's names, kept)
    MIN_ATOM_DISTANCE_ANGSTROM,
    atom_label,
    check_coordinates,
    find_overlaps,
    validate_molecule,
)

logger = logging.getLogger(__name__)


def _names_a_file(text: str) -> bool:
    """Whether a string given as a molecule is a file name rather than a SMILES: it has a
    molecule file's suffix or names an existing path (a SMILES too long to be a file name,
    over 255 characters, is no path)."""
    if not text.strip():
        return False
    try:
        return Path(text).suffix.lower() in MOLECULE_SUFFIXES or Path(text).exists()
    except (OSError, ValueError):  # 'file name too long', embedded NUL
        return False


def _smiles_errors(capture: Any) -> str:
    """RDKit's reason for refusing a SMILES, short: where the parse failed (with the 20
    characters before it) or the valence / aromaticity complaint, without the SMILES echoed."""
    lines = [re.sub(r"^\[[0-9:]+\]\s*", "", line).rstrip()
             for line in capture.messages.splitlines()]
    out: list[str] = []
    for k, line in enumerate(lines):
        text = line.replace("SMILES Parse Error: ", "").strip()
        if (not text or set(text) <= {"~", "^"} or text.startswith("syntax error while parsing")
                or text.startswith("Failed parsing SMILES") or (k and lines[k - 1].rstrip()
                                                                 .endswith(":"))):
            continue
        if text.endswith(":") and k + 1 < len(lines):
            text = f"{text} {lines[k + 1].strip()}"
        if text not in out:
            out.append(text)
    return "; ".join(out)[:300]


def smiles_to_mol(smiles: str) -> Chem.Mol:
    """An RDKit molecule (implicit hydrogens) from a SMILES string; a clear error, with
    RDKit's reason, when it does not parse."""
    from rdkit import rdBase

    with rdBase.CaptureErrorLog() as capture:
        m = Chem.MolFromSmiles(smiles.strip()) if smiles.strip() else None
    if m is None:
        said = _smiles_errors(capture)
        shown = smiles if len(smiles) <= 80 else f"{smiles[:60]}... ({len(smiles)} characters)"
        raise MoleculeInputError(
            f"{shown!r} is neither an existing molecule file nor a SMILES RDKit can parse"
            + (f" (RDKit: {said})" if said else "")
            + "; check the file name, or the SMILES (brackets, ring closures, charges)")
    return m


def _from_object(obj: Any) -> list[tuple[Chem.Mol, str | None]]:
    if isinstance(obj, Chem.Mol):
        return [(Chem.Mol(obj), None)]
    if type(obj).__module__.startswith("openff."):
        return [(obj.to_rdkit(), None)]
    if isinstance(obj, Path):
        return _read_file(obj)
    if isinstance(obj, str):
        if _names_a_file(obj):
            return _read_file(Path(obj))
        return [(smiles_to_mol(obj), None)]
    raise MoleculeInputError(
        f"cannot read a molecule from {type(obj).__name__}; give an RDKit Mol, an openff "
        "Molecule, a SMILES string or an SDF/mol2/SMI path"
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


def _warn_added_hydrogens(mol: Chem.Mol, n_before: int, where: str | None) -> None:
    """Warn that hydrogens were added to a molecule that lists its own (atoms ``n_before``
    onwards are the added ones)."""
    added: dict[int, int] = {}
    for atom in mol.GetAtoms():
        if atom.GetIdx() >= n_before:
            heavy = atom.GetNeighbors()[0].GetIdx()
            added[heavy] = added.get(heavy, 0) + 1
    named = ", ".join(f"{atom_label(mol, i)}: {n} H" for i, n in sorted(added.items()))
    logger.warning(
        "%sthe input lists its hydrogens, yet %d atom(s) have fewer bonds than their neutral "
        "valence: hydrogens were added, changing the molecule: %s. If these atoms are charged "
        "(O- with one bond, N+ with four), give their charges in the file (SDF: the 'M  CHG' "
        "line); if hydrogens are missing, add them to the file",
        f"{where}: " if where else "", len(added), named)


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


def keep_largest_fragment(mol: Chem.Mol, where: str | None = None) -> Chem.Mol:
    """The largest organic fragment of a salt or mixture (``Cl.CN``, ``CC(=O)[O-].[Na+]``),
    with a warning naming the fragments removed and the net charge kept; a molecule of one
    fragment is returned as it is.

    The choice is RDKit's ``LargestFragmentChooser`` (organic fragments first, then the most
    atoms, hydrogens included); atom properties and coordinates of the kept atoms stay.
    """
    from rdkit.Chem.MolStandardize import rdMolStandardize

    if len(Chem.GetMolFrags(mol)) < 2:
        return mol
    kept = rdMolStandardize.LargestFragmentChooser(preferOrganic=True).choose(mol)
    kept_smiles = Chem.MolToSmiles(Chem.RemoveHs(kept, sanitize=False))
    removed = [Chem.MolToSmiles(Chem.RemoveHs(f, sanitize=False))
               for f in Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)]
    removed.remove(next((r for r in removed if r == kept_smiles), removed[0]))
    total = int(Chem.GetFormalCharge(mol))
    net = int(Chem.GetFormalCharge(kept))
    organic = any(a.GetAtomicNum() == 6 for a in kept.GetAtoms())
    logger.warning(
        "%s%s has %d fragments: kept the largest%s one, %s (net charge %+d e; the input's "
        "was %+d e), removed %s; give a fragment on its own to parameterize it, and add "
        "counter-ions to a simulation box with Modeller.addSolvent(..., neutralize=True)",
        f"{where}: " if where else "", Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False)),
        len(removed) + 1, " organic" if organic else "", kept_smiles, net, total,
        ", ".join(removed))
    return kept


def prepare(mol: Chem.Mol, conformer: bool = True, where: str | None = None) -> Chem.Mol:
    """Sanitize, add explicit hydrogens (with coordinates), validate, name atoms.

    A molecule that already lists hydrogens but lacks some RDKit's valence rules expect
    (often an O- or N+ whose charge the file does not give) gets them with a warning naming
    the atoms (``where``: the file and record, for the message).
    """
    mol = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit raises several unrelated types here
        raise MoleculeInputError(f"RDKit could not sanitize the molecule: {exc}") from exc
    n_before = mol.GetNumAtoms()
    listed_hydrogens = any(a.GetAtomicNum() == 1 for a in mol.GetAtoms())
    mol = Chem.AddHs(mol, addCoords=mol.GetNumConformers() > 0)
    if listed_hydrogens and mol.GetNumAtoms() != n_before:
        _warn_added_hydrogens(mol, n_before, where)
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
    return [_prepared(mol, where, conformer) for mol, where in _from_object(source)]


def _prepared(mol: Chem.Mol, where: str | None, conformer: bool = True) -> Chem.Mol:
    """The largest fragment of ``mol``, prepared; errors name ``where`` (file and record)."""
    try:
        mol = keep_largest_fragment(mol, where)
        return prepare(mol, conformer=conformer, where=where)
    except MoleculeInputError as exc:
        if where is None:
            raise
        raise type(exc)(f"{where}: {exc}") from exc  # say which file and record


def load_record(text: str, kind: str, where: str, conformer: bool = True) -> Chem.Mol:
    """One record of a molecule file, read and prepared as :func:`load_molecules` would:
    ``kind`` ``"sdf"`` (the record's text, its data items kept as properties) or ``"smi"``
    (a SMILES, optionally followed by a name). ``where`` ('file, record k (line n)') starts
    every error message. Lets many-molecule work read each record on its own, so that one
    bad record fails alone."""
    from rdkit import rdBase

    with rdBase.CaptureErrorLog() as capture:
        if kind == "sdf":
            supplier = Chem.SDMolSupplier()
            supplier.SetData(text, sanitize=True, removeHs=False)
            mol = next(iter(supplier), None)
        elif kind == "smi":
            fields = text.split()
            mol = Chem.MolFromSmiles(fields[0]) if fields else None
            if mol is not None and len(fields) > 1:
                mol.SetProp("_Name", fields[1])
        else:
            raise ValueError(f"unknown record kind {kind!r}; expected 'sdf' or 'smi'")
    if mol is None:
        if kind == "smi":
            said = _smiles_errors(capture)
            raise MoleculeInputError(
                f"{where}: unparseable SMILES {text.split()[0] if text.split() else ''!r}"
                + (f" (RDKit: {said})" if said else "")
                + "; check the brackets, ring closures and charges")
        raise rdkit_refused(where, capture, SDF_ADVICE)
    return _prepared(mol, where, conformer)


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
