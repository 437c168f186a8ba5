"""Partial-charge methods, a registry by name.

A method is a function ``(mol: rdkit.Chem.Mol, **options) -> numpy.ndarray`` (charges in e,
one per atom, in the molecule's atom order). Register one with :func:`register_charge_method`.
:func:`assign_charges` looks the method up, calls it, and enforces that the total equals the
molecule's formal charge to 1e-6 e (a residual above ``MAX_ROUNDING_RESIDUAL`` is an error,
a smaller one — rounding in external programs' output — is spread evenly over the atoms).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

import numpy as np
from rdkit import Chem

from hybridff.exceptions import ChargeAssignmentError, UnknownNameError

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

_REGISTRY: dict[str, ChargeFunction] = {}
#: built-in methods, imported on first use: name -> module that registers it
_BUILTIN_MODULES = {
    "gasteiger": "hybridff.charges.gasteiger",
    "file": "hybridff.charges.file",
    "am1bcc": "hybridff.charges.am1bcc",
    "ml": "hybridff.charges.ml",
}


def register_charge_method(name: str) -> Callable[[ChargeFunction], ChargeFunction]:
    """Decorator registering a charge function under ``name``."""

    def decorator(func: ChargeFunction) -> ChargeFunction:
        _REGISTRY[name] = func
        return func

    return decorator


def available_charge_methods() -> list[str]:
    """Names of all charge methods (built-in and registered)."""
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))


def get_charge_method(name: str) -> ChargeFunction:
    """The charge function registered as ``name``; unknown names list the known ones."""
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _REGISTRY:
        raise UnknownNameError(
            f"unknown charge method {name!r}; known methods: {', '.join(available_charge_methods())}"
        )
    return _REGISTRY[name]


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
