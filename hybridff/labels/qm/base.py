"""The interface every QM engine implements."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from hybridff import units
from hybridff.elements import DIPOLE_ORIGIN, centre_of_mass  # noqa: F401  (old home)
from hybridff.exceptions import OptionalDependencyError


@dataclass
class QMResult:
    """Energy (kJ/mol) and forces (N, 3; kJ/mol/nm) of one conformation; ``dipole`` (3,; e*nm,
    about the centre of mass, :data:`DIPOLE_ORIGIN`) when the engine gives one."""

    energy: float
    forces: np.ndarray
    dipole: np.ndarray | None = None


class QMEngine:
    """Base class: ``compute(numbers, positions_nm, charge, multiplicity) -> QMResult``.

    An engine implements :meth:`raw` in the program's own atomic units (Hartree, Bohr);
    :meth:`compute` converts at this one place to kJ/mol and kJ/mol/nm.
    """

    #: registry name
    name = ""

    def raw(self, numbers: np.ndarray, positions_bohr: np.ndarray, charge: int = 0,
            multiplicity: int = 1) -> tuple[float, np.ndarray]:
        """Energy (Hartree) and gradient (N, 3; Hartree/Bohr) from the program itself: an
        engine implements this or :meth:`raw_with_dipole`."""
        if type(self).raw_with_dipole is QMEngine.raw_with_dipole:
            raise NotImplementedError(f"{type(self).__name__} implements neither raw nor "
                                      "raw_with_dipole")
        energy, gradient, _ = self.raw_with_dipole(numbers, positions_bohr, charge, multiplicity)
        return energy, gradient

    def raw_with_dipole(self, numbers: np.ndarray, positions_bohr: np.ndarray, charge: int = 0,
                        multiplicity: int = 1) -> tuple[float, np.ndarray, np.ndarray | None]:
        """:meth:`raw` plus the dipole moment (3,; e*Bohr, about the coordinate origin), or
        None for an engine that gives none (this default)."""
        energy, gradient = self.raw(numbers, positions_bohr, charge, multiplicity)
        return energy, gradient, None

    def compute(
        self,
        numbers: np.ndarray,
        positions_nm: np.ndarray,
        charge: int = 0,
        multiplicity: int = 1,
    ) -> QMResult:
        """Energy (kJ/mol), forces (kJ/mol/nm) and dipole (e*nm, about the centre of mass) at
        positions in nm."""
        bohr = np.asarray(positions_nm, dtype=np.float64) / units.BOHR_TO_NM
        energy, gradient, dipole = self.raw_with_dipole(numbers, bohr, charge, multiplicity)
        if dipole is not None:
            # d about point P = d about the origin - Q P (the programs' dipoles are about 0)
            com = centre_of_mass(numbers, bohr)
            dipole = (np.asarray(dipole, dtype=np.float64) - charge * com) * units.E_BOHR_TO_E_NM
        return QMResult(
            energy=energy * units.HARTREE_TO_KJ_PER_MOL,
            forces=-gradient * units.HARTREE_PER_BOHR_TO_KJ_PER_MOL_NM,
            dipole=dipole,
        )

    def describe(self) -> dict[str, Any]:
        """Level of theory and program versions (stored with the labels)."""
        return {"method": self.name}


def optional_import(module: str, pip_name: str, what: str) -> ModuleType:
    """Import an optional dependency or raise an error carrying the install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise OptionalDependencyError(
            f"{what} needs the optional package {pip_name!r}: pip install {pip_name} "
            "(or pip install 'hybridff[qm]')"
        ) from exc
