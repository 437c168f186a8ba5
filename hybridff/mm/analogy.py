"""Bonded terms GAFF2 lacks, filled by analogy with parmchk2 (as the Amber route does).

:func:`missing_terms` finds the class tuples the force field has no parameters for;
:func:`fill_by_analogy` asks parmchk2 (:mod:`hybridff.mm.ambertools`) for analogues and keeps
them as :class:`FilledTerm` records, which :mod:`hybridff.mm.ffxml` writes to the XML.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from rdkit import Chem

from hybridff.exceptions import MissingParameterError
from hybridff.io.molecule import canonical_smiles
from hybridff.mm.tables import ForceFieldTables

logger = logging.getLogger(__name__)


@dataclass
class FilledTerm:
    """A bonded term GAFF2 lacks, filled by analogy (Amber units as in frcmod)."""

    kind: str  # bond | angle | proper | improper
    classes: tuple[str, ...]
    #: bond/angle: (k, x0); proper: (idivf, pk, phase, pn) per term, flattened;
    #: improper: (pk, phase, pn)
    values: list[float]
    source: str  # parmchk2's note: the analogous term it used and the penalty


def canonical_copy(mol: Chem.Mol, order: list[int]) -> Chem.Mol:
    """``mol`` with atoms in ``order``, bonds sorted by atom and placeholder coordinates: the
    same file for parmchk2 whatever the input order (its first-come choices follow the atom
    and bond order of its input, and Kekule bond orders follow the bond order)."""
    position = {i: k for k, i in enumerate(order)}
    copy = Chem.RWMol()
    for i in order:
        source = mol.GetAtomWithIdx(i)
        atom = Chem.Atom(source.GetAtomicNum())
        atom.SetFormalCharge(source.GetFormalCharge())
        atom.SetNoImplicit(True)
        atom.SetNumExplicitHs(0)
        copy.AddAtom(atom)
    bonds = sorted((min(position[b.GetBeginAtomIdx()], position[b.GetEndAtomIdx()]),
                    max(position[b.GetBeginAtomIdx()], position[b.GetEndAtomIdx()]),
                    b.GetBondType()) for b in mol.GetBonds())
    for p, q, bond_type in bonds:
        copy.AddBond(p, q, bond_type)
    canonical = copy.GetMol()
    Chem.SanitizeMol(canonical)
    conformer = Chem.Conformer(canonical.GetNumAtoms())
    for k in range(canonical.GetNumAtoms()):
        conformer.SetAtomPosition(k, (1.5 * k, 0.7 * (k % 3), 0.9 * (k % 5)))
    canonical.AddConformer(conformer, assignId=True)
    return canonical


def missing_terms(mol: Chem.Mol, atom_types: list[str], tables: ForceFieldTables
                  ) -> dict[str, set[tuple[str, ...]]]:
    """Class tuples of ``mol``'s terms that the force field lacks.

    ``bond``, ``angle``, ``proper``: no parameters at all. ``generic_proper``: torsions that
    only a wildcard (X-b-c-X) term covers; parmchk2 may know a better specific analogue,
    which tleap would then prefer, so they are offered to it too.
    """
    missing: dict[str, set[tuple[str, ...]]] = {
        "bond": set(), "angle": set(), "proper": set(), "generic_proper": set()}
    t = atom_types
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        if not tables.has_bond(t[i], t[j]):
            missing["bond"].add((t[i], t[j]))
    for atom in mol.GetAtoms():
        j = atom.GetIdx()
        nbrs = [n.GetIdx() for n in atom.GetNeighbors()]
        for i, k in itertools.combinations(nbrs, 2):
            if not tables.has_angle(t[i], t[j], t[k]):
                missing["angle"].add((t[i], t[j], t[k]))
    for b in mol.GetBonds():
        j, k = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        for i in (n.GetIdx() for n in mol.GetAtomWithIdx(j).GetNeighbors() if n.GetIdx() != k):
            for m in (n.GetIdx() for n in mol.GetAtomWithIdx(k).GetNeighbors() if n.GetIdx() != j):
                if i == m:
                    continue
                classes = (t[i], t[j], t[k], t[m])
                if not tables.has_proper(*classes):
                    missing["proper"].add(classes)
                elif not tables.has_proper(*classes, specific=True):
                    missing["generic_proper"].add(classes)
    return missing


def _same_term(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return a == b or a == tuple(reversed(b))


def fill_by_analogy(mol: Chem.Mol, names: list[str], atom_types: list[str],
                    tables: ForceFieldTables) -> list[FilledTerm]:
    """Terms the force field lacks, filled by parmchk2's analogy rules (as the Amber route does).

    Bonds, angles and proper torsions are added only where the force field has none.
    Impropers are taken as parmchk2 writes them (it also adds out-of-plane terms for sp2
    centres that GAFF2's generic impropers miss, e.g. substituted aromatic carbons), so the
    System equals antechamber -> parmchk2 -> tleap. Raises :class:`MissingParameterError`
    when a bond or angle has no analogue at all, or when something is missing and parmchk2
    is not installed.
    """
    from hybridff.exceptions import ExternalToolError
    from hybridff.mm.ambertools import run_parmchk2

    missing = missing_terms(mol, atom_types, tables)
    truly_missing = {k: v for k, v in missing.items() if k != "generic_proper"}
    try:
        frcmod = run_parmchk2(mol, names, atom_types)
    except ExternalToolError as exc:
        if any(truly_missing.values()):
            listing = "; ".join(f"{k} {'-'.join(c)}" for k, v in truly_missing.items()
                                for c in sorted(v))
            raise MissingParameterError(
                f"the force field lacks parameters for: {listing}. Filling them by analogy "
                f"needs parmchk2 ({exc})") from exc
        logger.warning("parmchk2 unavailable (%s): GAFF2's generic torsions and impropers are "
                       "used without parmchk2's more specific analogues", exc)
        return []
    filled: list[FilledTerm] = []
    unresolved: list[str] = []
    for kind, entries in (("bond", frcmod.bonds), ("angle", frcmod.angles),
                          ("proper", frcmod.propers)):
        wanted = missing[kind]
        offered = wanted | missing["generic_proper"] if kind == "proper" else wanted
        merged: dict[tuple[str, ...], FilledTerm] = {}
        for classes, values, note in entries:
            if not any(_same_term(classes, w) or (kind == "proper" and _matches_wild(classes, w))
                       for w in offered):
                continue
            if "ATTN" in note and kind in ("bond", "angle"):
                unresolved.append(f"{kind} {'-'.join(classes)}")
                continue
            if classes in merged and kind == "proper":
                merged[classes].values.extend(values)
                continue
            merged[classes] = FilledTerm(kind, classes, list(values), note.strip())
        filled.extend(merged.values())
        for w in wanted:
            if not any(_same_term(c, w) or (kind == "proper" and _matches_wild(c, w))
                       for c in merged):
                if kind == "proper":
                    logger.warning("no torsion parameters for %s, even by analogy: term omitted "
                                   "(as tleap does)", "-".join(w))
                else:
                    unresolved.append(f"{kind} {'-'.join(w)}")
    if unresolved:
        raise MissingParameterError(
            f"no parameters, even by analogy, for {', '.join(sorted(set(unresolved)))} in "
            f"{canonical_smiles(mol)}; this chemistry is outside GAFF2's coverage")
    filled.extend(FilledTerm("improper", classes, list(values), note.strip())
                  for classes, values, note in frcmod.impropers)
    for term in filled:
        logger.debug("filled by analogy: %s %s = %s (%s)", term.kind, "-".join(term.classes),
                     term.values, term.source)
    return filled


def _matches_wild(classes: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    pattern = ["" if c == "X" else c for c in classes]
    for w in (wanted, tuple(reversed(wanted))):
        if all(p in ("", x) for p, x in zip(pattern, w, strict=True)):
            return True
    return False

