"""The local ML correction: symmetry functions -> per-element MLPs -> energy (kJ/mol).

:class:`CorrectionModel` is one network; :class:`EnsembleModel` holds K of them over one
shared descriptor and returns their mean (``forward``) and each member (``member_energies``)
so the spread measures disagreement. Both take positions in nm (any float dtype; cast to
the model's dtype inside, as OpenMM hands TorchForce float64), species indices into the
model's element list, and an optional (3, 3) box in nm.
"""

from __future__ import annotations

import copy
import io

import torch

from hybridff.ml import PRECISIONS
from hybridff.ml.descriptors import DescriptorSpec, SymmetryFunctions
from hybridff.ml.layers import StackedLinear


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


#: Atom-energy bounds, as fractions of the range R of an element's atom energies over the
#: training frames: identity up to R * BOUND_MARGIN beyond that range, then a tanh tail that
#: can add at most R * BOUND_WIDTH more.
BOUND_MARGIN = 0.25
BOUND_WIDTH = 0.5


def soft_clamp(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """``x`` on [low, high]; beyond, a tanh tail that levels off at ``low - width`` /
    ``high + width``. Continuous with a continuous first derivative, so forces stay continuous."""
    above = high + width * torch.tanh((x - high) / width)
    below = low - width * torch.tanh((low - x) / width)
    return torch.where(x > high, above, torch.where(x < low, below, x))


class BoundedAtoms(torch.nn.Module):
    """A network of atom energies with an energy scale/shift and per-element atom-energy bounds
    as buffers; subclasses compute the atom energies (``atom_energies``).

    The bounds are the correction's safety net: outside the chemistry it was trained on, a
    network's output is arbitrary, so each atom's energy is kept (smoothly, :func:`soft_clamp`)
    near the range it took on the training frames; the MM force field carries the rest.
    Untrained or old models have ``bounded`` false and no bound.
    """

    def __init__(self, n_elements: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("energy_scale", torch.ones((), dtype=dtype))
        self.register_buffer("energy_shift", torch.zeros((), dtype=dtype))
        self.register_buffer("bounded", torch.zeros((), dtype=torch.bool))
        self.register_buffer("atom_energy_low", torch.zeros(n_elements, dtype=dtype))
        self.register_buffer("atom_energy_high", torch.zeros(n_elements, dtype=dtype))
        self.register_buffer("atom_energy_width", torch.ones(n_elements, dtype=dtype))

    def total_energy(self, energies: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Atom energies (B, N) -> bounded total energies (B,) with the shift."""
        if bool(self.bounded):
            energies = soft_clamp(energies, self.atom_energy_low[species],
                                  self.atom_energy_high[species], self.atom_energy_width[species])
        return energies.sum(-1) + self.energy_shift

    @torch.jit.unused
    def set_bounds(self, atom_energies: torch.Tensor, species: torch.Tensor) -> dict[int, list[float]]:
        """Bound each element's atom energies near their range in ``atom_energies`` (B, N), the
        values over the training frames; returns {species index: [low, high, width]}."""
        out = {}
        with torch.no_grad():
            for index in range(self.atom_energy_low.shape[0]):
                values = atom_energies[:, species == index]
                if values.numel() == 0:
                    continue
                low, high = float(values.min()), float(values.max())
                span = max(high - low, 1e-3)  # kJ/mol; an element with one fixed energy
                self.atom_energy_low[index] = low - BOUND_MARGIN * span
                self.atom_energy_high[index] = high + BOUND_MARGIN * span
                self.atom_energy_width[index] = BOUND_WIDTH * span
                out[index] = [float(self.atom_energy_low[index]),
                              float(self.atom_energy_high[index]),
                              float(self.atom_energy_width[index])]
            self.bounded.fill_(True)
        return out


class AtomicNetworks(BoundedAtoms):
    """One MLP per element over normalised symmetry-function descriptors, with the bounds of
    :class:`BoundedAtoms`."""

    def __init__(
        self, n_elements: int, n_features: int, hidden: tuple[int, ...], dtype: torch.dtype
    ) -> None:
        super().__init__(n_elements, dtype)
        self.networks = torch.nn.ModuleList(
            [_mlp(n_features, hidden, dtype) for _ in range(n_elements)]
        )
        self.register_buffer("feature_mean", torch.zeros(n_features, dtype=dtype))
        self.register_buffer("feature_std", torch.ones(n_features, dtype=dtype))

    def atom_energies(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Features (B, N, F) -> per-atom energies (B, N) in kJ/mol, before bounds and shift."""
        x = (features - self.feature_mean) / self.feature_std
        out = torch.zeros(x.shape[0], x.shape[1], dtype=x.dtype, device=x.device)
        for index, net in enumerate(self.networks):
            atoms = torch.nonzero(species == index).squeeze(1)
            if atoms.numel() > 0:  # each network sees only the atoms of its element
                out = out.index_copy(1, atoms, net(x.index_select(1, atoms)).squeeze(-1))
        return self.energy_scale * out

    def forward(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Features (B, N, F) -> total energies (B,) in kJ/mol."""
        return self.total_energy(self.atom_energies(features, species), species)


class MeanOfMembers(torch.nn.Module):
    """An ensemble's energy: the mean of ``member_energies`` (K, B), which subclasses define
    from :meth:`features` (their ``descriptor``, in the dtype of their ``dtype_ref`` buffer)."""

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
        raise NotImplementedError

    def forward(
        self, positions: torch.Tensor, species: torch.Tensor, box: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean energy over the ensemble: (B,) for batched input, a scalar for (N, 3) input."""
        energies = self.member_energies(positions, species, box).mean(0)
        if positions.dim() == 2:
            return energies.sum()
        return energies


class EnsembleModel(MeanOfMembers):
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

    def member_energies(
        self, positions: torch.Tensor, species: torch.Tensor, box: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Energies (K, B) in kJ/mol of each ensemble member."""
        feats = self.features(positions, species, box)
        out = [member(feats, species) for member in self.members]
        return torch.stack(out, dim=0)


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


class FusedEnsemble(MeanOfMembers):
    """Inference form of an :class:`EnsembleModel`: every atom's network, for all K members, runs
    in one batched matrix product per layer (each atom takes its element's weights), over this
    code's descriptor. Same energies and forces (to rounding) in far fewer ops than a loop over
    elements and members, which is what a correction of a few dozen atoms costs; weights
    become buffers (no training)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        # this code's descriptor with the model's settings: a model file keeps the descriptor
        # code it was saved with, and newer code computes the same features faster
        self.descriptor = SymmetryFunctions.like(model.descriptor)
        members = list(model.members.children())  # also works on loaded TorchScript modules
        self.register_buffer("dtype_ref", model.dtype_ref.detach().clone())
        self.register_buffer("feature_mean", torch.stack([m.feature_mean for m in members]))
        self.register_buffer("feature_std", torch.stack([m.feature_std for m in members]))
        self.register_buffer("energy_scale", torch.stack([m.energy_scale for m in members]))
        self.register_buffer("energy_shift", torch.stack([m.energy_shift for m in members]))
        has_bounds = hasattr(members[0], "bounded")  # models saved before bounds have none
        self.register_buffer("bounded", torch.tensor(
            has_bounds and bool(torch.stack([m.bounded for m in members]).all())))
        per_member = [list(m.networks.children()) for m in members]
        shape = (len(members), len(per_member[0]))  # (K, E)
        for name, default in (("atom_energy_low", 0.0), ("atom_energy_high", 0.0),
                              ("atom_energy_width", 1.0)):
            value = (torch.stack([getattr(m, name) for m in members]) if has_bounds
                     else torch.full(shape, default, dtype=model.dtype_ref.dtype))
            self.register_buffer(name, value)
        # layer d of element e, member k: weight[d][e, k] (n_in, n_out), bias[d][e, k] (1, n_out)
        linears = [[[layer for layer in nets[e].children() if hasattr(layer, "weight")]
                    for nets in per_member] for e in range(shape[1])]  # [e][k][d]
        self.n_layers = len(linears[0][0])
        weights, biases = [], []
        for depth in range(self.n_layers):
            weights.append(torch.stack([torch.stack([lin[depth].weight.detach().t()
                                                     for lin in element]) for element in linears]))
            biases.append(torch.stack([torch.stack([lin[depth].bias.detach().unsqueeze(0)
                                                    for lin in element]) for element in linears]))
        self.layers = torch.nn.ModuleList(
            [StackedLinear(w.contiguous(), b.contiguous(), trainable=False)
             for w, b in zip(weights, biases, strict=True)])

    def member_energies(
        self, positions: torch.Tensor, species: torch.Tensor, box: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Energies (K, B) in kJ/mol of each ensemble member."""
        feats = self.features(positions, species, box)  # (B, N, F)
        n_models, batch, n_atoms = self.energy_scale.shape[0], feats.shape[0], feats.shape[1]
        h = (feats.unsqueeze(0) - self.feature_mean[:, None, None, :]) / self.feature_std[
            :, None, None, :]  # (K, B, N, F)
        h = h.permute(2, 0, 1, 3).reshape(n_atoms * n_models, batch, -1)  # (N K, B, F)
        for depth, layer in enumerate(self.layers):
            weight = layer.weight.index_select(0, species)  # (N, K, n_in, n_out)
            bias = layer.bias.index_select(0, species)  # (N, K, 1, n_out)
            h = torch.baddbmm(bias.reshape(n_atoms * n_models, 1, -1), h,
                              weight.reshape(n_atoms * n_models, weight.shape[2], -1))
            if depth < self.n_layers - 1:
                h = torch.nn.functional.silu(h)
        atom_e = h.reshape(n_atoms, n_models, batch).permute(1, 2, 0)  # (K, B, N)
        atom_e = self.energy_scale[:, None, None] * atom_e
        if bool(self.bounded):
            atom_e = soft_clamp(atom_e, self.atom_energy_low[:, species].unsqueeze(1),
                                self.atom_energy_high[:, species].unsqueeze(1),
                                self.atom_energy_width[:, species].unsqueeze(1))
        return atom_e.sum(-1) + self.energy_shift.unsqueeze(1)


class SinglePrecision(torch.nn.Module):
    """A correction run in float32, its constant energy shift added in float64 afterwards.

    The atom energies and forces are float32 (relative rounding ~1e-7, the precision of OpenMM's
    CPU and mixed-precision GPU forces); the shift, which can be 1e5 kJ/mol, stays float64 so
    the total energy keeps its resolution (conserved-energy checks, lambda derivatives).
    Inputs and the output are float64, as TorchForce and PythonForce hand them.
    """

    def __init__(self, module: torch.nn.Module, shift: float) -> None:
        super().__init__()
        self.model = module
        self.register_buffer("shift", torch.tensor(float(shift), dtype=torch.float64))

    def forward(
        self, positions: torch.Tensor, species: torch.Tensor, box: torch.Tensor | None = None
    ) -> torch.Tensor:
        box32: torch.Tensor | None = None
        if box is not None:
            box32 = box.to(torch.float32)
        energy = self.model(positions.to(torch.float32), species, box32)
        return energy.to(torch.float64) + self.shift


def _energy_shift_of(module: torch.nn.Module, zeroed: torch.nn.Module, n_elements: int) -> float:
    """The constant ``module`` adds on top of ``zeroed`` (the same module with every
    ``energy_shift`` buffer at 0), measured at two geometries; raises if it is not constant."""
    generator = torch.Generator().manual_seed(0)
    species = torch.arange(n_elements, dtype=torch.long).repeat(2)
    shifts = []
    for _ in range(2):
        pos = 0.1 + 0.3 * torch.rand(len(species), 3, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            shifts.append(float(module(pos, species, None) - zeroed(pos, species, None)))
    if abs(shifts[0] - shifts[1]) > 1e-9 * max(1.0, abs(shifts[0])):
        raise ValueError("the model's energy shift is not a constant; run it with precision "
                         "'double'")
    return shifts[0]


def _n_elements(module: torch.nn.Module) -> int:
    """How many elements a correction covers (its per-element atom-energy bounds)."""
    for name, buffer in module.named_buffers():
        if name.split(".")[-1] == "atom_energy_low":
            return int(buffer.shape[-1])
    raise ValueError("not a hybridff correction model (no per-element atom-energy bounds)")


def _copy_module(module: torch.nn.Module) -> torch.nn.Module:
    if isinstance(module, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        torch.jit.save(module, buffer)
        buffer.seek(0)
        return torch.jit.load(buffer, map_location="cpu")
    return copy.deepcopy(module)


def inference_module(module: torch.nn.Module, precision: str = "double") -> torch.jit.ScriptModule:
    """The scripted inference form of a trained correction (eager or scripted): an
    :class:`EnsembleModel` becomes a :class:`FusedEnsemble`, other architectures (no shared
    ``descriptor``) run as they are. ``precision`` ``"single"`` runs it in float32
    (:class:`SinglePrecision`; about 1.3x (symmetry functions) to 2x (message passing) faster
    on CPU), ``"double"`` in the stored float64."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if hasattr(module, "descriptor"):
        module = FusedEnsemble(module)
    if precision == "double":
        return module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
    zeroed = _copy_module(module)
    for name, buffer in zeroed.named_buffers():
        if name.split(".")[-1] == "energy_shift":
            buffer.zero_()
    shift = _energy_shift_of(module, zeroed, _n_elements(module))
    return torch.jit.script(SinglePrecision(zeroed.to(torch.float32), shift))
