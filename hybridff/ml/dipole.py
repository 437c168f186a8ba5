"""Geometry-dependent charges q_i(X) and the dipole-moment surface d(X) = sum_i q_i(X) r_i.

Each atom's electronegativity ``chi_i`` and hardness ``J_i > 0`` come from its local
environment (the correction's symmetry functions, :mod:`hybridff.ml.descriptors`, through one
small network per element, plus a learned per-element baseline). The charges are the
closed-form solution of charge equilibration with the total fixed to the molecule's charge Q
(as the graph charge model, :mod:`hybridff.charges.model.network`):

    q_i = (lambda - chi_i) / J_i,    lambda = (Q + sum_j chi_j / J_j) / (sum_j 1 / J_j)

so ``sum_i q_i = Q`` for every conformation (to rounding), each ``q_i`` is invariant under
rotations, translations and permutations of same-element atoms, and the dipole
``d = sum_i q_i (r_i - R)`` rotates with the molecule. ``R`` is the centre of mass (the origin
hybridff's QM labels use, :data:`hybridff.elements.DIPOLE_ORIGIN`); for a neutral molecule the
dipole does not depend on it.

A dipole model is a TorchScript module with its metadata JSON embedded, like a correction
model (:mod:`hybridff.ml.modelfile`). It is stored on its own (``hybridff train
--dipoles-only``) or inside a correction's model file as one more archive member
(``hybridff train --dipoles``); :func:`load_dipole_model` reads either.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hybridff.elements import atomic_masses
from hybridff.exceptions import DataFormatError
from hybridff.ml.descriptors import DescriptorSpec, SymmetryFunctions
from hybridff.ml.model import AtomicNetworks

#: archive members: the dipole model's metadata (a standalone dipole file) and a whole
#: standalone dipole archive embedded in a correction's model file
METADATA_NAME = "hybridff_dipole_metadata.json"
EMBEDDED_NAME = "hybridff_dipole_model.pt"
FORMAT_VERSION = 1
#: smallest hardness (dimensionless, as the network's units): keeps 1/J finite
MIN_HARDNESS = 0.05


class ChargeEquilibrationModel(torch.nn.Module):
    """Positions (B, N, 3) or (N, 3) nm, species (N,), total charge -> charges (B, N) or (N,).

    ``dipoles`` gives ``sum_i q_i (r_i - R_com)`` in e*nm, with the atoms' ``masses``.
    """

    def __init__(self, spec: DescriptorSpec, hidden: tuple[int, ...] = (16, 16),
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.descriptor = SymmetryFunctions(spec)
        n_elements, n_features = len(spec.elements), spec.n_features
        self.electronegativity = AtomicNetworks(n_elements, n_features, hidden, dtype)
        self.hardness = AtomicNetworks(n_elements, n_features, hidden, dtype)
        self.chi0 = torch.nn.Parameter(torch.zeros(n_elements, dtype=dtype))
        # softplus(0.5413) = 1: every atom starts equally hard
        self.hardness0 = torch.nn.Parameter(torch.full((n_elements,), 0.5413, dtype=dtype))
        self.min_hardness = float(MIN_HARDNESS)
        self.register_buffer("dtype_ref", torch.zeros((), dtype=dtype))

    def from_features(self, features: torch.Tensor, species: torch.Tensor,
                      total_charge: float) -> torch.Tensor:
        """Charges (B, N) from descriptors (B, N, F)."""
        chi = self.chi0[species] + self.electronegativity.atom_energies(features, species)
        hard = (torch.nn.functional.softplus(
            self.hardness0[species] + self.hardness.atom_energies(features, species))
            + self.min_hardness)
        inverse = 1.0 / hard
        lam = (total_charge + (chi * inverse).sum(-1, keepdim=True)) / inverse.sum(-1, keepdim=True)
        return (lam - chi) * inverse

    def forward(self, positions: torch.Tensor, species: torch.Tensor,
                total_charge: float) -> torch.Tensor:
        single = positions.dim() == 2
        x = positions.to(self.dtype_ref.dtype)
        if single:
            x = x.unsqueeze(0)
        charges = self.from_features(self.descriptor(x, species), species, total_charge)
        return charges.squeeze(0) if single else charges

    @torch.jit.export
    def dipoles(self, positions: torch.Tensor, species: torch.Tensor, total_charge: float,
                masses: torch.Tensor) -> torch.Tensor:
        """Dipole moments (B, 3) in e*nm about each frame's centre of mass."""
        x = positions.to(self.dtype_ref.dtype)
        if x.dim() == 2:
            x = x.unsqueeze(0)
        charges = self.forward(x, species, total_charge)
        return dipoles_from_charges(charges, x, masses.to(self.dtype_ref.dtype))


def dipoles_from_charges(charges: torch.Tensor, positions: torch.Tensor,
                         masses: torch.Tensor) -> torch.Tensor:
    """``sum_i q_i (r_i - R_com)``: charges (B, N) or (N,), positions (B, N, 3) -> (B, 3)."""
    centre = (masses.unsqueeze(-1) * positions).sum(-2, keepdim=True) / masses.sum()
    return (charges.unsqueeze(-1) * (positions - centre)).sum(-2)


