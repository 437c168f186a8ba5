"""Labelled frames checked against their molecule: the same element at every index, bonds
of the first frame not stretched far beyond a bond (atoms listed in another order), finite
coordinates and no overlapping atoms. Each failure is a
:class:`~hybridff.exceptions.DataFormatError` naming the frame and atom."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hybridff import units
from hybridff.elements import SYMBOL
from hybridff.exceptions import DataFormatError


def element_symbol(z: int) -> str:
    """Element symbol of any atomic number (not only the supported ones)."""
    z = int(z)
    if z in SYMBOL:
        return SYMBOL[z]
    try:
        from rdkit import Chem

        return Chem.GetPeriodicTable().GetElementSymbol(z)
    except Exception:  # RDKit raises a RuntimeError for numbers outside its table
        return f"Z={z}"


def _symbols(numbers: Sequence[int]) -> str:
    return " ".join(element_symbol(z) for z in numbers)


def check_atom_order(numbers: np.ndarray, expected: Sequence[int], where: str) -> None:
    """Raise a :class:`DataFormatError` naming the first index whose element differs."""
    expected = np.asarray(expected, dtype=int)
    if len(numbers) != len(expected):
        raise DataFormatError(
            f"{where}: {len(numbers)} atoms, but the molecule has {len(expected)}"
        )
    bad = np.nonzero(np.asarray(numbers, dtype=int) != expected)[0]
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(
            f"{where}: atom {i} is {element_symbol(numbers[i])} but the molecule's "
            f"atom {i} is {element_symbol(expected[i])}; frames must list atoms in "
            f"the molecule's order ({_symbols(expected)})"
        )


#: A bond of the molecule longer than this many times the sum of the two covalent radii in a
#: labelled frame means the frame lists atoms in another order (measured: at most 1.19 in
#: 1200 K paracetamol MD frames; two hydrogens on neighbouring atoms swapped give 2.0).
MAX_BOND_STRETCH = 1.5


def check_bond_lengths(positions_nm: np.ndarray, numbers: Sequence[int],
                       bonds: Sequence[tuple[int, int]], where: str) -> None:
    """Raise a :class:`DataFormatError` when a bond of the molecule is far too long in a frame.

    Same elements at every index but atoms listed in another order (two hydrogens swapped)
    pass :func:`check_atom_order`; their bonds then span non-bonded distances. The message
    names the atoms that look swapped when swapping one pair of the same element explains it.
    """
    from rdkit import Chem

    bonds = np.asarray(bonds, dtype=int).reshape(-1, 2)
    if not len(bonds):
        return
    numbers = np.asarray(numbers, dtype=int)
    xyz = np.asarray(positions_nm, dtype=float) * units.NM_TO_ANGSTROM
    table = Chem.GetPeriodicTable()
    radii = np.array([table.GetRcovalent(int(z)) for z in numbers])
    limit = MAX_BOND_STRETCH * (radii[bonds[:, 0]] + radii[bonds[:, 1]])

    def too_long(x: np.ndarray) -> np.ndarray:
        return np.linalg.norm(x[bonds[:, 0]] - x[bonds[:, 1]], axis=1) > limit

    long = np.nonzero(too_long(xyz))[0]
    if not long.size:
        return

    def label(i: int) -> str:
        return f"atom {i} ({element_symbol(numbers[i])})"

    lengths = np.linalg.norm(xyz[bonds[:, 0]] - xyz[bonds[:, 1]], axis=1)
    listed = ", ".join(f"{label(bonds[b, 0])}-{label(bonds[b, 1])} {lengths[b]:.2f} Angstrom"
                       for b in long[:4])
    involved = sorted({int(i) for b in long for i in bonds[b]})
    swapped = None
    for a, i in enumerate(involved):
        for j in involved[a + 1:]:
            if numbers[i] != numbers[j]:
                continue
            trial = xyz.copy()
            trial[[i, j]] = trial[[j, i]]
            if not too_long(trial).any():
                swapped = (i, j)
                break
        if swapped:
            break
    hint = (f"{label(swapped[0])} and {label(swapped[1])} look swapped"
            if swapped else "the frames list atoms in another order than the molecule")
    raise DataFormatError(
        f"{where}: {len(long)} bond(s) of the molecule are far longer than a bond "
        f"(over {MAX_BOND_STRETCH}x the covalent radii): {listed}; {hint}. The elements match "
        "index by index, so the QM data and the molecule number atoms differently: write the "
        "frames in the molecule's atom order (or give the molecule file the QM data came from)"
    )


def check_frame_geometry(positions_nm: np.ndarray, numbers: Sequence[int], where: str,
                         overlaps: bool = True) -> None:
    """Raise a :class:`DataFormatError` for non-finite coordinates or (``overlaps``) atoms
    closer than :data:`hybridff.io.validation.MIN_ATOM_DISTANCE_ANGSTROM`."""
    from hybridff.io.validation import check_coordinates  # RDKit, imported when needed

    check_coordinates(
        np.asarray(positions_nm, dtype=float) * units.NM_TO_ANGSTROM,
        lambda i: f"atom {i} ({element_symbol(numbers[i])})", where,
        "remove or recompute this frame", error=DataFormatError, overlap_error=DataFormatError,
        overlap_advice="a broken frame: remove or recompute this frame", overlaps=overlaps)
