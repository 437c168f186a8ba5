"""From a molecule to its force-field parameters: atom types, charges, terms filled by analogy.

:func:`parameterize` returns a :class:`ParameterizedMolecule`, which writes the per-molecule
OpenMM ForceField XML (a residue template with types and charges, plus any bonded parameters
that GAFF2 lacks, filled by analogy the way parmchk2 does and listed in ``filled_terms``).
The System itself is built by OpenMM's own ``ForceField`` from the shipped file and this XML,
so the drop-in XML route and the Python route give the same System.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
from openmm import unit
from rdkit import Chem

from hybridff import __version__, units
from hybridff.charges import assign_charges
from hybridff.exceptions import InvalidOptionError, MissingParameterError, MoleculeInputError
from hybridff.mm.graph import MoleculeGraph, symmetry_classes
from hybridff.mm.signature import (
    DEFAULT_PAIR_ORDER,
    MMSignature,
    canonical_atom_order,
    make_signature,
)
from hybridff.mm.tables import ForceFieldTables, load_tables
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
    """A molecule with everything OpenMM needs: names, GAFF2 types, charges, extra terms.

    ``signature`` is its MM identity (:class:`~hybridff.mm.signature.MMSignature`): what
    decided these parameters, the key of the parameter cache and what trained models record.
    """

    mol: Chem.Mol
    names: list[str]
    atom_types: list[str]
    charges: np.ndarray
    signature: MMSignature
    residue_name: str = "MOL"
    filled_terms: list[FilledTerm] = field(default_factory=list)
    #: a bespoke refit of the bonded terms (:mod:`hybridff.mm.bespoke` record), or None
    refit: dict[str, Any] | None = None

    @property
    def forcefield(self) -> str:
        return self.signature.forcefield

    @property
    def forcefield_sha256(self) -> str:
        return self.signature.forcefield_sha256

    @property
    def charge_method(self) -> str:
        return self.signature.charge_method

    @property
    def pair_order(self) -> str:
        return self.signature.pair_order

    @property
    def charge_model_sha256(self) -> str | None:
        return self.signature.charge_model_sha256

    @property
    def smiles(self) -> str:
        return canonical_smiles(self.mol)

    @property
    def net_charge(self) -> int:
        return formal_charge(self.mol)

    @property
    def graph(self) -> MoleculeGraph:
        """Elements and bonds, in this molecule's atom order."""
        return MoleculeGraph.from_rdkit(self.mol)

    def mm_signature(self) -> MMSignature:
        """The MM identity of these parameters (what a delta-learned correction depends on)."""
        return self.signature

    def in_atom_order_of(self, mol: Chem.Mol) -> ParameterizedMolecule:
        """The same parameters for ``mol``, the same molecule in another atom order.

        Types, charges and names follow the atoms (names from ``mol`` where it has them).
        """
        if mol.GetNumAtoms() != self.mol.GetNumAtoms() or canonical_smiles(mol) != self.smiles:
            raise MoleculeInputError(f"{canonical_smiles(mol)} is not the parameterized molecule "
                             f"{self.smiles}")
        match = self.mol.GetSubstructMatch(mol)  # match[i]: our atom for mol's atom i
        if len(match) != mol.GetNumAtoms():
            raise MoleculeInputError(f"could not map the atoms of {self.smiles} onto each other")
        if list(match) == list(range(mol.GetNumAtoms())):
            return self
        names = atom_names(mol)
        return ParameterizedMolecule(
            mol=mol, names=names, atom_types=[self.atom_types[k] for k in match],
            charges=self.charges[list(match)], signature=self.signature,
            residue_name=self.residue_name, filled_terms=self.filled_terms, refit=self.refit)

    def to_ffxml(self, names: list[str] | None = None, residue_name: str | None = None) -> str:
        """Per-molecule ForceField XML; load it after the shipped force-field file.

        ``names`` renames the atoms (same order) to match a topology's residue.

        With canonical pair labelling (the default) the System it gives does not depend on the
        atom order of the topology. OpenMM orders the atoms of an improper torsion by template
        index where two share a type, and reuses the first order it found for every later
        improper of the same types, so with shared GAFF2 types the result would follow the
        topology's atom order. Here each atom gets a type and class of its own (with its GAFF2
        type's mass and Lennard-Jones parameters) and every bonded term is written for its
        atoms' types, with the parameters and atom order OpenMM gives the molecule in
        canonical atom order, averaged over symmetry-equivalent atoms: the file is
        self-contained and gives the same System for any input order.
        The antechamber-compatible ``"index"`` labelling writes GAFF2 types (plus the terms
        filled by analogy) and leaves the order to OpenMM, as tleap does.

        With a bespoke refit the file also holds its cubic and quartic terms (``CustomBondForce``,
        ``CustomAngleForce``) and, as a ``<Script>`` (the ForceField XML has no tag for it), a
        ``CustomCompoundBondForce`` of its stretch-bend and bond-bond terms.
        """
        names = list(names) if names is not None else self.names
        resname = residue_name or self.residue_name
        if self.pair_order != "canonical":
            return self._class_typed_ffxml(names, resname, range(self.mol.GetNumAtoms()))
        tables = load_tables(self.forcefield)
        order = canonical_atom_order(self.mol)
        prefix = f"{resname}-{self.content_hash()[:8]}-"
        own_type = {i: f"{prefix}{rank}" for rank, i in enumerate(order)}
        root = self._xml_header()
        atom_types = ET.SubElement(root, "AtomTypes")
        for i in order:
            gaff = tables.type_attributes[tables.type_name(self.atom_types[i])]
            # a class of its own too, so that no class-based term of the shipped file applies
            # to it even when both files are loaded in one call
            ET.SubElement(atom_types, "Type", {"name": own_type[i], "class": own_type[i],
                                               "element": gaff["element"], "mass": gaff["mass"]})
        self._residue_xml(root, names, resname, order, own_type)
        terms = self.canonical_terms()
        if self.refit is not None:
            from hybridff.mm.bespoke import record_in_atom_order

            terms.update(record_in_atom_order(self.refit, self.mol))

        def typed(atoms: tuple[int, ...]) -> dict[str, str]:
            return {f"type{k + 1}": own_type[a] for k, a in enumerate(atoms)}

        bonds = ET.SubElement(root, "HarmonicBondForce")
        for atoms, (length, k, *_) in terms["bonds"].items():
            ET.SubElement(bonds, "Bond", {**typed(atoms), "length": repr(length), "k": repr(k)})
        angles = ET.SubElement(root, "HarmonicAngleForce")
        for atoms, (angle, k, *_) in terms["angles"].items():
            ET.SubElement(angles, "Angle", {**typed(atoms), "angle": repr(angle), "k": repr(k)})
        # anharmonic terms of a refit: c3 d^3 + c4 d^4 about the harmonic term's minimum
        for tag, term, variable, table in (("CustomBondForce", "Bond", "r", terms["bonds"]),
                                           ("CustomAngleForce", "Angle", "theta", terms["angles"])):
            anharmonic = {a: v for a, v in table.items() if len(v) == 4 and (v[2] or v[3])}
            if not anharmonic:
                continue
            element = ET.SubElement(root, tag, {
                "energy": f"c3*({variable}-x0)^3 + c4*({variable}-x0)^4"})
            for name in ("x0", "c3", "c4"):
                ET.SubElement(element, f"Per{term}Parameter", {"name": name})
            for atoms, (x0, _, c3, c4) in anharmonic.items():
                ET.SubElement(element, term, {**typed(atoms), "x0": repr(x0), "c3": repr(c3),
                                              "c4": repr(c4)})
        if terms.get("cross"):
            ET.SubElement(root, "Script").text = _cross_terms_script(
                {tuple(own_type[a] for a in atoms): values
                 for atoms, values in terms["cross"].items()}, f"hybridff cross terms {prefix.rstrip('-')}")
        torsions = ET.SubElement(root, "PeriodicTorsionForce", {"ordering": "amber"})
        for kind in ("Proper", "Improper"):
            for atoms, parts in terms[kind].items():
                # OpenMM lists an improper's centre first; the System (amber order) third
                attrs = typed(atoms if kind == "Proper" else (atoms[2], atoms[0], atoms[1], atoms[3]))
                for j, (periodicity, phase, k) in enumerate(parts, start=1):
                    attrs.update({f"periodicity{j}": str(periodicity), f"phase{j}": repr(phase),
                                  f"k{j}": repr(k)})
                ET.SubElement(torsions, kind, attrs)
        nonbonded = ET.SubElement(root, "NonbondedForce", dict(tables.nonbonded_attributes))
        ET.SubElement(nonbonded, "UseAttributeFromResidue", {"name": "charge"})
        for i in order:
            lj = tables.nonbonded_atoms[tables.type_name(self.atom_types[i])]
            ET.SubElement(nonbonded, "Atom", {"type": own_type[i], "sigma": lj["sigma"],
                                              "epsilon": lj["epsilon"]})
        ET.indent(root, space=" ")
        return ET.tostring(root, encoding="unicode")

    def _xml_header(self) -> ET.Element:
        root = ET.Element("ForceField")
        info = ET.SubElement(root, "Info")
        ET.SubElement(info, "Source").text = (
            f"hybridff {__version__}; force field {self.forcefield} (sha256 "
            f"{self.forcefield_sha256[:12]}); charges {self.charge_method}; {self.smiles}; "
            f"MM signature {self.signature.key()}")
        return root

    def _residue_xml(self, root: ET.Element, names: list[str], resname: str, order: Any,
                     type_of: dict[int, str]) -> None:
        residues = ET.SubElement(root, "Residues")
        res = ET.SubElement(residues, "Residue", {"name": resname})
        for i in order:
            ET.SubElement(res, "Atom", {"name": names[i], "type": type_of[i],
                                        "charge": format(float(self.charges[i]), ".10f")})
        for b in self.mol.GetBonds():
            ET.SubElement(res, "Bond", {"atomName1": names[b.GetBeginAtomIdx()],
                                        "atomName2": names[b.GetEndAtomIdx()]})

    def _class_typed_ffxml(self, names: list[str], resname: str, order: Any) -> str:
        """The template with GAFF2's own types (OpenMM orders impropers itself)."""
        tables = load_tables(self.forcefield)
        root = self._xml_header()
        self._residue_xml(root, names, resname, order,
                          {i: tables.type_name(t) for i, t in enumerate(self.atom_types)})
        _filled_terms_xml(root, self.filled_terms)
        ET.indent(root, space=" ")
        return ET.tostring(root, encoding="unicode")

    def canonical_terms(self) -> dict[str, dict[tuple[int, ...], Any]]:
        """Bonded terms OpenMM gives this molecule in canonical atom order (GAFF2 types, the
        terms filled by analogy; no refit), in this molecule's atom indices: ``bonds`` (i, j) -> (nm,
        kJ/mol/nm2); ``angles`` (i, j, k) -> (rad, kJ/mol/rad2); ``Proper`` / ``Improper``
        (a, b, c, d) -> [(periodicity, phase rad, k kJ/mol), ...] (impropers centred on c)."""
        import openmm
        from openmm import app

        tables = load_tables(self.forcefield)
        order = canonical_atom_order(self.mol)
        xml = self._class_typed_ffxml([f"A{k}" for k in range(len(order))], "CANONICAL", order)
        forcefield = app.ForceField(str(tables.path), io.StringIO(xml))
        topology = app.Topology()
        residue = topology.addResidue("CANONICAL", topology.addChain())
        position = {i: k for k, i in enumerate(order)}
        atoms = [topology.addAtom(f"A{i}", app.Element.getByAtomicNumber(
            self.mol.GetAtomWithIdx(i).GetAtomicNum()), residue) for i in order]
        bonded = set()
        # bonds in canonical order too: OpenMM lists each atom's neighbours in bond order
        pairs = sorted(tuple(sorted((position[b.GetBeginAtomIdx()], position[b.GetEndAtomIdx()])))
                       for b in self.mol.GetBonds())
        for p, q in pairs:
            topology.addBond(atoms[p], atoms[q])
            bonded |= {(order[p], order[q]), (order[q], order[p])}
        system = forcefield.createSystem(topology)
        out: dict[str, dict[tuple[int, ...], Any]] = {
            "bonds": {}, "angles": {}, "Proper": {}, "Improper": {}}
        nm, rad, kj = unit.nanometer, unit.radian, unit.kilojoule_per_mole
        for force in system.getForces():
            if isinstance(force, openmm.HarmonicBondForce):
                for t in range(force.getNumBonds()):
                    i, j, length, k = force.getBondParameters(t)
                    out["bonds"][(order[i], order[j])] = (length.value_in_unit(nm),
                                                          k.value_in_unit(kj / nm**2))
            elif isinstance(force, openmm.HarmonicAngleForce):
                for t in range(force.getNumAngles()):
                    i, j, k_, theta, k = force.getAngleParameters(t)
                    out["angles"][(order[i], order[j], order[k_])] = (
                        theta.value_in_unit(rad), k.value_in_unit(kj / rad**2))
            elif isinstance(force, openmm.PeriodicTorsionForce):
                for t in range(force.getNumTorsions()):
                    *four, periodicity, phase, k = force.getTorsionParameters(t)
                    a, b, c, d = (order[x] for x in four)
                    proper = (a, b) in bonded and (b, c) in bonded and (c, d) in bonded
                    key = min((a, b, c, d), (d, c, b, a)) if proper else (a, b, c, d)
                    out["Proper" if proper else "Improper"].setdefault(key, []).append(
                        (int(periodicity), phase.value_in_unit(rad), k.value_in_unit(kj)))
        classes = symmetry_classes(self.mol)
        rank = {i: k for k, i in enumerate(order)}
        out["Improper"] = {_oriented(atoms, self.atom_types, self.mol, classes, rank): parts
                           for atoms, parts in out["Improper"].items()}
        return _symmetrized(out, classes)

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
            "mm_signature": self.signature.to_dict(),
            "atoms": [
                {"index": i, "name": n, "element": a.GetSymbol(), "type": t, "charge": float(q)}
                for i, (a, n, t, q) in enumerate(
                    zip(self.mol.GetAtoms(), self.names, self.atom_types, self.charges, strict=True))
            ],
            "filled_by_analogy": [asdict(f) for f in self.filled_terms],
        }

    def content_hash(self) -> str:
        """Hash of the molecule and its MM signature (cache key, template names)."""
        return parameters_key(self.smiles, self.signature)


