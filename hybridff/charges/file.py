"""User-supplied charges read from the molecule itself (SDF property or mol2 charge column)."""

from __future__ import annotations

import numpy as np
from rdkit import Chem

from hybridff.charges import register_charge_method
from hybridff.exceptions import ChargeAssignmentError

#: SDF data fields searched, in order, for per-atom charges (whitespace-separated list).
SDF_CHARGE_PROPERTIES = ("atom.dprop.PartialCharge", "PartialCharges", "partial_charges", "charges")


def _mol2_without_charges(mol: Chem.Mol) -> bool:
    """A mol2 whose header says NO_CHARGES (RDKit then gives every atom a charge of 0)."""
    return (mol.HasProp("_TriposChargeType")
            and mol.GetProp("_TriposChargeType").strip().upper() == "NO_CHARGES")


@register_charge_method("file")
def file_charges(mol: Chem.Mol, charges=None, prop: str | None = None) -> np.ndarray:
    """Charges given with the molecule.

    Sources, in order: the ``charges`` argument (sequence of floats); per-atom
    ``PartialCharge``/``_TriposPartialCharge`` properties (SDF atom properties, mol2 files);
    a whitespace-separated molecule property (``prop``, or one of ``SDF_CHARGE_PROPERTIES``).
    """
    n = mol.GetNumAtoms()
    if charges is not None:
        q = np.asarray(charges, dtype=np.float64)
    elif all(a.HasProp("PartialCharge") for a in mol.GetAtoms()):
        q = np.array([a.GetDoubleProp("PartialCharge") for a in mol.GetAtoms()])
    elif (all(a.HasProp("_TriposPartialCharge") for a in mol.GetAtoms())
          and not _mol2_without_charges(mol)):
        q = np.array([a.GetDoubleProp("_TriposPartialCharge") for a in mol.GetAtoms()])
    else:
        names = [prop] if prop else list(SDF_CHARGE_PROPERTIES)
        found = next((p for p in names if mol.HasProp(p)), None)
        if found is None:
            raise ChargeAssignmentError(
                "charge method 'file': the molecule carries no charges; give a mol2 with a charge "
                f"column or an SDF with one of the properties {', '.join(names)} "
                "(whitespace-separated, one value per atom, in atom order)"
            )
        try:
            q = np.array([float(x) for x in mol.GetProp(found).split()])
        except ValueError as exc:
            raise ChargeAssignmentError(f"SDF property {found!r} is not a list of numbers: {exc}") from exc
    if q.shape != (n,):
        raise ChargeAssignmentError(
            f"charge method 'file': {q.size} charges given for a molecule of {n} atoms "
            "(hydrogens included); one charge per atom, in atom order"
        )
    return q
