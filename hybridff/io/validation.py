"""Checks of a molecule before anything uses it: supported elements, no radicals, finite
coordinates, no overlapping atoms; atom labels for the messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from rdkit import Chem

from hybridff.elements import SUPPORTED_ELEMENTS, is_supported
from hybridff.exceptions import (
    HybridFFError,
    MoleculeInputError,
    OverlappingAtomsError,
    UnsupportedChemistryError,
    UnsupportedElementError,
)


def atom_label(mol: Chem.Mol, index: int) -> str:
    """Human-readable label of an atom for error messages: 'atom 3 (C3, C)'."""
    atom = mol.GetAtomWithIdx(index)
    name = None
    for prop in ("_hybridff_name", "_TriposAtomName"):  # mol2 names before hybridff names atoms
        if atom.HasProp(prop):
            name = atom.GetProp(prop).strip() or None
            break
    name_part = f"{name}, " if name else ""
    return f"atom {index} ({name_part}{atom.GetSymbol()})"


#: Two atoms closer than this (Angstrom) are refused as overlapping: the shortest real bond,
#: H-H in H2, is 0.74 Angstrom, and force fields and QM blow up well before atoms coincide.
MIN_ATOM_DISTANCE_ANGSTROM = 0.5


def find_overlaps(xyz: Any, min_distance: float, box: Any = None) -> list[tuple[int, int, float]]:
    """Atom pairs ``(i, j, distance)`` closer than ``min_distance``, closest first.

    ``xyz`` (N, 3) and ``min_distance`` in the same length unit; ``box``: the edge lengths of an
    orthorhombic periodic box in that unit (minimum-image distances), or ``None``.
    """
    from scipy.spatial import cKDTree

    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)
    if len(xyz) < 2 or not np.isfinite(xyz).all():
        return []
    if box is not None:
        box = np.asarray(box, dtype=float)
        wrapped = xyz - np.floor(xyz / box) * box
        wrapped[wrapped >= box] = 0.0  # rounding can land exactly on the upper face
        tree = cKDTree(wrapped, boxsize=box)
    else:
        tree = cKDTree(xyz)
    pairs = tree.query_pairs(min_distance, output_type="ndarray")
    if not len(pairs):
        return []
    delta = xyz[pairs[:, 0]] - xyz[pairs[:, 1]]
    if box is not None:
        delta -= box * np.round(delta / box)
    dist = np.linalg.norm(delta, axis=1)
    order = np.argsort(dist, kind="stable")
    return [(int(pairs[k, 0]), int(pairs[k, 1]), float(dist[k])) for k in order]


def check_coordinates(
    xyz_angstrom: Any,
    atom_text: Callable[[int], str],
    where: str,
    advice: str,
    *,
    error: type[HybridFFError] = MoleculeInputError,
    overlap_error: type[HybridFFError] = OverlappingAtomsError,
    overlap_advice: str | None = None,
    box_angstrom: Any = None,
    overlaps: bool = True,
) -> None:
    """Raise for non-finite coordinates (``error``) or, with ``overlaps``, atoms closer than
    :data:`MIN_ATOM_DISTANCE_ANGSTROM` (``overlap_error``).

    The one geometry check of molecule files, QM frames and simulation positions: messages
    read ``"{where}: {atom_text(i)} ... ; {advice}"``.
    """
    xyz = np.asarray(xyz_angstrom, dtype=float)
    prefix = f"{where}: " if where else ""
    bad = np.argwhere(~np.isfinite(xyz))
    if bad.size:
        i = int(bad[0][0])
        raise error(f"{prefix}{atom_text(i)} has non-finite coordinates {xyz[i].tolist()} "
                    f"Angstrom; {advice}")
    pairs = find_overlaps(xyz, MIN_ATOM_DISTANCE_ANGSTROM, box_angstrom) if overlaps else []
    if pairs:
        i, j, d = pairs[0]
        more = f" ({len(pairs) - 1} more such pair(s))" if len(pairs) > 1 else ""
        raise overlap_error(
            f"{prefix}{atom_text(i)} and {atom_text(j)} are {d:.3f} Angstrom apart, closer than "
            f"{MIN_ATOM_DISTANCE_ANGSTROM} Angstrom: overlapping atoms{more}; "
            f"{overlap_advice or advice}")


def validate_molecule(mol: Chem.Mol) -> None:
    """Raise a clear error for unsupported elements, radicals, non-finite coordinates or
    overlapping atoms (closer than :data:`MIN_ATOM_DISTANCE_ANGSTROM` in a 3D conformer)."""
    for atom in mol.GetAtoms():
        if not is_supported(atom.GetAtomicNum()):
            raise UnsupportedElementError(
                f"{atom_label(mol, atom.GetIdx())}: element {atom.GetSymbol()} is not supported; "
                f"hybridff covers {', '.join(SUPPORTED_ELEMENTS)}"
            )
        if atom.GetNumRadicalElectrons():
            raise UnsupportedChemistryError(
                f"{atom_label(mol, atom.GetIdx())} has {atom.GetNumRadicalElectrons()} unpaired "
                "electron(s): radicals are not supported; add the missing hydrogens or fix the "
                "formal charges of the input"
            )
    several = mol.GetNumConformers() > 1
    for conf in mol.GetConformers():
        which = f"conformer {conf.GetId()}: " if several else ""
        pos = conf.GetPositions()
        check_coordinates(
            pos, lambda i: atom_label(mol, i), which.rstrip(": "), "fix the input structure",
            overlap_advice="fix the input structure (or give the molecule without coordinates, "
            "e.g. as SMILES, to have a conformer generated)",
            overlaps=conf.Is3D())  # 2D depictions may stack atoms; a 3D conformer is made later