def parameters_key(smiles: str, signature: MMSignature) -> str:
    """Content hash of one parameterization: molecule, MM signature, hybridff version."""
    text = json.dumps([smiles, signature.key(), __version__])
    return hashlib.sha256(text.encode()).hexdigest()


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


#: energy of the stretch-bend and bond-bond terms of a bespoke refit (p2 the angle's vertex;
#: :func:`hybridff.mm.refit.cross_energy_forces` computes the same)
CROSS_TERM_ENERGY = ("(angle(p1,p2,p3)-theta0)*(ksb1*(distance(p1,p2)-r10)"
                     "+ksb2*(distance(p2,p3)-r20))+kbb*(distance(p1,p2)-r10)*(distance(p2,p3)-r20)")


def _cross_terms_script(table: dict[tuple[str, str, str], tuple[float, ...]], name: str) -> str:
    """A ForceField ``<Script>`` that adds the cross terms ``table`` ((type of a, j, b) ->
    (θ0, r10, r20, k_sb1, k_sb2, k_bb)) as a CustomCompoundBondForce over the System's angles.

    OpenMM's ForceField XML has no tag for CustomCompoundBondForce (which atoms a compound
    bond spans cannot be told from a Topology in general); a ``<Script>`` is its way to add
    such a Force: ``createSystem`` runs it at the end with ``sys`` and ``data`` (the atom types
    and angles it found). Here each angle whose atom types are a key (either direction) gets
    the term; the types are this molecule's own, so no other molecule's angle matches.
    """
    rows = ",\n".join(f"    {key!r}: {tuple(float(v) for v in values)!r}"
                      for key, values in sorted(table.items()))
    return f"""
# hybridff: stretch-bend and bond-bond terms of a bespoke refit (CustomCompoundBondForce)
import openmm as _openmm
_cross_table = {{
{rows},
}}
_cross_force = _openmm.CustomCompoundBondForce(3, {CROSS_TERM_ENERGY!r})
_cross_force.setName({name!r})
for _name in ("theta0", "r10", "r20", "ksb1", "ksb2", "kbb"):
    _cross_force.addPerBondParameter(_name)
for _angle in data.angles:
    _types = tuple(data.atomType[data.atoms[_i]] for _i in _angle)
    if _types in _cross_table:
        _cross_force.addBond(list(_angle), _cross_table[_types])
    elif _types[::-1] in _cross_table:
        _cross_force.addBond(list(_angle[::-1]), _cross_table[_types[::-1]])
if _cross_force.getNumBonds() > 0:
    sys.addForce(_cross_force)
"""


