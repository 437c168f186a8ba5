"""What the charge model sees of a molecule: its 2D graph as arrays, and the atom environments
the applicability check counts.

A molecule is its 2D graph only (no coordinates, no atom indices as features), so the
predicted charges do not depend on the conformer and permute with the atoms. Formal charges
and bond orders are averaged over resonance structures, and resonance-equivalent terminal
atoms share their features. Needs no PyTorch (:mod:`hybridff.charges.model.network` turns a
:class:`Graph` into tensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem

#: Version of the featurization below; a model file with another version is refused.
FEATURE_VERSION = 2

#: Resonance structures averaged over for charged molecules (formal charges, bond orders).
MAX_RESONANCE_STRUCTURES = 256
_ORDER_SLOT = {Chem.BondType.SINGLE: 0, Chem.BondType.DOUBLE: 1, Chem.BondType.TRIPLE: 2}

#: Categorical atom features (value lists; anything else falls into a final "other" slot).
FEATURE_SPEC: dict[str, list] = {
    "hybridization": ["S", "SP", "SP2", "SP3", "SP3D", "SP3D2"],
    "degree": [1, 2, 3, 4, 5, 6],
    "num_hs": [0, 1, 2, 3],
    "neutral_valence": [1, 2, 3, 4, 5, 6],
    "ring_size": [3, 4, 5, 6],
    "num_rings": [0, 1, 2],
}
#: Numeric atom features, so that a degree or valence rare in training still sits on a scale
#: the network has seen: degree / 4, neutral valence / 4, number of H / 4, and the valence
#: beyond the element's lowest normal valence (hypervalence: 4 for a sulfonyl S, 2 for P(V)) / 2.
NUMERIC_FEATURES = ("degree", "neutral_valence", "num_hs", "extra_valence")
#: Bond features: single, double, triple (resonance-averaged weights), aromatic, conjugated, in ring.
BOND_FEATURES = ("single", "double", "triple", "aromatic", "conjugated", "ring")


def feature_spec() -> dict:
    """The featurization as stored in a model file's metadata."""
    return {
        "version": FEATURE_VERSION,
        "element": "one-hot over the model's elements",
        "formal_charge": "resonance-averaged: negative part, positive part, zero, fractional",
        "atom": FEATURE_SPEC,
        "atom_numeric": list(NUMERIC_FEATURES),
        "atom_flags": ["aromatic", "in_ring"],
        "bond": list(BOND_FEATURES),
        "bond_orders": "resonance-averaged single/double/triple weights",
        "pooling": "terminal H-free atoms of one element on one centre share features",
    }


def _one_hot(value, choices: list) -> list[float]:
    out = [0.0] * (len(choices) + 1)
    out[choices.index(value) if value in choices else len(choices)] = 1.0
    return out


def atom_feature_size(elements: list[str]) -> int:
    """Length of an atom feature vector for a model over ``elements``."""
    return len(elements) + 4 + sum(len(v) + 1 for v in FEATURE_SPEC.values()) + len(NUMERIC_FEATURES) + 2


def neutral_valence(atom: Chem.Atom) -> int:
    """Total valence with the formal charge's bond taken back: N+ in NH4+ or C=N+ counts 3,
    O- counts 2, C+ and C- count 4. Unlike the valence itself this does not change between
    resonance structures that move a charge along with a bond (guanidinium N, carboxylate O)."""
    sign = 1 if atom.GetAtomicNum() in (7, 8, 15, 16, 33, 34) else -1
    return atom.GetTotalValence() - sign * atom.GetFormalCharge()


def extra_valence(atom: Chem.Atom) -> int:
    """:func:`neutral_valence` beyond the lowest normal valence of the element (0 for C, N(III),
    S(II) ...; 2 for a sulfoxide S or P(V), 4 for a sulfonyl S); never negative."""
    normal = [v for v in Chem.GetPeriodicTable().GetValenceList(atom.GetAtomicNum()) if v >= 0]
    return max(0, neutral_valence(atom) - (min(normal) if normal else 0))


@dataclass
class Graph:
    """A molecule's (or a batch of molecules') graph as arrays."""

    atom_features: np.ndarray  # (n_atoms, n_atom_features) float32
    edge_index: np.ndarray  # (2, n_directed_edges) int64: source, target
    edge_features: np.ndarray  # (n_directed_edges, n_bond_features) float32
    total_charge: np.ndarray  # (n_molecules,) float64
    molecule_index: np.ndarray  # (n_atoms,) int64


