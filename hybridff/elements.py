"""Element table: the elements hybridff supports and their properties (one home for this)."""

from __future__ import annotations

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