def _oriented(atoms: tuple[int, ...], types: list[str], mol: Chem.Mol, classes: list[int],
              rank: dict[int, int]) -> tuple[int, ...]:
    """An improper (a, b, centre, d) with its outer atoms ordered the same way on every
    symmetric image of the molecule.

    OpenMM orders outer atoms that share a type (and, for wildcard terms, the first two
    whatever their types) by template index, i.e. by canonical rank here; canonical ranks of
    two symmetric halves need not run the same way, so the order is taken by symmetry class
    first and rank only between equivalent atoms (which two equivalent neighbours of one
    centre come first stays a choice; docs/forcefield.md).
    """
    a, b, centre, d = atoms
    outer = [a, b, d]

    def key(i: int) -> tuple[int, int]:
        return classes[i], rank[i]

    def tied(i: int, j: int) -> bool:
        return types[i] == types[j]

    # the pairs OpenMM may reorder, in its order: (a, d), (b, d) by type; (a, b) by type or,
    # for wildcard terms, always (same element then, for GAFF2's generic impropers)
    same_element = (mol.GetAtomWithIdx(outer[0]).GetAtomicNum()
                    == mol.GetAtomWithIdx(outer[1]).GetAtomicNum())
    for p, q, ok in ((0, 2, tied(outer[0], outer[2])), (1, 2, tied(outer[1], outer[2])),
                     (0, 1, tied(outer[0], outer[1]) or same_element)):
        if ok and key(outer[p]) > key(outer[q]):
            outer[p], outer[q] = outer[q], outer[p]
    return outer[0], outer[1], centre, outer[2]