def _resonance_averages(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Formal charge per atom and (single, double, triple) weights per bond, averaged over
    RDKit's resonance structures, so e.g. both carboxylate or amidinium ends look the same."""
    n_atoms, n_bonds = mol.GetNumAtoms(), mol.GetNumBonds()
    charge = np.array([a.GetFormalCharge() for a in mol.GetAtoms()], dtype=np.float64)
    orders = np.zeros((n_bonds, 3))
    for b in mol.GetBonds():
        k = _ORDER_SLOT.get(b.GetBondType())
        if k is not None:
            orders[b.GetIdx(), k] = 1.0
    if not any(a.GetFormalCharge() for a in mol.GetAtoms()):
        return charge, orders
    structures = [s for s in Chem.ResonanceMolSupplier(mol, 0, MAX_RESONANCE_STRUCTURES) if s]
    if len(structures) < 2:
        return charge, orders
    charge = np.zeros(n_atoms)
    res_orders = np.zeros((n_bonds, 3))
    for s in structures:
        charge += [a.GetFormalCharge() for a in s.GetAtoms()]
        for b in s.GetBonds():
            k = _ORDER_SLOT.get(b.GetBondType())
            if k is not None:
                res_orders[b.GetIdx(), k] += 1.0
    charge /= len(structures)
    res_orders /= len(structures)
    for b in mol.GetBonds():  # aromatic bonds stay aromatic (structures come kekulized)
        if not b.GetIsAromatic():
            orders[b.GetIdx()] = res_orders[b.GetIdx()]
    return charge, orders


def _terminal_pools(mol: Chem.Mol) -> list[list[int]]:
    """Groups of terminal, hydrogen-free atoms of one element on one centre (the O's of a
    carboxylate, nitro, sulfonate or phosphate group): equivalent by resonance."""
    pools = []
    for centre in mol.GetAtoms():
        by_element: dict[int, list[int]] = {}
        for nb in centre.GetNeighbors():
            if nb.GetDegree() == 1 and nb.GetTotalNumHs() == 0 and nb.GetAtomicNum() > 1:
                by_element.setdefault(nb.GetAtomicNum(), []).append(nb.GetIdx())
        pools += [sorted(v) for v in by_element.values() if len(v) > 1]
    return pools


def featurize(mol: Chem.Mol, elements: list[str]) -> Graph:
    """Graph arrays of ``mol`` (explicit hydrogens); elements must all be in ``elements``."""
    charge, orders = _resonance_averages(mol)
    rows = []
    ring_info = mol.GetRingInfo()
    for atom in mol.GetAtoms():
        element = [0.0] * len(elements)
        element[elements.index(atom.GetSymbol())] = 1.0
        smallest_ring = next(
            (n for n in (3, 4, 5, 6) if ring_info.IsAtomInRingOfSize(atom.GetIdx(), n)), None
        )
        q = charge[atom.GetIdx()]
        degree, valence = atom.GetDegree(), neutral_valence(atom)
        n_h = atom.GetTotalNumHs(includeNeighbors=True)  # H atoms are explicit here
        rows.append(
            element
            + [max(0.0, -q), max(0.0, q), float(q == 0.0), float(q != round(q))]
            + _one_hot(str(atom.GetHybridization()), FEATURE_SPEC["hybridization"])
            + _one_hot(degree, FEATURE_SPEC["degree"])
            + _one_hot(n_h, FEATURE_SPEC["num_hs"])
            + _one_hot(valence, FEATURE_SPEC["neutral_valence"])
            + _one_hot(smallest_ring, FEATURE_SPEC["ring_size"])
            + _one_hot(min(ring_info.NumAtomRings(atom.GetIdx()), 2), FEATURE_SPEC["num_rings"])
            + [degree / 4, valence / 4, n_h / 4, extra_valence(atom) / 2]
            + [float(atom.GetIsAromatic()), float(atom.IsInRing())]
        )
    n = mol.GetNumAtoms()
    x = np.asarray(rows, dtype=np.float64).reshape(n, -1)
    bond_rows = np.zeros((mol.GetNumBonds(), len(BOND_FEATURES)))
    for bond in mol.GetBonds():
        k = bond.GetIdx()
        bond_rows[k, :3] = orders[k]
        bond_rows[k, 3:] = [
            float(bond.GetIsAromatic()), float(bond.GetIsConjugated()), float(bond.IsInRing())
        ]
    for pool in _terminal_pools(mol):
        x[pool] = x[pool].mean(axis=0)
        bonds = [mol.GetAtomWithIdx(i).GetBonds()[0].GetIdx() for i in pool]
        bond_rows[bonds] = bond_rows[bonds].mean(axis=0)
    src, dst, feats = [], [], []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        src += [i, j]
        dst += [j, i]
        feats += [bond_rows[bond.GetIdx()], bond_rows[bond.GetIdx()]]
    return Graph(
        atom_features=x.astype(np.float32),
        edge_index=np.asarray([src, dst], dtype=np.int64).reshape(2, -1),
        edge_features=np.asarray(feats, dtype=np.float32).reshape(-1, len(BOND_FEATURES)),
        total_charge=np.asarray([Chem.GetFormalCharge(mol)], dtype=np.float64),
        molecule_index=np.zeros(n, dtype=np.int64),
    )


def equivalence_classes(g: Graph) -> np.ndarray:
    """Class id per atom from colour refinement (1-WL) on the featurized graph: atoms in one
    class get the same network output up to float rounding, so it may be averaged."""
    n = g.atom_features.shape[0]
    colours = _relabel([tuple(np.round(r, 6)) for r in g.atom_features])
    edge_keys = [tuple(np.round(r, 6)) for r in g.edge_features]
    for _ in range(n):
        neighbours: list[list] = [[] for _ in range(n)]
        for (s, t), key in zip(g.edge_index.T, edge_keys, strict=True):
            neighbours[t].append((colours[s], key))
        new = _relabel([(colours[i], tuple(sorted(neighbours[i]))) for i in range(n)])
        if len(set(new)) == len(set(colours)):
            break
        colours = new
    return np.asarray(colours, dtype=np.int64)


def _relabel(keys: list) -> list[int]:
    table = {k: i for i, k in enumerate(sorted(set(keys)))}
    return [table[k] for k in keys]


def batch_graphs(graphs: list[Graph]) -> Graph:
    """Concatenate graphs into one disconnected graph with a molecule index per atom."""
    offsets = np.cumsum([0] + [g.atom_features.shape[0] for g in graphs[:-1]])
    return Graph(
        atom_features=np.concatenate([g.atom_features for g in graphs]),
        edge_index=np.concatenate([g.edge_index + o for g, o in zip(graphs, offsets, strict=True)], 1),
        edge_features=np.concatenate([g.edge_features for g in graphs]),
        total_charge=np.concatenate([g.total_charge for g in graphs]),
        molecule_index=np.concatenate(
            [np.full(g.atom_features.shape[0], k, dtype=np.int64) for k, g in enumerate(graphs)]
        ),
    )


#: An atom environment seen on fewer training atoms than this gets a warning.
MIN_ENVIRONMENT_COUNT = 5


def atom_environment(atom: Chem.Atom) -> str:
    """The key the applicability check counts: element, neighbours, H, valence, formal charge."""
    return (
        f"{atom.GetSymbol()} X{atom.GetDegree()} H{atom.GetTotalNumHs(includeNeighbors=True)} "
        f"v{atom.GetTotalValence()} {atom.GetFormalCharge():+d}"
    )


def rare_atoms(mol: Chem.Mol, seen: dict[str, int]) -> list[tuple[int, str, int]]:
    """(atom index, environment key, training count) of each atom whose environment occurs on
    fewer than MIN_ENVIRONMENT_COUNT training atoms (``seen``: count per key)."""
    out = []
    for atom in mol.GetAtoms():
        key = atom_environment(atom)
        if seen.get(key, 0) < MIN_ENVIRONMENT_COUNT:
            out.append((atom.GetIdx(), key, seen.get(key, 0)))
    return out


def describe_environment(key: str) -> str:
    """An :func:`atom_environment` key in words."""
    symbol, degree, n_h, valence, charge = key.split()
    return (f"{symbol} with {degree[1:]} neighbours ({n_h[1:]} H), valence {valence[1:]}, "
            f"formal charge {charge}")


def training_environments(mols: list[Chem.Mol]) -> dict[str, int]:
    """Atom count per :func:`atom_environment` key in ``mols`` (stored in the model file)."""
    counts: dict[str, int] = {}
    for mol in mols:
        for atom in mol.GetAtoms():
            key = atom_environment(atom)
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
