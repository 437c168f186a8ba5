"""Element table: the elements hybridff supports and their properties (one home for this)."""

from __future__ import annotations

import numpy as np

#: Elements the GAFF2-class force field and the shipped ML models cover.
SUPPORTED_ELEMENTS: tuple[str, ...] = ("H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I")

#: Atomic numbers of the supported elements.
ATOMIC_NUMBER: dict[str, int] = {
    "H": 1, "C": 6, "N": 7, "O": 8, "F": 9, "P": 15, "S": 16, "Cl": 17, "Br": 35, "I": 53,
}
SYMBOL: dict[int, str] = {z: s for s, z in ATOMIC_NUMBER.items()}
SUPPORTED_ATOMIC_NUMBERS: frozenset[int] = frozenset(ATOMIC_NUMBER.values())


def is_supported(atomic_number: int) -> bool:
    """Whether hybridff's force field covers this element."""
    return atomic_number in SUPPORTED_ATOMIC_NUMBERS


def atomic_masses(numbers) -> np.ndarray:
    """Standard atomic masses (Dalton) of atomic numbers, from OpenMM's element table."""
    from openmm import unit
    from openmm.app.element import Element

    return np.array([Element.getByAtomicNumber(int(z)).mass.value_in_unit(unit.dalton)
                     for z in numbers],
                    dtype=np.float64)


#: Where hybridff puts the origin of a molecule's dipole moment (it matters for charged
#: molecules only): the centre of mass of the conformation, with standard atomic masses.
DIPOLE_ORIGIN = "centre_of_mass"


def centre_of_mass(numbers, positions) -> np.ndarray:
    """Mass-weighted mean of ``positions`` (..., N, 3), in their own length unit."""
    masses = atomic_masses(numbers)
    return np.einsum("i,...ij->...j", masses, np.asarray(positions, dtype=np.float64)) / masses.sum()
