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
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from openmm import app
from rdkit import Chem

from hybridff.exceptions import DataFormatError
from hybridff.io.molecule import canonical_smiles, load_molecules
from hybridff.mm.cache import ParameterCache, cache_key
from hybridff.mm.graph import MoleculeGraph
from hybridff.mm.parameters import DEFAULT_CHARGE_METHOD, ParameterizedMolecule, parameterize
from hybridff.mm.signature import DEFAULT_PAIR_ORDER, MMSignature, make_signature, refit_sha256
from hybridff.mm.tables import load_tables

#: the generators alive in this process, so that ``add_ml_correction`` can check the MM of a
#: System built through one without being handed it (weak: nothing is kept alive by this)
_LIVE_GENERATORS: weakref.WeakSet[HybridTemplateGenerator] = weakref.WeakSet()

logger = logging.getLogger(__name__)


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
        Labelling of conjugated pair types (see :func:`hybridff.mm.parameters.parameterize`);
        ``"canonical"`` (default): a molecule gets the same parameters whatever atom order it
        arrives in.

    The MM signature of every molecule it parameterized is kept (:meth:`signatures`), so
    :func:`hybridff.add_ml_correction` checks a correction against it with no extra argument.
    """

    def __init__(self, molecules: Any = None, charge_method: str = DEFAULT_CHARGE_METHOD,
                 forcefield: str = "hybridff-gaff2.xml", cache: str | Path | bool | None = None,
                 pair_order: str = DEFAULT_PAIR_ORDER, refit: dict[str, Any] | None = None,
                 **charge_options: Any):
        self.charge_method = charge_method
        self.forcefield = forcefield
        self.charge_options = charge_options
        self.pair_order = pair_order
        #: a bespoke refit (:mod:`hybridff.mm.bespoke` record), used for its own molecule
        self.refit = refit
        self.tables = load_tables(forcefield)
        self.cache = None if cache is False else ParameterCache(None if cache in (None, True) else cache)
        self._molecules: list[tuple[Chem.Mol, MoleculeGraph]] = []
        self.parameterized: dict[str, ParameterizedMolecule] = {}
        if molecules is not None:
            self.add_molecules(molecules)
        _LIVE_GENERATORS.add(self)

    def add_molecules(self, molecules: Any) -> None:
        """Register more molecules (any input :func:`hybridff.io.molecule.load_molecules` takes)."""
        if not isinstance(molecules, (list, tuple)):
            molecules = [molecules]
        for mol in load_molecules(list(molecules)):
            self._molecules.append((mol, MoleculeGraph.from_rdkit(mol)))

    def expected_signature(self, mol: Chem.Mol) -> MMSignature:
        """The MM signature this generator gives ``mol`` (computed without parameterizing)."""
        charges = None
        if self.charge_method == "file":
            from hybridff.charges import assign_charges

            charges = assign_charges(mol, "file", **self.charge_options)
        refit = self._refit_for(mol)
        if refit is not None:
            refit = refit_sha256(refit)
        return make_signature(mol, self.tables.name, self.tables.sha256, self.charge_method,
                              self.charge_options, pair_order=self.pair_order, charges=charges,
                              refit=refit)

    def _refit_for(self, mol: Chem.Mol) -> dict[str, Any] | None:
        if self.refit is not None and self.refit.get("smiles") == canonical_smiles(mol):
            return self.refit
        return None

    def parameterize_molecule(self, mol: Chem.Mol) -> ParameterizedMolecule:
        """Parameters of ``mol`` (from the cache when present), in ``mol``'s atom order."""
        smiles = canonical_smiles(mol)
        key = cache_key(smiles, self.expected_signature(mol))
        if key in self.parameterized:
            return self.parameterized[key].in_atom_order_of(mol)

        def create() -> ParameterizedMolecule:
            logger.info("parameterizing %s (charges: %s)", smiles, self.charge_method)
            return parameterize(mol, self.charge_method, self.forcefield,
                                pair_order=self.pair_order, refit=self._refit_for(mol),
                                **self.charge_options)

        pm = self.cache.get_or_create(key, create) if self.cache is not None else create()
        if pm.content_hash() != key:
            raise DataFormatError(f"parameters of {smiles} do not carry the MM signature they "
                                  "were asked for; clear the parameter cache and report it")
        self.parameterized[key] = pm
        return pm.in_atom_order_of(mol)

    def signatures(self, smiles: str | None = None) -> list[MMSignature]:
        """MM signatures of the molecules parameterized so far (of ``smiles`` only if given)."""
        return [pm.signature for pm in self.parameterized.values()
                if smiles is None or pm.smiles == smiles]

    def _match(self, residue) -> tuple[Chem.Mol, dict[int, int], list] | None:
        rg = MoleculeGraph.from_residue(residue)
        for mol, g in self._molecules:
            mapping = g.mapping_to(rg)
            if mapping is not None:
                return mol, mapping, list(residue.atoms())  # mol index -> residue index
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
        pm = self.parameterize_molecule(mol)  # in mol's atom order
        names = [atoms[mapping[i]].name for i in range(pm.mol.GetNumAtoms())]
        template_name = f"{residue.name}-{pm.content_hash()[:8]}"
        forcefield.loadFile(io.StringIO(pm.to_ffxml(names=names, residue_name=template_name)))
        logger.debug("loaded template %s for residue %s", template_name, residue.name)
        return True

    @property
    def molecules(self) -> Iterable[Chem.Mol]:
        return [m for m, _ in self._molecules]


def live_signatures(smiles: str) -> list[MMSignature]:
    """Distinct MM signatures that the template generators alive in this process gave the
    molecule ``smiles`` (canonical SMILES)."""
    found: list[MMSignature] = []
    for generator in list(_LIVE_GENERATORS):
        for signature in generator.signatures(smiles):
            if signature not in found:
                found.append(signature)
    return found
