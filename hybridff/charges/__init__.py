"""Partial-charge methods, a registry by name.

A method is a function ``(mol: rdkit.Chem.Mol, **options) -> numpy.ndarray`` (charges in e,
one per atom, in the molecule's atom order). Register one with :func:`register_charge_method`,
or from another package through the ``hybridff.charge_methods`` entry-point group
(docs/extending.md).
:func:`assign_charges` looks the method up, calls it, and enforces that the total equals the
molecule's formal charge to 1e-6 e (a residual above ``MAX_ROUNDING_RESIDUAL`` is an error,
a smaller one — rounding in external programs' output — is spread evenly over the atoms).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from rdkit import Chem

from hybridff.exceptions import ChargeAssignmentError
from hybridff.registry import Registry

logger = logging.getLogger(__name__)

ChargeFunction = Callable[..., np.ndarray]

#: Largest |sum(q) - formal charge| accepted as rounding noise and spread evenly (e).
MAX_ROUNDING_RESIDUAL = 1e-3
#: The same for charges a user gives (``file``): files written with a few decimals, such as
#: antechamber's mol2 (4 decimals, totals off by up to about 0.001-0.005 e), are normalized
#: with a warning that states the residual
MAX_USER_ROUNDING_RESIDUAL = 1e-2
#: Tolerance on the total charge after assignment (e).
TOTAL_CHARGE_TOLERANCE = 1e-6

#: name -> charge function; built-in methods are imported on first use, other packages add
#: theirs through the ``hybridff.charge_methods`` entry-point group
CHARGE_METHODS: Registry[ChargeFunction] = Registry("charge method", "hybridff.charge_methods", {
    "gasteiger": "hybridff.charges.gasteiger:gasteiger_charges",
    "file": "hybridff.charges.file:file_charges",
    "am1bcc": "hybridff.charges.am1bcc:am1bcc_charges",
    "ml": "hybridff.charges.ml:ml_charges",
})


def register_charge_method(name: str) -> Callable[[ChargeFunction], ChargeFunction]:
    """Decorator registering a charge function under ``name``."""
    return CHARGE_METHODS.register(name)


def available_charge_methods() -> list[str]:
    """Names of all charge methods (built-in, registered and from entry points)."""
    return sorted(CHARGE_METHODS)


def get_charge_method(name: str) -> ChargeFunction:
    """The charge function registered as ``name``; unknown names list the known ones."""
    return CHARGE_METHODS[name]


def enforce_total_charge(charges: np.ndarray, total: float, method: str = "") -> np.ndarray:
    """Return charges whose sum is ``total`` to 1e-6 e; refuse a residual beyond rounding."""
    q = np.asarray(charges, dtype=np.float64).copy()
    residual = float(q.sum()) - total
    limit = MAX_USER_ROUNDING_RESIDUAL if method == "file" else MAX_ROUNDING_RESIDUAL
    if abs(residual) > limit:
        raise ChargeAssignmentError(
            f"charge method {method!r} gave a total charge of {q.sum():.6f} e but the molecule's "
            f"formal charge is {total:+.0f} e (off by more than the {limit} e of rounding); "
            "check the formal charges of the input"
        )
    if method == "file" and abs(residual) > TOTAL_CHARGE_TOLERANCE:
        logger.warning("the given charges total %.6f e, not the formal charge %+d e: the "
                       "residual %+.6f e (rounding) is spread evenly over the %d atoms",
                       q.sum(), round(total), residual, len(q))
    q -= residual / len(q)
    return q


def assign_charges(mol: Chem.Mol, method: str = "gasteiger", **options) -> np.ndarray:
    """Partial charges (e) of ``mol`` by the named method, total equal to the formal charge."""
    func = get_charge_method(method)
    charges = np.asarray(func(mol, **options), dtype=np.float64)
    if charges.shape != (mol.GetNumAtoms(),):
        raise ChargeAssignmentError(
            f"charge method {method!r} returned {charges.shape} values for {mol.GetNumAtoms()} atoms"
        )
    if not np.all(np.isfinite(charges)):
        bad = int(np.argwhere(~np.isfinite(charges))[0][0])
        raise ChargeAssignmentError(f"charge method {method!r} gave a non-finite charge on atom {bad}")
    return enforce_total_charge(charges, Chem.GetFormalCharge(mol), method)
