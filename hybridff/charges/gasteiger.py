"""Gasteiger-Marsili charges from RDKit: fast, crude, always available."""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdPartialCharges

from hybridff.charges import register_charge_method
from hybridff.exceptions import ChargeAssignmentError


@register_charge_method("gasteiger")
def gasteiger_charges(mol: Chem.Mol, iterations: int = 12) -> np.ndarray:
    """Gasteiger-Marsili charges (e) computed by RDKit."""
    work = Chem.Mol(mol)
    rdPartialCharges.ComputeGasteigerCharges(work, nIter=iterations, throwOnParamFailure=True)
    q = np.array([a.GetDoubleProp("_GasteigerCharge") for a in work.GetAtoms()])
    if not np.all(np.isfinite(q)):
        bad = int(np.argwhere(~np.isfinite(q))[0][0])
        raise ChargeAssignmentError(
            f"RDKit has no Gasteiger parameters for atom {bad} ({work.GetAtomWithIdx(bad).GetSymbol()});"
            " use --charges am1bcc or ml"
        )
    return q
