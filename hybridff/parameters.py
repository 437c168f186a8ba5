"""From a molecule to its force-field parameters: atom types, charges, terms filled by analogy.

:func:`parameterize` returns a :class:`ParameterizedMolecule`, which writes the per-molecule
OpenMM ForceField XML (a residue template with types and charges, plus any bonded parameters
that GAFF2 lacks, filled by analogy the way parmchk2 does and listed in ``filled_terms``).
The System itself is built by OpenMM's own ``ForceField`` from the shipped file and this XML,
so the drop-in XML route and the Python route give the same System.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
from rdkit import Chem

from hybridff import __version__, units
from hybridff.charges import assign_charges
from hybridff.exceptions import MissingParameterError
from hybridff.forcefield_tables import ForceFieldTables, load_tables
from hybridff.molecule import atom_label, atom_names, canonical_smiles, formal_charge, load_molecule

logger = logging.getLogger(__name__)

#: ML charges (AM1-BCC quality at milliseconds per molecule; docs/charges.md)
DEFAULT_CHARGE_METHOD = "ml"


@dataclass
class FilledTerm:
    """A bonded term GAFF2 lacks, filled by analogy (Amber units as in frcmod)."""

    kind: str  # bond | angle | proper | improper
    classes: tuple[str, ...]
    #: bond/angle: (k, x0); proper: (idivf, pk, phase, pn) per term, flattened;
    #: improper: (pk, phase, pn)
    values: list[float]
    source: str  # parmchk2's note: the analogous term it used and the penalty


@dataclass
class ParameterizedMolecule:
    """A molecule with everything OpenMM needs: names, GAFF2 types, charges, extra terms."""

    mol: Chem.Mol
    names: list[str]
    atom_types: list[str]
    charges: np.ndarray
    charge_method: str
    forcefield: str
    forcefield_sha256: str
    residue_name: str = "MOL"
    filled_terms: list[FilledTerm] = field(default_factory=list)
    pair_order: str = "index"
    #: SHA256 of the ML charge model file when charge_method is "ml"
    charge_model_sha256: str | None = None

    @property
    def smiles(self) -> str:
        return canonical_smiles(self.mol)

    @property
    def net_charge(self) -> int:
        return formal_charge(self.mol)

    def mm_signature(self) -> dict[str, str | None]:
        """What a delta-learned correction depends on: force field and charges (file hashes)."""
        return {"forcefield": self.forcefield, "forcefield_hash": self.forcefield_sha256,
                "charge_method": self.charge_method, "charge_model_hash": self.charge_model_sha256}

    def to_ffxml(self, names: list[str] | None = None, residue_name: str | None = None) -> str:
        """Per-molecule ForceField XML; load it after the shipped force-field file.

        ``names`` renames the atoms (same order) to match a topology's residue.
        """
        tables = load_tables(self.forcefield)
        names = list(names) if names is not None else self.names
        root = ET.Element("ForceField")
        info = ET.SubElement(root, "Info")
        ET.SubElement(info, "Source").text = (
            f"hybridff {__version__}; force field {self.forcefield} (sha256 "
            f"{self.forcefield_sha256[:12]}); charges {self.charge_method}; {self.smiles}")
        residues = ET.SubElement(root, "Residues")
        res = ET.SubElement(residues, "Residue", {"name": residue_name or self.residue_name})
        for name, t, q in zip(names, self.atom_types, self.charges, strict=True):
            ET.SubElement(res, "Atom", {"name": name, "type": tables.type_name(t),
                                        "charge": format(float(q), ".10f")})
        for b in self.mol.GetBonds():
            ET.SubElement(res, "Bond", {"atomName1": names[b.GetBeginAtomIdx()],
                                        "atomName2": names[b.GetEndAtomIdx()]})
        _filled_terms_xml(root, self.filled_terms)
        ET.indent(root, space=" ")
        return ET.tostring(root, encoding="unicode")

    def report(self) -> dict[str, Any]:
        """JSON-able summary: atoms (name, element, type, charge), filled terms, provenance."""
        return {
            "hybridff_version": __version__,
            "smiles": self.smiles,
            "name": self.mol.GetProp("_Name") if self.mol.HasProp("_Name") else "",
            "net_charge": self.net_charge,
            "forcefield": self.forcefield,
            "forcefield_sha256": self.forcefield_sha256,
            "charge_method": self.charge_method,
            "pair_order": self.pair_order,
            "atoms": [
                {"index": i, "name": n, "element": a.GetSymbol(), "type": t, "charge": float(q)}
                for i, (a, n, t, q) in enumerate(
                    zip(self.mol.GetAtoms(), self.names, self.atom_types, self.charges, strict=True))
            ],
            "filled_by_analogy": [asdict(f) for f in self.filled_terms],
        }

    def content_hash(self) -> str:
        """Hash of everything that determines the parameters (for caches and provenance)."""
        key = json.dumps([self.smiles, self.forcefield_sha256, self.charge_method,
                          self.pair_order, __version__])
        return hashlib.sha256(key.encode()).hexdigest()


def _filled_terms_xml(root: ET.Element, terms: list[FilledTerm]) -> None:
    bonds = [t for t in terms if t.kind == "bond"]
    angles = [t for t in terms if t.kind == "angle"]
    propers = [t for t in terms if t.kind == "proper"]
    impropers = [t for t in terms if t.kind == "improper"]
    if bonds:
        el = ET.SubElement(root, "HarmonicBondForce")
        for t in bonds:
            k, r0 = t.values
            ET.SubElement(el, "Bond", {"class1": t.classes[0], "class2": t.classes[1],
                                       "length": repr(r0 * units.ANGSTROM_TO_NM),
                                       "k": repr(units.amber_bond_k_to_openmm(k))})
    if angles:
        el = ET.SubElement(root, "HarmonicAngleForce")
        for t in angles:
            k, theta0 = t.values
            ET.SubElement(el, "Angle", {"class1": t.classes[0], "class2": t.classes[1],
                                        "class3": t.classes[2], "angle": repr(math.radians(theta0)),
                                        "k": repr(units.amber_angle_k_to_openmm(k))})
    if propers or impropers:
        el = ET.SubElement(root, "PeriodicTorsionForce", {"ordering": "amber"})
        for t in propers:
            attrs = {f"class{i + 1}": ("" if c == "X" else c) for i, c in enumerate(t.classes)}
            for j, (idivf, pk, phase, pn) in enumerate(
                    np.asarray(t.values).reshape(-1, 4).tolist(), start=1):
                attrs[f"periodicity{j}"] = str(abs(int(round(pn))))
                attrs[f"phase{j}"] = repr(math.radians(phase))
                attrs[f"k{j}"] = repr(pk / idivf * units.KCAL_TO_KJ)
            ET.SubElement(el, "Proper", attrs)
        for t in impropers:  # Amber puts the central atom third, OpenMM first
            a, b, c, d = t.classes
            pk, phase, pn = t.values
            ET.SubElement(el, "Improper", {
                "class1": c, "class2": a, "class3": b, "class4": d,
                "periodicity1": str(abs(int(round(pn)))), "phase1": repr(math.radians(phase)),
                "k1": repr(pk * units.KCAL_TO_KJ)})


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
    from hybridff.ambertools import run_parmchk2
    from hybridff.exceptions import ExternalToolError

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


def parameterize(molecule: Any, charge_method: str = DEFAULT_CHARGE_METHOD,
                 forcefield: str = "hybridff-gaff2.xml", atom_types: list[str] | None = None,
                 residue_name: str = "MOL", charges: np.ndarray | None = None,
                 pair_order: str = "index", **charge_options: Any) -> ParameterizedMolecule:
    """Type, charge and complete the parameters of one molecule.

    Parameters
    ----------
    molecule
        RDKit Mol, openff Molecule, SMILES, or an SDF/mol2 path (one molecule).
    charge_method
        A registered charge method: ``gasteiger``, ``am1bcc``, ``file``, ``ml``.
    atom_types
        GAFF2 types to use instead of the built-in typer (one per atom, in atom order).
    charges
        Explicit charges (e), short for ``charge_method="file", charges=...``.
    pair_order
        How conjugated pair types (cc/cd, ce/cf, nc/nd, ...) are labelled: ``"index"``
        walks from the lowest atom index, as antechamber does, so types equal antechamber's
        for the same input; ``"canonical"`` walks in RDKit's canonical atom order, so the
        parameters do not depend on the input atom order. GAFF2 2.2 fits cc- and cd-
        parameters separately (e.g. angle ca-na-cc 117.3 deg vs ca-na-cd 108.8 deg), so the
        two can differ in energy; see docs/atom-typing.md.
    """
    mol = load_molecule(molecule)
    tables = load_tables(forcefield)
    names = atom_names(mol)
    if atom_types is None:
        from hybridff.atomtyping import assign_atom_types

        atom_types = assign_atom_types(mol, tables.path, pair_order=pair_order)
    if len(atom_types) != mol.GetNumAtoms():
        raise ValueError(f"{len(atom_types)} atom types given for {mol.GetNumAtoms()} atoms")
    for i, t in enumerate(atom_types):
        if t not in tables.classes:
            raise MissingParameterError(
                f"{atom_label(mol, i)}: atom type {t!r} is not defined in {tables.name}")
    if charges is not None:
        charge_method, charge_options = "file", {**charge_options, "charges": charges}
    q = assign_charges(mol, charge_method, **charge_options)
    charge_model_hash = None
    if charge_method == "ml":
        from hybridff.charges.ml import charge_model_sha256

        charge_model_hash = charge_model_sha256(charge_options.get("model"))
    filled = fill_by_analogy(mol, names, list(atom_types), tables)
    return ParameterizedMolecule(mol=mol, names=names, atom_types=list(atom_types), charges=q,
                                 charge_method=charge_method, forcefield=tables.name,
                                 forcefield_sha256=tables.sha256, residue_name=residue_name,
                                 filled_terms=filled, pair_order=pair_order,
                                 charge_model_sha256=charge_model_hash)
