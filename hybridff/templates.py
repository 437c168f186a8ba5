"""Residue-template generator for ``openmm.app.ForceField`` (drop-in use with OpenMM).

    forcefield = ForceField("amber14-all.xml", "amber14/tip3p.xml", "hybridff-gaff2.xml")
    generator = HybridTemplateGenerator(["ligand.sdf", "CCO"], charge_method="ml")
    forcefield.registerTemplateGenerator(generator.generator)
    system = forcefield.createSystem(topology, nonbondedMethod=PME, switchDistance=0.9*nanometer)

A residue that no loaded template matches is compared (elements and bonds) with the
molecules given; on a match, the molecule is parameterized (or read from the on-disk cache)
and its template, named after the residue's own atoms, is loaded into the force field.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import networkx as nx
from networkx.algorithms import isomorphism
from openmm import app
from rdkit import Chem

from hybridff.cache import ParameterCache, cache_key
from hybridff.forcefield_tables import load_tables
from hybridff.molecule import canonical_smiles, load_molecules
from hybridff.parameters import DEFAULT_CHARGE_METHOD, ParameterizedMolecule, parameterize

logger = logging.getLogger(__name__)


def _mol_graph(mol: Chem.Mol) -> nx.Graph:
    g = nx.Graph()
    for a in mol.GetAtoms():
        g.add_node(a.GetIdx(), element=a.GetAtomicNum())
    g.add_edges_from((b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds())
    return g


def _residue_graph(residue: app.topology.Residue) -> tuple[nx.Graph, list]:
    atoms = list(residue.atoms())
    index = {a: i for i, a in enumerate(atoms)}
    g = nx.Graph()
    for i, a in enumerate(atoms):
        g.add_node(i, element=a.element.atomic_number if a.element is not None else 0)
    g.add_edges_from((index[a], index[b]) for a, b in residue.internal_bonds())
    return g, atoms


def _formula(g: nx.Graph) -> tuple:
    return tuple(sorted(Counter(nx.get_node_attributes(g, "element").values()).items()))


class HybridTemplateGenerator:
    """Make OpenMM residue templates for small molecules on demand.

    Parameters
    ----------
    molecules
        Molecules the generator may be asked about: RDKit Mols, openff Molecules, SMILES,
        SDF/mol2/SMI paths (or a list of them). More can be added with :meth:`add_molecules`.
    charge_method
        A registered charge method (``ml``, ``am1bcc``, ``gasteiger``, ``file``).
    forcefield
        The hybridff force-field file the molecules are typed against; load the same file
        into the ``openmm.app.ForceField`` you register the generator with.
    cache
        Folder of the on-disk cache (``~/.cache/hybridff`` or ``$HYBRIDFF_CACHE`` by default);
        ``False`` turns caching off.
    pair_order
        Labelling of conjugated pair types (see :func:`hybridff.parameters.parameterize`).
        ``"canonical"`` by default here: a molecule gets the same parameters whatever atom
        order it arrives in, which the content-keyed cache relies on.
    """

    def __init__(self, molecules: Any = None, charge_method: str = DEFAULT_CHARGE_METHOD,
                 forcefield: str = "hybridff-gaff2.xml", cache: str | Path | bool | None = None,
                 pair_order: str = "canonical", **charge_options: Any):
        self.charge_method = charge_method
        self.forcefield = forcefield
        self.charge_options = charge_options
        self.pair_order = pair_order
        self.tables = load_tables(forcefield)
        self.cache = None if cache is False else ParameterCache(None if cache in (None, True) else cache)
        self._molecules: list[tuple[Chem.Mol, nx.Graph, tuple]] = []
        self.parameterized: dict[str, ParameterizedMolecule] = {}
        if molecules is not None:
            self.add_molecules(molecules)

    def add_molecules(self, molecules: Any) -> None:
        """Register more molecules (any input :func:`hybridff.molecule.load_molecules` takes)."""
        if not isinstance(molecules, (list, tuple)):
            molecules = [molecules]
        for mol in load_molecules(list(molecules)):
            g = _mol_graph(mol)
            self._molecules.append((mol, g, _formula(g)))

    def parameterize_molecule(self, mol: Chem.Mol) -> ParameterizedMolecule:
        """Parameters of ``mol`` (from the cache when present)."""
        smiles = canonical_smiles(mol)
        key = cache_key(smiles, self.tables.sha256, self.charge_method, self.pair_order)
        if key in self.parameterized:
            return self.parameterized[key]

        def create() -> ParameterizedMolecule:
            logger.info("parameterizing %s (charges: %s)", smiles, self.charge_method)
            return parameterize(mol, self.charge_method, self.forcefield,
                                pair_order=self.pair_order, **self.charge_options)

        pm = self.cache.get_or_create(key, create) if self.cache is not None else create()
        self.parameterized[key] = pm
        return pm

    def _match(self, residue) -> tuple[Chem.Mol, dict[int, int], list] | None:
        rg, atoms = _residue_graph(residue)
        formula = _formula(rg)
        for mol, g, f in self._molecules:
            if f != formula or g.number_of_edges() != rg.number_of_edges():
                continue
            matcher = isomorphism.GraphMatcher(
                g, rg, node_match=isomorphism.categorical_node_match("element", None))
            if matcher.is_isomorphic():
                return mol, dict(matcher.mapping), atoms  # mol index -> residue index
        return None

    def generator(self, forcefield: app.ForceField, residue) -> bool:
        """The callable for ``ForceField.registerTemplateGenerator``."""
        if any(a.element is None for a in residue.atoms()):
            return False
        found = self._match(residue)
        if found is None:
            logger.debug("residue %s matches none of the %d registered molecules",
                         residue.name, len(self._molecules))
            return False
        mol, mapping, atoms = found
        pm = self.parameterize_molecule(mol)
        # the cached molecule may order its atoms differently from ``mol``: map through it
        if canonical_smiles(pm.mol) != canonical_smiles(mol) or pm.mol.GetNumAtoms() != mol.GetNumAtoms():
            raise RuntimeError("cache entry does not match the molecule")
        match = mol.GetSubstructMatch(pm.mol)
        pm_to_residue = {i: mapping[j] for i, j in enumerate(match)}
        names = [atoms[pm_to_residue[i]].name for i in range(pm.mol.GetNumAtoms())]
        template_name = f"{residue.name}-{pm.content_hash()[:8]}"
        forcefield.loadFile(io.StringIO(pm.to_ffxml(names=names, residue_name=template_name)))
        logger.info("loaded template %s for residue %s", template_name, residue.name)
        return True

    @property
    def molecules(self) -> Iterable[Chem.Mol]:
        return [m for m, _, _ in self._molecules]
