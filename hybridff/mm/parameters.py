"""From a molecule to its force-field parameters: atom types, charges, terms filled by analogy.

:func:`parameterize` returns a :class:`ParameterizedMolecule`, which writes the per-molecule
OpenMM ForceField XML (a residue template with types and charges, plus any bonded parameters
that GAFF2 lacks, filled by analogy the way parmchk2 does and listed in ``filled_terms``).
Assignment lives here; the analogy in :mod:`hybridff.mm.analogy`, the XML export in
:mod:`hybridff.mm.ffxml`.
The System itself is built by OpenMM's own ``ForceField`` from the shipped file and this XML,
so the drop-in XML route and the Python route give the same System.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np
from openmm import unit
from rdkit import Chem

from hybridff import __version__
from hybridff.charges import assign_charges
from hybridff.exceptions import InvalidOptionError, MissingParameterError, MoleculeInputError
from hybridff.io.molecule import (
    atom_label,
    atom_names,
    canonical_smiles,
    formal_charge,
    load_molecule,
)
from hybridff.mm import ffxml
from hybridff.mm.analogy import FilledTerm, canonical_copy, fill_by_analogy
from hybridff.mm.graph import MoleculeGraph, symmetry_classes
from hybridff.mm.signature import (
    DEFAULT_PAIR_ORDER,
    MMSignature,
    canonical_atom_order,
    make_signature,
)
from hybridff.mm.tables import load_tables

#: ML charges (AM1-BCC quality at milliseconds per molecule; docs/charges.md)
DEFAULT_CHARGE_METHOD = "ml"


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

    # what decided the parameters, read (only) from their MM signature, its one home
    forcefield = property(attrgetter("signature.forcefield"))
    forcefield_sha256 = property(attrgetter("signature.forcefield_sha256"))
    charge_method = property(attrgetter("signature.charge_method"))
    pair_order = property(attrgetter("signature.pair_order"))
    charge_model_sha256 = property(attrgetter("signature.charge_model_sha256"))

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

        ``names`` renames the atoms (same order) to match a topology's residue. Written by
        :func:`hybridff.mm.ffxml.to_ffxml` (which says how the file is built).
        """
        return ffxml.to_ffxml(self, names, residue_name)

    def canonical_terms(self) -> dict[str, dict[tuple[int, ...], Any]]:
        """Bonded terms OpenMM gives this molecule in canonical atom order (GAFF2 types, the
        terms filled by analogy; no refit), in this molecule's atom indices: ``bonds`` (i, j) -> (nm,
        kJ/mol/nm2); ``angles`` (i, j, k) -> (rad, kJ/mol/rad2); ``Proper`` / ``Improper``
        (a, b, c, d) -> [(periodicity, phase rad, k kJ/mol), ...] (impropers centred on c)."""
        import openmm
        from openmm import app

        tables = load_tables(self.forcefield)
        order = canonical_atom_order(self.mol)
        xml = ffxml.class_typed_ffxml(self, [f"A{k}" for k in range(len(order))], "CANONICAL",
                                     order)
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
        canonical = canonical_copy(mol, order)
        filled = fill_by_analogy(canonical, [f"{a.GetSymbol()}{k}" for k, a in
                                             enumerate(canonical.GetAtoms())],
                                 [atom_types[i] for i in order], tables)
    else:
        filled = fill_by_analogy(mol, names, list(atom_types), tables)
    return ParameterizedMolecule(mol=mol, names=names, atom_types=list(atom_types), charges=q,
                                 signature=signature, residue_name=residue_name,
                                 filled_terms=filled, refit=refit)
