"""An equivariant message-passing correction (PaiNN family), as a second architecture.

Each atom carries scalar features ``s`` (B, N, F) and vector features ``v`` (B, N, 3, F). An
interaction block passes messages from neighbours ``j`` within the cutoff, built from ``s_j``,
``v_j``, the unit vector ``u_ij`` and a radial filter of ``r_ij`` (a sine basis times the same
smooth cosine cutoff as the symmetry functions, so energy and forces stay continuous at the
cutoff); an update block mixes each atom's vector channels through rotation-invariant norms
and dot products. Vectors only ever enter as sums of vectors times invariants, so the energy
is invariant under rotations and translations and the forces covariant; atoms of one element
are interchangeable. A per-atom readout gives atom energies, kept near their training range by
the same safety net as the symmetry-function networks (:class:`~hybridff.ml.model.BoundedAtoms`).

The layout follows Schütt et al., "Equivariant message passing for the prediction of tensorial
properties and molecular spectra" (ICML 2021); this is an own, dense implementation (all pairs
of the ML region, like :mod:`hybridff.ml.descriptors`), TorchScript-able for TorchForce.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from hybridff.ml.descriptors import cosine_cutoff, pair_geometry
from hybridff.ml.model import BoundedAtoms, MeanOfMembers

ARCHITECTURE = "painn"


@dataclass(frozen=True)
class MessagePassingSpec:
    """Hyper-parameters of the message-passing network (lengths in nm)."""

    elements: tuple[int, ...]
    cutoff: float = 0.5
    features: int = 64
    interactions: int = 3
    radial_basis: int = 16
    architecture: str = ARCHITECTURE

    def to_dict(self) -> dict:
        """JSON-ready form (stored in the model file as its ``descriptor``)."""
        d = asdict(self)
        d["elements"] = list(self.elements)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MessagePassingSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(elements=tuple(int(z) for z in d["elements"]), cutoff=float(d["cutoff"]),
                   features=int(d["features"]), interactions=int(d["interactions"]),
                   radial_basis=int(d["radial_basis"]))


def _linear(n_in: int, n_out: int, dtype: torch.dtype, bias: bool = True) -> torch.nn.Linear:
    return torch.nn.Linear(n_in, n_out, bias=bias, dtype=dtype)


def _two_layer(n_in: int, n_hidden: int, n_out: int, dtype: torch.dtype) -> torch.nn.Sequential:
    return torch.nn.Sequential(_linear(n_in, n_hidden, dtype), torch.nn.SiLU(),
                               _linear(n_hidden, n_out, dtype))


class Interaction(torch.nn.Module):
    """One message block and one update block."""

    def __init__(self, features: int, radial_basis: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.features = features
        self.message = _two_layer(features, features, 3 * features, dtype)
        self.filter = _linear(radial_basis, 3 * features, dtype)
        self.mix_u = _linear(features, features, dtype, bias=False)
        self.mix_v = _linear(features, features, dtype, bias=False)
        self.update = _two_layer(2 * features, features, 3 * features, dtype)

    def forward(self, s: torch.Tensor, v: torch.Tensor, basis: torch.Tensor,
                cut: torch.Tensor, unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s (B, N, F), v (B, N, 3, F), basis (B, N, N, R), cut (B, N, N, 1): the cutoff
        function, zero on the diagonal and beyond the cutoff; unit (B, N, N, 3)."""
        f = self.features
        # (B, i, j, 3F), from atom j; the filter times the cutoff, so that no message (not even
        # the filter's bias) comes from beyond the cutoff or from the atom itself
        x = self.message(s).unsqueeze(1) * (self.filter(basis) * cut)
        x_s, x_vv, x_vs = torch.split(x, f, dim=-1)  # split, not slices: one cheap backward
        s = s + x_s.sum(2)
        v = (v + torch.einsum("bijf,bjcf->bicf", x_vv, v)
             + torch.einsum("bijf,bijc->bicf", x_vs, unit))
        u_v = self.mix_u(v)
        v_v = self.mix_v(v)
        norm = torch.sqrt((v_v * v_v).sum(2) + 1e-8)  # smooth at v = 0
        a_vv, a_sv, a_ss = torch.split(self.update(torch.cat([s, norm], dim=-1)), f, dim=-1)
        v = v + a_vv.unsqueeze(2) * u_v
        s = s + a_sv * (u_v * v_v).sum(2) + a_ss
        return s, v


