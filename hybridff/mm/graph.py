"""Molecular graphs (elements and bonds): which residue of a Topology is which molecule.

One home for the graph comparisons that the template generator (residue -> molecule) and the
ML correction (model's molecule -> residue) make. Hydrogens are explicit; stereochemistry and
bond orders are not compared (a Topology carries neither reliably).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
from networkx.algorithms import isomorphism
from openmm import app
from rdkit import Chem

from hybridff.elements import SYMBOL


@dataclass(frozen=True)
class MoleculeGraph:
    """Atomic numbers and bonds (index pairs) of one molecule, in its own atom order."""

    numbers: tuple[int, ...]
    bonds: tuple[tuple[int, int], ...]

    @classmethod
    def from_rdkit(cls, mol: Chem.Mol) -> MoleculeGraph:
        return cls(tuple(a.GetAtomicNum() for a in mol.GetAtoms()),
                   tuple(sorted((min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()),
                                 max(b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
                                for b in mol.GetBonds())))

    @classmethod
    def from_topology(cls, topology: app.Topology, atoms: Sequence[int]) -> MoleculeGraph:
        """The graph of the given atoms of ``topology`` (bonds among them only)."""
        position = {int(i): k for k, i in enumerate(atoms)}
        all_atoms = list(topology.atoms())
        numbers = tuple(all_atoms[i].element.atomic_number if all_atoms[i].element is not None
                        else 0 for i in atoms)
        bonds = set()
        for a, b in topology.bonds():
            if a.index in position and b.index in position:
                i, j = position[a.index], position[b.index]
                bonds.add((min(i, j), max(i, j)))
        return cls(numbers, tuple(sorted(bonds)))

    @classmethod
    def from_residue(cls, residue: app.topology.Residue) -> MoleculeGraph:
        """The graph of one residue (its internal bonds)."""
        atoms = list(residue.atoms())
        index = {a: i for i, a in enumerate(atoms)}
        numbers = tuple(a.element.atomic_number if a.element is not None else 0 for a in atoms)
        bonds = {(min(index[a], index[b]), max(index[a], index[b]))
                 for a, b in residue.internal_bonds()}
        return cls(numbers, tuple(sorted(bonds)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MoleculeGraph:
        return cls(tuple(int(z) for z in data["numbers"]),
                   tuple((int(i), int(j)) for i, j in data["bonds"]))

    def to_dict(self) -> dict[str, Any]:
        return {"numbers": list(self.numbers), "bonds": [list(b) for b in self.bonds]}

    @property
    def formula(self) -> str:
        """Hill formula (C, H, then alphabetical), e.g. ``C8H9NO2``."""
        counts = Counter(SYMBOL.get(z, str(z)) for z in self.numbers)
        order = [s for s in ("C", "H") if s in counts] + sorted(s for s in counts if s not in ("C", "H"))
        return "".join(f"{s}{counts[s] if counts[s] > 1 else ''}" for s in order)

    def _nx(self) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from((i, {"element": z}) for i, z in enumerate(self.numbers))
        g.add_edges_from(self.bonds)
        return g

    def mapping_to(self, other: MoleculeGraph) -> dict[int, int] | None:
        """An element-preserving isomorphism (self index -> other index), or None."""
        if (sorted(self.numbers) != sorted(other.numbers)
                or len(self.bonds) != len(other.bonds)):
            return None
        matcher = isomorphism.GraphMatcher(
            self._nx(), other._nx(), node_match=isomorphism.categorical_node_match("element", None))
        return dict(matcher.mapping) if matcher.is_isomorphic() else None

    def same_molecule(self, other: MoleculeGraph) -> bool:
        return self.mapping_to(other) is not None


def residues_matching(topology: app.Topology, graph: MoleculeGraph
                      ) -> Iterable[app.topology.Residue]:
    """Residues of ``topology`` whose graph is ``graph``."""
    for residue in topology.residues():
        if len(residue) == len(graph.numbers) and MoleculeGraph.from_residue(residue).same_molecule(graph):
            yield residue


def symmetry_classes(mol: Chem.Mol) -> list[int]:
    """A class per atom: atoms in one class are equivalent for OpenMM's template matching,
    which sees elements and connectivity only (bond orders and formal charges not: the two O
    of a nitro group are one class). RDKit's canonical ranks without tie breaking."""
    graph = Chem.RWMol(mol)
    for atom in graph.GetAtoms():
        atom.SetFormalCharge(0)
        atom.SetIsAromatic(False)
        atom.SetNoImplicit(True)
        atom.SetIsotope(0)
    for bond in graph.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
        bond.SetIsAromatic(False)
    return list(Chem.CanonicalRankAtoms(graph, breakTies=False, includeChirality=False))
