"""Torsions of a molecule: which bonds are rotatable, the dihedral angles of frames, and
frames with torsions turned rigidly to given angles.

The ``torsion`` sampler (:mod:`hybridff.labels.samplers`) drives the torsions found here, and
``hybridff evaluate --plots`` (:mod:`hybridff.plots`) scans them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hybridff.exceptions import InvalidOptionError, MoleculeInputError

Torsion = tuple[int, int, int, int]


def rotatable_torsions(mol: Any) -> list[Torsion]:
    """One heavy-atom dihedral per rotatable bond of an RDKit molecule (the torsions that
    ``hybridff evaluate --plots`` scans and the ``torsion`` sampler drives).

    A bond is rotatable as in RDKit's rotatable-bond SMARTS ``[!$(*#*)&!D1]-&!@[!$(*#*)&!D1]``
    with degrees counted over heavy atoms: a single, non-ring bond between two heavy atoms
    that each have another heavy neighbour and no triple bond. For bond j-k the dihedral is
    i-j-k-l with i (l) the heaviest other heavy neighbour of j (k), the lowest index on ties.

    Deliberately broader than RDKit's *strict* definition (``NumRotatableBonds``), which drops
    amide C-N and other bonds with partial double-bond character: those are the torsions
    whose barriers MD does not cross (cis amides are real conformers, a few kcal/mol above
    trans), so they are the ones to scan and to sample. Rotors that only turn hydrogens
    (methyl, hydroxyl) are left out: MD at the sampling temperature turns them already.
    """
    from rdkit import Chem

    def heavy_others(atom: Any, other: int) -> list[Any]:
        return [n for n in atom.GetNeighbors() if n.GetAtomicNum() > 1 and n.GetIdx() != other]

    def has_triple(atom: Any) -> bool:
        return any(b.GetBondType() == Chem.BondType.TRIPLE for b in atom.GetBonds())

    out: list[Torsion] = []
    for bond in mol.GetBonds():
        j_atom, k_atom = bond.GetBeginAtom(), bond.GetEndAtom()
        if (bond.GetBondType() != Chem.BondType.SINGLE or bond.IsInRing()
                or j_atom.GetAtomicNum() == 1 or k_atom.GetAtomicNum() == 1
                or has_triple(j_atom) or has_triple(k_atom)):
            continue
        i_side = heavy_others(j_atom, k_atom.GetIdx())
        l_side = heavy_others(k_atom, j_atom.GetIdx())
        if not i_side or not l_side:
            continue
        pick = min(i_side, key=lambda a: (-a.GetAtomicNum(), a.GetIdx())).GetIdx()
        last = min(l_side, key=lambda a: (-a.GetAtomicNum(), a.GetIdx())).GetIdx()
        out.append((pick, j_atom.GetIdx(), k_atom.GetIdx(), last))
    return out


def check_torsion(mol: Any, torsion: Any) -> Torsion:
    """``torsion`` as four atom indices of ``mol`` bonded i-j, j-k, k-l, j-k not in a ring.

    Raises :class:`MoleculeInputError` saying which condition fails.
    """
    from hybridff.io.molecule import atom_label

    idx = tuple(int(a) for a in torsion)
    n = mol.GetNumAtoms()
    hint = ", ".join(" ".join(map(str, t)) for t in rotatable_torsions(mol)) or "none"
    where = f"torsion {' '.join(map(str, idx))}"
    if len(idx) != 4:
        raise MoleculeInputError(f"{where}: a torsion needs 4 atom indices, got {len(idx)}")
    bad = [a for a in idx if not 0 <= a < n]
    if bad:
        raise MoleculeInputError(
            f"{where}: atom index {bad[0]} is out of range; the molecule has {n} atoms "
            f"(0-based indices 0..{n - 1}). Rotatable torsions: {hint}")
    if len(set(idx)) != 4:
        raise MoleculeInputError(f"{where}: the four atoms must be different")
    for a, b in zip(idx[:-1], idx[1:], strict=True):
        if mol.GetBondBetweenAtoms(a, b) is None:
            raise MoleculeInputError(
                f"{where}: {atom_label(mol, a)} and {atom_label(mol, b)} are not bonded; a "
                f"torsion i j k l needs the bonds i-j, j-k and k-l. Rotatable torsions: {hint}")
    if mol.GetBondBetweenAtoms(idx[1], idx[2]).IsInRing():
        raise MoleculeInputError(
            f"{where}: the bond {atom_label(mol, idx[1])} - {atom_label(mol, idx[2])} is in a "
            f"ring and cannot be turned through 360 degrees. Rotatable torsions: {hint}")
    return idx  # type: ignore[return-value]


def dihedral_deg(positions: np.ndarray, torsion: Torsion) -> np.ndarray:
    """Dihedral angle(s) i-j-k-l in degrees, (-180, 180], of (N, 3) or (F, N, 3) positions
    (IUPAC sign, as RDKit's ``GetDihedralDeg`` and OpenMM's torsion forces)."""
    x = np.asarray(positions, dtype=np.float64)
    i, j, k, l_ = (x[..., a, :] for a in torsion)
    b0, b1, b2 = j - i, k - j, l_ - k
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    m1 = np.cross(b1 / np.linalg.norm(b1, axis=-1, keepdims=True), n1)
    return np.degrees(np.arctan2((m1 * n2).sum(-1), (n1 * n2).sum(-1)))


def angle_difference_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed smallest difference a - b between angles in degrees, in [-180, 180)."""
    return (np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0


def _moving_side(mol: Any, torsion: Torsion) -> np.ndarray:
    """Indices of the atoms on the k side of bond j-k of ``torsion`` (k included); the bond
    must not be in a ring (:func:`check_torsion`)."""
    j, k = torsion[1], torsion[2]
    seen, stack = {k}, [k]
    while stack:
        for neighbour in mol.GetAtomWithIdx(stack.pop()).GetNeighbors():
            n = neighbour.GetIdx()
            if n not in seen and n != j:
                seen.add(n)
                stack.append(n)
    return np.array(sorted(seen))


def _rotate(x: np.ndarray, atoms: np.ndarray, j: int, k: int, angle_rad: float) -> np.ndarray:
    """``x`` with ``atoms`` turned by ``angle_rad`` about the axis j -> k (right-handed)."""
    u = x[k] - x[j]
    u = u / np.linalg.norm(u)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    cross = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    rotation = c * np.eye(3) + s * cross + (1.0 - c) * np.outer(u, u)
    out = x.copy()
    out[atoms] = (x[atoms] - x[k]) @ rotation.T + x[k]
    return out


def set_dihedrals(x: np.ndarray, mol: Any, torsions: Sequence[Torsion],
                  targets_deg: Sequence[float]) -> np.ndarray:
    """Positions ``x`` (N, 3) with each torsion turned rigidly to its target (degrees): the
    atoms on the k side of bond j-k rotate about it, bond lengths and angles stay as they are.
    Torsions about different bonds of a tree do not disturb each other, so turning them one
    after the other sets every one exactly."""
    out = np.asarray(x, dtype=np.float64).copy()
    for torsion, target in zip(torsions, targets_deg, strict=True):
        delta = float(angle_difference_deg(target, dihedral_deg(out, torsion)))
        out = _rotate(out, _moving_side(mol, torsion), torsion[1], torsion[2], math.radians(delta))
    return out


def resolve_torsions(mol: Any, torsions: Sequence[Any] | None) -> list[Torsion]:
    """The torsions to turn: ``torsions`` checked (:func:`check_torsion`, one per bond), or
    every :func:`rotatable_torsions` of ``mol`` when ``None``."""
    if mol is None:
        raise InvalidOptionError("the torsion sampler needs the molecule (mol=, an RDKit "
                                 "molecule) to find its rotatable torsions and the atoms each "
                                 "one turns")
    if torsions is None:
        return rotatable_torsions(mol)
    resolved = [check_torsion(mol, t) for t in torsions]
    bonds = [tuple(sorted(t[1:3])) for t in resolved]
    if len(set(bonds)) != len(bonds):
        raise MoleculeInputError(
            "two of the torsions to sample turn the same bond; give one dihedral per bond "
            f"(got {', '.join(' '.join(map(str, t)) for t in resolved)})")
    return resolved