class MessagePassingNetwork(BoundedAtoms):
    """One PaiNN-style network: positions (B, N, 3) nm + species (N,) -> energies (B,) kJ/mol."""

    def __init__(self, spec: MessagePassingSpec, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(len(spec.elements), dtype)
        self.cutoff = float(spec.cutoff)
        self.features = int(spec.features)
        self.embedding = torch.nn.Embedding(len(spec.elements), spec.features, dtype=dtype)
        self.register_buffer("frequencies", math.pi / spec.cutoff * torch.arange(
            1, spec.radial_basis + 1, dtype=dtype))
        self.interactions = torch.nn.ModuleList(
            [Interaction(spec.features, spec.radial_basis, dtype) for _ in range(spec.interactions)])
        self.readout = _two_layer(spec.features, spec.features // 2, 1, dtype)
        torch.nn.init.zeros_(self.readout[2].weight)  # an untrained correction is exactly zero
        torch.nn.init.zeros_(self.readout[2].bias)

    def atom_energies(self, positions: torch.Tensor, species: torch.Tensor,
                      box: torch.Tensor | None = None) -> torch.Tensor:
        """Per-atom energies (B, N) in kJ/mol, before bounds and shift."""
        batch, n_atoms = positions.shape[0], positions.shape[1]
        dtype = positions.dtype
        vectors, r, eye = pair_geometry(positions, box)  # [b, i, j] = x_j - x_i
        cut = (cosine_cutoff(r, self.cutoff) * (1.0 - eye)).unsqueeze(-1)  # no self-pairs
        # sine basis sin(k pi r / rc) / r, evaluated at rc where the cutoff zeroes it anyway
        # (and on the diagonal, where r is not a distance): smooth, finite at small r
        inside = (r < self.cutoff) & (eye == 0)
        r_in = torch.where(inside, r, torch.full_like(r, self.cutoff))
        basis = torch.sin(r_in.unsqueeze(-1) * self.frequencies) / r_in.unsqueeze(-1)
        unit = vectors / r.unsqueeze(-1)
        s = self.embedding(species).unsqueeze(0).expand(batch, n_atoms, self.features)
        v = torch.zeros(batch, n_atoms, 3, self.features, dtype=dtype, device=positions.device)
        for block in self.interactions:
            s, v = block(s, v, basis, cut, unit)
        return self.energy_scale * self.readout(s).squeeze(-1)

    def forward(self, positions: torch.Tensor, species: torch.Tensor,
                box: torch.Tensor | None = None) -> torch.Tensor:
        """Total energies (B,) in kJ/mol."""
        return self.total_energy(self.atom_energies(positions, species, box), species)


class MessagePassingEnsemble(MeanOfMembers):
    """K message-passing networks; their mean is the correction. A member's input is the
    positions themselves (:meth:`features`), so the trainer drives both architectures alike."""

    def __init__(self, spec: MessagePassingSpec, n_models: int = 1,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(
            [MessagePassingNetwork(spec, dtype) for _ in range(n_models)])
        self.register_buffer("dtype_ref", torch.zeros((), dtype=dtype))

    def features(self, positions: torch.Tensor, species: torch.Tensor,
                 box: torch.Tensor | None = None) -> torch.Tensor:
        """The members' input: positions (B, N, 3) in nm, in the model's dtype."""
        pos = positions.to(self.dtype_ref.dtype)
        if pos.dim() == 2:
            pos = pos.unsqueeze(0)
        return pos

    def member_energies(self, positions: torch.Tensor, species: torch.Tensor,
                        box: torch.Tensor | None = None) -> torch.Tensor:
        """Energies (K, B) in kJ/mol of each ensemble member."""
        pos = self.features(positions, species, box)
        out = [member(pos, species, box) for member in self.members]
        return torch.stack(out, dim=0)