def fixed_charge_dipoles(charges: np.ndarray, numbers: np.ndarray,
                         positions_nm: np.ndarray) -> np.ndarray:
    """Dipoles (F, 3) e*nm of fixed charges (N,) on frames (F, N, 3), about the centre of mass."""
    x = torch.as_tensor(np.asarray(positions_nm, dtype=np.float64)).reshape(-1, len(numbers), 3)
    q = torch.as_tensor(np.asarray(charges, dtype=np.float64))
    m = torch.as_tensor(atomic_masses(numbers))
    return dipoles_from_charges(q, x, m).numpy()


# --------------------------------------------------------------------------- files


@dataclass
class DipoleModelFile:
    """A loaded dipole model: the scripted :class:`ChargeEquilibrationModel` and its metadata."""

    module: Any  # torch.jit.ScriptModule
    metadata: dict[str, Any]
    path: str = ""

    @property
    def elements(self) -> list[int]:
        """Atomic numbers the model covers, in species-index order."""
        return [int(z) for z in self.metadata["elements"]]

    def species(self, numbers: np.ndarray) -> torch.Tensor:
        """Species indices of a molecule's atoms; an element the model lacks is an error."""
        index = {z: i for i, z in enumerate(self.elements)}
        missing = sorted({int(z) for z in numbers} - set(index))
        if missing:
            raise DataFormatError(
                f"{self.path or 'the dipole model'} covers elements {self.elements}, not "
                f"{missing}: train a dipole model on frames of this molecule")
        return torch.tensor([index[int(z)] for z in numbers], dtype=torch.long)

    def charges(self, numbers: np.ndarray, positions_nm: np.ndarray,
                batch_size: int = 256) -> np.ndarray:
        """Charges (F, N) in e on frames (F, N, 3) nm, total = the model's molecule charge."""
        species = self.species(numbers)
        total = float(self.metadata["total_charge"])
        x = np.asarray(positions_nm, dtype=np.float64).reshape(-1, len(numbers), 3)
        out = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                out.append(self.module(torch.as_tensor(x[start:start + batch_size]), species,
                                       total).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(numbers)))

    def dipoles(self, numbers: np.ndarray, positions_nm: np.ndarray) -> np.ndarray:
        """Dipoles (F, 3) e*nm about each frame's centre of mass."""
        x = np.asarray(positions_nm, dtype=np.float64).reshape(-1, len(numbers), 3)
        q = self.charges(numbers, x)
        m = torch.as_tensor(atomic_masses(numbers))
        return dipoles_from_charges(torch.as_tensor(q), torch.as_tensor(x), m).numpy()


def dipole_archive(model: Any, metadata: dict[str, Any]) -> bytes:
    """The standalone archive (TorchScript + metadata) of a dipole model, as bytes."""
    from hybridff import __version__

    meta = {"format_version": FORMAT_VERSION, "hybridff_version": __version__,
            "kind": "dipole", **metadata}
    for key in ("elements", "descriptor", "total_charge"):
        if key not in meta:
            raise DataFormatError(f"dipole model metadata lacks {key!r}")
    scripted = model if isinstance(model, torch.jit.ScriptModule) else torch.jit.script(model)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer,
                   _extra_files={METADATA_NAME: json.dumps(meta, indent=1, sort_keys=True)})
    return buffer.getvalue()


def save_dipole_model(path: str | os.PathLike, model: Any, metadata: dict[str, Any]) -> Path:
    """Write a standalone dipole model file atomically."""
    from hybridff.io.files import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, dipole_archive(model, metadata))
    return path


def has_dipole_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is (or, for a correction's model file, holds) a dipole model."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith(f"extra/{METADATA_NAME}") or n.endswith(f"extra/{EMBEDDED_NAME}")
               for n in names)


def _from_archive(data: bytes, where: str) -> DipoleModelFile:
    extra = {METADATA_NAME: ""}
    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError/ValueError for broken archives
        raise DataFormatError(f"{where}: the dipole model is not readable ({exc}); retrain "
                              "it (hybridff train --dipoles)") from exc
    if not extra[METADATA_NAME]:
        raise DataFormatError(f"{where}: no dipole model metadata; retrain it (hybridff train "
                              "--dipoles)")
    metadata = json.loads(extra[METADATA_NAME])
    if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        raise DataFormatError(f"{where}: dipole model format {metadata['format_version']} is "
                              f"newer than this hybridff reads ({FORMAT_VERSION}); upgrade "
                              "hybridff")
    return DipoleModelFile(module, metadata, where)


def load_dipole_model(path: str | os.PathLike) -> DipoleModelFile:
    """A dipole model from a standalone file or from the correction model file holding one."""
    from hybridff.ml.modelfile import check_archive

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"model file {str(path)!r} does not exist")
    check_archive(path)
    if not has_dipole_model(path):
        raise DataFormatError(
            f"{path}: holds no dipole model; train one with hybridff train --dipoles (inside "
            "the correction's model file) or --dipoles-only (a file of its own)")
    extra = {EMBEDDED_NAME: ""}
    try:
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise DataFormatError(f"{path}: not a readable model file ({exc})") from exc
    if extra[EMBEDDED_NAME]:
        return _from_archive(extra[EMBEDDED_NAME], str(path))
    return _from_archive(path.read_bytes(), str(path))
