"""The AM1-BCC label format of the ML charge model (``hybridff/resources/am1bcc_labels.jsonl.gz``).

Each record holds a SMILES with explicit hydrogens and one charge per atom in that SMILES'
atom order; this module reads such a SMILES back with the hydrogens kept as atoms.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from rdkit import Chem

from hybridff.exceptions import DataFormatError


def read_labels(path: str | os.PathLike) -> list[dict]:
    """Label records (key, smiles, charges) from a .jsonl or .jsonl.gz file, sorted by key; a
    key seen twice keeps its last record, and lines that are not JSON (cut by a kill) are skipped."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    records = {}
    with opener(path, "rt") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            records[rec["key"]] = {k: rec[k] for k in ("key", "smiles", "charges")}
    return [records[k] for k in sorted(records)]


def mol_from_label_smiles(smiles: str) -> Chem.Mol:
    """Parse a label SMILES keeping its explicit hydrogens as atoms, in SMILES order."""
    params = Chem.SmilesParserParams()
    params.removeHs = False
    mol = Chem.MolFromSmiles(smiles, params)
    if mol is None:
        raise DataFormatError(f"unparseable label SMILES {smiles!r}: the label file is damaged")
    return mol


def indexed_smiles(mol: Chem.Mol) -> tuple[str, list[int]]:
    """SMILES with explicit H atoms, and the atom indices of ``mol`` in the SMILES' atom order."""
    smi = Chem.MolToSmiles(mol, allHsExplicit=False, canonical=True)
    order = list(mol.GetPropsAsDict(includePrivate=True, includeComputed=True)["_smilesAtomOutputOrder"])
    return smi, order


#: Largest charge difference (e) allowed between resonance-equivalent terminal atoms of a label.
EQUIVALENT_ATOM_TOLERANCE = 0.1


def label_problem(mol: Chem.Mol, charges, tolerance: float = EQUIVALENT_ATOM_TOLERANCE) -> str | None:
    """Why an AM1-BCC label looks broken, or ``None``.

    Terminal, H-free atoms of one element on one centre (the O's of nitro, carboxylate,
    sulfonate, phosphate groups) are equivalent by resonance, and AM1-BCC gives them equal
    charges when antechamber perceives the delocalised bond. Where its bond-type perception
    fails (seen on some nitro groups: the two O differ by 0.28 e and the N is off by the same),
    the label is an artefact of the tool, not chemistry; such records should not be learned.
    """
    for atom in mol.GetAtoms():
        groups: dict[str, list[int]] = {}
        for nb in atom.GetNeighbors():
            if nb.GetDegree() == 1 and nb.GetAtomicNum() != 1:
                groups.setdefault(nb.GetSymbol(), []).append(nb.GetIdx())
        for symbol, idx in groups.items():
            if len(idx) > 1:
                q = [float(charges[i]) for i in idx]
                if max(q) - min(q) > tolerance:
                    return (
                        f"resonance-equivalent {symbol} atoms {idx} on {atom.GetSymbol()}"
                        f"{atom.GetIdx()} differ by {max(q) - min(q):.3f} e"
                    )
    return None
