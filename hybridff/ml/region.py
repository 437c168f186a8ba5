"""The ML region of a Topology: the atoms a trained correction covers.

By default the one residue that is the molecule the model was trained on (compared as a
molecular graph); a residue name or atom indices otherwise, checked against that molecule.
"""

from __future__ import annotations

import logging
from typing import Any

from openmm import app

from hybridff.exceptions import ModelCompatibilityError
from hybridff.ml.modelfile import ModelFile
from hybridff.mm.graph import MoleculeGraph, residues_matching

logger = logging.getLogger(__name__)

WATER_RESIDUES = frozenset(
    {"HOH", "WAT", "SOL", "H2O", "TIP", "TIP3", "TIP4", "TIP5", "T3P", "T4P", "SPC", "SPCE"}
)


def _atom_text(atom: app.topology.Atom) -> str:
    res = atom.residue
    return f"atom {atom.index} ({atom.name}, residue {res.name} {res.id})"


def model_molecule(model: ModelFile) -> tuple[str, MoleculeGraph] | None:
    """The molecule a correction was trained on: (canonical SMILES, graph), or None when the
    model file does not say (files written by an older hybridff record only the SMILES, from
    which the graph is rebuilt)."""
    record = model.metadata.get("molecule")
    if record:
        return str(record["smiles"]), MoleculeGraph.from_dict(record)
    smiles = (model.metadata.get("mm") or {}).get("smiles")
    if not smiles:
        return None
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    return smiles, MoleculeGraph.from_rdkit(Chem.AddHs(mol))


def _residue_text(res: app.topology.Residue) -> str:
    return f"{res.name} {res.id} ({MoleculeGraph.from_residue(res).formula})"


def select_ml_atoms(topology: app.Topology, atoms: Any = None,
                    molecule: tuple[str, MoleculeGraph] | None = None) -> list[int]:
    """Indices of the ML region.

    ``atoms``: ``None`` (the residue that is the model's ``molecule``; an error if none or
    several are), a residue name (all residues of that name), or a sequence of atom indices.
    A selection that is not the model's molecule is refused, naming both. Without a
    ``molecule`` (models of older hybridff versions), ``None`` selects every residue that is
    neither water, an ion, an amino acid nor a nucleotide, with a warning.
    """
    n_atoms = topology.getNumAtoms()
    if atoms is None and molecule is not None:
        smiles, graph = molecule
        found = list(residues_matching(topology, graph))
        if len(found) == 1:
            return [a.index for a in found[0].atoms()]
        others = [_residue_text(r) for r in topology.residues()
                  if r.name.upper() not in WATER_RESIDUES and len(r) > 1][:8]
        if not found:
            raise ModelCompatibilityError(
                f"no residue of the topology is the molecule the ML model was trained on "
                f"({smiles}, {graph.formula}); residues present: {others or 'water and ions only'}; "
                "add that molecule, or pass atoms= to choose the ML region")
        raise ModelCompatibilityError(
            f"{len(found)} residues are the model's molecule {smiles}: "
            f"{', '.join(_residue_text(r) for r in found[:8])}; one correction covers one "
            "molecule: pass atoms= (the atom indices of one of them)")
    if atoms is None:
        picked = [
            a.index
            for res in topology.residues()
            if res.name.upper() not in WATER_RESIDUES and len(res) > 1
            and res.name.upper() not in app.PDBFile._standardResidues  # noqa: SLF001
            for a in res.atoms()
        ]
        what = "non-water, non-ion, non-polymer residues"
        logger.warning("the ML model does not record the molecule it was trained on (made by "
                       "an older hybridff): its region is every residue that is not water, an "
                       "ion, an amino acid or a nucleotide (%d atoms); pass atoms= to be sure",
                       len(picked))
    elif isinstance(atoms, str):
        picked = [a.index for res in topology.residues() if res.name == atoms for a in res.atoms()]
        what = f"residues named {atoms!r}"
        if not picked:
            names = sorted({r.name for r in topology.residues()})
            raise ModelCompatibilityError(
                f"no residue named {atoms!r} in the topology; residue names present: {names}"
            )
    else:
        picked = [int(i) for i in atoms]
        what = "the given atom indices"
        bad = [i for i in picked if not 0 <= i < n_atoms]
        if bad:
            raise ModelCompatibilityError(
                f"ML atom indices {bad[:5]} are outside the topology's 0..{n_atoms - 1}"
            )
        if len(set(picked)) != len(picked):
            raise ModelCompatibilityError("ML atom indices contain duplicates")
    if not picked:
        raise ModelCompatibilityError(f"the ML region ({what}) is empty; pass atoms=...")
    if molecule is not None:
        smiles, graph = molecule
        selected = MoleculeGraph.from_topology(topology, picked)
        if not selected.same_molecule(graph):
            raise ModelCompatibilityError(
                f"the ML region ({what}: {selected.formula}, {len(picked)} atoms) is not the "
                f"molecule the ML model was trained on ({smiles}, {graph.formula}); a "
                "per-molecule correction only applies to its own molecule: train one for "
                "this molecule (hybridff train)")
    return picked
