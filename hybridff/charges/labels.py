"""The AM1-BCC label format of the ML charge model (``hybridff/resources/am1bcc_labels.jsonl.gz``).

Each record holds a SMILES with explicit hydrogens and one charge per atom in that SMILES'
atom order; this module reads such a SMILES back with the hydrogens kept as atoms.
"""

from __future__ import annotations

from rdkit import Chem


def mol_from_label_smiles(smiles: str) -> Chem.Mol:
    """Parse a label SMILES keeping its explicit hydrogens as atoms, in SMILES order."""
    params = Chem.SmilesParserParams()
    params.removeHs = False
    mol = Chem.MolFromSmiles(smiles, params)
    if mol is None:
        raise ValueError(f"unparseable label SMILES {smiles!r}")
    return mol
