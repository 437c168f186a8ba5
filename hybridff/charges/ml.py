"""The ``ml`` charge method: a graph network trained on AM1-BCC charges, total charge exact.

The shipped model (``hybridff/resources/charge_model.pt``) predicts an electronegativity and
a hardness per atom from the 2D molecular graph; charges follow from charge equilibration
with the total fixed to the formal charge (see :mod:`hybridff.charges.ml_model`). Final
arithmetic is float64, and atoms that are symmetry-equivalent in the graph get their
(chi, J) averaged, so they carry identical charges. A model file may hold an ensemble of K
members; the charges are the mean of the members' charges (each has the exact total, so the
mean has too). Atoms whose environment (element, neighbours, hydrogens, valence, formal
charge) is absent or rare in the training set raise a :class:`ChargeModelApplicabilityWarning`
naming the atom. See ``docs/charges.md`` for the data, the held-out accuracy and how to retrain.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem

from hybridff.charges import register_charge_method
from hybridff.elements import SUPPORTED_ELEMENTS
from hybridff.exceptions import (
    ChargeAssignmentError,
    ModelCompatibilityError,
    OptionalDependencyError,
    UnsupportedChemistryError,
    UnsupportedElementError,
)
from hybridff.io.molecule import atom_label

#: The model file shipped with hybridff.
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "resources" / "charge_model.pt"
#: ``format`` field every charge-model file carries.
MODEL_FORMAT = "hybridff-charge-model"
_REQUIRED_KEYS = ("format", "state_dict", "metadata")
_REQUIRED_METADATA = ("elements", "feature_spec", "hyperparameters")
#: An atom environment seen on fewer training atoms than this gets a warning.
MIN_ENVIRONMENT_COUNT = 5


class ChargeModelApplicabilityWarning(UserWarning):
    """An atom's chemistry is absent from (or rare in) the charge model's training set."""


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


def _describe_environment(key: str) -> str:
    symbol, degree, n_h, valence, charge = key.split()
    return (f"{symbol} with {degree[1:]} neighbours ({n_h[1:]} H), valence {valence[1:]}, "
            f"formal charge {charge}")


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is in the ml extra
        raise OptionalDependencyError(
            "the 'ml' charge method needs PyTorch: pip install 'hybridff[ml]'"
        ) from exc
    return torch


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
                        "use the shipped model or retrain with scripts/train_charge_model.py"
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
        """One message per atom whose environment (:func:`atom_environment`) occurs on fewer
        than MIN_ENVIRONMENT_COUNT training atoms; empty when all are covered, or when the model
        file records no training environments."""
        seen = self.metadata.get("training_environments")
        if seen is None:
            return []
        out = []
        for index, key, n in rare_atoms(mol, seen):
            how = "never occurs" if n == 0 else f"occurs on only {n} atom(s)"
            out.append(
                f"{atom_label(mol, index)}: {_describe_environment(key)} {how} in the "
                "ML charge model's training set, so its charge (and its neighbours') is an "
                "extrapolation; check it with --method am1bcc"
            )
        return out

    def predict(self, mol: Chem.Mol) -> np.ndarray:
        """Charges (e, float64) of ``mol``; the sum equals the formal charge to ~1e-12."""
        from hybridff.charges.ml_model import equivalence_classes, featurize, graph_tensors

        torch = _torch()
        self.check_molecule(mol)
        for message in self.applicability(mol):
            warnings.warn(message, ChargeModelApplicabilityWarning, stacklevel=3)
        g = featurize(mol, self.elements)
        x, edge_index, e, _, _ = graph_tensors(g, dtype=torch.float64)
        # a molecule is a tiny graph: torch's thread pool only adds overhead (and contends with
        # OpenMM's threads), so predict on one thread and give the setting back afterwards
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                chi, hardness = self.network.electronegativity_hardness(x, edge_index, e)
        finally:
            torch.set_num_threads(threads)
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


def _read_model_file(path: Path) -> dict:
    torch = _torch()
    if not path.exists():
        raise ModelCompatibilityError(f"charge model file {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-model files
        raise ModelCompatibilityError(
            f"{path} is not a hybridff charge model (torch.load failed: "
            f"{str(exc).splitlines()[0][:200]}); it needs a file "
            "written by scripts/train_charge_model.py"
        ) from exc
    if not isinstance(data, dict) or any(k not in data for k in _REQUIRED_KEYS):
        has = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ModelCompatibilityError(
            f"{path} is not a hybridff charge model: it has {has}, a charge model needs the keys "
            f"{', '.join(_REQUIRED_KEYS)} (written by scripts/train_charge_model.py)"
        )
    if data["format"] != MODEL_FORMAT:
        raise ModelCompatibilityError(
            f"{path} has format {data['format']!r}; the ml charge method needs {MODEL_FORMAT!r}"
        )
    missing = [k for k in _REQUIRED_METADATA if k not in data["metadata"]]
    if missing:
        raise ModelCompatibilityError(f"{path}: metadata lacks {', '.join(missing)}")
    return data


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> ChargeModel:  # noqa: ARG001 - part of the key
    from hybridff.charges.ml_model import (
        BOND_FEATURES,
        FEATURE_VERSION,
        ChargeEquilibrationNet,
        atom_feature_size,
    )

    torch = _torch()
    data = _read_model_file(Path(path))
    meta = data["metadata"]
    spec_version = meta["feature_spec"].get("version")
    if spec_version != FEATURE_VERSION:
        raise ModelCompatibilityError(
            f"{path} uses feature version {spec_version}; this hybridff reads version "
            f"{FEATURE_VERSION}: retrain with scripts/train_charge_model.py or upgrade hybridff"
        )
    unknown = [e for e in meta["elements"] if e not in SUPPORTED_ELEMENTS]
    if unknown:
        raise ModelCompatibilityError(
            f"{path} is a model for elements {', '.join(meta['elements'])}; hybridff supports "
            f"{', '.join(SUPPORTED_ELEMENTS)} (the file has {', '.join(unknown)} besides)"
        )
    hp = meta["hyperparameters"]
    net = ChargeEquilibrationNet(
        atom_feature_size(list(meta["elements"])), len(BOND_FEATURES), hp["hidden"], hp["layers"],
        hp.get("members", 1),
    )
    try:
        net.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise ModelCompatibilityError(
            f"{path}: weights do not fit the network its metadata describes (elements "
            f"{meta['elements']}, hidden {hp['hidden']}, layers {hp['layers']}, members "
            f"{hp.get('members', 1)}): {exc}"
        ) from exc
    net = net.to(torch.float64).eval()
    return ChargeModel(Path(path), net, meta)


def load_charge_model(path: str | os.PathLike | None = None) -> ChargeModel:
    """The charge model in ``path`` (default: the shipped one), loaded once per file version."""
    return _load_cached(*_model_file_key(path))


def _model_file_key(path: str | os.PathLike | None) -> tuple[str, int]:
    """(resolved path, mtime in ns; 0 if missing) of a charge model file: the cache key of
    what is read from it, so a rewritten file is read again."""
    p = Path(path) if path is not None else DEFAULT_MODEL
    return str(p.resolve()), p.stat().st_mtime_ns if p.exists() else 0


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, mtime_ns: int) -> str:  # noqa: ARG001 - part of the key
    from hybridff.data import file_sha256

    return file_sha256(path)


def charge_model_sha256(path: str | os.PathLike | None = None) -> str:
    """SHA256 of the charge model file (default: the shipped one); identifies the charges a
    correction model was trained with."""
    return _sha256_cached(*_model_file_key(path))


@register_charge_method("ml")
def ml_charges(mol: Chem.Mol, model: str | os.PathLike | None = None) -> np.ndarray:
    """Partial charges (e) predicted by the ML charge model; total = formal charge exactly."""
    return load_charge_model(model).predict(mol)
