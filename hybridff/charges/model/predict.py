"""Charges from a charge model: one molecule through a loaded model file, or many through a network.

Final arithmetic is float64, and atoms that are symmetry-equivalent in the graph get their
(chi, J) averaged, so they carry identical charges. A model file may hold an ensemble of K
members; the charges are the mean of the members' charges (each has the exact total, so the
mean has too). Atoms whose environment is absent or rare in the training set raise a
:class:`ChargeModelApplicabilityWarning` naming the atom.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem

from hybridff.charges.model import TRAIN_COMMAND, require_torch
from hybridff.charges.model.features import (
    Graph,
    batch_graphs,
    describe_environment,
    equivalence_classes,
    featurize,
    rare_atoms,
)
from hybridff.elements import SUPPORTED_ELEMENTS
from hybridff.exceptions import (
    ChargeAssignmentError,
    ModelCompatibilityError,
    UnsupportedChemistryError,
    UnsupportedElementError,
)
from hybridff.io.molecule import atom_label
from hybridff.threads import torch_threads


class ChargeModelApplicabilityWarning(UserWarning):
    """An atom's chemistry is absent from (or rare in) the charge model's training set."""


class ChargeModel:
    """A loaded charge model: the network (float64, eval mode) and its metadata."""

    def __init__(self, path: Path, network: Any, metadata: dict) -> None:
        self.path = path
        self.network = network
        self.metadata = metadata
        self.elements: list[str] = list(metadata["elements"])

    def check_molecule(self, mol: Chem.Mol) -> None:
        """Refuse elements outside the model, radicals and implicit-only hydrogens."""
        for atom in mol.GetAtoms():
            symbol = atom.GetSymbol()
            if symbol not in self.elements:
                if symbol in SUPPORTED_ELEMENTS:
                    raise ModelCompatibilityError(
                        f"{atom_label(mol, atom.GetIdx())}: the charge model {self.path} covers "
                        f"elements {', '.join(self.elements)}, but the molecule needs {symbol}; "
                        f"use the shipped model or retrain with {TRAIN_COMMAND}"
                    )
                raise UnsupportedElementError(
                    f"{atom_label(mol, atom.GetIdx())}: element {symbol} is not covered by the "
                    f"ML charge model (elements {', '.join(self.elements)}); use --method am1bcc "
                    "if AmberTools handles it"
                )
            if atom.GetNumRadicalElectrons():
                raise UnsupportedChemistryError(
                    f"{atom_label(mol, atom.GetIdx())} has {atom.GetNumRadicalElectrons()} "
                    "unpaired electron(s): the ML charge model handles closed-shell molecules only"
                )
        if any(a.GetNumImplicitHs() for a in mol.GetAtoms()):
            raise ChargeAssignmentError(
                "the ML charge model needs explicit hydrogens (Chem.AddHs, or load the molecule "
                "with hybridff.io.molecule.load_molecule)"
            )

    def applicability(self, mol: Chem.Mol) -> list[str]:
        """One message per atom whose environment (:func:`~hybridff.charges.model.features.
        atom_environment`) occurs on fewer than MIN_ENVIRONMENT_COUNT training atoms; empty
        when all are covered, or when the model file records no training environments."""
        seen = self.metadata.get("training_environments")
        if seen is None:
            return []
        out = []
        for index, key, n in rare_atoms(mol, seen):
            how = "never occurs" if n == 0 else f"occurs on only {n} atom(s)"
            out.append(
                f"{atom_label(mol, index)}: {describe_environment(key)} {how} in the "
                "ML charge model's training set, so its charge (and its neighbours') is an "
                "extrapolation; check it with --method am1bcc"
            )
        return out

    def predict(self, mol: Chem.Mol) -> np.ndarray:
        """Charges (e, float64) of ``mol``; the sum equals the formal charge to ~1e-12."""
        from hybridff.charges.model.network import graph_tensors

        torch = require_torch()
        self.check_molecule(mol)
        for message in self.applicability(mol):
            warnings.warn(message, ChargeModelApplicabilityWarning, stacklevel=3)
        g = featurize(mol, self.elements)
        x, edge_index, e, _, _ = graph_tensors(g, dtype=torch.float64)
        # a molecule is a tiny graph: torch's thread pool only adds overhead (and contends with
        # OpenMM's threads), so predict on one thread and give the setting back afterwards
        with torch_threads(1), torch.no_grad():
            chi, hardness = self.network.electronegativity_hardness(x, edge_index, e)
        # equivalent atoms have equal (chi, J) up to summation order; make them exactly equal
        ranks = equivalence_classes(g)
        return ensemble_charges(chi.numpy(), hardness.numpy(), ranks, float(Chem.GetFormalCharge(mol)))


def ensemble_charges(
    chi: np.ndarray, hardness: np.ndarray, classes: np.ndarray, total: float
) -> np.ndarray:
    """Mean over members of the QEq charges (float64) from per-member (chi, J), shape (K, n).

    Within each member, (chi, J) are averaged over the atoms of one equivalence class (so
    equivalent atoms get identical charges); each member's charges then sum to ``total``, and
    so does the mean, up to a last rounding that is removed.
    """
    chi = np.atleast_2d(np.asarray(chi, dtype=np.float64))
    hardness = np.atleast_2d(np.asarray(hardness, dtype=np.float64))
    counts = np.bincount(classes)
    q = np.zeros(chi.shape[1])
    for c, j in zip(chi, hardness, strict=True):
        c = (np.bincount(classes, weights=c) / counts)[classes]
        inv = 1.0 / (np.bincount(classes, weights=j) / counts)[classes]
        lam = (total + np.sum(c * inv)) / np.sum(inv)
        q += (lam - c) * inv
    q /= chi.shape[0]
    # remove the last float rounding (~1e-15) so the sum is the formal charge
    return q - (q.sum() - total) / q.size


def predict_members(net: Any, graphs: list[Graph], batch_size: int = 256) -> list[np.ndarray]:
    """Charges per molecule and member, (K, n_atoms) each (float64), in the order of ``graphs``;
    ``net`` (a :class:`~hybridff.charges.model.network.ChargeEquilibrationNet`) is left float32."""
    from hybridff.charges.model.network import graph_tensors

    torch = require_torch()
    out: list[np.ndarray] = []
    net64 = net.to(torch.float64)
    with torch.no_grad():
        for s in range(0, len(graphs), batch_size):
            chunk = graphs[s : s + batch_size]
            g = batch_graphs(chunk)
            q = net64(*graph_tensors(g, dtype=torch.float64)).numpy()
            bounds = np.cumsum([0] + [c.atom_features.shape[0] for c in chunk])
            out += [q[:, a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    net.to(torch.float32)
    return out


def predict_graphs(net: Any, graphs: list[Graph], batch_size: int = 256) -> list[np.ndarray]:
    """Ensemble charges (mean over members) per molecule, in the order of ``graphs``."""
    return [q.mean(axis=0) for q in predict_members(net, graphs, batch_size)]