def _canonical_copy(mol: Chem.Mol, order: list[int]) -> Chem.Mol:
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


def _symmetrized(terms: dict[str, dict[tuple[int, ...], Any]], classes: list[int]
                 ) -> dict[str, dict[tuple[int, ...], Any]]:
    """Bonded terms with parameters averaged over symmetry-equivalent atoms (``classes``), so
    that which of two equivalent atoms got which label (GAFF2's ce/cf on the two halves of a
    symmetric molecule, or parmchk2's first-come improper of a class tuple) cannot depend on
    the atom order. Impropers are grouped by their oriented class tuple (:func:`_oriented`)."""
    def key(atoms: tuple[int, ...]) -> tuple[int, ...]:
        c = tuple(classes[a] for a in atoms)
        return min(c, c[::-1])

    out: dict[str, dict[tuple[int, ...], Any]] = {}
    for kind in ("bonds", "angles"):
        groups: dict[tuple[int, ...], list[tuple[float, float]]] = {}
        for atoms, values in terms[kind].items():
            groups.setdefault(key(atoms), []).append(values)
        out[kind] = {atoms: tuple(float(v) for v in np.mean(groups[key(atoms)], axis=0))
                     for atoms in terms[kind]}
    for kind, group_key in (("Proper", key),
                            ("Improper", lambda atoms: tuple(classes[a] for a in atoms))):
        members: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        for atoms in terms[kind]:
            members.setdefault(group_key(atoms), []).append(atoms)
        out[kind] = {}
        for atoms in terms[kind]:
            group = members[group_key(atoms)]
            k_sum: dict[tuple[int, float], float] = {}
            for other in group:
                for periodicity, phase, k in terms[kind][other]:
                    slot = (periodicity, round(phase, 9))
                    k_sum[slot] = k_sum.get(slot, 0.0) + k
            out[kind][atoms] = [(n, phase, k / len(group)) for (n, phase), k in sorted(k_sum.items())
                                if k != 0.0]
    return out


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


