"""The local ML correction: symmetry functions -> per-element MLPs -> energy (kJ/mol).

:class:`CorrectionModel` is one network; :class:`EnsembleModel` holds K of them over one
shared descriptor and returns their mean (``forward``) and each member (``member_energies``)
so the spread measures disagreement. Both take positions in nm (any float dtype; cast to
the model's dtype inside, as OpenMM hands TorchForce float64), species indices into the
model's element list, and an optional (3, 3) box in nm.
"""

from __future__ import annotations

import torch

from hybridff.ml.descriptors import DescriptorSpec, SymmetryFunctions


def _mlp(n_in: int, hidden: tuple[int, ...], dtype: torch.dtype) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [torch.nn.Linear(width, h, dtype=dtype), torch.nn.SiLU()]
        width = h
    last = torch.nn.Linear(width, 1, dtype=dtype)
    torch.nn.init.zeros_(last.weight)  # an untrained correction starts at exactly zero
    torch.nn.init.zeros_(last.bias)
    layers.append(last)
    return torch.nn.Sequential(*layers)


class AtomicNetworks(torch.nn.Module):
    """One MLP per element; descriptor normalisation and an energy scale/shift as buffers."""

    def __init__(
        self, n_elements: int, n_features: int, hidden: tuple[int, ...], dtype: torch.dtype
    ) -> None:
        super().__init__()
        self.networks = torch.nn.ModuleList(
            [_mlp(n_features, hidden, dtype) for _ in range(n_elements)]
        )
        self.register_buffer("feature_mean", torch.zeros(n_features, dtype=dtype))
        self.register_buffer("feature_std", torch.ones(n_features, dtype=dtype))
        self.register_buffer("energy_scale", torch.ones((), dtype=dtype))
        self.register_buffer("energy_shift", torch.zeros((), dtype=dtype))

    def forward(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Features (B, N, F) -> total energies (B,) in kJ/mol."""
        x = (features - self.feature_mean) / self.feature_std
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for index, net in enumerate(self.networks):
            atoms = torch.nonzero(species == index).squeeze(1)
            if atoms.numel() > 0:  # each network sees only the atoms of its element
                total = total + net(x.index_select(1, atoms)).squeeze(-1).sum(-1)
        return self.energy_scale * total + self.energy_shift


class EnsembleModel(torch.nn.Module):
    """K per-element networks over one symmetry-function descriptor (K = 1 is a single model)."""

    def __init__(
        self,
        spec: DescriptorSpec,
        hidden: tuple[int, ...] = (32, 32),
        n_models: int = 1,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.descriptor = SymmetryFunctions(spec)
        self.members = torch.nn.ModuleList(
            [AtomicNetworks(len(spec.elements), spec.n_features, hidden, dtype) for _ in range(n_models)]
        )
        self.register_buffer("dtype_ref", torch.zeros((), dtype=dtype))

    def features(
        self, positions: torch.Tensor, species: torch.Tensor, box: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Descriptors (B, N, F) of positions (B, N, 3) or (N, 3) in nm."""
        pos = positions.to(self.dtype_ref.dtype)
        if pos.dim() == 2:
            pos = pos.unsqueeze(0)
        return self.descriptor(pos, species, box)

    def member_energies(
        self, positions: torch.Tensor, species: torch.Tensor, box: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Energies (K, B) in kJ/mol of each ensemble member."""
        feats = self.features(positions, species, box)
        out = [member(feats, species) for member in self.members]
        return torch.stack(out, dim=0)

    def forward(
        self, positions: torch.Tensor, species: torch.Tensor, box: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean energy over the ensemble: (B,) for batched input, a scalar for (N, 3) input."""
        energies = self.member_energies(positions, species, box).mean(0)
        if positions.dim() == 2:
            return energies.sum()
        return energies


def energies_and_forces(
    module: torch.nn.Module,
    positions: torch.Tensor,
    species: torch.Tensor,
    box: torch.Tensor | None = None,
    per_member: bool = False,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies (B,) kJ/mol and forces (B, N, 3) kJ/mol/nm of frames (B, N, 3) in nm.

    With ``per_member`` the results gain a leading ensemble axis (K, ...).
    """
    out_e: list[torch.Tensor] = []
    out_f: list[torch.Tensor] = []
    for start in range(0, positions.shape[0], batch_size):
        pos = positions[start : start + batch_size].detach().clone().requires_grad_(True)
        if per_member:
            energies = module.member_energies(pos, species, box)  # (K, b)
            forces = torch.stack(
                [
                    -torch.autograd.grad(e.sum(), pos, retain_graph=True)[0]
                    for e in energies
                ]
            )
        else:
            energies = module(pos, species, box)
            forces = -torch.autograd.grad(energies.sum(), pos)[0]
        out_e.append(energies.detach())
        out_f.append(forces.detach())
    axis = 1 if per_member else 0
    return torch.cat(out_e, dim=axis), torch.cat(out_f, dim=axis)


class StackedLinear(torch.nn.Module):
    """K linear layers applied side by side: (K, M, in) -> (K, M, out) with one batched matmul."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)  # (K, in, out)
        self.register_buffer("bias", bias)  # (K, 1, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class FusedEnsemble(torch.nn.Module):
    """Inference form of an :class:`EnsembleModel`: the K members' networks of one element run
    as batched matrix products. Same energies and forces (to rounding), fewer, larger ops;
    weights become buffers (no training)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.descriptor = model.descriptor
        members = list(model.members.children())  # also works on loaded TorchScript modules
        self.register_buffer("dtype_ref", model.dtype_ref.detach().clone())
        self.register_buffer("feature_mean", torch.stack([m.feature_mean for m in members]))
        self.register_buffer("feature_std", torch.stack([m.feature_std for m in members]))
        self.register_buffer("energy_scale", torch.stack([m.energy_scale for m in members]))
        self.register_buffer("energy_shift", torch.stack([m.energy_shift for m in members]))
        elements = []
        per_member = [list(m.networks.children()) for m in members]
        for e in range(len(per_member[0])):
            linears = [
                [layer for layer in nets[e].children() if hasattr(layer, "weight")]
                for nets in per_member
            ]
            stacked = []
            for depth in range(len(linears[0])):
                w = torch.stack([lin[depth].weight.detach().t() for lin in linears])
                b = torch.stack([lin[depth].bias.detach().unsqueeze(0) for lin in linears])
                stacked.append(StackedLinear(w.contiguous(), b.contiguous()))
            elements.append(torch.nn.ModuleList(stacked))
        self.networks = torch.nn.ModuleList(elements)

    def member_energies(
        self, positions: torch.Tensor, species: torch.Tensor, box: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Energies (K, B) in kJ/mol of each ensemble member."""
        pos = positions.to(self.dtype_ref.dtype)
        if pos.dim() == 2:
            pos = pos.unsqueeze(0)
        feats = self.descriptor(pos, species, box)  # (B, N, F)
        n_models, batch = self.energy_scale.shape[0], feats.shape[0]
        total = torch.zeros(n_models, batch, dtype=feats.dtype, device=feats.device)
        for index, layers in enumerate(self.networks):
            atoms = torch.nonzero(species == index).squeeze(1)
            if atoms.numel() > 0:
                x = feats.index_select(1, atoms)  # (B, n, F)
                n_sel = x.shape[1]
                mean = self.feature_mean[:, None, None, :]
                h = (x.unsqueeze(0) - mean) / self.feature_std[:, None, None, :]
                h = h.reshape(n_models, batch * n_sel, -1)
                n_layers = len(layers)
                for depth, layer in enumerate(layers):
                    h = layer(h)
                    if depth < n_layers - 1:
                        h = torch.nn.functional.silu(h)
                total = total + h.reshape(n_models, batch, n_sel).sum(-1)
        return self.energy_scale.unsqueeze(1) * total + self.energy_shift.unsqueeze(1)

    def forward(
        self, positions: torch.Tensor, species: torch.Tensor, box: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean energy over the ensemble: (B,) for batched input, a scalar for (N, 3) input."""
        energies = self.member_energies(positions, species, box).mean(0)
        if positions.dim() == 2:
            return energies.sum()
        return energies


def inference_module(module: torch.nn.Module) -> torch.jit.ScriptModule:
    """The scripted :class:`FusedEnsemble` of an (eager or scripted) :class:`EnsembleModel`."""
    return torch.jit.script(FusedEnsemble(module))