def parameterize(molecule: Any, charge_method: str = DEFAULT_CHARGE_METHOD,
                 forcefield: str = "hybridff-gaff2.xml", atom_types: list[str] | None = None,
                 residue_name: str = "MOL", charges: np.ndarray | None = None,
                 pair_order: str = DEFAULT_PAIR_ORDER, refit: dict[str, Any] | None = None,
                 **charge_options: Any) -> ParameterizedMolecule:
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
        How conjugated pair types (cc/cd, ce/cf, nc/nd, ...) are labelled: ``"canonical"``
        (default) walks in RDKit's canonical atom order, so the parameters do not depend on
        the input atom order; ``"index"`` walks from the lowest atom index, as antechamber
        does, so types equal antechamber's for the same input (a compatibility option,
        recorded in the MM signature). GAFF2 2.2 fits cc- and cd- parameters separately
        (e.g. angle ca-na-cc 117.3 deg vs ca-na-cd 108.8 deg), so the two can differ in
        energy; see docs/atom-typing.md.
    refit
        A bespoke refit of the bonded terms (:mod:`hybridff.mm.bespoke` record, e.g. from a
        trained model's ``metadata["mm_refit"]``); recorded in the MM signature.
    """
    mol = load_molecule(molecule)
    tables = load_tables(forcefield)
    names = atom_names(mol)
    given_types = None if atom_types is None else list(atom_types)
    if atom_types is None:
        from hybridff.mm.atomtyping import assign_atom_types

        atom_types = assign_atom_types(mol, tables.path, pair_order=pair_order)
    if len(atom_types) != mol.GetNumAtoms():
        raise MoleculeInputError(f"{len(atom_types)} atom types given for {mol.GetNumAtoms()} "
                                 "atoms: give one per atom")
    for i, t in enumerate(atom_types):
        if t not in tables.classes:
            raise MissingParameterError(
                f"{atom_label(mol, i)}: atom type {t!r} is not defined in {tables.name}")
    if charges is not None:
        charge_method, charge_options = "file", {**charge_options, "charges": charges}
    q = assign_charges(mol, charge_method, **charge_options)
    refit_hash = None
    if refit is not None:
        from hybridff.mm.bespoke import record_in_atom_order, refit_sha256

        if pair_order != "canonical":
            raise InvalidOptionError("a bespoke refit needs canonical pair labelling "
                                     "(pair_order='canonical')")
        record_in_atom_order(refit, mol)  # refuses a record of another molecule or version
        refit_hash = refit_sha256(refit)
    signature = make_signature(mol, tables.name, tables.sha256, charge_method, charge_options,
                               pair_order=pair_order, atom_types=given_types, charges=q,
                               refit=refit_hash)
    if pair_order == "canonical":  # parmchk2's choices follow its input order: give it one
        order = canonical_atom_order(mol)
        canonical = _canonical_copy(mol, order)
        filled = fill_by_analogy(canonical, [f"{a.GetSymbol()}{k}" for k, a in
                                             enumerate(canonical.GetAtoms())],
                                 [atom_types[i] for i in order], tables)
    else:
        filled = fill_by_analogy(mol, names, list(atom_types), tables)
    return ParameterizedMolecule(mol=mol, names=names, atom_types=list(atom_types), charges=q,
                                 signature=signature, residue_name=residue_name,
                                 filled_terms=filled, refit=refit)
